"""Guided filter (He et al.) and its confidence-weighted variant (Liba et al. 2020), in 2D and 2D + time.

Everything here is plain numpy + OpenCV (no torch): spatial box means are ``cv2.boxFilter`` (normalised,
``BORDER_REFLECT``: ``fedcba|abcdef``), temporal box sums are running sums over a window of frames, so the cost
per frame does not depend on the spatial radius ``radius`` nor on the temporal radius ``temporal_radius``.
Speed: box-filter outputs go into recycled buffers, the running sums drop and add a frame in one cache-tiled pass,
the per-pixel solve is done in place on cache-sized row tiles in float32, and the weighted filter's stage-2 weight
sum ``box3d(c)`` is taken from stage 1 instead of being box-filtered twice.

Conventions
-----------
- ``guide``: float32 in [0, 1]; gray ``(H, W)`` or colour ``(H, W, 3)`` per frame (any channel order, the filter
  is symmetric in the channels; RGB in steadyseg). Volumes add a leading time axis: ``(T, H, W)`` / ``(T, H, W, 3)``.
- ``src``: the signal to filter, float32 ``(H, W)`` per frame (``(T, H, W)`` for a video), e.g. one class's
  softmax probability in [0, 1]. The output is float32 of ``src``'s shape and is NOT clipped (like OpenCV's guided
  filter it can leave [0, 1] slightly near strong edges); threshold or argmax it, or clip it yourself.
- ``radius`` r: spatial window ``(2r + 1) x (2r + 1)``; ``temporal_radius`` rt: temporal window ``2rt + 1`` frames.
  A paper "kernel size" k is a window length, so the paper's "temporal kernel 1 = 2D" is rt = 0.
- ``eps``: regularisation added to the guide's (weighted) variance, or ``eps * Id`` to its 3x3 covariance.
  With guides in [0, 1], eps = 1e-3 ... 1e-2 is a typical range.
- ``weights``: per-pixel confidence c > 0 of ``src``'s shape (None = all ones). Every mean of the filter becomes
  the weighted mean ``mean_w(X) = box(c * X) / box(c)``: the means of the guide, the source, the products for the
  (co)variances, and the final means of the linear coefficients (a, b), which are weighted by the confidence at
  the centre of the window they were fitted in.
- Borders: in space, reflection (``BORDER_REFLECT``); in time, the mean over the frames that exist (the window is
  truncated at the first and last frame, no padding). Unit weights make the weighted filter exactly the plain one.

Pipeline of one 3D guided filter (two box-filter passes)::

    stage 1 (window around k):  mean_w(I), mean_w(p), mean_w(I I^T), mean_w(I p)
                                a_k = (cov_w(I) + eps Id)^-1 cov_w(I, p),  b_k = mean_w(p) - a_k . mean_w(I)
    stage 2 (window around i):  q_i = mean_w(a)_i . I_i + mean_w(b)_i

The output at frame t therefore depends on frames ``t - 2 rt ... t + 2 rt``, so the streaming
:class:`GuidedFilter3d` emits frame ``t`` once frame ``t + 2 rt`` has arrived (a delay of ``2 * temporal_radius``
frames) and holds ``O(rt)`` frames of state, independent of the video's length.
"""

from __future__ import annotations

from collections import deque
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np

__all__ = [
    "box_mean",
    "box_mean_3d",
    "schlick_bias",
    "confidence_weights",
    "guided_filter",
    "guided_filter_3d",
    "GuidedFilter3d",
]

_BORDER = cv2.BORDER_REFLECT
# Recompute the running temporal sums exactly from the stored frames every this many frames, so float32
# add/subtract round-off cannot accumulate over long videos.
_RESUM_EVERY = 64


# ----------------------------------------------------------------------------------------------------------------
# Box means
# ----------------------------------------------------------------------------------------------------------------
def _check_radius(radius: int, name: str = "radius") -> int:
    if int(radius) != radius or radius < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {radius!r}")
    return int(radius)


