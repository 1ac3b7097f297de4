"""The qualification grid on disk and its measures: :func:`write_grid` (masks, grid.json, preview, config and,
optionally, the measures of every cell) and :func:`evaluate_grid` (E_cons, E_raw, E_smooth of every cell with one
normaliser and one set of flows).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from steadyseg.study.corruptions import (DISPLACEMENT_CELLS, DISPLACEMENT_LEVELS, EROSION_LEVELS, cell_name,
                                         erosion_direction, make_grid)
from steadyseg.study.drawing import encode_png, preview_montage
from steadyseg.study.io import load_frames, load_masks
from steadyseg.study.ratings import grid_axis_correlations

__all__ = ["write_grid", "evaluate_grid", "GRID_MEASURES"]

GRID_MEASURES = ("E_cons", "E_raw", "E_smooth")  # the measures evaluate_grid returns, in the order of measures.csv


def evaluate_grid(cells: Mapping[tuple[int, int], Sequence[np.ndarray]], flows: Callable[[int, int], np.ndarray],
                  reference: Sequence[np.ndarray] | np.ndarray, *, window: int = 3, sigma: float = 1.0,
                  progress: bool = False) -> dict[tuple[int, int], dict[str, float]]:
    """E_cons, E_raw and E_smooth of every grid cell, all normalised by the SAME constant: the median boundary of
    ``reference`` (the clean accurate masks), with the same flows for every cell.

    Args:
        cells: ``make_grid`` output.
        flows: ``flows(p, q) -> (H, W, 2) float32`` flow p→q (dx, dy; pixels), shared by all cells.
        reference: the clean ``(T, H, W)`` masks whose median boundary length normalises every cell.
        window: K of the inconsistency measure; sigma: σ (frames) of E_smooth.
        progress: show a tqdm bar.

    Returns:
        ``{(acc_index, cons_index): {"E_cons", "E_raw", "E_smooth"}}`` (floats).
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


