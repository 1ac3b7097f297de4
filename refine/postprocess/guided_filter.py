"""Guided filter (He et al.) and its confidence-weighted variant (Liba et al. 2020), in 2D and 2D + time.

Everything here is plain numpy + OpenCV (no torch): spatial box means are ``cv2.boxFilter`` (normalised,
``BORDER_REFLECT``: ``fedcba|abcdef``), temporal box sums are running sums over a window of frames, so the cost
per frame does not depend on the spatial radius ``radius`` nor on the temporal radius ``temporal_radius``.
Speed: the running temporal sums are kept of the raw per-frame products (``c``, ``c I``, ``c I I^T``, ``c p``,
``c I p``; the box filter is linear, so ``box2d(sum_t X_t) = sum_t box2d(X_t)``) and box-filtered once per window;
the products are formed in cache-sized row tiles straight into the running sums (``cv2.accumulateProduct``: ``dst +=
x y`` in one pass) and those of the frame leaving the window are formed again from its stored inputs and subtracted,
so only a frame's inputs are stored, never its products. The per-pixel solve is done in place on the same row tiles
in float32 with fused multiply-adds, all buffers are recycled, and the weighted filter's stage-2 weight sum
``box3d(c)`` is taken from stage 1 instead of being box-filtered twice.

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
from typing import Iterable, Iterator

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
    window = _RunningSum(temporal_radius, _acc_planes, 1)
    out = np.empty_like(x)
    for t in range(x.shape[0]):
        window.push(t, np.ascontiguousarray(x[t])[None], x.shape[1:])
        center = t - temporal_radius
        if center >= 0:
            (s,), n = window.sum_for(center)
            out[center] = _box2d(s, radius) / n
    for center in range(max(0, x.shape[0] - temporal_radius), x.shape[0]):
        (s,), n = window.sum_for(center)
        out[center] = _box2d(s, radius) / n
    return out


# ----------------------------------------------------------------------------------------------------------------
# Running temporal sums of the raw (not yet box-filtered) planes
# ----------------------------------------------------------------------------------------------------------------
# The box filter is linear: box2d(sum_t X_t) = sum_t box2d(X_t). So the temporal window sums are kept of the raw
# per-frame products (c, c I, c I I^T, c p, c I p ...) and box-filtered once per window, which is as many box filters
# as filtering every frame, but the products never exist as full planes: each frame's products are formed in
# cache-sized row tiles and added to the running sums there (the products of the frame leaving the window are
# formed again from its stored inputs and subtracted), and only the frame's inputs are stored, not its products.

_TILE_ROWS = 24  # row tile of the pointwise work: the planes a tile touches stay in the CPU's L2 cache


def _row_tiles(height: int) -> Iterator[slice]:
    """Slices of ``_TILE_ROWS`` rows covering ``range(height)``."""
    rows = _TILE_ROWS
    for r0 in range(0, height, rows):
        yield slice(r0, min(height, r0 + rows))


def _acc_planes(item: np.ndarray, sums: np.ndarray, sl: slice, sign: int, tmp: np.ndarray) -> None:
    """``sums[:, sl] += sign * item[:, sl]`` for a payload that is the planes themselves, float32 ``(n, H, W)``."""
    if sign > 0:
        sums[:, sl] += item[:, sl]
    else:
        sums[:, sl] -= item[:, sl]


def _pairs(n: int) -> list[tuple[int, int]]:
    """Index pairs ``(i, j), i <= j`` of the upper triangle of an ``n x n`` matrix, row by row."""
    return [(i, j) for i in range(n) for j in range(i, n)]


def _signed(x: np.ndarray, sign: int, tmp: np.ndarray) -> np.ndarray:
    """``x`` for sign > 0, else ``-x`` written into ``tmp`` (same shape)."""
    return x if sign > 0 else np.negative(x, out=tmp)


def _acc_guide(item: list[np.ndarray], sums: np.ndarray, sl: slice, sign: int, tmp: np.ndarray) -> None:
    """Guide statistics of one frame (unweighted filter): ``sums += sign * [I_0.., I_i I_j (i <= j)..]``.

    ``item``: the guide's channel planes, float32 ``(H, W)`` each (1 gray, 3 colour).
    """
    n = len(item)
    h = sl.stop - sl.start
    g = [_signed(ch[sl], sign, tmp[i, :h]) for i, ch in enumerate(item)]
    for i in range(n):
        sums[i, sl] += g[i]
    for q, (i, j) in enumerate(_pairs(n)):
        cv2.accumulateProduct(g[i], item[j][sl], sums[n + q, sl])


def _acc_source(item: tuple[np.ndarray, list[np.ndarray]], sums: np.ndarray, sl: slice, sign: int,
                tmp: np.ndarray) -> None:
    """One class's statistics of one frame (unweighted): ``sums += sign * [p, I_0 p, ...]``; item ``(p, guide)``."""
    p, guide = item
    h = sl.stop - sl.start
    pt = _signed(p[sl], sign, tmp[0, :h])
    sums[0, sl] += pt
    for i, ch in enumerate(guide):
        cv2.accumulateProduct(pt, ch[sl], sums[1 + i, sl])