def _box2d(x: np.ndarray, radius: int, dst: np.ndarray | None = None) -> np.ndarray:
    """Normalised spatial box mean of one float32 (H, W) plane (BORDER_REFLECT), into ``dst`` when given.

    ``dst`` (float32 (H, W), not ``x``) lets the caller recycle buffers: fresh 1.6 MB arrays per plane and frame
    cost page faults that are a sizeable share of the box filter itself.
    """
    if radius == 0:
        if dst is None:
            return x.copy()
        np.copyto(dst, x)
        return dst
    k = 2 * radius + 1
    if dst is None:
        return cv2.boxFilter(x, -1, (k, k), normalize=True, borderType=_BORDER)
    return cv2.boxFilter(x, -1, (k, k), dst=dst, normalize=True, borderType=_BORDER)


def _box_planes(planes: Sequence[np.ndarray], radius: int, spare: tuple[np.ndarray, ...] | None
                ) -> tuple[np.ndarray, ...]:
    """``_box2d`` of each plane, written into the recycled buffers ``spare`` when there are any."""
    if spare is None:
        return tuple(_box2d(x, radius) for x in planes)
    return tuple(_box2d(x, radius, d) for x, d in zip(planes, spare))


def box_mean(x: np.ndarray, radius: int) -> np.ndarray:
    """Spatial box mean over a ``(2r+1) x (2r+1)`` window, O(H W) whatever the radius.

    Args:
        x: float ``(H, W)`` or ``(H, W, C)`` array (channels filtered independently).
        radius: window radius r >= 0 (r = 0 returns a copy).

    Returns:
        float32 array of ``x``'s shape; the border is handled by reflection (``fedcba|abcdef``).
    """
    radius = _check_radius(radius)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        return _box2d(x, radius)
    if x.ndim == 3:
        return np.stack([_box2d(np.ascontiguousarray(x[..., c]), radius) for c in range(x.shape[2])], axis=-1)
    raise ValueError(f"box_mean: expected (H, W) or (H, W, C), got shape {x.shape}")


def box_mean_3d(x: np.ndarray, radius: int, temporal_radius: int) -> np.ndarray:
    """Box mean of a ``(T, H, W)`` volume over ``(2rt+1) x (2r+1) x (2r+1)`` windows.

    Space: reflection at the border. Time: the mean over the frames of the window that exist (a window at the
    start or end of the video is truncated, not padded). Cost O(T H W), independent of both radii.

    Returns:
        float32 ``(T, H, W)``.
    """
    radius = _check_radius(radius)
    temporal_radius = _check_radius(temporal_radius, "temporal_radius")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"box_mean_3d: expected (T, H, W), got shape {x.shape}")
    window = _WindowSum(temporal_radius)
    out = np.empty_like(x)
    for t in range(x.shape[0]):
        window.push(t, (_box2d(np.ascontiguousarray(x[t]), radius),))
        center = t - temporal_radius
        if center >= 0:
            (s,), n = window.sum_for(center)
            out[center] = s / n
    for center in range(max(0, x.shape[0] - temporal_radius), x.shape[0]):
        (s,), n = window.sum_for(center)
        out[center] = s / n
    return out


_SUM_ROWS = 32  # row tile of the fused running-sum update (its 3 tiles stay in the 1 MB L2 cache)


def _sub_add(sums: list[np.ndarray], old: tuple[np.ndarray, ...], new: tuple[np.ndarray, ...]) -> None:
    """``s -= o; s += n`` for each plane, row tile by row tile (in place in ``sums``)."""
    H = sums[0].shape[0]
    for r0 in range(0, H, _SUM_ROWS):
        sl = slice(r0, r0 + _SUM_ROWS)
        for s, o, n in zip(sums, old, new):
            st = s[sl]
            st -= o[sl]
            st += n[sl]


