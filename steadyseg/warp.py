"""Flow warping, occlusion and motion-boundary masks (numpy per frame, torch batched and differentiable).

Conventions (shared by the whole project; the measures built on them are defined in ``docs/measures.md``):

- A flow ``F[a→b]`` is a float array of displacements **in pixels** that maps pixel ``x`` of frame ``a`` to
  ``x + F(x)`` in frame ``b``. Channel 0 is ``dx`` (columns, to the right), channel 1 is ``dy`` (rows, down).
  numpy flows are ``(H, W, 2)`` float32; torch flows are ``(B, 2, H, W)``.
- Pixel centres sit at integer coordinates ``0 … W−1`` / ``0 … H−1`` (``align_corners=True`` in torch terms).
- The backward warp of ``O_p`` into frame ``q`` reads ``O_p`` where each pixel of ``q`` lands in ``p``:
  ``W(O_p)(x) = O_p(x + F[q→p](x))``. Nearest neighbour for labels (round half to even, as both ``cv2.remap`` and
  ``torch.grid_sample`` do), bilinear for probabilities and flows. Samples outside the frame read ``fill``
  (numpy) or 0 (torch); :func:`out_of_frame` flags them so they can be masked out.
- ``M[p→q]`` (:func:`valid_mask`) is defined on the pixels of frame ``q`` and is True where the target
  ``x + F[q→p](x)`` is inside frame ``p``, the forward–backward check passes and (optionally) ``x`` is not on a
  motion boundary of ``F[q→p]``. The four constants of those checks are one :class:`ValidityThresholds`
  (default :data:`DEFAULT_THRESHOLDS`), passed as ``thresholds=`` to every function that uses them.

Every function takes numpy arrays **or** torch tensors and dispatches on the type; the torch implementations are
also public with a ``_torch`` suffix. torch versions are batched: flows ``(B, 2, H, W)``, masks ``(B, 1, H, W)``
bool. torch is imported lazily, so the numpy path never pays for importing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from steadyseg.labels import VOID

__all__ = [
    "ValidityThresholds", "DEFAULT_THRESHOLDS",
    "backward_warp", "out_of_frame", "forward_backward_valid", "motion_boundary", "valid_mask",
    "backward_warp_torch", "out_of_frame_torch", "forward_backward_valid_torch", "motion_boundary_torch",
    "valid_mask_torch", "flow_magnitude_sq", "warp_and_valid", "direction_counts", "WarpWorkspace",
    "valid_mask_u8", "direction_counts_valid", "nearest_sampling_map",
]

_MODES = ("nearest", "bilinear")
BAND_ROWS = 64  # rows per band in direction_counts (a band's intermediates fit the CPU cache)


@dataclass(frozen=True)
class ValidityThresholds:
    """The four constants of the flow-validity checks, one frozen value shared by the measures and the loss.

    Attributes:
        fb_alpha: forward–backward check, relative term (≥ 0): a pixel is consistent where
            ``|a + b|² < fb_alpha·(|a|² + |b|²) + fb_beta`` with ``a = F[q→p](x)``, ``b = F[p→q](x + a)``.
        fb_beta: forward–backward check, absolute term in pixels² (≥ 0).
        mb_alpha: motion-boundary check, relative term (≥ 0): a pixel is on a motion boundary where
            ``|∇u|² + |∇v|² > mb_alpha·|F|² + mb_beta``.
        mb_beta: motion-boundary check, absolute term (≥ 0).

    The defaults (0.01, 0.5, 0.01, 0.002) are the occlusion and motion-boundary tests of Sundaram, Brox and
    Keutzer (ECCV 2010); every measure and loss of steadyseg uses them (:data:`DEFAULT_THRESHOLDS`).
    """

    fb_alpha: float = 0.01
    fb_beta: float = 0.5
    mb_alpha: float = 0.01
    mb_beta: float = 0.002

    def __post_init__(self) -> None:
        for name in ("fb_alpha", "fb_beta", "mb_alpha", "mb_beta"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
                raise ValueError(f"ValidityThresholds.{name} must be a number >= 0, got {value!r}")


DEFAULT_THRESHOLDS = ValidityThresholds()


def _check_thresholds(thresholds: Any, where: str) -> ValidityThresholds:
    if not isinstance(thresholds, ValidityThresholds):
        raise TypeError(f"{where}: thresholds must be a ValidityThresholds, got {type(thresholds).__name__}")
    return thresholds


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


# ----------------------------------------------------------------------------------------------------------- numpy
def _check_flow_np(flow: np.ndarray, name: str = "flow") -> np.ndarray:
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"{name}: expected an H×W×2 flow (dx, dy) in pixels, got shape {flow.shape}")
    return flow.astype(np.float32, copy=False)


def _check_flow_pair(flow_q_to_p: np.ndarray, flow_p_to_q: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Both flows of a direction as C-contiguous float32 (H, W, 2) arrays of one shape (``ValueError`` otherwise)."""
    f = np.ascontiguousarray(_check_flow_np(flow_q_to_p, "flow_q_to_p"))
    g = np.ascontiguousarray(_check_flow_np(flow_p_to_q, "flow_p_to_q"))
    if g.shape != f.shape:
        raise ValueError(f"{where}: flow shapes differ: {f.shape} vs {g.shape}")
    return f, g


def _workspace(workspace: "WarpWorkspace | None", h: int, w: int) -> "WarpWorkspace":
    """``workspace`` when it has the frame size, else a new :class:`WarpWorkspace`."""
    return workspace if workspace is not None and workspace.shape == (h, w) else WarpWorkspace(h, w)


def flow_magnitude_sq(flow: np.ndarray) -> np.ndarray:
    """``|F|² = u² + v²`` of an (H, W, 2) flow as float32 (H, W)."""
    u, v = flow[..., 0], flow[..., 1]
    out = u * u
    out += v * v
    return out


