"""``steadyseg.refine``: mask refinement (COCO instance masks) and temporal post-processing (mask videos).

Subpackages and modules, one concern each:

- :mod:`~steadyseg.refine.refiners` (the :class:`Refiner` protocol, the ``REFINERS`` registry,
  :func:`refine_on_crop`) and :mod:`~steadyseg.refine.guided_refiner` (the weight-free default refiner);
- :mod:`steadyseg.refine.cascadepsp`: the CascadePSP network, its whole-image inference and its training;
- :mod:`steadyseg.refine.coco`: the ``refine-coco`` driver and the ``refine-eval`` evaluation;
- :mod:`steadyseg.refine.postprocess`: guided filters, temporal smoothing and ``steadyseg postprocess``.

The names below are importable from ``steadyseg.refine`` directly; all but the two guided-filter functions are
imported on first use (importing ``steadyseg.refine`` must not import torch).
"""

from steadyseg.refine._lazy import lazy_getattr
from steadyseg.refine.postprocess.guided_filter import confidence_weights, guided_filter  # noqa: F401

_LAZY = {
    "Refiner": "steadyseg.refine.refiners",
    "REFINERS": "steadyseg.refine.refiners",
    "build_refiner": "steadyseg.refine.refiners",
    "refine_on_crop": "steadyseg.refine.refiners",
    "GuidedRefiner": "steadyseg.refine.guided_refiner",
    "CascadePSPRefiner": "steadyseg.refine.cascadepsp.refiner",
    "refine_coco": "steadyseg.refine.coco.driver",
    "compare_coco": "steadyseg.refine.coco.evaluation",
    "GuidedFilter3d": "steadyseg.refine.postprocess.guided_filter",
    "temporal_gaussian": "steadyseg.refine.postprocess.temporal_smoothing",
    "postprocess_video": "steadyseg.refine.postprocess.video_filter",
    "filter_probabilities": "steadyseg.refine.postprocess.video_filter",
}
__all__ = ["confidence_weights", "guided_filter", *_LAZY]

__getattr__ = lazy_getattr(__name__, _LAZY)