class _WindowSum:
    """Running sum over a sliding temporal window of per-frame tuples of arrays (the window is centred).

    ``push(t, item)`` adds frame ``t`` (frames arrive in order 0, 1, 2, ...); ``sum_for(center)`` drops frames
    older than ``center - rt`` and returns ``(sums, n_frames)`` over the frames ``center - rt ... center + rt``
    that have been pushed. Memory: at most ``2 rt + 1`` items, plus one dropped item kept for reuse as the
    output buffers of the next frame's box filters (:meth:`take_spare`), so the steady state allocates nothing.
    """

    def __init__(self, temporal_radius: int):
        self.rt = temporal_radius
        self.items: deque[tuple[int, tuple[np.ndarray, ...]]] = deque()
        self.sums: list[np.ndarray] | None = None
        self._since_resum = 0
        self._spare: tuple[np.ndarray, ...] | None = None  # the last dropped item, for reuse as a buffer

    def take_spare(self, t: int) -> tuple[np.ndarray, ...] | None:
        """Arrays of an item dropped earlier (no longer referenced by the window), for the caller to overwrite
        with frame ``t`` before ``push(t, ...)``; None when there is none (the caller allocates)."""
        spare, self._spare = self._spare, None
        return spare

    def push(self, t: int, item: tuple[np.ndarray, ...]) -> None:
        if self.items and t != self.items[-1][0] + 1:
            raise RuntimeError(f"frames must arrive in order: got {t} after {self.items[-1][0]}")
        t_min = t - 2 * self.rt
        while len(self.items) > 1 and self.items[1][0] < t_min:
            self._drop_before(self.items[1][0])
        if self.sums is None:
            self._drop_before(t_min)
            self.sums = [a.copy() for a in item]
        elif self.items and self.items[0][0] < t_min:
            # steady state: drop the oldest frame and add the new one in one pass over cache-sized row tiles
            # (same operations and order as subtract-then-add, less memory traffic)
            _, old = self.items.popleft()
            _sub_add(self.sums, old, item)
            self._spare = old
        else:
            for s, a in zip(self.sums, item):
                s += a
        self.items.append((t, item))
        self._since_resum += 1
        if self._since_resum >= _RESUM_EVERY:
            self._resum()

    def _drop_before(self, t_min: int) -> None:
        while self.items and self.items[0][0] < t_min:
            _, old = self.items.popleft()
            for s, a in zip(self.sums, old):
                s -= a
            self._spare = old

    def _resum(self) -> None:
        self._since_resum = 0
        first = self.items[0][1]
        sums = [a.copy() for a in first]
        for _, item in list(self.items)[1:]:
            for s, a in zip(sums, item):
                s += a
        self.sums = sums

    def sum_for(self, center: int) -> tuple[list[np.ndarray], int]:
        self._drop_before(center - self.rt)
        if not self.items or self.items[0][0] > center:
            raise RuntimeError(f"window for frame {center} is not available")
        return self.sums, len(self.items)

    def clear(self) -> None:
        self.items.clear()
        self.sums = None
        self._since_resum = 0
        self._spare = None


# ----------------------------------------------------------------------------------------------------------------
# Confidence weights (Liba et al. 2020, "Sky optimization")
# ----------------------------------------------------------------------------------------------------------------
def schlick_bias(x: np.ndarray, bias: float = 0.8) -> np.ndarray:
    """Schlick's bias curve ``x / ((1/bias - 2) (1 - x) + 1)`` on [0, 1]; bias = 0.8 gives ``x / (0.25 + 0.75 x)``.

    Monotone, maps 0 -> 0, 1 -> 1 and 0.5 -> ``bias``.
    """
    if not 0.0 < bias < 1.0:
        raise ValueError(f"schlick_bias: bias must be in (0, 1), got {bias}")
    x = np.asarray(x, dtype=np.float32)
    return x / ((1.0 / bias - 2.0) * (1.0 - x) + 1.0)


def confidence_weights(p: np.ndarray, *, low: float = 0.3, high: float = 0.5, floor: float = 0.01,
                       bias: float = 0.8) -> np.ndarray:
    """Per-pixel confidence of a soft mask for the weighted guided filter (Liba et al. 2020).

    ``c = bias((low - p) / low)`` for ``p < low`` (confident background), ``bias((p - high) / (1 - high))`` for
    ``p > high`` (confident foreground), 0 in between, then floored at ``floor`` so every weight is positive.
    With the defaults: ``bias(x) = x / (0.25 + 0.75 x)``. A hard mask (p in {0, 1}) gets c = 1 everywhere, so the
    weighted filter then equals the plain one: soft probabilities are what makes the weighting matter.

    Args:
        p: probabilities in [0, 1], any shape, float.
        low, high: thresholds, ``0 < low <= high < 1``.
        floor: minimum weight, > 0.
        bias: Schlick bias parameter in (0, 1).

    Returns:
        float32 array of ``p``'s shape with values in ``[floor, 1]``.
    """
    if not (0.0 < low <= high < 1.0):
        raise ValueError(f"confidence_weights: need 0 < low <= high < 1, got low={low}, high={high}")
    if not floor > 0.0:
        raise ValueError(f"confidence_weights: floor must be > 0, got {floor}")
    p = np.clip(np.asarray(p, dtype=np.float32), 0.0, 1.0)
    x = np.zeros_like(p)
    lo = p < low
    hi = p > high
    x[lo] = (low - p[lo]) / low
    x[hi] = (p[hi] - high) / (1.0 - high)
    c = schlick_bias(x, bias)
    return np.maximum(c, np.float32(floor)).astype(np.float32, copy=False)


