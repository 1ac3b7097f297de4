"""Corruptions of the qualification grid (paper §4.1): directional erosion (accuracy axis) and a random local
piecewise-affine displacement per frame (consistency axis), and :func:`make_grid` that combines them.

Masks are ``(H, W)`` integer label maps (0 = background, 255 = void, other values = objects) or ``bool``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from steadyseg.labels import VOID

__all__ = ["EROSION_LEVELS", "DISPLACEMENT_LEVELS", "DISPLACEMENT_CELLS", "DisplacementLattice", "unit_direction",
           "erode_directional", "displacement_field", "piecewise_affine_displacement", "erosion_direction",
           "cell_name", "make_grid"]

EROSION_LEVELS: tuple[int, ...] = (0, 10, 20)
DISPLACEMENT_LEVELS: tuple[float, ...] = (0.0, 4.0, 8.0)
DISPLACEMENT_CELLS: tuple[int, int] = (4, 4)  # lattice cells (rows, cols) of the piecewise-affine warp


def _check_mask(mask: np.ndarray, name: str = "mask") -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{name}: expected an (H, W) label map, got shape {mask.shape}")
    if mask.dtype == bool:
        mask = mask.astype(np.uint8)
    if not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"{name}: expected integer labels, got dtype {mask.dtype}")
    return mask


def unit_direction(angle: float) -> tuple[float, float]:
    """Unit vector ``(dx, dy)`` (image axes: x right, y down) for an angle in radians."""
    return (math.cos(angle), math.sin(angle))


def erode_directional(mask: np.ndarray, n: int, direction: tuple[float, float] | Sequence[float]) -> np.ndarray:
    """Erode every object of ``mask`` by ``n`` px from the side that ``direction`` points to.

    The structuring element is the digital line segment from the origin to ``n · direction`` (OpenCV's 8-connected
    line): a pixel ``x`` stays in its object iff every pixel ``x + t · direction``, ``t ∈ [0, n]``, has the same
    label (pixels outside the image count as inside, so an object touching the border is not cut there). For a
    square and ``direction = (1, 0)`` this removes exactly ``n`` columns from the right edge and nothing elsewhere;
    for a convex object the boundary facing ``direction`` moves inward by ``n`` px and the opposite side stays put.
    This is "erosion in a random direction" of the paper, a shift-and-intersect along the direction.

    Args:
        mask: ``(H, W)`` integer label map (0 = background, 255 = void, other values = objects), or ``bool``.
        n: erosion depth in pixels, ``>= 0``; 0 returns a copy.
        direction: ``(dx, dy)`` in pixels, any non-zero length (it is normalised).

    Returns:
        ``(H, W)`` label map of the input dtype: eroded object pixels become background 0; void stays void.
    """
    mask = _check_mask(mask)
    if n < 0:
        raise ValueError(f"erosion depth must be >= 0, got {n}")
    dx, dy = float(direction[0]), float(direction[1])
    norm = math.hypot(dx, dy)
    if not np.isfinite(norm) or norm == 0:
        raise ValueError(f"erosion direction must be a non-zero finite vector, got {tuple(direction)}")
    out = mask.copy()
    n = int(round(n))
    if n == 0:
        return out
    import cv2

    dx, dy = dx / norm, dy / norm
    kernel = np.zeros((2 * n + 1, 2 * n + 1), np.uint8)
    end = (int(round(n + n * dx)), int(round(n + n * dy)))
    cv2.line(kernel, (n, n), end, color=1, thickness=1, lineType=cv2.LINE_8)
    labels = [int(v) for v in np.unique(mask) if v != 0 and v != VOID]
    for label in labels:
        obj = (mask == label).astype(np.uint8)
        # cv2.erode: dst(x) = min over kernel pixels k of src(x + k - anchor); anchor = centre, so the kernel
        # pixel at centre + n·d samples src(x + n·d). borderValue=1: outside the image counts as inside.
        kept = cv2.erode(obj, kernel, anchor=(n, n), borderType=cv2.BORDER_CONSTANT, borderValue=1)
        out[(obj == 1) & (kept == 0)] = 0
    return out


class DisplacementLattice:
    """The control-point lattice of :func:`displacement_field` for one frame size, built once and reused.

    Holds, per pixel, the 3 control points of its lattice triangle (flat indices into the ``(rows + 1)·(cols + 1)``
    lattice) and their barycentric weights: ``index`` ``(H·W, 3) int64`` and ``weights`` ``(H·W, 3) float32``
    (both read-only). :func:`make_grid` builds one per grid and passes it to every frame; nothing is cached
    between calls.

    Args:
        height, width: frame size in pixels.
        grid: lattice cells ``(rows, cols)`` (or one int for both), ``>= 1`` each.
    """

    def __init__(self, height: int, width: int, grid: int | tuple[int, int] = DISPLACEMENT_CELLS):
        rows, cols = (grid, grid) if isinstance(grid, (int, np.integer)) else (int(grid[0]), int(grid[1]))
        if rows < 1 or cols < 1:
            raise ValueError(f"displacement grid must have >= 1 cell per axis, got {grid}")
        self.height, self.width, self.rows, self.cols = int(height), int(width), rows, cols
        self.index, self.weights = _triangle_weights(self.height, self.width, rows, cols)

    def field(self, magnitude: float, rng: np.random.Generator) -> np.ndarray:
        """A random field on this lattice (see :func:`displacement_field`): ``(H, W, 2)`` float32 (dx, dy), pixels."""
        if magnitude < 0:
            raise ValueError(f"displacement magnitude must be >= 0, got {magnitude}")
        angles = rng.uniform(0.0, 2.0 * np.pi, size=(self.rows + 1, self.cols + 1))
        ctrl = (np.stack([np.cos(angles), np.sin(angles)], axis=-1) * float(magnitude)).astype(np.float32)
        field = np.einsum("pk,pkc->pc", self.weights, ctrl.reshape(-1, 2)[self.index])
        return field.reshape(self.height, self.width, 2)


def displacement_field(height: int, width: int, magnitude: float, rng: np.random.Generator, *,
                       grid: int | tuple[int, int] = DISPLACEMENT_CELLS) -> np.ndarray:
    """A random local piecewise-affine displacement field.

    Control points sit on a regular ``(rows + 1) × (cols + 1)`` lattice spanning the image; each gets a
    displacement of length ``magnitude`` in a uniformly random direction. Every lattice cell is split into two
    triangles along its main diagonal and the displacement is interpolated linearly (barycentric) inside each
    triangle, so the field — and the warp it defines — is piecewise affine and continuous. Pixel displacements
    have length ``<= magnitude`` (exactly ``magnitude`` at control points).

    Exactly ``(rows + 1) * (cols + 1)`` uniform numbers are drawn from ``rng`` whatever the magnitude, so the
    random stream does not depend on the level. Builds a :class:`DisplacementLattice`; to draw many fields of one
    size, build it once and call :meth:`DisplacementLattice.field`.

    Returns:
        ``(H, W, 2)`` float32, channel 0 = dx, 1 = dy, pixels.
    """
    return DisplacementLattice(height, width, grid).field(magnitude, rng)


def _triangle_weights(height: int, width: int, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the 3 control points of its lattice triangle and their barycentric weights (read-only)."""
    gy = (np.arange(height, dtype=np.float64) + 0.5) / height * rows
    gx = (np.arange(width, dtype=np.float64) + 0.5) / width * cols
    iy = np.minimum(gy.astype(np.int64), rows - 1)[:, None]
    ix = np.minimum(gx.astype(np.int64), cols - 1)[None, :]
    v = (gy[:, None] - iy) + np.zeros((1, width))  # (H, W) local coordinates in the cell, [0, 1)
    u = (gx[None, :] - ix) + np.zeros((height, 1))
    stride = cols + 1
    p00, p10, p01, p11 = iy * stride + ix, iy * stride + ix + 1, (iy + 1) * stride + ix, (iy + 1) * stride + ix + 1
    p00, p10, p01, p11 = np.broadcast_arrays(p00, p10, p01, p11)
    lower = (u + v) <= 1.0  # triangle (00, 10, 01); else (11, 01, 10)
    idx = np.where(lower[..., None], np.stack([p00, p10, p01], -1), np.stack([p11, p01, p10], -1))
    weights = np.where(lower[..., None], np.stack([1.0 - u - v, u, v], -1),
                       np.stack([u + v - 1.0, 1.0 - u, 1.0 - v], -1))
    idx = idx.reshape(-1, 3)
    weights = weights.reshape(-1, 3).astype(np.float32)
    idx.setflags(write=False)
    weights.setflags(write=False)
    return idx, weights


