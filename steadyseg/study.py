"""The user-study protocol of the paper (§4) as a tool: qualification grid and rating analysis.

Two parts:

1. **Qualification grid** (``make_grid`` / ``steadyseg study make-grid``). From an accurate mask sequence, nine
   corrupted copies are made along two independent axes:

   - *accuracy*: directional erosion by ``n ∈ {0, 10, 20}`` px (``erode_directional``). The direction is ONE random
     unit vector per grid, shared by every frame and every level, so that an accuracy corruption is a constant,
     temporally coherent bias (it must not add flicker) and the levels are nested (20 px ⊂ 10 px ⊂ clean).
   - *consistency*: a random local piecewise-affine displacement of magnitude ``m ∈ {0, 4, 8}`` px
     (``piecewise_affine_displacement``), drawn independently for every frame (that is what makes it flicker).
     For one consistency level, the same per-frame fields are used at every accuracy level, so moving along one
     axis of the grid changes exactly one factor.

2. **Rating analysis** (``analyze_ratings`` / ``steadyseg study analyze``): Spearman correlations between the mean
   crowd rating of each video and each measure, the qualification filter of §4.1, the mean pairwise Spearman
   agreement between qualified workers and the low-agreement split of §4.2.

Conventions
-----------
- A mask is an ``(H, W)`` integer label map: 0 = background, 1..L = objects/classes, 255 = void. DAVIS 2016 files
  are {0, 255} PNGs; they are read as labels {0, 1} and written back as {0, 255}.
- Ratings are Likert 1-5 where **higher = more consistent**. Corruption levels and the measures (E_cons, E_smooth)
  grow with inconsistency, so a worker who understands the task has a NEGATIVE Spearman correlation between
  their ratings and the consistency level, and good measures correlate NEGATIVELY with the mean rating. The
  qualification filter compares magnitudes ``|rho|`` (the paper's "higher correlation"), so the sign of the scale
  does not change who is dropped; the signs are reported as they are.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import math
import os
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from steadyseg.labels import VOID

EROSION_LEVELS: tuple[int, ...] = (0, 10, 20)
DISPLACEMENT_LEVELS: tuple[float, ...] = (0.0, 4.0, 8.0)
DISPLACEMENT_CELLS: tuple[int, int] = (4, 4)  # lattice cells (rows, cols) of the piecewise-affine warp


# ----------------------------------------------------------------------------------------------------------------
# Corruptions
# ----------------------------------------------------------------------------------------------------------------
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


def displacement_field(height: int, width: int, magnitude: float, rng: np.random.Generator, *,
                       grid: int | tuple[int, int] = DISPLACEMENT_CELLS) -> np.ndarray:
    """A random local piecewise-affine displacement field.

    Control points sit on a regular ``(rows + 1) × (cols + 1)`` lattice spanning the image; each gets a
    displacement of length ``magnitude`` in a uniformly random direction. Every lattice cell is split into two
    triangles along its main diagonal and the displacement is interpolated linearly (barycentric) inside each
    triangle, so the field — and the warp it defines — is piecewise affine and continuous. Pixel displacements
    have length ``<= magnitude`` (exactly ``magnitude`` at control points).

    Exactly ``(rows + 1) * (cols + 1)`` uniform numbers are drawn from ``rng`` whatever the magnitude, so the
    random stream does not depend on the level.

    Returns:
        ``(H, W, 2)`` float32, channel 0 = dx, 1 = dy, pixels.
    """
    rows, cols = (grid, grid) if isinstance(grid, (int, np.integer)) else (int(grid[0]), int(grid[1]))
    if rows < 1 or cols < 1:
        raise ValueError(f"displacement grid must have >= 1 cell per axis, got {grid}")
    if magnitude < 0:
        raise ValueError(f"displacement magnitude must be >= 0, got {magnitude}")
    angles = rng.uniform(0.0, 2.0 * np.pi, size=(rows + 1, cols + 1))
    ctrl = (np.stack([np.cos(angles), np.sin(angles)], axis=-1) * float(magnitude)).astype(np.float32)
    idx, weights = _triangle_weights(int(height), int(width), rows, cols)
    field = np.einsum("pk,pkc->pc", weights, ctrl.reshape(-1, 2)[idx])
    return field.reshape(height, width, 2)


@functools.lru_cache(maxsize=8)
def _triangle_weights(height: int, width: int, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the 3 control points of its lattice triangle (flat indices into the ``(rows+1)·(cols+1)``
    lattice) and their barycentric weights: ``(H·W, 3) int64`` and ``(H·W, 3) float32`` (read-only, cached)."""
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
                                  grid: int | tuple[int, int] = DISPLACEMENT_CELLS) -> np.ndarray:
    """Warp ``mask`` by a random local piecewise-affine displacement of ``magnitude`` px (``displacement_field``).

    ``out(x) = mask(x + D(x))`` with nearest-neighbour sampling and replicated borders, so labels stay labels.
    ``magnitude = 0`` is the identity (a copy); ``rng`` is advanced the same way for every magnitude.

    Args:
        mask: ``(H, W)`` integer label map or ``bool``.
        magnitude: displacement length in pixels at the control points, ``>= 0``.
        rng: numpy ``Generator``; pass a seeded one for reproducible output.
        grid: number of lattice cells ``(rows, cols)`` (or one int for both); more cells = more local warps.

    Returns:
        ``(H, W)`` label map of the input dtype.
    """
    mask = _check_mask(mask)
    h, w = mask.shape
    field = displacement_field(h, w, magnitude, rng, grid=grid)
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

    for i, j in tqdm(cells, desc="qualification grid", disable=not progress):
        rng = np.random.default_rng([seed, 1, j])  # same fields along the accuracy axis
        out[(i, j)] = [piecewise_affine_displacement(m, float(displacement_levels[j]), rng, grid=grid)
                       for m in eroded[i]]
    return dict(sorted(out.items()))