# ----------------------------------------------------------------------------------------------------------------
# The streaming filter
# ----------------------------------------------------------------------------------------------------------------
def _check_guide_frame(guide: np.ndarray, shape: tuple[int, int], where: str) -> np.ndarray:
    guide = np.asarray(guide)
    if guide.dtype == np.uint8:
        raise ValueError(f"{where}: guide must be float in [0, 1], got uint8 (divide by 255)")
    if guide.shape != shape and guide.shape != shape + (3,):
        raise ValueError(f"{where}: guide must have shape {shape} (gray) or {shape + (3,)} (colour), "
                         f"got {guide.shape}")
    guide = guide.astype(np.float32, copy=False)
    lo, hi = float(guide.min()), float(guide.max())
    if lo < -1e-3 or hi > 1.0 + 1e-3 or not np.isfinite(lo + hi):
        raise ValueError(f"{where}: guide values must be in [0, 1], got range [{lo:.3g}, {hi:.3g}]")
    return guide


class _ClassState:
    """Temporal state of one filtered channel (one class) inside :class:`GuidedFilter3d`."""

    def __init__(self, temporal_radius: int):
        self.stage1 = _WindowSum(temporal_radius)
        self.stage2 = _WindowSum(temporal_radius)
        self.weights: deque[tuple[int, np.ndarray | None]] = deque()  # c at frames awaiting stage 1's fit
        self.norms: deque[tuple[int, np.ndarray]] = deque()  # weighted: 1 / box3d(c) at frames awaiting stage 2