def piecewise_affine_displacement(mask: np.ndarray, magnitude: float, rng: np.random.Generator, *,
                                  grid: int | tuple[int, int] = DISPLACEMENT_CELLS,
                                  lattice: DisplacementLattice | None = None) -> np.ndarray:
    """Warp ``mask`` by a random local piecewise-affine displacement of ``magnitude`` px (``displacement_field``).

    ``out(x) = mask(x + D(x))`` with nearest-neighbour sampling and replicated borders, so labels stay labels.
    ``magnitude = 0`` is the identity (a copy); ``rng`` is advanced the same way for every magnitude.

    Args:
        mask: ``(H, W)`` integer label map or ``bool``.
        magnitude: displacement length in pixels at the control points, ``>= 0``.
        rng: numpy ``Generator``; pass a seeded one for reproducible output.
        grid: number of lattice cells ``(rows, cols)`` (or one int for both); more cells = more local warps.
        lattice: a :class:`DisplacementLattice` of the mask's size built beforehand (then ``grid`` is ignored);
            ``None`` builds one for this call.

    Returns:
        ``(H, W)`` label map of the input dtype.
    """
    mask = _check_mask(mask)
    h, w = mask.shape
    if lattice is None:
        lattice = DisplacementLattice(h, w, grid)
    elif (lattice.height, lattice.width) != (h, w):
        raise ValueError(f"lattice is for {lattice.height}x{lattice.width} (HxW) frames, mask is {h}x{w}")
    field = lattice.field(magnitude, rng)
    if magnitude == 0:
        return mask.copy()
    import cv2

    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    if mask.min() >= 0 and mask.max() <= 255:
        src = mask.astype(np.uint8, copy=False)
    elif mask.min() >= 0 and mask.max() <= 65535:
        src = mask.astype(np.uint16)
    else:
        src = mask.astype(np.float32)  # exact for |labels| < 2**24; nearest sampling copies values
    out = cv2.remap(src, xs + field[..., 0], ys + field[..., 1], interpolation=cv2.INTER_NEAREST,
                    borderMode=cv2.BORDER_REPLICATE)
    return out.astype(mask.dtype, copy=False)


