"""Small numeric kernels shared by the measures and the filters (one truncation rule for the whole project).

The temporal Gaussian is truncated at ``radius = int(truncate * sigma + 0.5)`` frames, the rule of
``scipy.ndimage.gaussian_filter1d``; with the default ``truncate = 3`` and integer ``sigma`` this is ``3 * sigma``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["gaussian_radius", "gaussian_kernel"]


def gaussian_radius(sigma: float, truncate: float = 3.0) -> int:
    """Kernel radius in samples, ``int(truncate * sigma + 0.5)`` (as ``scipy.ndimage.gaussian_filter1d``).

    Args:
        sigma: standard deviation in samples (frames), > 0.
        truncate: radius in standard deviations, > 0.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if not truncate > 0:
        raise ValueError(f"truncate must be > 0, got {truncate}")
    return int(truncate * float(sigma) + 0.5)


def gaussian_kernel(sigma: float, truncate: float = 3.0, *, normalize: bool = False) -> np.ndarray:
    """Gaussian weights ``exp(-d² / (2σ²))`` for offsets ``d = -radius … radius``.

    Returns:
        ``(2 * radius + 1,)`` float64; centre weight 1, or summing to 1 with ``normalize=True``.
    """
    r = gaussian_radius(sigma, truncate)
    d = np.arange(-r, r + 1, dtype=np.float64)
    w = np.exp(-0.5 * (d / float(sigma)) ** 2)
    return w / w.sum() if normalize else w