class GuidedFilter3d:
    """Streaming (weighted) guided filter over x, y and t for one video, frame by frame.

    Feed frames in order with :meth:`step`; each call returns the filtered frame ``t - delay`` (or ``None`` while
    the first ``delay = 2 * temporal_radius`` frames fill the window). :meth:`flush` returns the last ``delay``
    frames at the end of the video; :meth:`reset` starts a new video. Memory holds about ``2 rt + 1`` frames of
    box sums per channel, independent of the video's length. ``guided_filter_3d`` on a whole volume gives the
    same result (it runs this object).

    Args:
        radius: spatial radius r (window 2r + 1).
        eps: regularisation on the guide (co)variance, > 0.
        temporal_radius: rt (window 2rt + 1 frames); 0 is a per-frame 2D filter.

    ``step(guide, src, weights=None)``:
        guide: float32 ``(H, W)`` or ``(H, W, 3)`` in [0, 1].
        src: float32 ``(H, W)``, or ``(C, H, W)`` to filter C channels (classes) independently with one guide.
        weights: None or positive float32 of ``src``'s shape (see :func:`confidence_weights`).
        Returns: float32 of ``src``'s shape for frame ``t - delay``, or None.
    """

    def __init__(self, *, radius: int, eps: float, temporal_radius: int = 0):
        self.radius = _check_radius(radius)
        self.temporal_radius = _check_radius(temporal_radius, "temporal_radius")
        if not eps > 0:
            raise ValueError(f"GuidedFilter3d: eps must be > 0, got {eps}")
        self.eps = float(eps)
        self.reset()

    @property
    def delay(self) -> int:
        """Frames between input and output: ``2 * temporal_radius``."""
        return 2 * self.temporal_radius

    def reset(self) -> None:
        """Forget the current video (state, frame count, shapes)."""
        self._t = 0  # frames received
        self._emitted = 0
        self._shape: tuple | None = None  # (src shape, guide ndim, weighted)
        self._classes: list[_ClassState] = []
        self._guides: deque[tuple[int, np.ndarray]] = deque()
        self._guide_sums = _WindowSum(self.temporal_radius)  # unweighted: box sums of the guide, shared by classes
        self._buffers: dict[str, np.ndarray] = {}  # reusable work planes (see _scratch)

    # -- public API -------------------------------------------------------------------------------------------
    def step(self, guide: np.ndarray, src: np.ndarray, *, weights: np.ndarray | None = None) -> np.ndarray | None:
        src = np.asarray(src)
        squeeze = src.ndim == 2
        if squeeze:
            src = src[None]
        if src.ndim != 3:
            raise ValueError(f"GuidedFilter3d.step: src must be (H, W) or (C, H, W), got shape {src.shape}")
        src = src.astype(np.float32, copy=False)
        guide = _check_guide_frame(guide, src.shape[1:], "GuidedFilter3d.step")
        if weights is not None:
            weights = np.asarray(weights, dtype=np.float32)
            if squeeze and weights.ndim == 2:
                weights = weights[None]
            if weights.shape != src.shape:
                raise ValueError(f"GuidedFilter3d.step: weights shape {weights.shape} differs from src "
                                 f"{src.shape if not squeeze else src.shape[1:]}")
            if not float(weights.min()) > 0:
                raise ValueError("GuidedFilter3d.step: weights must be > 0 everywhere (see confidence_weights' floor)")
        signature = (src.shape, guide.ndim, weights is not None, squeeze)
        if self._shape is None:
            self._shape = signature
            self._classes = [_ClassState(self.temporal_radius) for _ in range(src.shape[0])]
        elif signature != self._shape:
            raise ValueError(f"GuidedFilter3d.step: frame {self._t} has (src shape, guide ndim, weighted) "
                             f"{signature[:3]} but the video started with {self._shape[:3]}; call reset() first")
        t = self._t
        self._t += 1
        self._push(t, guide, src, weights)
        out = None
        center = t - self.temporal_radius
        if center >= 0:
            self._stage1(center)
        target = t - self.delay
        if target >= 0:
            out = self._stage2(target)
        return out if out is None or not squeeze else out[0]

    def flush(self) -> list[np.ndarray]:
        """End of the video: the remaining ``min(delay, frames seen)`` filtered frames, in order."""
        outs = []
        if self._shape is None:
            return outs
        T = self._t
        for center in range(max(0, T - self.temporal_radius), T):
            self._stage1(center)
            if center - self.temporal_radius >= self._emitted:
                outs.append(self._stage2(center - self.temporal_radius))
        for target in range(self._emitted, T):
            outs.append(self._stage2(target))
        return [o[0] for o in outs] if self._shape[3] else outs

    # -- internals ---------------------------------------------------------------------------------------------
    def _scratch(self, name: str, n: int, shape: tuple[int, int]) -> np.ndarray:
        """A reusable float32 ``(n, H, W)`` work buffer (contents are overwritten by every user)."""
        buf = self._buffers.get(name)
        if buf is None or buf.shape != (n,) + shape:
            buf = self._buffers[name] = np.empty((n,) + shape, np.float32)
        return buf

    def _push(self, t: int, guide: np.ndarray, src: np.ndarray, weights: np.ndarray | None) -> None:
        r = self.radius
        hw = src.shape[1:]
        if guide.ndim == 2:
            ch = [np.ascontiguousarray(guide)]
        else:
            ch = list(cv2.split(np.ascontiguousarray(guide)))  # contiguous channel planes
        self._guides.append((t, ch))
        pairs = [(i, j) for i in range(len(ch)) for j in range(i, len(ch))]
        if weights is None:
            # guide statistics are class-independent: one set of box sums per frame, shared by all classes
            gbuf = self._scratch("guide", len(pairs), hw)
            for k, (i, j) in enumerate(pairs):
                np.multiply(ch[i], ch[j], out=gbuf[k])
            spare = self._guide_sums.take_spare(t)
            self._guide_sums.push(t, _box_planes(ch + list(gbuf), r, spare))
            pbuf = self._scratch("ip", len(ch), hw)
            for k, state in enumerate(self._classes):
                p = src[k]
                for i, g in enumerate(ch):
                    np.multiply(g, p, out=pbuf[i])
                spare = state.stage1.take_spare(t)
                state.stage1.push(t, _box_planes([p] + list(pbuf), r, spare))
                state.weights.append((t, None))
        else:
            n = len(ch)
            buf = self._scratch("weighted", 2 * n + len(pairs) + 1, hw)
            c_ch, c_pairs, c_p, c_ip = buf[:n], buf[n:n + len(pairs)], buf[n + len(pairs)], buf[n + len(pairs) + 1:]
            for k, state in enumerate(self._classes):
                c, p = weights[k], src[k]
                for i, g in enumerate(ch):
                    np.multiply(c, g, out=c_ch[i])
                for q, (i, j) in enumerate(pairs):
                    np.multiply(c_ch[i], ch[j], out=c_pairs[q])
                np.multiply(c, p, out=c_p)
                for i, g in enumerate(ch):
                    np.multiply(c_p, g, out=c_ip[i])
                planes = [c] + list(c_ch) + list(c_pairs) + [c_p] + list(c_ip)
                spare = state.stage1.take_spare(t)
                state.stage1.push(t, _box_planes(planes, r, spare))
                state.weights.append((t, c))

    def _stage1(self, center: int) -> None:
        """Fit a, b at frame ``center`` (all frames up to ``center + rt`` are in) and push them to stage 2."""
        colour = self._shape[1] == 3
        weighted = self._shape[2]
        r = self.radius
        gsums, inv_n = None, None
        if not weighted:
            gsums, n = self._guide_sums.sum_for(center)
            inv_n = np.float32(1.0 / n)
        for state in self._classes:
            sums, n = state.stage1.sum_for(center)
            tc, c = state.weights.popleft()
            assert tc == center
            planes = self._scratch("fit", 4 if colour else 2, sums[0].shape)
            inv_w = _fit_planes(sums, gsums, inv_n, c, self.eps, colour, planes)
            if weighted:
                # the stage-2 weight sum box3d(c) at `center` is exactly stage 1's: keep 1 / box3d(c) for it
                state.norms.append((center, inv_w))
            spare = state.stage2.take_spare(center)
            state.stage2.push(center, _box_planes(planes, r, spare))

    def _stage2(self, target: int) -> np.ndarray:
        """Output of frame ``target`` (coefficients up to ``target + rt`` are in)."""
        weighted = self._shape[2]
        while self._guides[0][0] < target:
            self._guides.popleft()
        tg, guide = self._guides[0]  # list of the guide's channel planes
        assert tg == target
        shape = (len(self._classes),) + guide[0].shape
        out = np.empty(shape, np.float32)
        tmp = self._scratch("out", 1, guide[0].shape)[0]
        for k, state in enumerate(self._classes):
            sums, n = state.stage2.sum_for(target)
            if weighted:
                tn, inv = state.norms.popleft()
                assert tn == target
            else:
                inv = np.float32(1.0 / n)
            q = out[k]
            np.multiply(sums[0], guide[0], out=q)
            for a_sum, g in zip(sums[1:-1], guide[1:]):
                np.multiply(a_sum, g, out=tmp)
                q += tmp
            q += sums[-1]
            q *= inv
        self._emitted = target + 1
        return out