# ----------------------------------------------------------------------------------------------------------------
# Statistics helpers
# ----------------------------------------------------------------------------------------------------------------
def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, int]:
    """``(rho, p_value, n)`` of ``scipy.stats.spearmanr`` over the pairs where both are finite.

    NaN (with ``n`` still reported) when fewer than 3 pairs remain or either side is constant.
    """
    from scipy.stats import spearmanr

    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    n = int(a.size)
    if n < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan"), float("nan"), n
    res = spearmanr(a, b)
    return float(res.statistic), float(res.pvalue), n


def _rows_from(obj: Any, what: str) -> list[dict[str, Any]]:
    """Rows (dicts) from a list of dicts / tuples, a dict of columns, or a pandas-like DataFrame."""
    if hasattr(obj, "to_dict") and hasattr(obj, "columns"):  # pandas DataFrame, without importing pandas
        return [dict(r) for r in obj.to_dict("records")]
    if isinstance(obj, Mapping):
        cols = {k: list(v) for k, v in obj.items()}
        lengths = {len(v) for v in cols.values()}
        if len(lengths) > 1:
            raise ValueError(f"{what}: columns of unequal length {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        return [{k: v[i] for k, v in cols.items()} for i in range(n)]
    rows = []
    for r in obj:
        if isinstance(r, Mapping):
            rows.append(dict(r))
        else:
            rows.append(dict(zip(("video", "worker", "rating"), r)))
    return rows


def _to_float(value: Any) -> float:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return float("nan")
    return float(value)


def _normalise_ratings(ratings: Any) -> list[tuple[str, str, float]]:
    out = []
    for k, r in enumerate(_rows_from(ratings, "ratings")):
        missing = {"video", "worker", "rating"} - set(r)
        if missing:
            raise ValueError(f"ratings row {k}: missing column(s) {sorted(missing)} (need video, worker, rating)")
        try:
            value = _to_float(r["rating"])
        except (TypeError, ValueError):
            raise ValueError(f"ratings row {k}: rating {r['rating']!r} is not a number") from None
        if not np.isfinite(value):
            continue  # an empty cell is "not rated"
        if not 1.0 <= value <= 5.0:
            raise ValueError(f"ratings row {k}: rating {value} outside the Likert range 1-5")
        out.append((str(r["video"]), str(r["worker"]), value))
    if not out:
        raise ValueError("ratings: no ratings")
    return out


def _normalise_measures(measures: Any) -> dict[str, dict[str, float]]:
    """``{video: {measure: value}}`` from that mapping itself or from rows with a ``video`` column."""
    if isinstance(measures, Mapping) and all(isinstance(v, Mapping) for v in measures.values()) \
            and "video" not in measures:
        return {str(v): {str(k): _to_float(x) for k, x in m.items()} for v, m in measures.items()}
    out: dict[str, dict[str, float]] = {}
    for k, r in enumerate(_rows_from(measures, "measures")):
        if "video" not in r:
            raise ValueError(f"measures row {k}: no 'video' column")
        out[str(r["video"])] = {str(c): _to_float(x) for c, x in r.items() if c != "video"}
    return out


def _normalise_grid(grid: Any) -> dict[str, tuple[int, int]]:
    """``{video: (accuracy_level, consistency_level)}`` from a grid.json dict, a list of them, or that mapping."""
    if grid is None:
        return {}
    if isinstance(grid, (list, tuple)):
        merged: dict[str, tuple[int, int]] = {}
        for g in grid:
            merged.update(_normalise_grid(g))
        return merged
    if isinstance(grid, Mapping) and "videos" in grid:
        grid = grid["videos"]
    out = {}
    for video, levels in grid.items():
        if isinstance(levels, Mapping):
            out[str(video)] = (int(levels["accuracy_level"]), int(levels["consistency_level"]))
        else:
            out[str(video)] = (int(levels[0]), int(levels[1]))
    return out


# ----------------------------------------------------------------------------------------------------------------
# Rating analysis
# ----------------------------------------------------------------------------------------------------------------
def qualify_worker(ratings: Mapping[str, float], grid: Mapping[str, tuple[int, int]]) -> dict[str, Any]:
    """The §4.1 qualification test for one worker.

    Args:
        ratings: ``{video: rating}`` of this worker (only qualification videos in ``grid`` are used).
        grid: ``{video: (accuracy_level, consistency_level)}``.

    Returns:
        dict with ``rho_accuracy``, ``p_accuracy``, ``rho_consistency``, ``p_consistency``, ``n`` (qualification
        videos rated), ``qualified`` and ``reason``. Rule: dropped when ``|rho_accuracy| > |rho_consistency|``; a
        worker whose ``rho_consistency`` is undefined (fewer than 3 qualification ratings, or all equal) cannot
        show they follow consistency and is dropped too; an undefined ``rho_accuracy`` counts as 0.
        ``sign_ok`` is ``rho_consistency < 0`` (higher rating = more consistent = lower corruption level).
    """
    videos = [v for v in ratings if v in grid]
    r = [ratings[v] for v in videos]
    ra, pa, n = spearman(r, [grid[v][0] for v in videos])
    rc, pc, _ = spearman(r, [grid[v][1] for v in videos])
    if not np.isfinite(rc):
        qualified, reason = False, f"consistency correlation undefined ({n} qualification ratings)"
    elif abs(ra if np.isfinite(ra) else 0.0) > abs(rc):
        qualified, reason = False, "follows accuracy more than consistency"
    else:
        qualified, reason = True, "follows consistency"
    return {"n": n, "rho_accuracy": ra, "p_accuracy": pa, "rho_consistency": rc, "p_consistency": pc,
            "sign_ok": bool(np.isfinite(rc) and rc < 0), "qualified": qualified, "reason": reason}


def _measure_correlations(videos: Sequence[str], mean_rating: Mapping[str, float],
                          measures: Mapping[str, Mapping[str, float]], names: Sequence[str]) -> dict[str, Any]:
    out = {}
    for name in names:
        x = [mean_rating[v] for v in videos]
        y = [measures.get(v, {}).get(name, float("nan")) for v in videos]
        rho, p, n = spearman(x, y)
        out[name] = {"rho": rho, "p": p, "n": n}
    return out


def analyze_ratings(ratings: Any, measures: Any = None, grid: Any = None, *,
                    low_agreement_std: float = 1.0) -> dict[str, Any]:
    """Analyse crowd ratings the way the paper's §4 does.

    Args:
        ratings: rows ``(video, worker, rating)`` — a list of dicts or tuples, a dict of columns, or a pandas
            DataFrame. Ratings are Likert 1-5, higher = more consistent; empty ratings are ignored.
        measures: per-video measures, ``{video: {name: value}}`` or rows with a ``video`` column plus one column
            per measure (E_cons, E_smooth, ...); ``None`` for no correlations.
        grid: qualification videos: a ``grid.json`` dict from ``make-grid`` (``{"videos": {name: {...}}}``), a list
            of them, or ``{video: (accuracy_level, consistency_level)}``. ``None``: no worker filter.
        low_agreement_std: videos whose ratings (qualified workers) have a population std (ddof=0) above this are
            "low agreement" (§4.2).

    Returns:
        A JSON-serialisable dict:

        - ``workers``: per worker the qualification result (``qualify_worker``) or ``{"qualified": True}``
          without a grid; ``n_workers``, ``n_qualified``;
        - ``videos``: per video ``mean``, ``std``, ``n`` over qualified workers, and ``qualification`` (bool);
          ``mean_rating`` (mean of video means), ``mean_std``;
        - ``agreement``: mean pairwise Spearman between qualified workers over the study videos both rated
          (pairs with < 3 common videos or constant ratings are skipped), with ``n_pairs``;
        - ``correlations``: ``{measure: {rho, p, n}}``, Spearman between the mean rating and the measure over the
          study videos (non-qualification videos; every video when there is no grid). With higher = more
          consistent ratings, a good inconsistency measure has a NEGATIVE rho;
        - ``low_agreement``: ``threshold``, ``removed`` videos, and ``correlations`` again without them;
        - ``qualification_check`` (with a grid and measures on the grid videos): Spearman of each measure with the
          accuracy and consistency level — a measure of consistency should follow the consistency axis only.
    """
    rows = _normalise_ratings(ratings)
    meas = _normalise_measures(measures) if measures is not None else {}
    levels = _normalise_grid(grid)

    by_worker: dict[str, dict[str, float]] = defaultdict(dict)
    for video, worker, value in rows:
        if video in by_worker[worker]:
            raise ValueError(f"ratings: worker {worker!r} rated video {video!r} more than once")
        by_worker[worker][video] = value

    workers: dict[str, dict[str, Any]] = {}
    for w in sorted(by_worker):
        workers[w] = qualify_worker(by_worker[w], levels) if levels else {"qualified": True, "reason": "no grid"}
    qualified = [w for w in workers if workers[w]["qualified"]]

    per_video: dict[str, list[float]] = defaultdict(list)
    for w in qualified:
        for v, value in by_worker[w].items():
            per_video[v].append(value)
    videos = {v: {"mean": float(np.mean(r)), "std": float(np.std(r)), "n": len(r), "qualification": v in levels}
              for v, r in sorted(per_video.items())}
    mean_rating = {v: d["mean"] for v, d in videos.items()}
    study_videos = [v for v in videos if v not in levels]

    rhos = []
    for a in range(len(qualified)):
        for b in range(a + 1, len(qualified)):
            ra, rb = by_worker[qualified[a]], by_worker[qualified[b]]
            common = [v for v in ra if v in rb and v not in levels]
            rho, _, _ = spearman([ra[v] for v in common], [rb[v] for v in common])
            if np.isfinite(rho):
                rhos.append(rho)
    agreement = {"mean_pairwise_spearman": float(np.mean(rhos)) if rhos else float("nan"), "n_pairs": len(rhos)}

    names = sorted({k for m in meas.values() for k in m})
    study_std = [videos[v]["std"] for v in study_videos]
    result: dict[str, Any] = {
        "n_workers": len(workers), "n_qualified": len(qualified), "workers": workers,
        "n_videos": len(videos), "n_study_videos": len(study_videos), "videos": videos,
        "mean_rating": float(np.mean([mean_rating[v] for v in study_videos])) if study_videos else float("nan"),
        "mean_std": float(np.mean(study_std)) if study_std else float("nan"),
        "agreement": agreement,
        "correlations": _measure_correlations(study_videos, mean_rating, meas, names),
    }
    removed = [v for v in study_videos if videos[v]["std"] > low_agreement_std]
    kept = [v for v in study_videos if v not in removed]
    result["low_agreement"] = {"threshold": float(low_agreement_std), "removed": removed, "n_kept": len(kept),
                               "correlations": _measure_correlations(kept, mean_rating, meas, names)}
    if levels and meas:
        check = {}
        qv = [v for v in levels if v in meas]
        for name in names:
            y = [meas[v].get(name, float("nan")) for v in qv]
            ra, pa, n = spearman([levels[v][0] for v in qv], y)
            rc, pc, _ = spearman([levels[v][1] for v in qv], y)
            check[name] = {"rho_accuracy": ra, "p_accuracy": pa, "rho_consistency": rc, "p_consistency": pc, "n": n}
        result["qualification_check"] = check
    return result


def grid_axis_correlations(values: Mapping[tuple[int, int], float]) -> dict[str, float]:
    """How a per-cell measure ``{(acc, cons): value}`` follows each axis of the grid.

    Returns ``rho_accuracy`` / ``p_accuracy`` and ``rho_consistency`` / ``p_consistency`` (Spearman of the value
    with the level index over all cells, ``n`` cells), and the effect sizes ``effect_accuracy`` /
    ``effect_consistency``: the mean change of the value from the first to the last level of that axis, averaged
    over the levels of the other axis, with ``effect_ratio = effect_accuracy / effect_consistency``.

    Why both: with three tied levels per axis, Spearman saturates. A measure that ranks the consistency levels
    perfectly gets rho = sqrt(0.9) = 0.949, and ANY systematic accuracy effect, however small, that orders the
    cells within every consistency level gives |rho_accuracy| = sqrt(0.1) = 0.316. The ratio says how large it is.
    """
    cells = sorted(values)
    y = [values[c] for c in cells]
    ra, pa, n = spearman([c[0] for c in cells], y)
    rc, pc, _ = spearman([c[1] for c in cells], y)
    accs = sorted({c[0] for c in cells})
    conss = sorted({c[1] for c in cells})

    def effect(first, last, along_acc: bool) -> float:
        diffs = []
        for other in (conss if along_acc else accs):
            a, b = ((first, other), (last, other)) if along_acc else ((other, first), (other, last))
            if a in values and b in values:
                diffs.append(values[b] - values[a])
        return float(np.mean(diffs)) if diffs else float("nan")

    ea = effect(accs[0], accs[-1], True)
    ec = effect(conss[0], conss[-1], False)
    ratio = ea / ec if np.isfinite(ec) and ec != 0 else float("nan")
    return {"rho_accuracy": ra, "p_accuracy": pa, "rho_consistency": rc, "p_consistency": pc, "n": n,
            "effect_accuracy": ea, "effect_consistency": ec, "effect_ratio": ratio}


def format_report(result: Mapping[str, Any]) -> str:
    """A plain-text table of an ``analyze_ratings`` result."""
    lines = [f"workers: {result['n_workers']}, qualified: {result['n_qualified']}"]
    for w, d in result["workers"].items():
        if "rho_accuracy" in d:
            lines.append(f"  {w:<16} rho_acc {d['rho_accuracy']:+.3f}  rho_cons {d['rho_consistency']:+.3f}  "
                         f"{'kept' if d['qualified'] else 'DROPPED'} ({d['reason']})")
    lines.append(f"study videos: {result['n_study_videos']}, mean rating {result['mean_rating']:.3f}, "
                 f"mean per-video std {result['mean_std']:.3f}")
    ag = result["agreement"]
    lines.append(f"agreement: mean pairwise Spearman {ag['mean_pairwise_spearman']:.3f} over {ag['n_pairs']} pairs")
    low = result["low_agreement"]
    lines.append(f"{'measure':<16}{'rho':>9}{'p':>11}{'n':>5}   | std <= {low['threshold']:g}: "
                 f"{'rho':>7}{'p':>11}{'n':>5}")
    for name, c in result["correlations"].items():
        k = low["correlations"][name]
        lines.append(f"{name:<16}{c['rho']:>+9.3f}{c['p']:>11.2e}{c['n']:>5}   |             "
                     f"{k['rho']:>+7.3f}{k['p']:>11.2e}{k['n']:>5}")
    if "qualification_check" in result:
        lines.append("measures on the qualification grid (Spearman with the corruption level):")
        for name, c in result["qualification_check"].items():
            lines.append(f"  {name:<14} accuracy {c['rho_accuracy']:+.3f}  consistency {c['rho_consistency']:+.3f}"
                         f"  (n={c['n']})")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# File IO
# ----------------------------------------------------------------------------------------------------------------
def read_ratings_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a ratings CSV with a header ``video,worker,rating`` (extra columns ignored)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ratings CSV not found")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"video", "worker", "rating"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}; need a header video,worker,rating")
        return list(reader)


