"""The paper's temporal-stability measures: flow inconsistency ``E_cons``, smoothness ``E_smooth``, boundary counts.

Definitions (the project's conventions, also in ``docs/measures.md``):

- A mask is an integer label map per frame, (H, W), 0 = background, ``VOID`` = 255 ignored everywhere.
- ``e(p→q) = Σ M·d_cat(O_q, W(O_p)) / Σ M`` with ``W(O_p)(x) = O_p(x + F[q→p](x))`` (nearest neighbour),
  ``M = M[p→q]`` from :func:`steadyseg.warp.valid_mask` (constants: :class:`steadyseg.warp.ValidityThresholds`)
  minus the pixels where ``O_q`` or ``W(O_p)`` is void, and ``d_cat`` = 1 where the labels DIFFER.
- ``E_pair(p, q) = e(p→q) + e(q→p)``; ``E_raw`` = mean of ``E_pair`` over unordered pairs with ``1 ≤ |p−q| ≤ K``.
- ``E_cons = E_raw · H·W / median_t N_bd(t)`` ("inconsistent pixels per boundary pixel").

Choices made here (documented and tested):

- **Boundary pixels** (:func:`boundary_count`): a pixel counts when it has a 4-neighbour with a different label;
  both sides of an edge count; void pixels are never boundary pixels and a void neighbour is not "different", so a
  pixel that touches only void is not a boundary pixel; the image border is not an edge. A lone a×b rectangle
  away from the border has ``(2a + 2b − 4) + (2a + 2b)`` boundary pixels.
- **Empty directions**: when ``Σ M = 0`` for a direction, that direction is skipped: ``E_pair`` is twice the
  defined direction's ``e``; when both directions are empty the pair is NaN in ``per_pair`` and left out of
  ``E_raw`` (counted in ``skipped_pairs``).
- Masks are read in order, once each, holding only ``K + 1`` frames at a time, so a lazy mask stack of any length
  is measured in bounded memory.
"""

from __future__ import annotations

import threading
import warnings
from collections import deque
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np

from steadyseg.kernels import gaussian_kernel
from steadyseg.labels import VOID
from steadyseg.warp import DEFAULT_THRESHOLDS, ValidityThresholds, WarpWorkspace, direction_counts, warp_and_valid


__all__ = [
    "VOID", "boundary_count", "boundary_map", "InconsistencyResult", "inconsistency", "pair_inconsistency",
    "direction_inconsistency", "smoothness", "flicker_map", "median_boundary", "opencv_threads",
]

FlowFn = Callable[[int, int], np.ndarray]


def _as_labels(mask: Any, *, where: str) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"{where}: expected an (H, W) integer label map, got shape {m.shape}")
    if m.dtype == np.bool_:
        return m.astype(np.uint8)
    if not np.issubdtype(m.dtype, np.integer):
        raise ValueError(f"{where}: expected integer labels (0 = background, {VOID} = void), got dtype {m.dtype}")
    return m


def _compact_labels(mask: Any, *, where: str) -> np.ndarray:
    """Labels as uint8 (or uint16) so that warping with ``cv2.remap`` needs no per-call conversion."""
    m = _as_labels(mask, where=where)
    if m.dtype in (np.uint8, np.uint16) or m.size == 0:
        return m
    lo, hi = int(m.min()), int(m.max())
    if lo < 0 or hi > 65535:
        raise ValueError(f"{where}: labels must be in [0, 65535], got range [{lo}, {hi}]")
    return m.astype(np.uint8 if hi <= 255 else np.uint16)


# ------------------------------------------------------------------------------------------------------- boundary
def boundary_map(labels: Any, *, void: int = VOID) -> np.ndarray:
    """(H, W) bool: pixels with a 4-neighbour of a different, non-void label (void pixels are never boundary)."""
    lab = _as_labels(labels, where="boundary_map")
    nv = lab != void
    out = np.zeros(lab.shape, dtype=bool)
    dh = (lab[:, 1:] != lab[:, :-1]) & nv[:, 1:] & nv[:, :-1]
    dv = (lab[1:, :] != lab[:-1, :]) & nv[1:, :] & nv[:-1, :]
    out[:, 1:] |= dh
    out[:, :-1] |= dh
    out[1:, :] |= dv
    out[:-1, :] |= dv
    return out