_TILE_ROWS = 32  # pointwise work is done in row tiles that stay in the CPU cache


def _fit_planes(sums: list[np.ndarray], gsums: list[np.ndarray] | None, inv_n: np.float32 | None,
                c: np.ndarray | None, eps: float, colour: bool, out: np.ndarray) -> np.ndarray | None:
    """Stage-1 window sums of one frame -> the planes that stage 2 box-filters, written into ``out``.

    Unweighted (``c`` None): ``sums = [S_p, S_Ip...]``, ``gsums`` the guide's window sums, ``inv_n = 1 / frames``;
    fills ``out`` (float32 ``(3 + 1, H, W)`` colour, ``(2, H, W)`` gray) with ``[a..., b]`` and returns None.
    Weighted: ``sums = [S_c, S_cI..., S_cII..., S_cp, S_cIp...]`` (``gsums`` unused); fills ``out`` with
    ``[c a..., c b]`` and returns a new float32 ``(H, W)`` plane ``1 / max(S_c, 1e-12)``.
    """
    H, W = sums[0].shape
    na = 3 if colour else 1
    weighted = c is not None
    inv_w_full = np.empty((H, W), np.float32) if weighted else None
    n_means = (len(sums) - 1) if weighted else (len(gsums) + len(sums))
    mbuf = np.empty((n_means, _TILE_ROWS, W), np.float32)
    tbuf = np.empty((8, _TILE_ROWS, W), np.float32)
    stats = list(sums[1:]) if weighted else list(gsums) + list(sums)  # [I..., II..., p, Ip...] (weighted: c *)
    for r0 in range(0, H, _TILE_ROWS):
        r1 = min(H, r0 + _TILE_ROWS)
        sl = slice(r0, r1)
        h = r1 - r0
        if weighted:
            scale = inv_w_full[sl]
            np.maximum(sums[0][sl], np.float32(1e-12), out=scale)
            np.divide(np.float32(1.0), scale, out=scale)
        else:
            scale = inv_n
        m = [mbuf[j, :h] for j in range(n_means)]
        for mj, s in zip(m, stats):
            np.multiply(s[sl], scale, out=mj)
        a = [out[j, sl] for j in range(na)]
        b = out[na, sl]
        ct = c[sl] if weighted else None
        _solve_coefficients_into(m, eps, colour, a, b, [tbuf[j, :h] for j in range(8)], scale=ct)
    return inv_w_full


