"""Temporal Gaussian smoothing of per-class probabilities: the baseline of the paper's Fig. 9.

Each pixel's probability is averaged over neighbouring frames with Gaussian weights ``exp(-d^2 / (2 sigma^2))``,
``d`` in frames, truncated at ``radius = int(truncate * sigma + 0.5)`` (scipy's rule). At the ends of the video the
weights of the frames that exist are renormalised to sum to 1 (no padding) — the same time-border convention as the
3D guided filter. No spatial filtering and no flow: objects that move leave a trail, which is the point of the
comparison (smoothing trades accuracy for stability).

Two APIs that agree: the streaming :class:`TemporalGaussian` (``step`` one frame, output delayed by ``radius``
frames, memory ``2 radius + 1`` frames) and the offline :func:`temporal_gaussian` on a ``(T, ...)`` array.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from steadyseg.kernels import gaussian_kernel, gaussian_radius

__all__ = ["gaussian_radius", "gaussian_kernel", "temporal_gaussian", "TemporalGaussian"]


class TemporalGaussian:
    """Streaming temporal Gaussian over frames of any fixed shape (e.g. ``(C, H, W)`` probabilities).

    ``step(x)`` returns the smoothed frame ``t - delay`` (``delay = radius``) or ``None`` while the window fills;
    ``flush()`` returns the last ``min(delay, frames seen)`` frames; ``reset()`` starts a new video.

    Args:
        sigma: standard deviation in frames (> 0).
        truncate: kernel radius in standard deviations (default 3).
    """

    def __init__(self, *, sigma: float, truncate: float = 3.0):
        self.sigma = float(sigma)
        self.truncate = float(truncate)
        self.radius = gaussian_radius(sigma, truncate)
        self._kernel = gaussian_kernel(sigma, truncate)
        self.reset()

    @property
    def delay(self) -> int:
        return self.radius

    def reset(self) -> None:
        self._frames: deque[tuple[int, np.ndarray]] = deque()
        self._t = 0
        self._emitted = 0
        self._shape: tuple | None = None

    def step(self, x: np.ndarray) -> np.ndarray | None:
        x = np.asarray(x, dtype=np.float32)
        if self._shape is None:
            self._shape = x.shape
        elif x.shape != self._shape:
            raise ValueError(f"TemporalGaussian.step: frame {self._t} has shape {x.shape}, the video started with "
                             f"{self._shape}; call reset() first")
        t = self._t
        self._t += 1
        self._frames.append((t, x))
        target = t - self.radius
        return self._emit(target) if target >= 0 else None

    def flush(self) -> list[np.ndarray]:
        return [self._emit(target) for target in range(self._emitted, self._t)]

    def _emit(self, target: int) -> np.ndarray:
        r = self.radius
        while self._frames and self._frames[0][0] < target - r:
            self._frames.popleft()
        acc = np.zeros(self._shape, np.float64)
        total = 0.0
        for t, x in self._frames:
            if t > target + r:
                break
            w = self._kernel[t - target + r]
            acc += w * x
            total += w
        self._emitted = target + 1
        return (acc / total).astype(np.float32)


def temporal_gaussian(x: np.ndarray, sigma: float, *, truncate: float = 3.0) -> np.ndarray:
    """Temporal Gaussian smoothing of a ``(T, ...)`` array along axis 0 (runs :class:`TemporalGaussian`).

    Args:
        x: float ``(T, ...)``, e.g. ``(T, C, H, W)`` class probabilities or ``(T, H, W)`` one probability.
        sigma: standard deviation in frames (> 0).
        truncate: radius in standard deviations.

    Returns:
        float32 of ``x``'s shape; per-pixel convex combinations of the input frames (probabilities stay in [0, 1]
        and still sum to 1 over classes).
    """
    x = np.asarray(x)
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"temporal_gaussian: expected a (T, ...) array with T >= 1, got shape {x.shape}")
    smoother = TemporalGaussian(sigma=sigma, truncate=truncate)
    out = np.empty(x.shape, np.float32)
    k = 0
    for frame in x:
        y = smoother.step(frame)
        if y is not None:
            out[k] = y
            k += 1
    for y in smoother.flush():
        out[k] = y
        k += 1
    return out