def boundary_count(labels: Any, *, void: int = VOID) -> int:
    """Number of boundary pixels ``N_bd`` of an (H, W) label map (see :func:`boundary_map` for the definition)."""
    return int(np.count_nonzero(boundary_map(labels, void=void)))


def median_boundary(masks: Iterable[Any], *, void: int = VOID) -> float:
    """Median over frames of :func:`boundary_count` (streams over ``masks``)."""
    counts = [boundary_count(m, void=void) for m in masks]
    if not counts:
        raise ValueError("median_boundary: no masks given")
    return float(np.median(counts))


# ---------------------------------------------------------------------------------------------------- inconsistency
def direction_inconsistency(mask_p: np.ndarray, mask_q: np.ndarray, *, flow_p_to_q: np.ndarray,
                            flow_q_to_p: np.ndarray, check_motion_boundary: bool = True, void: int = VOID,
                            thresholds: ValidityThresholds = DEFAULT_THRESHOLDS,
                            workspace: WarpWorkspace | None = None) -> tuple[float, int]:
    """``e(p→q)`` and ``Σ M``: fraction of valid pixels of frame ``q`` whose label differs from warped ``O_p``.

    Args:
        mask_p, mask_q: (H, W) integer labels of frames p and q (0 = background, ``void`` ignored).
        flow_p_to_q: (H, W, 2) float flow p→q (dx, dy) in pixels, used by the forward–backward check
            (keyword-only, like ``flow_q_to_p``, so that the two directions cannot be swapped by position).
        flow_q_to_p: (H, W, 2) float flow q→p (dx, dy) in pixels, used to warp ``O_p`` into frame q.
        check_motion_boundary: also exclude the motion boundaries of ``F[q→p]`` from ``M``.
        void: the ignored label.
        thresholds: constants of the validity checks (:class:`steadyseg.warp.ValidityThresholds`).
        workspace: optional :class:`steadyseg.warp.WarpWorkspace` reused across calls (saves allocations on long
            videos).

    Returns:
        ``(e, n_valid)``; ``e`` is NaN when ``n_valid == 0``.
    """
    mp = _compact_labels(mask_p, where="direction_inconsistency: mask_p")
    mq = _compact_labels(mask_q, where="direction_inconsistency: mask_q")
    if mp.dtype != mq.dtype:
        mp, mq = mp.astype(np.uint16, copy=False), mq.astype(np.uint16, copy=False)
    if 0 <= void <= np.iinfo(mp.dtype).max:
        fq = np.asarray(flow_q_to_p, dtype=np.float32)
        fp = np.asarray(flow_p_to_q, dtype=np.float32)
        ws = workspace if workspace is not None and workspace.shape == mq.shape else None
        n_diff, n = direction_counts(mp, mq, fq, fp, void=void, check_motion_boundary=check_motion_boundary,
                                     thresholds=thresholds, workspace=ws)
        if n == 0:
            return float("nan"), 0
        return float(n_diff) / n, n
    # a void label outside the labels' dtype range: general path (bool masks)
    warped, m = warp_and_valid(mask_p, flow_q_to_p, flow_p_to_q, mode="nearest", fill=void,
                               check_motion_boundary=check_motion_boundary, thresholds=thresholds,
                               workspace=workspace)
    m &= mask_q != void
    m &= warped != void
    n = int(np.count_nonzero(m))
    if n == 0:
        return float("nan"), 0
    diff = np.not_equal(warped, mask_q)
    diff &= m
    return float(np.count_nonzero(diff)) / n, n