def read_measures(path: str | os.PathLike) -> dict[str, dict[str, float]]:
    """Per-video measures from a CSV (``video`` + one column per measure) or a JSON file (``{video: {name: v}}``
    or a list of rows with a ``video`` key)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: measures file not found")
    try:
        if path.suffix.lower() == ".json":
            with open(path, encoding="utf-8") as f:
                return _normalise_measures(json.load(f))
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if "video" not in (reader.fieldnames or []):
                raise ValueError("no 'video' column")
            return _normalise_measures(list(reader))
    except (ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read measures: {exc}") from None


def read_grid(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: grid file not found (write one with `steadyseg study make-grid`)")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or "videos" not in data:
        raise ValueError(f"{path}: not a grid.json (no 'videos' key)")
    return data


def _encode_png(image: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"could not encode a PNG of shape {image.shape} dtype {image.dtype}")
    return buf.tobytes()


def overlay(frame: np.ndarray, mask: np.ndarray, *, alpha: float = 0.5) -> np.ndarray:
    """An ``(H, W, 3) uint8`` frame with objects tinted red and their boundaries drawn in yellow.

    ``frame`` and the result are BGR (OpenCV order); pass RGB frames through ``frame[..., ::-1]`` first.
    """
    import cv2

    out = frame.astype(np.float32).copy()
    fg = (mask != 0) & (mask != VOID)
    out[fg] = (1 - alpha) * out[fg] + alpha * np.array([0, 0, 255], np.float32)
    out = out.astype(np.uint8)
    edges = cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    out[edges] = (0, 255, 255)
    return out


def preview_montage(frame: np.ndarray, cells: Mapping[tuple[int, int], np.ndarray],
                    erosion_levels: Sequence[int], displacement_levels: Sequence[float], *,
                    tile_width: int = 320) -> np.ndarray:
    """A montage of one frame: rows = consistency level, columns = accuracy level, each tile labelled."""
    import cv2

    h, w = frame.shape[:2]
    th = max(1, int(round(h * tile_width / w)))
    n_acc, n_cons = len(erosion_levels), len(displacement_levels)
    canvas = np.full((n_cons * th, n_acc * tile_width, 3), 255, np.uint8)
    for (i, j), mask in cells.items():
        tile = cv2.resize(overlay(frame, mask), (tile_width, th), interpolation=cv2.INTER_AREA)
        text = f"erode {erosion_levels[i]}px / displace {displacement_levels[j]:g}px"
        cv2.putText(tile, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(tile, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        canvas[j * th:(j + 1) * th, i * tile_width:(i + 1) * tile_width] = tile
    return canvas


def _load_masks(path: Path, max_frames: int | None) -> tuple[np.ndarray, list[str], bool]:
    """``(T, H, W) int32`` labels, the frame names, and whether the files were DAVIS {0,255} binary PNGs."""
    from steadyseg.datasets.masks import open_masks

    stack = open_masks(path)
    n = len(stack) if max_frames is None else min(len(stack), int(max_frames))
    if n < 1:
        raise ValueError(f"{path}: no masks to corrupt (max_frames={max_frames})")
    masks = np.stack([stack[t] for t in range(n)])
    return masks, stack.names[:n], stack.reading == "davis2016-binary"


def _load_frames(path: Path, n: int):
    """The first ``n`` frames of a video, lazily (``steadyseg.datasets.video.VideoFrames``, items ``(H, W, 3)``
    uint8 RGB)."""
    from steadyseg.datasets.video import open_video

    return open_video(path, max_frames=n)


def evaluate_grid(cells: Mapping[tuple[int, int], Sequence[np.ndarray]], flows: Callable[[int, int], np.ndarray],
                  reference: Sequence[np.ndarray] | np.ndarray, *, window: int = 3, sigma: float = 1.0,
                  progress: bool = False) -> dict[tuple[int, int], dict[str, float]]:
    """E_cons, E_raw and E_smooth of every grid cell, all normalised by the SAME constant: the median boundary of
    ``reference`` (the clean accurate masks), with the same flows for every cell.

    Args:
        cells: ``make_grid`` output.
        flows: ``flows(p, q) -> (H, W, 2) float32`` flow p→q (dx, dy; pixels), shared by all cells.
        reference: the clean ``(T, H, W)`` masks whose median boundary length normalises every cell.
    """
    from tqdm.auto import tqdm

    from steadyseg import measures as M

    ref = np.asarray(reference)
    out = {}
    for cell in tqdm(sorted(cells), desc="measures on grid", disable=not progress):
        stack = np.stack(cells[cell])
        res = M.inconsistency(stack, flows, window=window, normalizer=ref)
        smooth = M.smoothness(stack, sigma=sigma, normalizer=ref)
        out[cell] = {"E_cons": float(res.e_cons), "E_raw": float(res.e_raw), "E_smooth": float(smooth)}
    return out


# ----------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``steadyseg study make-grid`` and ``steadyseg study analyze`` (flags default to None)."""
    sub = parser.add_subparsers(dest="study_command", metavar="STUDY_COMMAND")
    g = sub.add_parser("make-grid", help="write the 3x3 qualification grid of corrupted mask videos",
                       description="Corrupt an accurate mask sequence along accuracy (directional erosion) and "
                                   "consistency (per-frame piecewise-affine displacement); write 9 mask folders, "
                                   "grid.json, config.yaml and preview.png.")
    g.add_argument("--frames", required=True, help="video frames (folder of images or a video file)")
    g.add_argument("--masks", required=True, help="accurate masks (folder of PNGs, DAVIS {0,255} or label maps)")
    g.add_argument("--out", required=True, help="output folder")
    g.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    g.add_argument("--max-frames", type=int, default=None, help="use only the first N frames")
    g.add_argument("--name", default=None, help="video-name prefix in grid.json (default: the masks folder name)")
    g.add_argument("--erosion-levels", type=int, nargs="+", default=None, help="px (default 0 10 20)")
    g.add_argument("--displacement-levels", type=float, nargs="+", default=None, help="px (default 0 4 8)")
    g.add_argument("--cells", type=int, nargs=2, default=None, metavar=("ROWS", "COLS"),
                   help="lattice cells of the piecewise-affine displacement (default 4 4)")
    g.add_argument("--measure", action="store_true", default=None,
                   help="also compute E_cons/E_raw/E_smooth of every cell (DIS flow; one normaliser: the clean "
                        "masks' median boundary) into measures.csv and print Spearman with each axis")
    g.add_argument("--flow-cache", default=None, help="flow cache folder for --measure")
    g.set_defaults(func=main_make_grid)

    a = sub.add_parser("analyze", help="analyse crowd ratings: qualification filter, agreement, correlations",
                       description="Spearman correlations of mean crowd ratings with measures, the §4.1 worker "
                                   "filter and the §4.2 low-agreement split.")
    a.add_argument("--ratings", required=True, help="CSV with columns video,worker,rating (1-5, higher = more "
                                                    "consistent)")
    a.add_argument("--measures", required=True, help="CSV (video + one column per measure) or JSON")
    a.add_argument("--grid", action="append", default=None,
                   help="grid.json of qualification videos (repeat for several clips)")
    a.add_argument("--low-agreement-std", type=float, default=None, help="std threshold (default 1.0)")
    a.add_argument("--json", default=None, help="write the full result as JSON here")
    a.set_defaults(func=main_analyze)