def _acc_weighted(item: tuple[np.ndarray, list[np.ndarray], np.ndarray], sums: np.ndarray, sl: slice, sign: int,
                  tmp: np.ndarray) -> None:
    """One class's weighted statistics of one frame, item ``(c, guide, p)``:
    ``sums += sign * [c, c I_0.., c I_i I_j (i <= j).., c p, c I_0 p..]``."""
    c, guide, p = item
    n = len(guide)
    h = sl.stop - sl.start
    ct = _signed(c[sl], sign, tmp[0, :h])
    sums[0, sl] += ct
    ci = tmp[1:1 + n, :h]
    for i, ch in enumerate(guide):
        np.multiply(ct, ch[sl], out=ci[i])
    sums[1:1 + n, sl] += ci
    k = 1 + n
    for i, j in _pairs(n):
        cv2.accumulateProduct(ci[i], guide[j][sl], sums[k, sl])
        k += 1
    cp = tmp[1 + n, :h]
    np.multiply(ct, p[sl], out=cp)
    sums[k, sl] += cp
    for i, ch in enumerate(guide):
        cv2.accumulateProduct(cp, ch[sl], sums[k + 1 + i, sl])


def _n_sums(kind: str, n_channels: int) -> int:
    """Planes of the running sum of each kind of statistics, for a guide of ``n_channels`` channels."""
    pairs = n_channels * (n_channels + 1) // 2
    return {"guide": n_channels + pairs, "source": 1 + n_channels,
            "weighted": 2 + 2 * n_channels + pairs}[kind]


_ACCUMULATE = {"guide": _acc_guide, "source": _acc_source, "weighted": _acc_weighted}


