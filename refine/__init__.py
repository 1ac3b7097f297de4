"""steadyseg.refine"""
from steadyseg.refine.postprocess.guided_filter import guided_filter, confidence_weights  # noqa: F401


def __getattr__(name):  # lazy: importing steadyseg.refine must not import torch
    if name == "CascadePSPRefiner":
        from steadyseg.refine.cascadepsp.refiner import CascadePSPRefiner  # noqa: F401

        return CascadePSPRefiner
    raise AttributeError(f"module 'steadyseg.refine' has no attribute {name!r}")