def erosion_direction(seed: int) -> tuple[float, float]:
    """The random unit erosion direction ``(dx, dy)`` that ``make_grid`` uses for ``seed``."""
    return unit_direction(float(np.random.default_rng([seed, 0]).uniform(0.0, 2.0 * np.pi)))


def cell_name(acc: int, cons: int) -> str:
    """Folder / video name of a grid cell: ``acc{i}_cons{j}`` (level indices, 0 = clean)."""
    return f"acc{acc}_cons{cons}"


def make_grid(masks: Sequence[np.ndarray] | np.ndarray, *, seed: int = 0,
              erosion_levels: Sequence[int] = EROSION_LEVELS,
              displacement_levels: Sequence[float] = DISPLACEMENT_LEVELS,
              grid: int | tuple[int, int] = DISPLACEMENT_CELLS, direction: tuple[float, float] | None = None,
              progress: bool = False) -> dict[tuple[int, int], list[np.ndarray]]:
    """The 3×3 (in general ``len(erosion_levels) × len(displacement_levels)``) qualification grid of §4.1.

    Args:
        masks: ``T`` accurate ``(H, W)`` integer label maps (or a ``(T, H, W)`` array), labels {0, 1, ...}, 255 void.
        seed: seeds everything: the erosion direction and the per-frame displacement fields.
        erosion_levels: erosion depths in px (accuracy axis, index 0 should be 0 = accurate).
        displacement_levels: displacement magnitudes in px (consistency axis, index 0 should be 0 = consistent).
        grid: lattice cells of the piecewise-affine displacement (``piecewise_affine_displacement``).
        direction: erosion direction ``(dx, dy)``; default = a random unit vector drawn from ``seed``.
        progress: show a tqdm bar.

    Returns:
        ``{(acc_index, cons_index): [T masks (H, W)]}``, each mask of the input dtype. Erosion is applied first,
        then the displacement; the displacement fields depend only on ``(seed, cons_index, frame)``.
    """
    masks = [_check_mask(m, f"mask {t}") for t, m in enumerate(masks)]
    if not masks:
        raise ValueError("make_grid: empty mask sequence")
    shapes = {m.shape for m in masks}
    if len(shapes) != 1:
        raise ValueError(f"make_grid: all masks must have one shape, got {sorted(shapes)}")
    if direction is None:
        direction = erosion_direction(seed)
    eroded = [[erode_directional(m, int(n), direction) for m in masks] for n in erosion_levels]
    out: dict[tuple[int, int], list[np.ndarray]] = {}
    cells = [(i, j) for j in range(len(displacement_levels)) for i in range(len(erosion_levels))]
    from tqdm.auto import tqdm

    lattice = DisplacementLattice(*masks[0].shape, grid)  # one lattice for every frame of every cell
    for i, j in tqdm(cells, desc="qualification grid", disable=not progress):
        rng = np.random.default_rng([seed, 1, j])  # same fields along the accuracy axis
        out[(i, j)] = [piecewise_affine_displacement(m, float(displacement_levels[j]), rng, lattice=lattice)
                       for m in eroded[i]]
    return dict(sorted(out.items()))