class WarpWorkspace:
    """Reusable scratch buffers for the numpy checks on (H, W) frames.

    Allocating fresh multi-megabyte arrays for every pair costs page faults that, on a busy machine, dominate the
    arithmetic. :func:`steadyseg.measures.inconsistency` makes one workspace per
    video (per thread) and passes it to :func:`warp_and_valid` / :func:`direction_counts`; arrays returned with a
    workspace are views of its buffers and are overwritten by the next call that uses it. Not thread-safe: use one
    workspace per thread.

    ``grid`` is the (H, W, 2) float32 pixel-coordinate grid (x, y), built once; ``x + F(x)`` is one ``cv2.add``.
    """

    def __init__(self, height: int, width: int):
        h, w = int(height), int(width)
        self.shape = (h, w)
        xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        self.grid = np.ascontiguousarray(np.dstack([xs, ys]))
        self._warped: dict[tuple, np.ndarray] = {}
        self._bands: dict[str, np.ndarray] | None = None

    # full-frame scratch arrays of the bool / public-function path (_Geom), allocated on first use, so that the
    # banded direction_counts path holds only the grid and its band buffers
    _FULL = {"map2": (2, np.float32), "v2a": (2, np.float32), "v2b": (2, np.float32), "s1": (0, np.float32),
             "s2": (0, np.float32), "s3": (0, np.float32), "valid": (0, bool), "b1": (0, bool), "b2": (0, bool),
             "u3": (0, np.uint8)}

    def __getattr__(self, name: str) -> np.ndarray:
        spec = WarpWorkspace._FULL.get(name)
        if spec is None:
            raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")
        channels, dtype = spec
        arr = np.empty(self.shape + ((channels,) if channels else ()), dtype)
        setattr(self, name, arr)
        return arr

    def band_buffers(self) -> dict[str, np.ndarray]:
        """Scratch arrays of ``BAND_ROWS + 2`` rows for :func:`direction_counts` (allocated on first use)."""
        if self._bands is None:
            r, w = min(BAND_ROWS, self.shape[0]) + 2, self.shape[1]
            self._bands = {"map2": np.empty((r, w, 2), np.float32), "v2a": np.empty((r, w, 2), np.float32),
                           "v2b": np.empty((r, w, 2), np.float32), "s1": np.empty((r, w), np.float32),
                           "s2": np.empty((r, w), np.float32), "s3": np.empty((r, w), np.float32),
                           "u1": np.empty((r, w), np.uint8), "u2": np.empty((r, w), np.uint8),
                           "warped8": np.empty((r, w), np.uint8), "warped16": np.empty((r, w), np.uint16)}
        return self._bands

    def warped(self, like: np.ndarray) -> np.ndarray:
        key = (like.shape, like.dtype.str)
        buf = self._warped.get(key)
        if buf is None:
            buf = self._warped[key] = np.empty(like.shape, like.dtype)
        return buf