def write_grid(frames: str | os.PathLike, masks: str | os.PathLike, out: str | os.PathLike, *, seed: int = 0,
               max_frames: int | None = None, name: str | None = None,
               erosion_levels: Sequence[int] = EROSION_LEVELS,
               displacement_levels: Sequence[float] = DISPLACEMENT_LEVELS,
               cells: tuple[int, int] = DISPLACEMENT_CELLS, measure: bool = False,
               flow_cache: str | os.PathLike | None = None, preset: str | None = None,
               progress: bool = True) -> dict[str, Any]:
    """Corrupt an accurate mask sequence into the qualification grid and write it under ``out``.

    Writes one mask folder per cell (``acc{i}_cons{j}``, PNGs in the input's format: DAVIS {0, 255} or label
    maps), ``grid.json`` (the record below), ``preview.png`` (the middle frame of every cell,
    :func:`~steadyseg.study.drawing.preview_montage`) and ``config.yaml``. With ``measure``, also computes
    :func:`evaluate_grid` with DIS flow (cached in ``flow_cache``, else a temporary folder) into ``measures.csv``
    and the axis correlations of each measure (:func:`~steadyseg.study.ratings.grid_axis_correlations`) into
    ``measures_axes.json``.

    Args:
        frames: the video (folder of images or a video file); at least as many frames as masks, same size.
        masks: accurate masks (a folder of PNGs, DAVIS {0, 255} or label maps).
        out: output folder.
        seed: seeds the erosion direction and the displacement fields (:func:`make_grid`).
        max_frames: use only the first N masks.
        name: video-name prefix in grid.json (default: the masks folder name).
        erosion_levels, displacement_levels: px per level of each axis (index 0 should be 0 = clean).
        cells: lattice cells ``(rows, cols)`` of the piecewise-affine displacement.
        measure: also compute the measures of every cell.
        flow_cache: flow cache folder for ``measure``.
        preset: DIS preset of the flow for ``measure`` (``"ultrafast"``, ``"fast"``, ``"medium"``; ``None``: the
            measure's default :data:`steadyseg.measure_video.MEASURE_PRESET`): the grid is how a flow setting is
            checked before a measure relies on it.
        progress: show progress bars.

    Returns:
        The grid.json record (``masks``, ``frames``, ``n_frames``, ``size``, ``seed``, ``name``, the levels,
        ``cells``, ``erosion_direction``, ``mask_format``, ``preview_frame``, ``videos``: ``{name/cell: {levels,
        px, path}}``) plus, with ``measure``, ``measures`` (``{cell name: {E_cons, E_raw, E_smooth}}``) and
        ``measures_axes`` (``{measure: axis correlations}``).
    """
    from tqdm.auto import tqdm

    from steadyseg.datasets.masks import write_label_png
    from steadyseg.files import (atomic_dir, atomic_write_bytes, atomic_write_json, atomic_write_text,
                                 save_resolved_config)
    from steadyseg.measure_video import MEASURE_PRESET

    masks_dir, frames_dir, out = Path(masks), Path(frames), Path(out)
    preset = MEASURE_PRESET if preset is None else preset
    labels, names, binary = load_masks(masks_dir, max_frames)
    video = load_frames(frames_dir, len(labels))
    if len(video) < len(labels):
        raise ValueError(f"{frames_dir}: {len(video)} frames but {len(labels)} masks")
    if tuple(video.size) != labels.shape[1:3]:
        raise ValueError(f"{frames_dir}: frame size {tuple(video.size)} differs from mask size "
                         f"{labels.shape[1:3]} in {masks_dir}")
    erosion_levels, displacement_levels, cells = tuple(erosion_levels), tuple(displacement_levels), tuple(cells)
    grid = make_grid(labels, seed=seed, erosion_levels=erosion_levels, displacement_levels=displacement_levels,
                     grid=cells, progress=progress)

    # Everything is written into a temporary folder beside `out`, renamed when complete: a failure (a corrupt
    # frame, a full disk) leaves no half-written grid.
    with atomic_dir(out) as out:
        name = name or masks_dir.name
        videos = {}
        for (i, j), seq in tqdm(grid.items(), desc="writing masks", disable=not progress):
            folder = out / cell_name(i, j)
            for t, m in enumerate(seq):
                write_label_png(folder / f"{names[t]}.png", m, reading="davis2016-binary" if binary else "label-png")
            videos[f"{name}/{cell_name(i, j)}"] = {
                "accuracy_level": i, "consistency_level": j, "erosion_px": erosion_levels[i],
                "displacement_px": displacement_levels[j], "path": cell_name(i, j)}
        mid = len(labels) // 2
        bgr = np.ascontiguousarray(np.asarray(video[mid])[..., ::-1])
        montage = preview_montage(bgr, {c: s[mid] for c, s in grid.items()}, erosion_levels, displacement_levels)
        atomic_write_bytes(out / "preview.png", encode_png(montage))
        record: dict[str, Any] = {
            "masks": str(masks_dir), "frames": str(frames_dir), "n_frames": len(labels),
            "size": list(labels.shape[1:]), "seed": seed, "name": name,
            "erosion_levels": list(erosion_levels), "displacement_levels": list(displacement_levels),
            "cells": list(cells), "erosion_direction": list(erosion_direction(seed)),
            "mask_format": "{0,255}" if binary else "labels", "preview_frame": mid, "videos": videos}
        atomic_write_json(out / "grid.json", record)
        config = {k: v for k, v in record.items() if k != "videos"}
        config.update({"measure": True, "flow": "dis", "preset": preset} if measure else {})
        config.update({"flow_cache": str(flow_cache)} if flow_cache is not None else {})
        save_resolved_config(out, config)
        if not measure:
            return record

        import tempfile

        from steadyseg.datasets.flow import FlowProvider

        # The cells share every flow: keep them on disk (the given cache, else a temporary one) so each flow is
        # computed once without holding all of them in memory.
        with tempfile.TemporaryDirectory(prefix="steadyseg-study-flow-") as tmp:
            provider = FlowProvider(video, backend="dis", preset=preset, cache_dir=flow_cache or tmp)
            values = evaluate_grid(grid, provider, labels, progress=progress)
        lines = ["video," + ",".join(GRID_MEASURES)]
        for (i, j), v in values.items():
            lines.append(f"{name}/{cell_name(i, j)}," + ",".join(f"{v[m]:.6g}" for m in GRID_MEASURES))
        atomic_write_text(out / "measures.csv", "\n".join(lines) + "\n")
        axes = {m: grid_axis_correlations({cell: v[m] for cell, v in values.items()}) for m in GRID_MEASURES}
        atomic_write_json(out / "measures_axes.json", axes)
        return {**record, "measures": {cell_name(*cell): v for cell, v in values.items()}, "measures_axes": axes}