class _RunningSum:
    """Running sum over a sliding, centred temporal window of per-frame payloads (frames arrive in order).

    ``accumulate(item, sums, rows, sign, tmp)`` adds (sign +1) or subtracts (-1) a payload's contribution to the
    float32 ``(n, H, W)`` sums on a slice of rows (``tmp``: float32 ``(k, _TILE_ROWS, W)`` scratch). ``push(t,
    item)`` adds frame ``t`` and drops frames older than ``t - 2 rt`` in the same pass over row tiles;
    ``sum_for(center)`` drops frames older than ``center - rt`` and returns ``(sums, n_frames)`` over the frames
    ``center - rt ... center + rt`` pushed so far. ``push`` and ``sum_for`` return / keep the dropped payloads in
    :attr:`dropped` so that their buffers can be reused. The sums are recomputed exactly from the stored payloads
    every ``_RESUM_EVERY`` frames so that float32 add/subtract round-off cannot accumulate over long videos.
    """

    def __init__(self, temporal_radius: int, accumulate, n_planes: int, n_tmp: int = 4):
        self.rt = temporal_radius
        self.accumulate = accumulate
        self.n_planes = n_planes
        self.n_tmp = n_tmp
        self.items: deque[tuple[int, object]] = deque()
        self.sums: np.ndarray | None = None
        self.tmp: np.ndarray | None = None
        self.dropped: list[object] = []
        self._since_resum = 0

    def _alloc(self, shape: tuple[int, int]) -> None:
        if self.sums is None or self.sums.shape[1:] != shape:
            self.sums = np.zeros((self.n_planes,) + shape, np.float32)
            self.tmp = np.empty((self.n_tmp, min(_TILE_ROWS, shape[0]), shape[1]), np.float32)

    def _pass(self, add: object | None, drop: list[object], fill=None) -> None:
        """One pass over row tiles: ``fill(rows)`` (computes those rows of ``add`` when given), subtract the
        ``drop`` payloads, add ``add`` (restart from 0 when the window became empty)."""
        empty = not self.items
        for sl in _row_tiles(self.sums.shape[1]):
            if fill is not None:
                fill(sl)
            if empty:
                self.sums[:, sl] = 0.0
            else:
                for old in drop:
                    self.accumulate(old, self.sums, sl, -1, self.tmp)
            if add is not None:
                self.accumulate(add, self.sums, sl, 1, self.tmp)

    def push(self, t: int, item: object, shape: tuple[int, int], fill=None) -> None:
        """Add frame ``t`` (``fill(rows)``, when given, first computes those rows of ``item``; see :meth:`_pass`)."""
        if self.items and t != self.items[-1][0] + 1:
            raise RuntimeError(f"frames must arrive in order: got {t} after {self.items[-1][0]}")
        self._alloc(shape)
        drop = self._pop_before(t - 2 * self.rt)
        self._pass(item, drop, fill)
        self.items.append((t, item))
        self._since_resum += 1
        if self._since_resum >= _RESUM_EVERY:
            self._resum()

    def _pop_before(self, t_min: int) -> list[object]:
        drop = []
        while self.items and self.items[0][0] < t_min:
            drop.append(self.items.popleft()[1])
        self.dropped = (self.dropped + drop)[-2:]  # a couple are enough for reuse; keep no more alive
        return drop

    def _resum(self) -> None:
        self._since_resum = 0
        for sl in _row_tiles(self.sums.shape[1]):
            self.sums[:, sl] = 0.0
            for _, item in self.items:
                self.accumulate(item, self.sums, sl, 1, self.tmp)

    def item_at(self, t: int) -> object:
        for ti, item in self.items:
            if ti == t:
                return item
        raise RuntimeError(f"frame {t} is not in the window")

    def sum_for(self, center: int) -> tuple[np.ndarray, int]:
        drop = self._pop_before(center - self.rt)
        if drop:
            self._pass(None, drop)
        if not self.items or self.items[0][0] > center:
            raise RuntimeError(f"window for frame {center} is not available")
        return self.sums, len(self.items)

    def take_dropped(self) -> object | None:
        """A payload dropped earlier (no longer in the window), for reuse of its buffers; None when there is none."""
        return self.dropped.pop() if self.dropped else None


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
    # one pass (cv2.checkRange also fails on NaN / inf); min and max only to word the error
    if not cv2.checkRange(guide, quiet=True, minVal=-1e-3, maxVal=1.0 + 1e-3)[0]:
        lo, hi = float(guide.min()), float(guide.max())
        raise ValueError(f"{where}: guide values must be in [0, 1], got range [{lo:.3g}, {hi:.3g}]")
    return guide


class _ClassState:
    """Temporal state of one filtered channel (one class) inside :class:`GuidedFilter3d`."""

    def __init__(self, temporal_radius: int, n_channels: int, weighted: bool):
        kind = "weighted" if weighted else "source"
        self.stage1 = _RunningSum(temporal_radius, _ACCUMULATE[kind], _n_sums(kind, n_channels), n_tmp=2 + n_channels)
        self.stage2 = _RunningSum(temporal_radius, _acc_planes, n_channels + 1)
        self.norms: deque[tuple[int, np.ndarray]] = deque()  # weighted: 1 / box3d(c) at frames awaiting stage 2