def main(args: argparse.Namespace) -> int:
    func = getattr(args, "func", None)
    if func is None or func is main:
        raise ValueError("choose a study command: make-grid or analyze (see `steadyseg study --help`)")
    return func(args)


def _given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def main_make_grid(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from steadyseg.files import atomic_write_bytes, atomic_write_json, atomic_write_text, save_resolved_config
    from steadyseg.datasets.masks import write_label_png

    masks_dir, frames_dir, out = Path(args.masks), Path(args.frames), Path(args.out)
    if args.max_frames is not None and args.max_frames < 1:
        raise ValueError(f"--max-frames must be >= 1, got {args.max_frames}")
    masks, names, binary = _load_masks(masks_dir, args.max_frames)
    frames = _load_frames(frames_dir, len(masks))
    if len(frames) < len(masks):
        raise ValueError(f"{frames_dir}: {len(frames)} frames but {len(masks)} masks")
    if tuple(frames.size) != masks.shape[1:3]:
        raise ValueError(f"{frames_dir}: frame size {tuple(frames.size)} differs from mask size {masks.shape[1:3]} "
                         f"in {masks_dir}")
    kw = {}
    if args.erosion_levels is not None:
        kw["erosion_levels"] = tuple(args.erosion_levels)
    if args.displacement_levels is not None:
        kw["displacement_levels"] = tuple(args.displacement_levels)
    if args.cells is not None:
        kw["grid"] = tuple(args.cells)
    seed = 0 if args.seed is None else args.seed
    erosion_levels = kw.get("erosion_levels", EROSION_LEVELS)
    displacement_levels = kw.get("displacement_levels", DISPLACEMENT_LEVELS)
    cells = make_grid(masks, seed=seed, progress=True, **kw)

    name = args.name or masks_dir.name
    videos = {}
    for (i, j), seq in tqdm(cells.items(), desc="writing masks"):
        folder = out / cell_name(i, j)
        for t, m in enumerate(seq):
            write_label_png(folder / f"{names[t]}.png", m, reading="davis2016-binary" if binary else "label-png")
        videos[f"{name}/{cell_name(i, j)}"] = {
            "accuracy_level": i, "consistency_level": j, "erosion_px": erosion_levels[i],
            "displacement_px": displacement_levels[j], "path": cell_name(i, j)}
    mid = len(masks) // 2
    bgr = np.ascontiguousarray(np.asarray(frames[mid])[..., ::-1])
    montage = preview_montage(bgr, {c: s[mid] for c, s in cells.items()}, erosion_levels, displacement_levels)
    atomic_write_bytes(out / "preview.png", _encode_png(montage))
    record = {"masks": str(masks_dir), "frames": str(frames_dir), "n_frames": len(masks),
              "size": list(masks.shape[1:]), "seed": seed, "name": name,
              "erosion_levels": list(erosion_levels), "displacement_levels": list(displacement_levels),
              "cells": list(kw.get("grid", DISPLACEMENT_CELLS)), "erosion_direction": list(erosion_direction(seed)),
              "mask_format": "{0,255}" if binary else "labels",
              "preview_frame": mid, "videos": videos}
    atomic_write_json(out / "grid.json", record)
    config = {k: v for k, v in record.items() if k != "videos"}
    config.update(_given(args, "measure", "flow_cache"))
    save_resolved_config(out, config)
    print(f"wrote {len(cells)} mask videos of {len(masks)} frames, grid.json and preview.png to {out}")

    if args.measure:
        from steadyseg.datasets.flow import FlowProvider

        import tempfile

        # The nine videos share every flow: keep them on disk (the given cache, else a temporary one) so each
        # flow is computed once without holding all of them in memory.
        with tempfile.TemporaryDirectory(prefix="steadyseg-study-flow-") as tmp:
            provider = FlowProvider(frames, backend="dis", cache_dir=args.flow_cache or tmp)
            values = evaluate_grid(cells, provider, masks, progress=True)
        lines = ["video," + ",".join(("E_cons", "E_raw", "E_smooth"))]
        for (i, j), v in values.items():
            lines.append(f"{name}/{cell_name(i, j)},{v['E_cons']:.6g},{v['E_raw']:.6g},{v['E_smooth']:.6g}")
        atomic_write_text(out / "measures.csv", "\n".join(lines) + "\n")
        print(f"{'measure':<10}{'rho_accuracy':>14}{'rho_consistency':>17}{'effect acc/cons':>17}")
        summary = {}
        for m in ("E_cons", "E_raw", "E_smooth"):
            c = grid_axis_correlations({cell: v[m] for cell, v in values.items()})
            summary[m] = c
            print(f"{m:<10}{c['rho_accuracy']:>+14.3f}{c['rho_consistency']:>+17.3f}{c['effect_ratio']:>+17.3f}")
        atomic_write_json(out / "measures_axes.json", summary)
    return 0


def main_analyze(args: argparse.Namespace) -> int:
    from steadyseg.files import atomic_write_json, save_resolved_config

    ratings = read_ratings_csv(args.ratings)
    measures = read_measures(args.measures)
    grids = [read_grid(p) for p in args.grid] if args.grid else None
    kw = {"low_agreement_std": args.low_agreement_std} if args.low_agreement_std is not None else {}
    try:
        result = analyze_ratings(ratings, measures, grids, **kw)
    except ValueError as exc:  # name the file: "ratings row k" is data row k (0-based) of the CSV
        raise ValueError(f"{args.ratings}: {exc}") from None
    print(format_report(result))
    if args.json:
        path = Path(args.json)
        atomic_write_json(path, result)
        save_resolved_config(path.parent, {"ratings": args.ratings, "measures": args.measures, "grid": args.grid,
                                           "low_agreement_std": kw.get("low_agreement_std", 1.0),
                                           "json": str(path)}, name=f"{path.stem}.config.yaml")
        print(f"wrote {path}")
    return 0
