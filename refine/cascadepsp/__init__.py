"""``steadyseg.refine.cascadepsp``: the CascadePSP refiner (Cheng et al., CVPR 2020).

- :mod:`~steadyseg.refine.cascadepsp.network`: :class:`CascadePSPNet`, checkpoint loading,
  :func:`build_cascadepsp_net`;
- :mod:`~steadyseg.refine.cascadepsp.refiner`: :class:`CascadePSPRefiner`, whole-image inference (global and local
  step at a fixed working resolution ``L``); the registry's crop refiner that picks ``L`` per crop is
  :class:`steadyseg.refine.refiners.AdaptiveCascadePSPRefiner`;
- :mod:`~steadyseg.refine.cascadepsp.training`: data, losses and :func:`train_cascadepsp`;
- :mod:`~steadyseg.refine.cascadepsp.train_cli`: ``steadyseg refine-train``.

Names below are imported on first use (importing this package must not import torch).
"""

from steadyseg.refine._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "CascadePSPNet": "steadyseg.refine.cascadepsp.network",
    "build_cascadepsp_net": "steadyseg.refine.cascadepsp.network",
    "CascadePSPRefiner": "steadyseg.refine.cascadepsp.refiner",
    "train_cascadepsp": "steadyseg.refine.cascadepsp.training",
})
