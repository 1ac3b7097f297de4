"""``steadyseg.refine.coco``: rewrite the instance masks of a COCO file with a refiner, and score the result.

- :mod:`~steadyseg.refine.coco.driver`: :func:`refine_coco` (plan → run shards → assemble), ``refine-coco``'s
  library; :mod:`~steadyseg.refine.coco.shards` (the parallel unit) and :mod:`~steadyseg.refine.coco.annotation`
  (one annotation, the guard);
- :mod:`~steadyseg.refine.coco.evaluation`: :func:`compare_coco`, IoU / mBA / change statistics (``refine-eval``);
- :mod:`~steadyseg.refine.coco.cli`, :mod:`~steadyseg.refine.coco.eval_cli`: the two commands.

Names below are imported on first use, so ``import steadyseg.refine.coco`` stays cheap.
"""

from __future__ import annotations

from steadyseg.refine._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "refine_coco": "steadyseg.refine.coco.driver",
    "GUARD_POLICIES": "steadyseg.refine.coco.annotation",
    "refine_annotation": "steadyseg.refine.coco.annotation",
    "compare_coco": "steadyseg.refine.coco.evaluation",
    "mask_pair_metrics": "steadyseg.refine.coco.evaluation",
    "evaluate_mask_pairs": "steadyseg.refine.coco.evaluation",
})