class _Geom:
    """One numpy flow F[q→p] with its absolute sampling map ``x + F[q→p](x)``, computed once and shared by the checks.

    The map is one (H, W, 2) float32 array (``cv2.remap``'s two-channel map form: same samples as separate x / y
    maps, one pass fewer). All arithmetic writes into the workspace's buffers (``out=`` / ``dst=``); only the
    channel sums read strided planes (numpy reductions over a trailing axis of size 2 are slow).
    """

    __slots__ = ("flow", "ws", "_mag_sq")

    def __init__(self, flow: np.ndarray, name: str = "flow", ws: WarpWorkspace | None = None):
        self.flow = np.ascontiguousarray(_check_flow_np(flow, name))
        h, w = self.flow.shape[:2]
        self.ws = ws = _workspace(ws, h, w)
        cv2.add(self.flow, ws.grid, dst=ws.map2)
        self._mag_sq = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.ws.shape

    def mag_sq(self) -> np.ndarray:
        """|F|² in ``ws.s1`` (kept for the life of this object)."""
        if self._mag_sq is None:
            self._mag_sq = _channel_sum_sq(self.flow, tmp=self.ws.v2a, out=self.ws.s1)
        return self._mag_sq

    def in_frame_u8(self, out: np.ndarray | None = None) -> np.ndarray:
        """uint8, 255 where ``x + F(x)`` lies in ``[0, W−1] × [0, H−1]`` (the complement of :meth:`out_of_frame`)."""
        h, w = self.ws.shape
        return cv2.inRange(self.ws.map2, (0.0, 0.0), (float(w - 1), float(h - 1)), dst=out)

    def out_of_frame(self, out: np.ndarray | None = None) -> np.ndarray:
        inside = self.in_frame_u8(out=self.ws.u3)
        return np.equal(inside, 0, out=out)

    def _fb_lhs_rhs(self, flow_pq: np.ndarray, alpha: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
        ws = self.ws
        flow_pq = _check_flow_np(flow_pq, "flow_p_to_q")
        if flow_pq.shape != self.flow.shape:
            raise ValueError(f"forward_backward_valid: flow shapes differ: {self.flow.shape} vs {flow_pq.shape}")
        mag = self.mag_sq()
        # F[p→q] read at x + F[q→p](x): bilinear (cv2's 1/32-pixel fixed-point weights); outside the frame it
        # reads replicated border values, and those pixels are removed separately by the out-of-frame test
        back = cv2.remap(flow_pq, ws.map2, None, cv2.INTER_LINEAR, dst=ws.v2b, borderMode=cv2.BORDER_REPLICATE)
        rhs = _channel_sum_sq(back, tmp=ws.v2a, out=ws.s2)
        rhs += mag
        rhs *= alpha
        rhs += beta
        np.add(back, self.flow, out=back)  # F[q→p] + F[p→q](x + F[q→p])
        lhs = _channel_sum_sq(back, tmp=back, out=ws.s3)
        return lhs, rhs

    def fb_valid(self, flow_pq: np.ndarray, alpha: float, beta: float, out: np.ndarray | None = None) -> np.ndarray:
        lhs, rhs = self._fb_lhs_rhs(flow_pq, alpha, beta)
        return np.less(lhs, rhs, out=out)

    def _mb_grad_rhs(self, alpha: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
        ws = self.ws
        mag = self.mag_sq()
        # central differences with replicated borders (half one-sided differences at the image edge)
        g = cv2.filter2D(self.flow, cv2.CV_32F, _DX_KERNEL, dst=ws.v2a, borderType=cv2.BORDER_REPLICATE)
        grad_sq = _channel_sum_sq(g, tmp=g, out=ws.s2)
        g = cv2.filter2D(self.flow, cv2.CV_32F, _DY_KERNEL, dst=ws.v2b, borderType=cv2.BORDER_REPLICATE)
        grad_sq += _channel_sum_sq(g, tmp=g, out=ws.s3)
        rhs = np.multiply(mag, np.float32(alpha), out=ws.s3)
        rhs += beta
        return grad_sq, rhs

    def motion_boundary(self, alpha: float, beta: float, out: np.ndarray | None = None) -> np.ndarray:
        grad_sq, rhs = self._mb_grad_rhs(alpha, beta)
        return np.greater(grad_sq, rhs, out=out)

    def warp(self, src: np.ndarray, mode: str, fill: float, *, reuse: bool = False) -> np.ndarray:
        interp = cv2.INTER_NEAREST if mode == "nearest" else cv2.INTER_LINEAR
        dst = self.ws.warped(src) if reuse else None
        return cv2.remap(src, self.ws.map2, None, interp, dst=dst, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=fill)


def _channel_sum_sq(a: np.ndarray, *, tmp: np.ndarray | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """``a[..., 0]² + a[..., 1]²`` of an (H, W, 2) float32 array (``tmp`` may be ``a`` itself: squares in place)."""
    sq = np.multiply(a, a, out=tmp)
    return np.add(sq[..., 0], sq[..., 1], out=out)


_DX_KERNEL = np.array([[-0.5, 0.0, 0.5]], dtype=np.float32)
_DY_KERNEL = _DX_KERNEL.T.copy()


def _backward_warp_np(src: np.ndarray, flow: np.ndarray | _Geom, mode: str, fill: float) -> np.ndarray:
    geom = flow if isinstance(flow, _Geom) else _Geom(flow, "flow_q_to_p")
    src = np.asarray(src)
    if src.ndim not in (2, 3) or src.shape[:2] != geom.shape:
        raise ValueError(f"backward_warp: src must be (H, W) or (H, W, C) with H, W = {geom.shape}, "
                         f"got {src.shape}")
    work = src
    if src.dtype == np.bool_:
        work = src.astype(np.uint8)
    elif src.dtype not in (np.uint8, np.int16, np.uint16, np.float32, np.float64):
        if mode == "bilinear":
            work = src.astype(np.float32)
        elif src.size and (src.min() < 0 or src.max() > 65535):
            raise ValueError(f"backward_warp: labels must be in [0, 65535] for nearest warping, got dtype "
                             f"{src.dtype} with range [{src.min()}, {src.max()}]")
        else:
            work = src.astype(np.uint16)
    if work.ndim == 3 and work.shape[2] > 4:  # cv2.remap handles at most 4 channels at once
        out = np.stack([_backward_warp_np(work[..., c], geom, mode, fill) for c in range(work.shape[2])], axis=-1)
        return out.astype(src.dtype, copy=False)
    out = geom.warp(work, mode, fill)
    if out.ndim == 2 and src.ndim == 3:  # cv2 drops a trailing channel axis of size 1
        out = out[..., None]
    return out.astype(src.dtype, copy=False)


def _out_of_frame_np(flow: np.ndarray) -> np.ndarray:
    return _Geom(flow).out_of_frame()


def _fb_valid_np(flow_qp: np.ndarray, flow_pq: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    return _Geom(flow_qp, "flow_q_to_p").fb_valid(flow_pq, alpha, beta)


def _motion_boundary_np(flow: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    return _Geom(flow).motion_boundary(alpha, beta)


def _valid_mask_np(geom: _Geom, flow_pq: np.ndarray, check_motion_boundary: bool, th: ValidityThresholds, *,
                   reuse: bool = False) -> np.ndarray:
    ws = geom.ws
    m = geom.fb_valid(flow_pq, th.fb_alpha, th.fb_beta, out=ws.valid if reuse else None)
    bad = geom.out_of_frame(out=ws.b1)
    m &= np.logical_not(bad, out=bad)
    if check_motion_boundary:
        bad = geom.motion_boundary(th.mb_alpha, th.mb_beta, out=ws.b1)
        m &= np.logical_not(bad, out=bad)
    return m


def _band_valid(f: np.ndarray, g: np.ndarray, grid: np.ndarray, r0: int, r1: int, bb: dict[str, np.ndarray],
                th: ValidityThresholds, check_motion_boundary: bool) -> tuple[np.ndarray, np.ndarray]:
    """``M[p→q]`` of rows ``r0:r1`` as uint8 0/255 (in ``bb["u1"]``) and the band's sampling map ``x + F[q→p](x)``
    (in ``bb["map2"]``), from contiguous float32 flows ``f = F[q→p]``, ``g = F[p→q]`` (the one implementation of the
    banded checks: :func:`direction_counts` and :func:`valid_mask_u8` both use it)."""
    h, w = f.shape[:2]
    n = r1 - r0
    hi = (float(w - 1), float(h - 1))
    fq = f[r0:r1]
    map2 = cv2.add(fq, grid[r0:r1], dst=bb["map2"][:n])
    # forward–backward check (same operations and order as _Geom.fb_valid)
    back = cv2.remap(g, map2, None, cv2.INTER_LINEAR, dst=bb["v2b"][:n], borderMode=cv2.BORDER_REPLICATE)
    mag = _channel_sum_sq(fq, tmp=bb["v2a"][:n], out=bb["s1"][:n])
    rhs = _channel_sum_sq(back, tmp=bb["v2a"][:n], out=bb["s2"][:n])
    rhs += mag
    rhs *= th.fb_alpha
    rhs += th.fb_beta
    np.add(back, fq, out=back)
    lhs = _channel_sum_sq(back, tmp=back, out=bb["s3"][:n])
    m = cv2.compare(lhs, rhs, cv2.CMP_LT, dst=bb["u1"][:n])
    cv2.bitwise_and(m, cv2.inRange(map2, (0.0, 0.0), hi, dst=bb["u2"][:n]), dst=m)
    if check_motion_boundary:  # same operations and order as _Geom.motion_boundary
        gx = cv2.filter2D(fq, cv2.CV_32F, _DX_KERNEL, dst=bb["v2a"][:n], borderType=cv2.BORDER_REPLICATE)
        grad_sq = _channel_sum_sq(gx, tmp=gx, out=bb["s2"][:n])
        e0, e1 = max(0, r0 - 1), min(h, r1 + 1)
        gy = cv2.filter2D(f[e0:e1], cv2.CV_32F, _DY_KERNEL, dst=bb["v2b"][:e1 - e0],
                          borderType=cv2.BORDER_REPLICATE)[r0 - e0:r0 - e0 + n]
        grad_sq += _channel_sum_sq(gy, tmp=bb["v2a"][:n], out=bb["s3"][:n])
        mb_rhs = np.multiply(mag, np.float32(th.mb_alpha), out=bb["s3"][:n])
        mb_rhs += th.mb_beta
        cv2.bitwise_and(m, cv2.compare(grad_sq, mb_rhs, cv2.CMP_LE, dst=bb["u2"][:n]), dst=m)
    return m, map2


def direction_counts(src_p: np.ndarray, labels_q: np.ndarray, flow_q_to_p: np.ndarray, flow_p_to_q: np.ndarray, *,
                     void: int = VOID, check_motion_boundary: bool = True,
                     thresholds: ValidityThresholds = DEFAULT_THRESHOLDS,
                     workspace: WarpWorkspace | None = None) -> tuple[int, int]:
    """Counts behind ``e(p→q)``: ``(#disagreeing, #valid)`` pixels of frame ``q`` (the measures' inner loop).

    ``#valid = Σ M`` with ``M = valid_mask(F[q→p], F[p→q]) ∧ O_q ≠ void ∧ W(O_p) ≠ void`` and
    ``#disagreeing = Σ M ∧ (W(O_p) ≠ O_q)``, where ``W(O_p)(x) = O_p(x + F[q→p](x))`` (nearest, ``void`` outside
    the frame). Same decisions as :func:`warp_and_valid` followed by the comparisons, computed with uint8 0/255
    masks (``cv2.compare`` / ``cv2.bitwise_and`` / ``cv2.countNonZero``), in row bands of :data:`BAND_ROWS` rows
    held in the workspace's buffers (tested equal, pixel for pixel, to the plain full-frame formulas).

    Args:
        src_p, labels_q: (H, W) uint8 or uint16 label maps of frames p and q (same dtype).
        flow_q_to_p, flow_p_to_q: (H, W, 2) float32 flows in pixels (dx, dy).
        void: the ignored label.
        check_motion_boundary: also exclude the motion boundaries of ``F[q→p]`` from ``M``.
        thresholds: the constants of the validity checks (:class:`ValidityThresholds`).
        workspace: optional :class:`WarpWorkspace` of the frame size (one per thread).

    Returns:
        ``(n_diff, n_valid)`` as Python ints.
    """
    th = _check_thresholds(thresholds, "direction_counts")
    f, g = _check_flow_pair(flow_q_to_p, flow_p_to_q, "direction_counts")
    h, w = f.shape[:2]
    for name, lab in (("src_p", src_p), ("labels_q", labels_q)):
        if lab.ndim != 2 or lab.shape != (h, w) or lab.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"direction_counts: {name} must be an (H, W) uint8/uint16 label map with H, W = "
                             f"{(h, w)}, got {lab.shape} {lab.dtype}")
    if src_p.dtype != labels_q.dtype:
        raise ValueError(f"direction_counts: label dtypes differ: {src_p.dtype} vs {labels_q.dtype}")
    ws = _workspace(workspace, h, w)
    src_p, labels_q = np.ascontiguousarray(src_p), np.ascontiguousarray(labels_q)
    bb = ws.band_buffers()
    wbuf = bb["warped8"] if src_p.dtype == np.uint8 else bb["warped16"]
    fill = float(void)
    rows = bb["s1"].shape[0] - 2
    n_diff = n_valid = 0
    # Row bands of BAND_ROWS rows: every step is per pixel (remap, compare) or per row (the x gradient), so a band
    # gives exactly the full-frame values while its ~3 MB of intermediates stay in the CPU cache. The y gradient
    # reads one extra row on each side.
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        n = r1 - r0
        m, map2 = _band_valid(f, g, ws.grid, r0, r1, bb, th, check_motion_boundary)
        warped = cv2.remap(src_p, map2, None, cv2.INTER_NEAREST, dst=wbuf[:n], borderMode=cv2.BORDER_CONSTANT,
                           borderValue=fill)
        lq = labels_q[r0:r1]
        cv2.bitwise_and(m, cv2.compare(lq, fill, cv2.CMP_NE, dst=bb["u2"][:n]), dst=m)
        cv2.bitwise_and(m, cv2.compare(warped, fill, cv2.CMP_NE, dst=bb["u2"][:n]), dst=m)
        n_valid += cv2.countNonZero(m)
        diff = cv2.compare(warped, lq, cv2.CMP_NE, dst=bb["u2"][:n])
        cv2.bitwise_and(diff, m, dst=diff)
        n_diff += cv2.countNonZero(diff)
    if n_valid == 0:
        return 0, 0
    return int(n_diff), int(n_valid)


def valid_mask_u8(flow_q_to_p: np.ndarray, flow_p_to_q: np.ndarray, *, check_motion_boundary: bool = True,
                  thresholds: ValidityThresholds = DEFAULT_THRESHOLDS, workspace: WarpWorkspace | None = None,
                  out: np.ndarray | None = None) -> np.ndarray:
    """``M[p→q]`` as an (H, W) uint8 map, 255 where valid and 0 elsewhere: exactly the mask :func:`direction_counts`
    uses before it removes the void pixels (the same banded operations, shared code), for caching.

    Args:
        flow_q_to_p, flow_p_to_q: (H, W, 2) float32 flows in pixels (dx, dy).
        check_motion_boundary, thresholds: as in :func:`direction_counts`.
        workspace: optional :class:`WarpWorkspace` of the frame size (one per thread).
        out: optional (H, W) uint8 C-contiguous array to write into.

    Returns:
        ``out`` (or a new array): (H, W) uint8 in {0, 255}.
    """
    th = _check_thresholds(thresholds, "valid_mask_u8")
    f, g = _check_flow_pair(flow_q_to_p, flow_p_to_q, "valid_mask_u8")
    h, w = f.shape[:2]
    if out is None:
        out = np.empty((h, w), np.uint8)
    elif out.shape != (h, w) or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"valid_mask_u8: out must be a C-contiguous (H, W) uint8 array with H, W = {(h, w)}")
    ws = _workspace(workspace, h, w)
    bb = ws.band_buffers()
    rows = bb["s1"].shape[0] - 2
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        m, _ = _band_valid(f, g, ws.grid, r0, r1, bb, th, check_motion_boundary)
        out[r0:r1] = m
    return out


NEAREST_MAP_MAX_SIDE = 32767  # int16 coordinates: larger frames keep the float flow


def nearest_sampling_map(flow_q_to_p: np.ndarray, *, workspace: WarpWorkspace | None = None) -> np.ndarray:
    """The nearest-neighbour sampling map ``x + F[q→p](x)`` of a flow as OpenCV's ``(H, W, 2) int16`` map.

    ``cv2.remap(src, map, None, cv2.INTER_NEAREST)`` with it gives exactly what the float map ``x + F(x)`` gives
    (OpenCV rounds float coordinates to integers in the same way; coordinates beyond the int16 range saturate and
    stay outside the frame; tested at half-pixel ties and far-out coordinates, and checked pixel for pixel on DAVIS
    flows), from half the bytes of a flow and without the float addition, so it is what
    :class:`steadyseg.datasets.flow.FlowCache` keeps for warm measures.

    Args:
        flow_q_to_p: (H, W, 2) float32 flow in pixels (dx, dy); H, W ≤ :data:`NEAREST_MAP_MAX_SIDE`.
        workspace: optional :class:`WarpWorkspace` of the frame size (its pixel grid is reused).

    Returns:
        (H, W, 2) int16: (x, y) of the source pixel, rounded.
    """
    f = np.ascontiguousarray(_check_flow_np(flow_q_to_p, "flow_q_to_p"))
    h, w = f.shape[:2]
    if max(h, w) > NEAREST_MAP_MAX_SIDE:
        raise ValueError(f"nearest_sampling_map: frames of {h}×{w} exceed the int16 map's {NEAREST_MAP_MAX_SIDE} px")
    ws = _workspace(workspace, h, w)
    nmap, _ = cv2.convertMaps(cv2.add(f, ws.grid), None, cv2.CV_16SC2, nninterpolation=True)
    return nmap


def direction_counts_valid(srcs_p: list[np.ndarray], labels_q: list[np.ndarray], flow_q_to_p: np.ndarray | None,
                           valid: np.ndarray, *, void: int = VOID, workspace: WarpWorkspace | None = None,
                           histograms: tuple[int, ...] = (), void_free: list[bool] | None = None,
                           sampling_map: np.ndarray | None = None
                           ) -> tuple[list[tuple[int, int]], dict[int, np.ndarray]]:
    """:func:`direction_counts` of one direction for several label videos at once, with ``M[p→q]`` given.

    ``valid`` is the (H, W) uint8 mask of :func:`valid_mask_u8` (nonzero = valid; e.g. 0/1 as read from a cache),
    so only the labels are warped (nearest, ``void`` outside the frame, with the sampling map ``x + F[q→p](x)``
    computed once for all videos, or given as ``sampling_map``) and compared. The counts equal
    :func:`direction_counts` with the flows that gave ``valid`` (tested).

    Args:
        srcs_p, labels_q: for each video, the (H, W) uint8 or uint16 label maps of frames p and q (one dtype per
            video).
        flow_q_to_p: (H, W, 2) float32 flow in pixels (dx, dy); None when ``sampling_map`` is given.
        valid: (H, W) uint8, nonzero where ``M[p→q]`` holds.
        void: the ignored label.
        workspace: optional :class:`WarpWorkspace` of the frame size (one per thread).
        histograms: indices of the videos whose label histograms over the counted pixels are wanted (for TC).
        void_free: for each video, True when neither of its two maps holds ``void`` (the caller's promise): its
            counted pixels are then exactly ``M`` (``W(O_p)`` is void only outside the frame, which ``M`` already
            excludes), and the void tests are skipped. Same counts.
        sampling_map: instead of the flow, its :func:`nearest_sampling_map` ((H, W, 2) int16). Same counts.

    Returns:
        ``([(n_diff, n_valid) per video], {index: (3, L) int64})``: per label ``l < L`` (L = 256 for uint8, 65536
        for uint16 labels) the counted pixels with ``O_q = l``, with ``W(O_p) = l``, and with both; ``(0, 0)`` for a
        video without a counted pixel.
    """
    if (flow_q_to_p is None) == (sampling_map is None):
        raise ValueError("direction_counts_valid: give exactly one of flow_q_to_p and sampling_map")
    if sampling_map is not None:
        f = None
        smap = np.ascontiguousarray(sampling_map)
        if smap.ndim != 3 or smap.shape[2] != 2 or smap.dtype != np.int16:
            raise ValueError(f"direction_counts_valid: sampling_map must be (H, W, 2) int16, got {smap.shape} "
                             f"{smap.dtype}")
        h, w = smap.shape[:2]
    else:
        f = np.ascontiguousarray(_check_flow_np(flow_q_to_p, "flow_q_to_p"))
        h, w = f.shape[:2]
    valid = np.ascontiguousarray(valid)
    if valid.shape != (h, w) or valid.dtype != np.uint8:
        raise ValueError(f"direction_counts_valid: valid must be an (H, W) uint8 mask with H, W = {(h, w)}, got "
                         f"{valid.shape} {valid.dtype}")
    if len(srcs_p) != len(labels_q):
        raise ValueError("direction_counts_valid: srcs_p and labels_q differ in length")
    srcs_p = [np.ascontiguousarray(a) for a in srcs_p]
    labels_q = [np.ascontiguousarray(a) for a in labels_q]
    for k, (a, b) in enumerate(zip(srcs_p, labels_q)):
        for lab in (a, b):
            if lab.ndim != 2 or lab.shape != (h, w) or lab.dtype not in (np.uint8, np.uint16) or a.dtype != b.dtype:
                raise ValueError(f"direction_counts_valid: video {k}: labels must be (H, W) uint8/uint16 maps of one "
                                 f"dtype with H, W = {(h, w)}, got {a.shape} {a.dtype} and {b.shape} {b.dtype}")
    ws = _workspace(workspace, h, w)
    bb = ws.band_buffers()
    rows = bb["s1"].shape[0] - 2
    fill = float(void)
    n_diff = [0] * len(srcs_p)
    n_valid = [0] * len(srcs_p)
    hists: dict[int, np.ndarray] = {}
    keep: dict[int, tuple[np.ndarray, ...]] = {}
    n_all = None  # Σ M, once for all void-free videos
    if void_free is not None and len(void_free) != len(srcs_p):
        raise ValueError("direction_counts_valid: void_free and srcs_p differ in length")
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        n = r1 - r0
        map2 = smap[r0:r1] if f is None else cv2.add(f[r0:r1], ws.grid[r0:r1], dst=bb["map2"][:n])
        vb = valid[r0:r1]
        for k, (src_p, lab_q) in enumerate(zip(srcs_p, labels_q)):
            wbuf = bb["warped8"] if src_p.dtype == np.uint8 else bb["warped16"]
            warped = cv2.remap(src_p, map2, None, cv2.INTER_NEAREST, dst=wbuf[:n], borderMode=cv2.BORDER_CONSTANT,
                               borderValue=fill)
            lq = lab_q[r0:r1]
            if void_free is not None and void_free[k]:  # no void in either map: the counted pixels are M
                m = vb
                if n_all is None:
                    n_all = cv2.countNonZero(valid)
                n_valid[k] = n_all
            else:
                m = cv2.compare(lq, fill, cv2.CMP_NE, dst=bb["u1"][:n])
                cv2.bitwise_and(m, vb, dst=m)
                cv2.bitwise_and(m, cv2.compare(warped, fill, cv2.CMP_NE, dst=bb["u2"][:n]), dst=m)
                n_valid[k] += cv2.countNonZero(m)
            diff = cv2.compare(warped, lq, cv2.CMP_NE, dst=bb["u2"][:n])
            cv2.bitwise_and(diff, m, dst=diff)
            n_diff[k] += cv2.countNonZero(diff)
            if k in histograms:  # keep the band's maps; one joint histogram at the end
                if k not in keep:
                    keep[k] = (np.empty((h, w), src_p.dtype), np.empty((h, w), src_p.dtype), np.empty((h, w), np.uint8))
                kq, kw, km = keep[k]
                kq[r0:r1] = lq
                kw[r0:r1] = warped
                km[r0:r1] = m
    for k in histograms:
        kq, kw, km = keep[k]
        if kq.dtype == np.uint8 and h * w < 1 << 24:
            # the joint (O_q, W(O_p)) histogram in one pass; calcHist counts in float32, exact below 2**24
            joint = cv2.calcHist([kq, kw], [0, 1], km, [256, 256], [0, 256, 0, 256]).astype(np.int64)
            hists[k] = np.stack([joint.sum(axis=1), joint.sum(axis=0), np.diagonal(joint)])
        else:
            levels = 256 if kq.dtype == np.uint8 else 65536
            sel = km != 0
            a, b = kq[sel], kw[sel]
            hists[k] = np.stack([np.bincount(a, minlength=levels), np.bincount(b, minlength=levels),
                                 np.bincount(a[a == b], minlength=levels)]).astype(np.int64)
    counts = [(0, 0) if nv == 0 else (int(nd), int(nv)) for nd, nv in zip(n_diff, n_valid)]
    return counts, hists


def warp_and_valid(src: np.ndarray, flow_q_to_p: np.ndarray, flow_p_to_q: np.ndarray, *, mode: str = "nearest",
                   fill: float = 0, check_motion_boundary: bool = True,
                   thresholds: ValidityThresholds = DEFAULT_THRESHOLDS,
                   workspace: WarpWorkspace | None = None) -> tuple[np.ndarray, np.ndarray]:
    """numpy: ``(backward_warp(src, F[q→p]), valid_mask(F[q→p], F[p→q]))`` sharing the sampling maps (faster).

    ``src`` is as in :func:`backward_warp`, the flows are (H, W, 2) float32 in pixels (dx, dy), ``thresholds`` as
    in :func:`valid_mask`. Returns the warped ``src`` (its shape and dtype) and the (H, W) bool valid mask.
    With a ``workspace`` (:class:`WarpWorkspace` of the frame size) both results are views of its buffers, valid
    until the next call with the same workspace; ``src`` must then be a 2-D uint8/uint16/float32 array.
    """
    th = _check_thresholds(thresholds, "warp_and_valid")
    if mode not in _MODES:
        raise ValueError(f"warp_and_valid: mode must be one of {_MODES}, got {mode!r}")
    geom = _Geom(flow_q_to_p, "flow_q_to_p", ws=workspace)
    reuse = workspace is not None and geom.ws is workspace
    src_a = np.asarray(src)
    if reuse and src_a.ndim == 2 and src_a.dtype in (np.uint8, np.uint16, np.float32) and src_a.shape == geom.shape:
        warped = geom.warp(src_a, mode, float(fill), reuse=True)
    else:
        warped = _backward_warp_np(src_a, geom, mode, float(fill))
    return warped, _valid_mask_np(geom, flow_p_to_q, check_motion_boundary, th, reuse=reuse)


# ----------------------------------------------------------------------------------------------------------- torch
def _check_flow_torch(flow, name: str = "flow"):
    if flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(f"{name}: expected a B×2×H×W flow (dx, dy) in pixels, got {tuple(flow.shape)}")
    return flow


def _grid_from_flow(flow):
    """Normalised ``grid_sample`` grid (B, H, W, 2) for ``align_corners=True`` from a (B, 2, H, W) pixel flow."""
    import torch

    b, _, h, w = flow.shape
    xs = torch.arange(w, dtype=flow.dtype, device=flow.device).view(1, 1, w)
    ys = torch.arange(h, dtype=flow.dtype, device=flow.device).view(1, h, 1)
    x = flow[:, 0] + xs
    y = flow[:, 1] + ys
    # align_corners=True: -1 ↔ pixel 0, +1 ↔ pixel size-1 (a size-1 axis maps everything to its only pixel)
    gx = 2.0 * x / max(w - 1, 1) - 1.0
    gy = 2.0 * y / max(h - 1, 1) - 1.0
    return torch.stack([gx, gy], dim=-1)


def backward_warp_torch(src, flow_q_to_p, *, mode: str = "bilinear"):
    """Batched, differentiable backward warp ``W(src)(x) = src(x + F[q→p](x))``.

    Args:
        src: (B, C, H, W) float tensor (probabilities, features or flow) of frame ``p``.
        flow_q_to_p: (B, 2, H, W) flow from frame ``q`` to frame ``p`` in pixels, channel 0 = dx, 1 = dy.
        mode: ``"bilinear"`` (differentiable in ``src`` and the flow) or ``"nearest"`` (labels as floats).

    Returns:
        (B, C, H, W) tensor in frame ``q``; samples outside the frame are 0 (``padding_mode="zeros"``).
    """
    import torch.nn.functional as F

    if mode not in _MODES:
        raise ValueError(f"backward_warp: mode must be one of {_MODES}, got {mode!r}")
    _check_flow_torch(flow_q_to_p, "flow_q_to_p")
    if src.ndim != 4 or src.shape[0] != flow_q_to_p.shape[0] or src.shape[2:] != flow_q_to_p.shape[2:]:
        raise ValueError(f"backward_warp: expected src B×C×H×W matching flow {tuple(flow_q_to_p.shape)}, "
                         f"got {tuple(src.shape)}")
    grid = _grid_from_flow(flow_q_to_p.to(src.dtype) if src.is_floating_point() else flow_q_to_p)
    work = src if src.is_floating_point() else src.to(flow_q_to_p.dtype)
    out = F.grid_sample(work, grid.to(work.dtype), mode=mode, padding_mode="zeros", align_corners=True)
    return out if src.is_floating_point() else out.round().to(src.dtype)


def out_of_frame_torch(flow):
    """(B, 1, H, W) bool: True where ``x + F(x)`` falls outside ``[0, W−1] × [0, H−1]``."""
    import torch

    _check_flow_torch(flow)
    _, _, h, w = flow.shape
    xs = torch.arange(w, dtype=flow.dtype, device=flow.device).view(1, 1, w)
    ys = torch.arange(h, dtype=flow.dtype, device=flow.device).view(1, h, 1)
    x = flow[:, 0] + xs
    y = flow[:, 1] + ys
    return ((x < 0) | (x > w - 1) | (y < 0) | (y > h - 1)).unsqueeze(1)


def forward_backward_valid_torch(flow_q_to_p, flow_p_to_q, *, thresholds: ValidityThresholds = DEFAULT_THRESHOLDS):
    """(B, 1, H, W) bool forward–backward check on the pixels of frame ``q`` (see :func:`forward_backward_valid`)."""
    import torch.nn.functional as F

    th = _check_thresholds(thresholds, "forward_backward_valid")
    _check_flow_torch(flow_q_to_p, "flow_q_to_p")
    _check_flow_torch(flow_p_to_q, "flow_p_to_q")
    if flow_q_to_p.shape != flow_p_to_q.shape:
        raise ValueError(f"forward_backward_valid: flow shapes differ: {tuple(flow_q_to_p.shape)} vs "
                         f"{tuple(flow_p_to_q.shape)}")
    grid = _grid_from_flow(flow_q_to_p)
    back = F.grid_sample(flow_p_to_q, grid, mode="bilinear", padding_mode="border", align_corners=True)
    s = flow_q_to_p + back
    lhs = (s * s).sum(1, keepdim=True)
    rhs = th.fb_alpha * ((flow_q_to_p * flow_q_to_p).sum(1, keepdim=True) + (back * back).sum(1, keepdim=True)) \
        + th.fb_beta
    return lhs < rhs


def motion_boundary_torch(flow, *, thresholds: ValidityThresholds = DEFAULT_THRESHOLDS):
    """(B, 1, H, W) bool: ``|∇u|² + |∇v|² > mb_alpha·|F|² + mb_beta`` (central differences, replicated borders).

    ``thresholds``: a :class:`ValidityThresholds` (only ``mb_alpha`` and ``mb_beta`` are used).
    """
    import torch.nn.functional as F

    th = _check_thresholds(thresholds, "motion_boundary")
    _check_flow_torch(flow)
    padded = F.pad(flow, (1, 1, 1, 1), mode="replicate")
    gx = 0.5 * (padded[:, :, 1:-1, 2:] - padded[:, :, 1:-1, :-2])
    gy = 0.5 * (padded[:, :, 2:, 1:-1] - padded[:, :, :-2, 1:-1])
    grad_sq = (gx * gx).sum(1, keepdim=True) + (gy * gy).sum(1, keepdim=True)
    return grad_sq > th.mb_alpha * (flow * flow).sum(1, keepdim=True) + th.mb_beta


def valid_mask_torch(flow_q_to_p, flow_p_to_q, *, check_motion_boundary: bool = True,
                     thresholds: ValidityThresholds = DEFAULT_THRESHOLDS):
    """(B, 1, H, W) bool ``M[p→q]`` on the pixels of frame ``q``; computed without gradient (it is a mask)."""
    import torch

    with torch.no_grad():
        fq = flow_q_to_p.detach()
        fp = flow_p_to_q.detach()
        m = ~out_of_frame_torch(fq) & forward_backward_valid_torch(fq, fp, thresholds=thresholds)
        if check_motion_boundary:
            m &= ~motion_boundary_torch(fq, thresholds=thresholds)
    return m


# ------------------------------------------------------------------------------------------------- public dispatch
def backward_warp(src, flow_q_to_p, *, mode: str = "nearest", fill: float = 0):
    """Backward-warp frame ``p``'s data into frame ``q``: ``W(src)(x) = src(x + F[q→p](x))``.

    numpy: ``src`` (H, W) or (H, W, C) of any numeric/bool dtype, ``flow_q_to_p`` (H, W, 2) float (dx, dy) in
    pixels; returns the same shape and dtype as ``src``. ``mode="nearest"`` (labels; round half to even) or
    ``"bilinear"`` (probabilities, flows). Samples whose (rounded, for nearest) position falls outside the frame
    read ``fill``. Uses ``cv2.remap``.

    torch: ``src`` (B, C, H, W), ``flow_q_to_p`` (B, 2, H, W); see :func:`backward_warp_torch` (``fill`` must be 0).
    """
    if mode not in _MODES:
        raise ValueError(f"backward_warp: mode must be one of {_MODES}, got {mode!r}")
    if _is_torch(src) or _is_torch(flow_q_to_p):
        if fill != 0:
            raise ValueError("backward_warp: the torch version pads with 0 only (fill must be 0)")
        return backward_warp_torch(src, flow_q_to_p, mode=mode)
    return _backward_warp_np(src, flow_q_to_p, mode, float(fill))


def out_of_frame(flow):
    """Bool mask, True where the target ``x + F(x)`` lies outside ``[0, W−1] × [0, H−1]`` (continuous coordinates).

    numpy (H, W, 2) → (H, W); torch (B, 2, H, W) → (B, 1, H, W).
    """
    return out_of_frame_torch(flow) if _is_torch(flow) else _out_of_frame_np(flow)


def forward_backward_valid(flow_q_to_p, flow_p_to_q, *, thresholds: ValidityThresholds = DEFAULT_THRESHOLDS):
    """Forward–backward consistency on the pixels ``x`` of frame ``q``.

    With ``a = F[q→p](x)`` and ``b = F[p→q](x + a)`` (bilinear read, border replicated), True where
    ``|a + b|² < fb_alpha·(|a|² + |b|²) + fb_beta`` (``thresholds``, :class:`ValidityThresholds`).
    numpy (H, W, 2) flows → (H, W) bool; torch → (B, 1, H, W).
    """
    if _is_torch(flow_q_to_p):
        return forward_backward_valid_torch(flow_q_to_p, flow_p_to_q, thresholds=thresholds)
    th = _check_thresholds(thresholds, "forward_backward_valid")
    return _fb_valid_np(flow_q_to_p, flow_p_to_q, th.fb_alpha, th.fb_beta)


def motion_boundary(flow, *, thresholds: ValidityThresholds = DEFAULT_THRESHOLDS):
    """Bool mask, True on motion boundaries: ``|∇u|² + |∇v|² > mb_alpha·|F|² + mb_beta`` (``thresholds``).

    Gradients are central differences ``(f[i+1] − f[i−1]) / 2`` with replicated borders.
    numpy (H, W, 2) → (H, W); torch (B, 2, H, W) → (B, 1, H, W).
    """
    if _is_torch(flow):
        return motion_boundary_torch(flow, thresholds=thresholds)
    th = _check_thresholds(thresholds, "motion_boundary")
    return _motion_boundary_np(flow, th.mb_alpha, th.mb_beta)


def valid_mask(flow_q_to_p, flow_p_to_q, *, check_motion_boundary: bool = True,
               thresholds: ValidityThresholds = DEFAULT_THRESHOLDS):
    """``M[p→q]``: the pixels of frame ``q`` whose correspondence in ``p`` can be trusted.

    True where ``x + F[q→p](x)`` is inside the frame, the forward–backward check passes
    (:func:`forward_backward_valid`) and, if ``check_motion_boundary``, ``x`` is not on a motion boundary of
    ``F[q→p]`` (:func:`motion_boundary`), with the constants of ``thresholds`` (:class:`ValidityThresholds`).
    numpy (H, W, 2) flows → (H, W) bool; torch (B, 2, H, W) → (B, 1, H, W) bool (no gradient).
    """
    if _is_torch(flow_q_to_p):
        return valid_mask_torch(flow_q_to_p, flow_p_to_q, check_motion_boundary=check_motion_boundary,
                                thresholds=thresholds)
    th = _check_thresholds(thresholds, "valid_mask")
    return _valid_mask_np(_Geom(flow_q_to_p, "flow_q_to_p"), flow_p_to_q, check_motion_boundary, th)