def pair_inconsistency(mask_p: np.ndarray, mask_q: np.ndarray, *, flow_p_to_q: np.ndarray,
                       flow_q_to_p: np.ndarray, check_motion_boundary: bool = True, void: int = VOID,
                       thresholds: ValidityThresholds = DEFAULT_THRESHOLDS,
                       workspace: WarpWorkspace | None = None) -> tuple[float, int]:
    """``E_pair(p, q) = e(p→q) + e(q→p)`` and the number of defined directions (0, 1 or 2).

    Arguments as in :func:`direction_inconsistency` (the flows keyword-only). A direction without valid pixels is
    skipped: with one defined direction ``E_pair = 2·e``; with none, NaN.
    """
    e_pq, n_pq = direction_inconsistency(mask_p, mask_q, flow_p_to_q=flow_p_to_q, flow_q_to_p=flow_q_to_p,
                                         check_motion_boundary=check_motion_boundary, void=void,
                                         thresholds=thresholds, workspace=workspace)
    e_qp, n_qp = direction_inconsistency(mask_q, mask_p, flow_p_to_q=flow_q_to_p, flow_q_to_p=flow_p_to_q,
                                         check_motion_boundary=check_motion_boundary, void=void,
                                         thresholds=thresholds, workspace=workspace)
    return _combine_directions(e_pq, n_pq, e_qp, n_qp)


def _combine_directions(e_pq: float, n_pq: int, e_qp: float, n_qp: int) -> tuple[float, int]:
    defined = [e for e, n in ((e_pq, n_pq), (e_qp, n_qp)) if n > 0]
    if not defined:
        return float("nan"), 0
    return 2.0 * float(np.mean(defined)), len(defined)