def _solve_coefficients_into(m: list[np.ndarray], eps: float, colour: bool, a: list[np.ndarray], b: np.ndarray,
                             tmp: list[np.ndarray], scale: np.ndarray | None = None) -> None:
    """Linear coefficients of the guided filter from (weighted) window means, in place (float32 throughout).

    gray: ``m = [m_I, m_II, m_p, m_Ip]`` -> ``a = (m_Ip - m_I m_p) / (m_II - m_I^2 + eps)``.
    colour: ``m = [m_I0..2, m_I00, m_I01, m_I02, m_I11, m_I12, m_I22, m_p, m_I0p, m_I1p, m_I2p]``;
    ``a = (Sigma + eps Id)^-1 cov(I, p)`` solved per pixel in closed form (adjugate / determinant).
    Writes ``a`` (list of 1 or 3 planes) and ``b = m_p - a . m_I``, both multiplied by ``scale`` when given
    (the weighted filter's ``c``); ``m`` is overwritten, ``tmp`` is 8 work planes of the same shape.
    """
    mul = np.multiply
    e = np.float32(eps)
    t0 = tmp[0]
    if not colour:
        mi, mii, mp, mip = m
        mul(mi, mi, out=t0)
        mii -= t0
        mii += e
        mul(mi, mp, out=t0)
        np.subtract(mip, t0, out=a[0])
        a[0] /= mii
        mul(a[0], mi, out=t0)
        np.subtract(mp, t0, out=b)
        if scale is not None:
            a[0] *= scale
            b *= scale
        return
    m0, m1, m2, s00, s01, s02, s11, s12, s22, mp, q0, q1, q2 = m
    # covariance + eps Id (in place of the second moments), cov(I, p) (in place of the mean of I p)
    for s, x, y, reg in ((s00, m0, m0, True), (s01, m0, m1, False), (s02, m0, m2, False),
                         (s11, m1, m1, True), (s12, m1, m2, False), (s22, m2, m2, True)):
        mul(x, y, out=t0)
        s -= t0
        if reg:
            s += e
    for q, x in ((q0, m0), (q1, m1), (q2, m2)):
        mul(x, mp, out=t0)
        q -= t0
    # adjugate of the symmetric 3x3 matrix
    t1, i00, i01, i02, i11, i12, i22 = tmp[1:8]
    for dst, (x, y), (u, v) in ((i00, (s11, s22), (s12, s12)), (i01, (s02, s12), (s01, s22)),
                                (i02, (s01, s12), (s02, s11)), (i11, (s00, s22), (s02, s02)),
                                (i12, (s01, s02), (s00, s12)), (i22, (s00, s11), (s01, s01))):
        mul(x, y, out=dst)
        mul(u, v, out=t0)
        dst -= t0
    inv_det = t1
    mul(s00, i00, out=inv_det)
    mul(s01, i01, out=t0)
    inv_det += t0
    mul(s02, i02, out=t0)
    inv_det += t0
    np.divide(np.float32(1.0), inv_det, out=inv_det)
    if scale is None:
        np.copyto(b, mp)
    else:  # c a = adj cov * (c / det) and c b = c m_p - (c a) . m_I
        inv_det *= scale
        mul(mp, scale, out=b)
    for x, (u, v, w), mi in ((a[0], (i00, i01, i02), m0), (a[1], (i01, i11, i12), m1),
                             (a[2], (i02, i12, i22), m2)):
        mul(u, q0, out=x)
        mul(v, q1, out=t0)
        x += t0
        mul(w, q2, out=t0)
        x += t0
        x *= inv_det
        mul(x, mi, out=t0)
        b -= t0