class GuidedFilter3d:
    """Streaming (weighted) guided filter over x, y and t for one video, frame by frame.

    Feed frames in order with :meth:`step`; each call returns the filtered frame ``t - delay`` (or ``None`` while
    the first ``delay = 2 * temporal_radius`` frames fill the window). :meth:`flush` returns the last ``delay``
    frames at the end of the video; :meth:`reset` starts a new video. Memory holds the inputs of ``2 rt + 1``
    frames (guide planes, and per class p and c) plus the running sums (per class 14 planes for the weighted colour
    filter, 5 gray), independent of the video's length. ``guided_filter_3d`` on a whole volume gives the
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
        self._guides: deque[tuple[int, np.ndarray]] = deque()  # (t, float32 (channels, H, W) guide planes)
        self._guide_sums: _RunningSum | None = None  # unweighted: the guide's running sums, shared by classes
        self._buffers: dict[str, np.ndarray] = {}  # reusable work planes (see _scratch)
        self._guide_pool: list[np.ndarray] = []  # guide planes no longer referenced, for reuse
        self._norm_pool: list[np.ndarray] = []  # weighted: 1 / box3d(c) planes already used by stage 2

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
            n_channels = 1 if guide.ndim == 2 else 3
            self._classes = [_ClassState(self.temporal_radius, n_channels, weights is not None)
                             for _ in range(src.shape[0])]
            self._guide_sums = _RunningSum(self.temporal_radius, _acc_guide, _n_sums("guide", n_channels),
                                           n_tmp=n_channels)
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

    def _planes(self, pool: list[np.ndarray], n: int, shape: tuple[int, int]) -> np.ndarray:
        """A float32 ``(n, H, W)`` array from ``pool`` (buffers no longer referenced), else a new one."""
        while pool:
            buf = pool.pop()
            if buf.shape == (n,) + shape:
                return buf
        return np.empty((n,) + shape, np.float32)

    def _box_all(self, sums: np.ndarray, name: str) -> np.ndarray:
        """Spatial box mean of each plane of a float32 ``(n, H, W)`` running sum, into a reused buffer."""
        out = self._scratch(name, sums.shape[0], sums.shape[1:])
        for k in range(sums.shape[0]):
            _box2d(sums[k], self.radius, out[k])
        return out

    def _push(self, t: int, guide: np.ndarray, src: np.ndarray, weights: np.ndarray | None) -> None:
        """Store frame ``t``'s inputs (owned copies) and add its statistics to every stage-1 running sum."""
        hw = src.shape[1:]
        n = 1 if guide.ndim == 2 else 3
        planes = self._planes(self._guide_pool, n, hw)
        if n == 1:
            np.copyto(planes[0], guide)
        else:
            cv2.split(np.ascontiguousarray(guide), list(planes))
        ch = list(planes)
        self._guides.append((t, planes))
        if weights is None:
            # guide statistics are class-independent: one running sum per video, shared by all classes
            self._guide_sums.push(t, ch, hw)
        for k, state in enumerate(self._classes):
            # the filter keeps its own copies of p and c (the caller may reuse its buffers), written row tile by
            # row tile inside the running-sum update that reads them; buffers of a frame that left the window
            # are reused: (p, guide) unweighted, (c, guide, p) weighted
            own = state.stage1.take_dropped()
            p_own = own[-1 if weights is not None else 0] if own is not None else np.empty(hw, np.float32)
            pairs = [(p_own, src[k])]
            if weights is None:
                item = (p_own, ch)
            else:
                c_own = own[0] if own is not None else np.empty(hw, np.float32)
                pairs.append((c_own, weights[k]))
                item = (c_own, ch, p_own)

            def copy_rows(sl, pairs=pairs):
                for dst, x in pairs:
                    np.copyto(dst[sl], x[sl])

            state.stage1.push(t, item, hw, fill=copy_rows)
        # the stage-1 windows now start at t - 2 rt: older guides are only needed by stage 2 (target >= t - 2 rt)
        while self._guides and self._guides[0][0] < t - 2 * self.temporal_radius:
            _, old = self._guides.popleft()
            self._guide_pool.append(old)

    def _stage1(self, center: int) -> None:
        """Fit a, b at frame ``center`` (all frames up to ``center + rt`` are in) and push them to stage 2."""
        colour = self._shape[1] == 3
        weighted = self._shape[2]
        hw = self._shape[0][1:]
        gbox, inv_n = None, None
        if not weighted:
            gsums, n = self._guide_sums.sum_for(center)
            gbox = self._box_all(gsums, "gbox")
            inv_n = np.float32(1.0 / n)
        na = 3 if colour else 1
        for state in self._classes:
            sums, n = state.stage1.sum_for(center)
            box = self._box_all(sums, "box1")
            c = state.stage1.item_at(center)[0] if weighted else None
            planes = self._planes([p for p in [state.stage2.take_dropped()] if p is not None], na + 1, hw)
            inv_w = self._planes(self._norm_pool, 1, hw)[0] if weighted else None
            n_means = len(box) + (len(gbox) if gbox is not None else -1)
            work = self._buffers["fit"] = _fit_work(n_means, hw, self._buffers.get("fit"))
            if weighted:
                # the stage-2 weight sum box3d(c) at `center` is exactly stage 1's: keep 1 / box3d(c) for it
                state.norms.append((center, inv_w))

            def fit(sl, box=box, c=c, planes=planes, inv_w=inv_w, work=work):
                _fit_rows(sl, box, gbox, inv_n, c, self.eps, colour, planes, inv_w, work)

            # a and b are fitted row tile by row tile inside stage 2's running-sum update (while in cache)
            state.stage2.push(center, planes, hw, fill=fit)

    def _stage2(self, target: int) -> np.ndarray:
        """Output of frame ``target`` (coefficients up to ``target + rt`` are in)."""
        weighted = self._shape[2]
        guide = next(ch for tg, ch in self._guides if tg == target)  # the guide's channel planes
        shape = (len(self._classes),) + guide[0].shape
        out = np.empty(shape, np.float32)
        for k, state in enumerate(self._classes):
            sums, n = state.stage2.sum_for(target)
            box = self._box_all(sums, "box2")
            if weighted:
                tn, inv = state.norms.popleft()
                assert tn == target
            else:
                inv = np.float32(1.0 / n)
            q = out[k]
            for sl in _row_tiles(q.shape[0]):
                qt = q[sl]
                np.multiply(box[0, sl], guide[0][sl], out=qt)
                for a_sum, g in zip(box[1:-1], guide[1:]):
                    cv2.accumulateProduct(a_sum[sl], g[sl], qt)
                qt += box[-1, sl]
                qt *= inv[sl] if weighted else inv
            if weighted:
                self._norm_pool.append(inv[None])
        self._emitted = target + 1
        return out