@dataclass
class InconsistencyResult:
    """Result of :func:`inconsistency`.

    Attributes:
        e_cons: ``E_raw · H·W / normalizer`` (NaN when the normalizer is 0).
        e_raw: mean ``E_pair`` over the unordered pairs ``1 ≤ |p−q| ≤ window`` (fraction, in [0, 2]).
        normalizer: median boundary count ``N_bd`` used (pixels).
        per_pair: ``{(p, q): E_pair}`` with ``p < q`` (NaN for a pair with no valid pixel in either direction).
        per_frame: (T,) float64, mean ``E_pair`` of the pairs touching each frame (NaN when none is defined).
        window: K.
        boundary_counts: (T,) int64 boundary count of each evaluated mask.
        height, width: frame size.
        skipped_pairs: pairs without any valid pixel; skipped_directions: directions without valid pixels.
    """

    e_cons: float
    e_raw: float
    normalizer: float
    per_pair: dict[tuple[int, int], float]
    per_frame: np.ndarray
    window: int
    boundary_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    height: int = 0
    width: int = 0
    skipped_pairs: int = 0
    skipped_directions: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (pairs as ``"p-q"`` keys, NaN kept as float NaN)."""
        return {
            "e_cons": float(self.e_cons), "e_raw": float(self.e_raw), "normalizer": float(self.normalizer),
            "window": int(self.window), "height": int(self.height), "width": int(self.width),
            "per_pair": {f"{p}-{q}": float(v) for (p, q), v in sorted(self.per_pair.items())},
            "per_frame": [float(v) for v in self.per_frame],
            "boundary_counts": [int(v) for v in self.boundary_counts],
            "skipped_pairs": int(self.skipped_pairs), "skipped_directions": int(self.skipped_directions),
        }


@contextmanager
def opencv_threads(n: int | None) -> Iterator[None]:
    """Set OpenCV's own thread count to ``n`` inside the ``with`` block and restore the previous value after it.

    ``cv2.setNumThreads`` is process-wide: other threads of the process see the change while the block runs.
    ``None`` leaves OpenCV's setting alone. ``n ≥ 0`` (0 = OpenCV runs single-threaded without its pool).
    """
    if n is None:
        yield
        return
    if int(n) < 0:
        raise ValueError(f"opencv_threads: n must be >= 0 or None, got {n}")
    previous = cv2.getNumThreads()
    cv2.setNumThreads(int(n))
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def _resolve_normalizer(normalizer: Any, own_counts: np.ndarray) -> float:
    if normalizer is None:
        return float(np.median(own_counts)) if len(own_counts) else float("nan")
    if isinstance(normalizer, (int, float, np.integer, np.floating)):
        if normalizer < 0:
            raise ValueError(f"normalizer must be ≥ 0 (a median boundary count in pixels), got {normalizer}")
        return float(normalizer)
    return median_boundary(normalizer)


def _finish_cons(e_raw: float, hw: int, norm: float, *, name: str) -> float:
    if not np.isfinite(e_raw):
        return float("nan")
    if not norm > 0:
        warnings.warn(f"{name}: the median boundary count is {norm} (empty masks?); E_cons is NaN, "
                      "report E_raw instead", RuntimeWarning, stacklevel=3)
        return float("nan")
    return e_raw * hw / norm


def inconsistency(masks: Sequence[Any] | Iterable[Any], flows: FlowFn, *, window: int = 3,
                  normalizer: None | float | Sequence[Any] = None, check_motion_boundary: bool = True,
                  progress: bool = False, void: int = VOID, threads: int = 1,
                  cv_threads: int | None = None,
                  thresholds: ValidityThresholds = DEFAULT_THRESHOLDS) -> InconsistencyResult:
    """Flow-based temporal inconsistency ``E_cons`` / ``E_raw`` of a mask video (paper eq. 3–4, our conventions).

    Args:
        masks: T label maps (H, W) of integer dtype (0 = background, ``void`` ignored), read once in order;
            any iterable works (e.g. a lazy ``MaskStack``), only ``window + 1`` masks are held at a time.
        flows: callable ``flows(p, q) -> (H, W, 2) float32`` flow from frame p to frame q (dx, dy) in pixels,
            e.g. a ``steadyseg.datasets.flow.FlowProvider``; called for both directions of every pair.
        window: K ≥ 1; pairs with ``1 ≤ |p−q| ≤ K``.
        normalizer: ``None`` → median boundary count of ``masks`` themselves; a number → that median count;
            a sequence of label maps (e.g. the ground truth) → their median boundary count.
        check_motion_boundary: also exclude motion-boundary pixels from the valid mask (default on).
        progress: show a tqdm bar.
        void: the ignored label.
        threads: compute the 2·K directions of each new frame in this many threads (OpenCV and numpy release
            the GIL). Flows are still requested from the calling thread, in order (``flows`` need not be
            thread-safe), overlapping with the previous frame's directions. Results do not depend on it.
        cv_threads: OpenCV's own thread count while this call runs (:func:`opencv_threads`: process-wide, the
            previous value is restored on return). ``None`` (default): 1 when ``threads > 1`` (our threads already
            fill the cores; OpenCV's pool would only add hand-offs), else OpenCV's setting is left alone. Results
            do not depend on it.
        thresholds: constants of the validity checks (:class:`steadyseg.warp.ValidityThresholds`).

    Returns:
        :class:`InconsistencyResult`. ``E_cons`` is NaN with a ``RuntimeWarning`` when the median boundary is 0.
    """
    if int(threads) < 1:
        raise ValueError(f"inconsistency: threads must be ≥ 1, got {threads}")
    if int(window) < 1:
        raise ValueError(f"inconsistency: window must be ≥ 1, got {window}")
    window = int(window)
    total = len(masks) if hasattr(masks, "__len__") else None
    it: Iterable[Any] = masks
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(masks, total=total, desc="inconsistency", unit="frame")
    recent: deque[tuple[int, np.ndarray]] = deque(maxlen=window)
    per_pair: dict[tuple[int, int], float] = {}
    frame_sum: list[float] = []
    frame_cnt: list[int] = []
    counts: list[int] = []
    shape = None
    skipped_pairs = skipped_dirs = 0

    def direction(mp, mq, f_qp, f_pq, *, workspace):
        return direction_inconsistency(mp, mq, flow_p_to_q=f_pq, flow_q_to_p=f_qp,
                                       check_motion_boundary=check_motion_boundary, void=void,
                                       thresholds=thresholds, workspace=workspace)

    local = threading.local()

    def run_threaded(args):
        w = getattr(local, "ws", None)
        if w is None:
            w = local.ws = WarpWorkspace(*shape)
        return direction(*args, workspace=w)

    def collect(results):
        nonlocal skipped_pairs, skipped_dirs
        for p, q, (e_pq, n_pq), (e_qp, n_qp) in results:
            e, n_dirs = _combine_directions(e_pq, n_pq, e_qp, n_qp)
            skipped_dirs += 2 - n_dirs
            per_pair[(p, q)] = e
            if n_dirs == 0:
                skipped_pairs += 1
                continue
            for t in (p, q):
                frame_sum[t] += e
                frame_cnt[t] += 1

    # Threaded: the directions of frame q run in the pool while this thread reads frame q+1's mask and flows
    # (disk reads and CRCs release the GIL); at most two frames' flows are in flight. Results are collected in
    # frame order, so the sums are the same as in the serial loop.
    pool = ThreadPoolExecutor(max_workers=int(threads)) if int(threads) > 1 else None
    pending: deque[list] = deque()
    if cv_threads is None and pool is not None:
        cv_threads = 1
    with opencv_threads(cv_threads):
        try:
            for q, mask in enumerate(it):
                mq = _compact_labels(mask, where=f"inconsistency: mask {q}")
                if shape is None:
                    shape = mq.shape
                    ws = WarpWorkspace(*shape)
                elif mq.shape != shape:
                    raise ValueError(f"inconsistency: mask {q} has shape {mq.shape}, mask 0 has {shape}")
                counts.append(int(np.count_nonzero(boundary_map(mq, void=void))))
                frame_sum.append(0.0)
                frame_cnt.append(0)
                jobs = []
                for p, mp in recent:
                    f_pq = np.asarray(flows(p, q), dtype=np.float32)
                    f_qp = np.asarray(flows(q, p), dtype=np.float32)
                    for name, f in (("p→q", f_pq), ("q→p", f_qp)):
                        if f.shape != (*shape, 2):
                            raise ValueError(f"inconsistency: flow {name} for pair ({p}, {q}) has shape "
                                             f"{f.shape}, expected {(*shape, 2)}")
                    jobs.append((p, (mp, mq, f_qp, f_pq), (mq, mp, f_pq, f_qp)))
                if pool is None:
                    collect([(p, q, direction(*d1, workspace=ws), direction(*d2, workspace=ws))
                             for p, d1, d2 in jobs])
                else:
                    pending.append([(p, q, pool.submit(run_threaded, d1), pool.submit(run_threaded, d2))
                                    for p, d1, d2 in jobs])
                    while len(pending) > 1:
                        collect([(p, qq, a.result(), b.result()) for p, qq, a, b in pending.popleft()])
                recent.append((q, mq))
            while pending:
                collect([(p, qq, a.result(), b.result()) for p, qq, a, b in pending.popleft()])
        finally:
            if pool is not None:
                for batch in pending:
                    for _, _, a, b in batch:
                        a.cancel()
                        b.cancel()
                pool.shutdown(wait=True)
    if shape is None:
        raise ValueError("inconsistency: no masks given")
    values = [v for v in per_pair.values() if np.isfinite(v)]
    e_raw = float(np.mean(values)) if values else float("nan")
    if not values:
        warnings.warn("inconsistency: no frame pair had valid pixels (fewer than 2 frames, or the flow check "
                      "rejected everything); E_raw is NaN", RuntimeWarning, stacklevel=2)
    own = np.asarray(counts, dtype=np.int64)
    norm = _resolve_normalizer(normalizer, own)
    h, w = shape
    per_frame = np.array([s / c if c else np.nan for s, c in zip(frame_sum, frame_cnt)], dtype=np.float64)
    return InconsistencyResult(
        e_cons=_finish_cons(e_raw, h * w, norm, name="inconsistency"), e_raw=e_raw, normalizer=norm,
        per_pair=per_pair, per_frame=per_frame, window=window, boundary_counts=own, height=h, width=w,
        skipped_pairs=skipped_pairs, skipped_directions=skipped_dirs)


def flicker_map(masks: Sequence[Any], flows: FlowFn, t: int, *, window: int = 3,
                check_motion_boundary: bool = True, void: int = VOID,
                thresholds: ValidityThresholds = DEFAULT_THRESHOLDS) -> np.ndarray:
    """Where frame ``t`` disagrees with its flow-warped neighbours.

    For every neighbour ``p`` with ``1 ≤ |p−t| ≤ window`` inside the video, ``O_p`` is warped into frame ``t``
    (``W(O_p)(x) = O_p(x + F[t→p](x))``) and compared with ``O_t`` on the valid pixels ``M[p→t]``.

    Args:
        masks: indexable sequence of T (H, W) integer label maps (only the ≤ 2·window + 1 needed are read).
        flows: callable ``flows(a, b) -> (H, W, 2)`` flow a→b.
        t: frame index (negative counts from the end).
        window, check_motion_boundary, void, thresholds: as in :func:`inconsistency`.

    Returns:
        (H, W) float32 in [0, 1]: fraction of the valid neighbours whose warped label differs from ``O_t``;
        0 where no neighbour is valid (and on void pixels of ``O_t``).
    """
    n = len(masks)
    if t < 0:
        t += n
    if not 0 <= t < n:
        raise ValueError(f"flicker_map: frame {t} out of range for a video of {n} frames")
    mt = _compact_labels(masks[t], where=f"flicker_map: mask {t}")
    disagree = np.zeros(mt.shape, dtype=np.float32)
    valid = np.zeros(mt.shape, dtype=np.float32)
    ws = WarpWorkspace(*mt.shape)
    for p in range(max(0, t - window), min(n, t + window + 1)):
        if p == t:
            continue
        mp = _compact_labels(masks[p], where=f"flicker_map: mask {p}")
        f_tp = np.asarray(flows(t, p), dtype=np.float32)
        f_pt = np.asarray(flows(p, t), dtype=np.float32)
        warped, m = warp_and_valid(mp, f_tp, f_pt, mode="nearest", fill=void,
                                   check_motion_boundary=check_motion_boundary, thresholds=thresholds,
                                   workspace=ws)
        m &= (mt != void) & (warped != void)
        valid += m
        disagree += m & (warped != mt)
    out = np.zeros(mt.shape, dtype=np.float32)
    np.divide(disagree, valid, out=out, where=valid > 0)
    return out


# ------------------------------------------------------------------------------------------------------ smoothness
def smoothness(masks: Sequence[Any] | Iterable[Any] | np.ndarray, *, sigma: float = 1.0,
               normalizer: None | float | Sequence[Any] = None, num_classes: int | None = None,
               void: int = VOID, progress: bool = False) -> float:
    """Smoothness measure ``E_smooth`` (Eilertsen et al., generalised to labels by the paper).

    Each class's one-hot map (labels) or probability map is blurred along time with a Gaussian of ``sigma``
    frames (truncated at ``int(3σ + 0.5)`` frames, :func:`steadyseg.kernels.gaussian_kernel`; weights renormalised at the ends of the video), the argmax is taken (ties → the
    lowest class), and the pixels whose label differs from the frame's own label (argmax of its probabilities)
    are counted; the count is averaged over frames and divided by the median boundary count. Void pixels of a
    label map take no part: they add to no class and are not counted.

    Args:
        masks: T label maps (H, W) integer, or probabilities: a (T, C, H, W) float array or a sequence of
            (C, H, W) float arrays (class axis first). Read once, in order; at most ``2·int(3σ + 0.5) + 1`` frames held.
        sigma: temporal standard deviation in frames (> 0).
        normalizer: as in :func:`inconsistency` (None → the masks' own median boundary count).
        num_classes: optional check for probabilities (C must match); for labels, classes above it raise.

    Returns:
        ``E_smooth`` ≥ 0 (changed pixels per boundary pixel); NaN with a warning when the median boundary is 0.
    """
    if not sigma > 0:
        raise ValueError(f"smoothness: sigma must be > 0 frames, got {sigma}")
    weights = gaussian_kernel(float(sigma), normalize=True)
    radius = (len(weights) - 1) // 2
    it: Iterable[Any] = masks
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(masks, total=len(masks) if hasattr(masks, "__len__") else None, desc="smoothness",
                  unit="frame")
    buf: deque[tuple[int, np.ndarray, np.ndarray]] = deque()  # (index, class-score maps or labels, own labels)
    changed: list[int] = []
    counts: list[int] = []
    kind = None  # "labels" | "probs"

    def prepare(i: int, x: Any):
        nonlocal kind
        a = np.asarray(x)
        k = "probs" if a.ndim == 3 else "labels"
        if kind is None:
            kind = k
        elif k != kind:
            raise ValueError(f"smoothness: frame {i} is {k} but earlier frames were {kind}")
        if k == "probs":
            if not np.issubdtype(a.dtype, np.floating):
                raise ValueError(f"smoothness: probabilities (C, H, W) must be float, got {a.dtype} for frame {i}")
            if num_classes is not None and a.shape[0] != num_classes:
                raise ValueError(f"smoothness: frame {i} has {a.shape[0]} classes, expected {num_classes}")
            own = a.argmax(axis=0).astype(np.int32)
            return a.astype(np.float32, copy=False), own
        lab = _compact_labels(a, where=f"smoothness: mask {i}")
        if num_classes is not None and np.any((lab >= num_classes) & (lab != void)):
            raise ValueError(f"smoothness: mask {i} has labels ≥ num_classes={num_classes}")
        return lab, lab

    def emit(center: int):
        items = [(i, d, o) for i, d, o in buf if abs(i - center) <= radius]
        own = next(o for i, _, o in items if i == center)
        if kind == "probs":
            acc = None
            wsum = 0.0
            for i, d, _ in items:
                wt = weights[i - center + radius]
                acc = d * wt if acc is None else acc + d * wt
                wsum += wt
            smoothed = (acc / wsum).argmax(axis=0)
            changed.append(int(np.count_nonzero(smoothed != own)))
            return
        classes = np.unique(np.concatenate([np.unique(d) for _, d, _ in items]))
        classes = classes[classes != void]
        best = np.full(own.shape, -1.0, dtype=np.float32)
        best_label = np.zeros(own.shape, dtype=own.dtype)
        for c in classes:  # ascending, strict '>' keeps the lowest class on ties
            score = np.zeros(own.shape, dtype=np.float32)
            for i, d, _ in items:
                score += np.float32(weights[i - center + radius]) * (d == c)
            better = score > best
            best[better] = score[better]
            best_label[better] = c
        changed.append(int(np.count_nonzero((best_label != own) & (own != void))))

    n_seen = 0
    for i, x in enumerate(it):
        data, own = prepare(i, x)
        counts.append(boundary_count(own, void=void))
        buf.append((i, data, own))
        n_seen = i + 1
        center = i - radius
        if center >= 0:
            emit(center)
        while buf and buf[0][0] < i - 2 * radius:
            buf.popleft()
    if n_seen == 0:
        raise ValueError("smoothness: no masks given")
    for center in range(max(0, n_seen - radius), n_seen):
        emit(center)
        while buf and buf[0][0] < center + 1 - radius:
            buf.popleft()
    norm = _resolve_normalizer(normalizer, np.asarray(counts))
    mean_changed = float(np.mean(changed))
    if not norm > 0:
        warnings.warn(f"smoothness: the median boundary count is {norm}; E_smooth is NaN", RuntimeWarning,
                      stacklevel=2)
        return float("nan")
    return mean_changed / norm