# ----------------------------------------------------------------------------------------------------------------
# Offline functions
# ----------------------------------------------------------------------------------------------------------------
def guided_filter_3d(guide: np.ndarray, src: np.ndarray, radius: int, eps: float, *,
                     weights: np.ndarray | None = None, temporal_radius: int = 0) -> np.ndarray:
    """Guided filter of a whole video volume (runs :class:`GuidedFilter3d`; memory O(rt) frames of state).

    Args:
        guide: float32 ``(T, H, W)`` or ``(T, H, W, 3)`` in [0, 1].
        src: float32 ``(T, H, W)``.
        weights: None or positive ``(T, H, W)``.

    Returns:
        float32 ``(T, H, W)``.
    """
    src = np.asarray(src)
    if src.ndim != 3:
        raise ValueError(f"guided_filter_3d: src must be (T, H, W), got shape {src.shape}")
    guide = np.asarray(guide)
    if guide.shape != src.shape and guide.shape != src.shape + (3,):
        raise ValueError(f"guided_filter_3d: guide must be {src.shape} or {src.shape + (3,)}, got {guide.shape}")
    if weights is not None and np.shape(weights) != src.shape:
        raise ValueError(f"guided_filter_3d: weights shape {np.shape(weights)} differs from src {src.shape}")
    gf = GuidedFilter3d(radius=radius, eps=eps, temporal_radius=temporal_radius)
    out = np.empty(src.shape, dtype=np.float32)
    for t, q in enumerate(_stream(gf, guide, src, weights)):
        out[t] = q
    return out


def _stream(gf: GuidedFilter3d, guides: Iterable[np.ndarray], srcs: Iterable[np.ndarray],
            weights: Iterable[np.ndarray] | None) -> Iterator[np.ndarray]:
    ws = iter(weights) if weights is not None else None
    for g, s in zip(guides, srcs):
        q = gf.step(g, s, weights=None if ws is None else next(ws))
        if q is not None:
            yield q
    yield from gf.flush()


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float, *,
                  weights: np.ndarray | None = None, temporal_radius: int = 0) -> np.ndarray:
    """(Weighted) guided filter of an image or a video; the one entry point other tools call.

    Args:
        guide: float32 in [0, 1]: ``(H, W)`` gray or ``(H, W, 3)`` colour for an image; ``(T, H, W)`` or
            ``(T, H, W, 3)`` for a video. Which one is decided by ``src``: ``src`` (H, W) -> image, (T, H, W) -> video.
        src: float32 ``(H, W)`` or ``(T, H, W)`` (e.g. one class's probability).
        radius: spatial radius r >= 0 (window 2r + 1).
        eps: regularisation > 0 added to the guide (co)variance.
        weights: None (plain guided filter) or positive confidences of ``src``'s shape
            (:func:`confidence_weights`): every mean becomes ``box(c X) / box(c)``.
        temporal_radius: rt >= 0 for a video (window 2rt + 1 frames, truncated at the ends); ignored for an image.

    Returns:
        float32 array of ``src``'s shape (not clipped).

    Example:
        >>> q = guided_filter(frame_rgb.astype(np.float32) / 255, prob, 8, 1e-3)            # doctest: +SKIP
        >>> qv = guided_filter(video / 255, probs, 8, 1e-3, temporal_radius=2,
        ...                    weights=confidence_weights(probs))                            # doctest: +SKIP
    """
    src = np.asarray(src)
    if src.ndim == 2:
        guide = np.asarray(guide)
        if guide.shape != src.shape and guide.shape != src.shape + (3,):
            raise ValueError(f"guided_filter: for src {src.shape} the guide must be {src.shape} or "
                             f"{src.shape + (3,)}, got {guide.shape}")
        gf = GuidedFilter3d(radius=radius, eps=eps, temporal_radius=0)
        return gf.step(guide, src, weights=weights)
    if src.ndim == 3:
        return guided_filter_3d(guide, src, radius, eps, weights=weights, temporal_radius=temporal_radius)
    raise ValueError(f"guided_filter: src must be (H, W) or (T, H, W), got shape {src.shape}")