def _fit_work(n_means: int, shape: tuple[int, int], work: np.ndarray | None = None) -> np.ndarray:
    """Scratch of :func:`_fit_rows`: float32 ``(n_means + 8, rows, W)``, ``work`` itself when it is big enough."""
    rows = min(_TILE_ROWS, shape[0])
    if work is None or work.shape[0] < n_means + 8 or work.shape[1] < rows or work.shape[2] != shape[1]:
        work = np.empty((n_means + 8, rows, shape[1]), np.float32)
    return work


def _fit_rows(sl: slice, sums: np.ndarray, gsums: np.ndarray | None, inv_n: np.float32 | None,
              c: np.ndarray | None, eps: float, colour: bool, out: np.ndarray, inv_w_full: np.ndarray | None,
              work: np.ndarray) -> None:
    """Stage-1 window sums of one frame -> rows ``sl`` of the planes that stage 2 box-filters, written into ``out``.

    ``sums`` / ``gsums``: box-filtered window sums, float32 ``(n, H, W)`` arrays.
    Unweighted (``c`` None): ``sums = [S_p, S_Ip...]``, ``gsums`` the guide's window sums, ``inv_n = 1 / frames``;
    fills ``out`` (float32 ``(3 + 1, H, W)`` colour, ``(2, H, W)`` gray) with ``[a..., b]``.
    Weighted: ``sums = [S_c, S_cI..., S_cII..., S_cp, S_cIp...]`` (``gsums`` unused); fills ``out`` with
    ``[c a..., c b]`` and the float32 ``(H, W)`` plane ``inv_w_full`` with ``1 / max(S_c, 1e-12)``.
    ``work``: scratch from :func:`_fit_work`. :class:`GuidedFilter3d` calls this tile by tile inside stage 2's
    running-sum update, while the tile is in cache.
    """
    na = 3 if colour else 1
    weighted = c is not None
    h = sl.stop - sl.start
    # the means [I..., II..., p, Ip...]: one multiply per stack of planes (sums / gsums are (n, H, W) arrays)
    if weighted:
        scale = inv_w_full[sl]
        np.maximum(sums[0][sl], np.float32(1e-12), out=scale)
        np.divide(np.float32(1.0), scale, out=scale)
        n_means = len(sums) - 1
        np.multiply(sums[1:, sl], scale, out=work[:n_means, :h])
    else:
        n_g = len(gsums)
        n_means = n_g + len(sums)
        np.multiply(gsums[:, sl], inv_n, out=work[:n_g, :h])
        np.multiply(sums[:, sl], inv_n, out=work[n_g:n_means, :h])
    m = [work[j, :h] for j in range(n_means)]
    a = [out[j, sl] for j in range(na)]
    _solve_coefficients_into(m, eps, colour, a, out[na, sl], [work[n_means + j, :h] for j in range(8)],
                             scale=c[sl] if weighted else None)


