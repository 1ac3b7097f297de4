"""File IO of the user study: ratings CSV, per-video measures (CSV or JSON), grid.json, masks and frames.

Every reader raises ``FileNotFoundError`` / ``ValueError`` naming the file.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from steadyseg.files import read_json
from steadyseg.study.ratings import _normalise_measures, analyze_ratings

__all__ = ["read_ratings_csv", "read_measures", "read_grid", "load_masks", "load_frames", "analyze_rating_files"]


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
    """A ``grid.json`` written by :func:`steadyseg.study.grid.write_grid` (a dict with a ``videos`` key)."""
    path = Path(path)
    data = read_json(path, what="grid file (write one with `steadyseg study make-grid`)")
    if not isinstance(data, dict) or "videos" not in data:
        raise ValueError(f"{path}: not a grid.json (no 'videos' key)")
    return data


def load_masks(path: str | os.PathLike, max_frames: int | None = None) -> tuple[np.ndarray, list[str], bool]:
    """``(T, H, W) int32`` labels, the frame names, and whether the files were DAVIS {0,255} binary PNGs."""
    from steadyseg.datasets.masks import open_masks

    if max_frames is not None and int(max_frames) < 1:
        raise ValueError(f"{path}: no masks to corrupt (max_frames={max_frames})")
    stack = open_masks(path, max_frames=max_frames)
    masks = np.stack([stack[t] for t in range(len(stack))])
    return masks, list(stack.names), stack.reading == "davis2016-binary"


def load_frames(path: str | os.PathLike, n: int):
    """The first ``n`` frames of a video, lazily (``steadyseg.datasets.video.VideoFrames``, items ``(H, W, 3)``
    uint8 RGB)."""
    from steadyseg.datasets.video import open_video

    return open_video(path, max_frames=n)


def analyze_rating_files(ratings: str | os.PathLike, measures: str | os.PathLike,
                         grids: Sequence[str | os.PathLike] | None = None, *, low_agreement_std: float = 1.0,
                         json_path: str | os.PathLike | None = None) -> dict[str, Any]:
    """:func:`steadyseg.study.ratings.analyze_ratings` on files: a ratings CSV (:func:`read_ratings_csv`), a measures
    CSV/JSON (:func:`read_measures`) and optional ``grid.json`` files (:func:`read_grid`).

    With ``json_path`` the result is written there as JSON, with ``<stem>.config.yaml`` (the inputs and
    ``low_agreement_std``) beside it. Returns the result; a ``ValueError`` from the analysis names the ratings file
    ("ratings row k" is data row k, 0-based, of the CSV).
    """
    from steadyseg.files import atomic_write_json, save_resolved_config

    rows = read_ratings_csv(ratings)
    values = read_measures(measures)
    grid_data = [read_grid(p) for p in grids] if grids else None
    try:
        result = analyze_ratings(rows, values, grid_data, low_agreement_std=low_agreement_std)
    except ValueError as exc:
        raise ValueError(f"{ratings}: {exc}") from None
    if json_path is not None:
        path = Path(json_path)
        atomic_write_json(path, result)
        save_resolved_config(path.parent, {"ratings": str(ratings), "measures": str(measures),
                                           "grid": None if grids is None else [str(g) for g in grids],
                                           "low_agreement_std": low_agreement_std, "json": str(path)},
                             name=f"{path.stem}.config.yaml")
    return result
