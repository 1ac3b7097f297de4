"""``steadyseg.refine.postprocess``: temporal post-processing of mask videos (``steadyseg postprocess``).

- :mod:`~steadyseg.refine.postprocess.guided_filter`: guided filter 2D / 3D and its confidence-weighted variant;
- :mod:`~steadyseg.refine.postprocess.temporal_smoothing`: temporal Gaussian (the baseline);
- :mod:`~steadyseg.refine.postprocess.video_filter`: the library that filters a mask video in its own format
  (:func:`postprocess_video`, :func:`filter_probabilities`, :func:`write_mask`);
- :mod:`~steadyseg.refine.postprocess.cli`: the command (parsing only).
"""

from steadyseg.refine.postprocess.guided_filter import GuidedFilter3d, confidence_weights, guided_filter
from steadyseg.refine.postprocess.temporal_smoothing import TemporalGaussian, temporal_gaussian
from steadyseg.refine.postprocess.video_filter import (GAUSS_DEFAULTS, WGF_DEFAULTS, filter_probabilities,
                                                       postprocess_video, write_mask)

__all__ = ["GuidedFilter3d", "confidence_weights", "guided_filter", "TemporalGaussian", "temporal_gaussian",
           "GAUSS_DEFAULTS", "WGF_DEFAULTS", "filter_probabilities", "postprocess_video", "write_mask"]