def _solve_coefficients_into(m: list[np.ndarray], eps: float, colour: bool, a: list[np.ndarray], b: np.ndarray,
                             tmp: list[np.ndarray], scale: np.ndarray | None = None) -> None:
    """Linear coefficients of the guided filter from (weighted) window means, in place (float32 throughout).

    gray: ``m = [m_I, m_II, m_p, m_Ip]`` -> ``a = (m_Ip - m_I m_p) / (m_II - m_I^2 + eps)``.
    colour: ``m = [m_I0..2, m_I00, m_I01, m_I02, m_I11, m_I12, m_I22, m_p, m_I0p, m_I1p, m_I2p]``;
    ``a = (Sigma + eps Id)^-1 cov(I, p)`` solved per pixel in closed form (adjugate / determinant).
    Writes ``a`` (list of 1 or 3 planes) and ``b = m_p - a . m_I``, both multiplied by ``scale`` when given
    (the weighted filter's ``c``); ``m`` is overwritten, ``tmp`` is 8 work planes of the same shape (all planes
    C-contiguous). Sums of products use ``cv2.accumulateProduct`` (``dst += x y`` in one pass).
    """
    mul, acc = np.multiply, cv2.accumulateProduct
    e = np.float32(eps)
    if not colour:
        mi, mii, mp, mip = m
        neg_mi = np.negative(mi, out=tmp[0])
        acc(neg_mi, mi, mii)  # var + eps
        mii += e
        acc(neg_mi, mp, mip)  # cov(I, p)
        np.divide(mip, mii, out=a[0])
        np.copyto(b, mp)
        acc(a[0], neg_mi, b)
        if scale is not None:
            a[0] *= scale
            b *= scale
        return
    m0, m1, m2, s00, s01, s02, s11, s12, s22, mp, q0, q1, q2 = m
    n0, n1, n2 = (np.negative(x, out=t) for x, t in zip((m0, m1, m2), tmp[5:8]))
    # covariance + eps Id (in place of the second moments), cov(I, p) (in place of the mean of I p)
    for s, x, y, reg in ((s00, n0, m0, True), (s01, n0, m1, False), (s02, n0, m2, False),
                         (s11, n1, m1, True), (s12, n1, m2, False), (s22, n2, m2, True)):
        acc(x, y, s)
        if reg:
            s += e
    for q, x in ((q0, n0), (q1, n1), (q2, n2)):
        acc(x, mp, q)
    # adjugate of the symmetric 3x3 matrix: into tmp[1..4] and the planes of m0, m1 (the means of I are kept,
    # negated, in n0..n2); then 1 / det in place of s22, which the adjugate was the last to need
    t0 = tmp[0]
    i00, i01, i02, i11, i12, i22 = tmp[1], tmp[2], tmp[3], tmp[4], m0, m1
    for dst, (x, y), (u, v) in ((i00, (s11, s22), (s12, s12)), (i01, (s02, s12), (s01, s22)),
                                (i02, (s01, s12), (s02, s11)), (i11, (s00, s22), (s02, s02)),
                                (i12, (s01, s02), (s00, s12)), (i22, (s00, s11), (s01, s01))):
        mul(u, v, out=t0)
        mul(x, y, out=dst)
        dst -= t0
    inv_det = s22
    mul(s00, i00, out=inv_det)
    acc(s01, i01, inv_det)
    acc(s02, i02, inv_det)
    np.divide(np.float32(1.0), inv_det, out=inv_det)
    if scale is None:
        np.copyto(b, mp)
    else:  # c a = adj cov * (c / det) and c b = c m_p - (c a) . m_I
        inv_det *= scale
        mul(mp, scale, out=b)
    for x, (u, v, w), ni in ((a[0], (i00, i01, i02), n0), (a[1], (i01, i11, i12), n1),
                             (a[2], (i02, i12, i22), n2)):
        mul(u, q0, out=x)
        acc(v, q1, x)
        acc(w, q2, x)
        x *= inv_det
        acc(x, ni, b)


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
