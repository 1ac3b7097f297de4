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
from steadyseg.warp import (DEFAULT_THRESHOLDS, NEAREST_MAP_MAX_SIDE, ValidityThresholds, WarpWorkspace,
                            direction_counts, direction_counts_valid, nearest_sampling_map, valid_mask_u8,
                            warp_and_valid)


__all__ = [
    "VOID", "boundary_count", "boundary_map", "InconsistencyResult", "inconsistency", "inconsistency_many",
    "pair_inconsistency",
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
        tc: TC of the masks when computed in the same pass (:func:`inconsistency_many` with ``tc=True``), else
            None; not part of :meth:`to_dict`.
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
    tc: float | None = None

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
                  thresholds: ValidityThresholds = DEFAULT_THRESHOLDS,
                  valid_cache: Any = None) -> InconsistencyResult:
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
        valid_cache: optional store of the validity masks ``M[p→q]`` (which depend only on the flows), e.g. the
            ``FlowProvider`` itself: an object with ``get_valid(p, q, *, check_motion_boundary, thresholds)`` →
            ``(H, W) uint8`` (nonzero = valid) or None, called from the calling thread before the flows of the
            pair, and ``put_valid(p, q, mask, *, check_motion_boundary, thresholds)``, called (thread-safe) from
            the worker that computed a missing mask. With every mask cached only the labels are warped and
            compared. Results do not depend on it.

    Returns:
        :class:`InconsistencyResult`. ``E_cons`` is NaN with a ``RuntimeWarning`` when the median boundary is 0.
    """
    return inconsistency_many([masks], flows, window=window, normalizers=[normalizer],
                              check_motion_boundary=check_motion_boundary, progress=progress, void=void,
                              threads=threads, cv_threads=cv_threads, thresholds=thresholds,
                              valid_cache=valid_cache)[0]


def inconsistency_many(mask_videos: Sequence[Sequence[Any] | Iterable[Any]], flows: FlowFn, *, window: int = 3,
                       normalizers: Sequence[None | float | Sequence[Any]] | None = None,
                       check_motion_boundary: bool = True, progress: bool = False, void: int = VOID,
                       threads: int = 1, cv_threads: int | None = None,
                       thresholds: ValidityThresholds = DEFAULT_THRESHOLDS, valid_cache: Any = None,
                       tc: bool | Sequence[bool] = False) -> list[InconsistencyResult]:
    """:func:`inconsistency` of several mask videos of ONE video in one pass: each flow is read once and each
    validity mask ``M[p→q]`` computed (or read from ``valid_cache``) once for all of them.

    Args:
        mask_videos: N mask videos (each as ``masks`` of :func:`inconsistency`), all of the same length and size,
            read in lock step.
        normalizers: one ``normalizer`` (see :func:`inconsistency`) per mask video; None → each its own.
        tc: also compute TC (:func:`steadyseg.consistency_scores.temporal_consistency_tc` with ``use_valid``, tested
            equal) of each mask video (or of those flagged by a sequence of N bools) from the same warps, into
            :attr:`InconsistencyResult.tc`; needs
            ``check_motion_boundary`` (TC's valid mask always excludes motion boundaries). A mask video whose
            ``void`` does not fit its labels' dtype gets ``tc = None``.
        flows, window, check_motion_boundary, progress, void, threads, cv_threads, thresholds, valid_cache: as in
            :func:`inconsistency`.

    Returns:
        One :class:`InconsistencyResult` per mask video, in order; each equals :func:`inconsistency` of that video
        alone.
    """
    if int(threads) < 1:
        raise ValueError(f"inconsistency: threads must be ≥ 1, got {threads}")
    if int(window) < 1:
        raise ValueError(f"inconsistency: window must be ≥ 1, got {window}")
    window = int(window)
    videos = list(mask_videos)
    nv = len(videos)
    if nv == 0:
        raise ValueError("inconsistency_many: no mask videos given")
    tc_flags = [bool(tc)] * nv if isinstance(tc, (bool, np.bool_)) else [bool(x) for x in tc]
    if len(tc_flags) != nv:
        raise ValueError(f"inconsistency_many: {len(tc_flags)} tc flags for {nv} mask videos")
    if any(tc_flags) and not check_motion_boundary:
        raise ValueError("inconsistency_many: tc needs check_motion_boundary=True (TC's valid mask)")
    normalizers = [None] * nv if normalizers is None else list(normalizers)
    if len(normalizers) != nv:
        raise ValueError(f"inconsistency_many: {len(normalizers)} normalizers for {nv} mask videos")
    lengths = [len(v) if hasattr(v, "__len__") else None for v in videos]
    total = lengths[0]
    iters = [iter(v) for v in videos]

    def frames_in_step() -> Iterator[list[Any]]:
        while True:
            row, done = [], 0
            for it_k in iters:
                try:
                    row.append(next(it_k))
                except StopIteration:
                    done += 1
                    row.append(None)
            if done == nv:
                return
            if done:
                raise ValueError("inconsistency_many: the mask videos differ in length")
            yield row

    it: Iterable[list[Any]] = frames_in_step()
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, total=total, desc="inconsistency", unit="frame")
    recent: deque[tuple[int, list[np.ndarray]]] = deque(maxlen=window)
    per_pair: list[dict[tuple[int, int], float]] = [{} for _ in range(nv)]
    frame_sum: list[list[float]] = [[] for _ in range(nv)]
    frame_cnt: list[list[int]] = [[] for _ in range(nv)]
    counts: list[list[int]] = [[] for _ in range(nv)]
    tc_scores: list[list[float]] = [[] for _ in range(nv)]
    tc_missing = [False] * nv
    shape = None
    skipped_pairs = [0] * nv
    skipped_dirs = [0] * nv
    cache_kw = {"check_motion_boundary": check_motion_boundary, "thresholds": thresholds}
    # nearest sampling maps: cached beside M when the cache can hold them (FlowProvider), so that a warm run
    # warps with a stored int16 map instead of reading and adding a float flow (the same samples, tested)
    use_maps = valid_cache is not None and callable(getattr(valid_cache, "get_nearest_map", None))

    def direction(p: int, q: int, mps: list[tuple[np.ndarray, bool]], mqs: list[tuple[np.ndarray, bool]],
                  f_qp: np.ndarray | None, f_pq: np.ndarray | None, valid: np.ndarray | None,
                  nmap: np.ndarray | None, want_tc: bool, workspace: WarpWorkspace):
        """e(p→q) and Σ M of every mask video (+ the TC score of frame q when ``want_tc``). ``nmap``: the nearest
        sampling map of ``F[q→p]`` when cached (the flows are then None unless a video needs the general path)."""
        out: list[tuple[float, int]] = [(float("nan"), 0)] * nv
        tc_out: dict[int, float | None] = {}
        fast_a, fast_b, fast_k, fast_nv = [], [], [], []
        for k, ((mp, void_p), (mq, void_q)) in enumerate(zip(mps, mqs)):
            if mp.dtype != mq.dtype:
                mp, mq = mp.astype(np.uint16, copy=False), mq.astype(np.uint16, copy=False)
            if 0 <= void <= np.iinfo(mp.dtype).max:
                fast_a.append(mp)
                fast_b.append(mq)
                fast_k.append(k)
                fast_nv.append(not (void_p or void_q))
            else:  # a void label outside the labels' dtype range: the general path (no TC)
                if want_tc and tc_flags[k]:
                    tc_out[k] = None
                out[k] = direction_inconsistency(mp, mq, flow_p_to_q=f_pq, flow_q_to_p=f_qp,
                                                 check_motion_boundary=check_motion_boundary, void=void,
                                                 thresholds=thresholds, workspace=workspace)
        if fast_k:
            if valid is None:
                valid = valid_mask_u8(f_qp, f_pq, check_motion_boundary=check_motion_boundary,
                                      thresholds=thresholds, workspace=workspace)
                if valid_cache is not None:
                    valid_cache.put_valid(p, q, valid, **cache_kw)
            if nmap is None and use_maps:
                nmap = nearest_sampling_map(f_qp, workspace=workspace)
                valid_cache.put_nearest_map(q, p, nmap)
            wanted = tuple(i for i, k in enumerate(fast_k) if tc_flags[k]) if want_tc else ()
            cnt, hists = direction_counts_valid(fast_a, fast_b, None if nmap is not None else f_qp, valid, void=void,
                                                workspace=workspace, histograms=wanted, void_free=fast_nv,
                                                sampling_map=nmap)
            for i, k in enumerate(fast_k):
                n_diff, n = cnt[i]
                out[k] = (float(n_diff) / n, n) if n else (float("nan"), 0)
                if i in hists:
                    tc_out[k] = _tc_from_histograms(hists[i])
        return out, tc_out

    local = threading.local()

    def run_threaded(args):
        w = getattr(local, "ws", None)
        if w is None:
            w = local.ws = WarpWorkspace(*shape)
        return direction(*args, workspace=w)

    def collect(results):
        for p, q, (r_pq, tc_q), (r_qp, _) in results:
            for k in range(nv):
                (e_pq, n_pq), (e_qp, n_qp) = r_pq[k], r_qp[k]
                e, n_dirs = _combine_directions(e_pq, n_pq, e_qp, n_qp)
                skipped_dirs[k] += 2 - n_dirs
                per_pair[k][(p, q)] = e
                if n_dirs == 0:
                    skipped_pairs[k] += 1
                else:
                    for t in (p, q):
                        frame_sum[k][t] += e
                        frame_cnt[k][t] += 1
                if k in tc_q and tc_q[k] is None:
                    tc_missing[k] = True
                score = tc_q.get(k)
                if score is not None and np.isfinite(score):
                    tc_scores[k].append(score)

    # Threaded: the directions of frame q run in the pool while this thread reads frame q+1's masks and flows
    # (disk reads and CRCs release the GIL); at most two frames' flows are in flight. Results are collected in
    # frame order, so the sums are the same as in the serial loop.
    pool = ThreadPoolExecutor(max_workers=int(threads)) if int(threads) > 1 else None
    pending: deque[list] = deque()
    if cv_threads is None and pool is not None:
        cv_threads = 1
    with opencv_threads(cv_threads):
        try:
            for q, row in enumerate(it):
                mqs = [_compact_labels(m, where=f"inconsistency: mask {q}" + (f" of video {k}" if nv > 1 else ""))
                       for k, m in enumerate(row)]
                if shape is None:
                    shape = mqs[0].shape
                    ws = WarpWorkspace(*shape)
                    use_maps = use_maps and max(shape) <= NEAREST_MAP_MAX_SIDE
                for k, mq in enumerate(mqs):
                    if mq.shape != shape:
                        raise ValueError(f"inconsistency: mask {q}" + (f" of video {k}" if nv > 1 else "")
                                         + f" has shape {mq.shape}, mask 0 has {shape}")
                    counts[k].append(int(np.count_nonzero(boundary_map(mq, void=void))))
                    frame_sum[k].append(0.0)
                    frame_cnt[k].append(0)
                # (labels, whether they hold void): directions between void-free maps skip the void tests
                mqs = [(mq, bool(0 <= void <= np.iinfo(mq.dtype).max and (mq == void).any())) for mq in mqs]
                jobs = []
                for p, mps in recent:
                    v_pq = v_qp = n_qp = n_pq = None
                    if valid_cache is not None:
                        v_pq = valid_cache.get_valid(p, q, **cache_kw)
                        v_qp = valid_cache.get_valid(q, p, **cache_kw)
                        if use_maps and v_pq is not None and v_qp is not None:
                            n_qp = valid_cache.get_nearest_map(q, p)  # warps frame p's labels into q
                            n_pq = valid_cache.get_nearest_map(p, q)
                    f_pq = f_qp = None
                    if (n_qp is None or n_pq is None or _needs_general_path(mps, void)
                            or _needs_general_path(mqs, void)):  # else a warm run reads no flow at all
                        f_pq = np.asarray(flows(p, q), dtype=np.float32)
                        f_qp = np.asarray(flows(q, p), dtype=np.float32)
                        for name, f in (("p→q", f_pq), ("q→p", f_qp)):
                            if f.shape != (*shape, 2):
                                raise ValueError(f"inconsistency: flow {name} for pair ({p}, {q}) has shape "
                                                 f"{f.shape}, expected {(*shape, 2)}")
                    want_tc = any(tc_flags) and p == q - 1
                    jobs.append((p, (p, q, mps, mqs, f_qp, f_pq, v_pq, n_qp, want_tc),
                                 (q, p, mqs, mps, f_pq, f_qp, v_qp, n_pq, False)))
                if pool is None:
                    collect([(p, q, direction(*d1, workspace=ws), direction(*d2, workspace=ws))
                             for p, d1, d2 in jobs])
                else:
                    pending.append([(p, q, pool.submit(run_threaded, d1), pool.submit(run_threaded, d2))
                                    for p, d1, d2 in jobs])
                    while len(pending) > 1:
                        collect([(p, qq, a.result(), b.result()) for p, qq, a, b in pending.popleft()])
                recent.append((q, mqs))
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
    h, w = shape
    results = []
    for k in range(nv):
        values = [v for v in per_pair[k].values() if np.isfinite(v)]
        e_raw = float(np.mean(values)) if values else float("nan")
        if not values:
            warnings.warn("inconsistency: no frame pair had valid pixels (fewer than 2 frames, or the flow check "
                          "rejected everything); E_raw is NaN", RuntimeWarning, stacklevel=3)
        own = np.asarray(counts[k], dtype=np.int64)
        norm = _resolve_normalizer(normalizers[k], own)
        per_frame = np.array([s / c if c else np.nan for s, c in zip(frame_sum[k], frame_cnt[k])],
                             dtype=np.float64)
        tc_k = None
        if tc_flags[k]:
            tc_k = None if tc_missing[k] else (float(np.mean(tc_scores[k])) if tc_scores[k] else float("nan"))
        results.append(InconsistencyResult(
            e_cons=_finish_cons(e_raw, h * w, norm, name="inconsistency"), e_raw=e_raw, normalizer=norm,
            per_pair=per_pair[k], per_frame=per_frame, window=window, boundary_counts=own, height=h, width=w,
            skipped_pairs=skipped_pairs[k], skipped_directions=skipped_dirs[k], tc=tc_k))
    return results


def _needs_general_path(maps: list[tuple[np.ndarray, bool]], void: int) -> bool:
    """Whether a video's labels cannot hold ``void`` (their dtype's range): such directions take the general
    :func:`steadyseg.warp.direction_inconsistency` path, which needs the two flows."""
    return any(not 0 <= void <= np.iinfo(m.dtype).max for m, _ in maps)


def _tc_from_histograms(hist: np.ndarray) -> float:
    """TC score of one frame (mean IoU over the classes present) from the (3, L) label histograms of
    :func:`steadyseg.warp.direction_counts_valid` (kept pixels with ``O_t = l``, with ``W(O_{t−1}) = l``, with
    both); NaN when no pixel was kept. The same integers and float operations as
    :func:`steadyseg.consistency_scores.temporal_consistency_tc`."""
    n_cur, n_warped, n_both = hist
    classes = np.flatnonzero((n_cur > 0) | (n_warped > 0))  # np.union1d of the labels present: sorted
    if len(classes) == 0:
        return float("nan")
    ious = []
    for cl in classes:
        inter = int(n_both[cl])
        union = int(n_cur[cl]) + int(n_warped[cl]) - inter
        ious.append(1.0 if union == 0 else float(inter) / union)
    return float(np.mean(ious))


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
    present: dict[int, np.ndarray] = {}  # labels: frame index -> its labels, sorted

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
        if lab.dtype == np.uint8:  # the labels present, sorted (np.unique's result, by a histogram)
            present[i] = np.flatnonzero(np.bincount(lab.reshape(-1), minlength=256)).astype(np.uint8)
        else:
            present[i] = np.unique(lab)
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
        classes = np.unique(np.concatenate([present[i] for i, _, _ in items]))
        classes = classes[classes != void]
        # Only pixels where some frame of the window differs from the centre can change: elsewhere the centre's own
        # label has the only positive score (or the centre is void, which is not counted). The per-class scores
        # are computed, with the same float32 operations in the same order, on those pixels only.
        varying = np.zeros(own.shape, dtype=bool)
        for _, d, _ in items:
            varying |= d != own
        idx = np.flatnonzero(varying)
        own_v = own.reshape(-1)[idx]
        sub = [(i, d.reshape(-1)[idx]) for i, d, _ in items]
        best = np.full(own_v.shape, -1.0, dtype=np.float32)
        best_label = np.zeros(own_v.shape, dtype=own.dtype)
        for c in classes:  # ascending, strict '>' keeps the lowest class on ties
            score = np.zeros(own_v.shape, dtype=np.float32)
            for i, d in sub:
                score += np.float32(weights[i - center + radius]) * (d == c)
            better = score > best
            best[better] = score[better]
            best_label[better] = c
        changed.append(int(np.count_nonzero((best_label != own_v) & (own_v != void))))

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
            present.pop(buf.popleft()[0], None)
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
