"""Plots of the measures (matplotlib with the Agg backend; nothing opens a window).

- :func:`flicker_overlay`: an RGB image showing where a frame's mask disagrees with its flow-warped neighbours.
- :func:`plot_per_frame`: per-frame inconsistency over time (and IoU when known).
- :func:`save_measure_plot`: both side by side in one PNG, written atomically.
- :func:`save_figure`: write any figure as a PNG atomically and close it (every plot of the project ends here).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from steadyseg.files import atomic_path

__all__ = ["pyplot", "save_figure", "flicker_overlay", "plot_per_frame", "save_measure_plot"]


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (unless a backend was chosen already)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 120) -> Path:
    """Lay out ``fig`` (``tight_layout``), write it as a PNG to ``path`` atomically, close it; returns the path."""
    path = Path(path)
    try:
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        pyplot().close(fig)
    return path


def flicker_overlay(frame: np.ndarray, mask: np.ndarray, flicker: np.ndarray, *, void: int = 255) -> np.ndarray:
    """Overlay of a frame, its mask contour and its flicker map.

    Args:
        frame: (H, W, 3) uint8 RGB.
        mask: (H, W) integer labels (0 background, ``void`` ignored).
        flicker: (H, W) float in [0, 1], e.g. :func:`steadyseg.measures.flicker_map`.

    Returns:
        (H, W, 3) uint8 RGB: the frame dimmed to 60 %, mask boundaries in yellow, flicker blended in red with
        opacity equal to the flicker value.
    """
    from steadyseg.measures import boundary_map

    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"flicker_overlay: expected an (H, W, 3) uint8 RGB frame, got {frame.shape} {frame.dtype}")
    if mask.shape != frame.shape[:2] or flicker.shape != frame.shape[:2]:
        raise ValueError(f"flicker_overlay: mask {mask.shape} and flicker {flicker.shape} must match the frame "
                         f"{frame.shape[:2]}")
    out = frame.astype(np.float32) * 0.6
    alpha = np.clip(np.nan_to_num(flicker.astype(np.float32)), 0, 1)[..., None]
    out = out * (1 - alpha) + np.array([255.0, 0.0, 0.0], np.float32) * alpha
    out[boundary_map(mask, void=void)] = (255, 220, 0)
    return np.clip(out, 0, 255).astype(np.uint8)


def plot_per_frame(per_frame: Sequence[float], *, iou: Sequence[float] | None = None, ax=None,
                   title: str | None = None, mark: int | None = None):
    """Line plot of per-frame inconsistency (left axis) and IoU (right axis, when given). Returns the axis."""
    plt = pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    t = np.arange(len(per_frame))
    ax.plot(t, per_frame, color="tab:red", lw=1.5, label="inconsistency (mean E_pair)")
    ax.set_xlabel("frame")
    ax.set_ylabel("mean E_pair of pairs touching t", color="tab:red")
    if mark is not None:
        ax.axvline(mark, color="gray", ls="--", lw=1)
    if iou is not None:
        ax2 = ax.twinx()
        ax2.plot(t, iou, color="tab:blue", lw=1.2, label="IoU")
        ax2.set_ylim(0, 1.02)
        ax2.set_ylabel("IoU", color="tab:blue")
    if title:
        ax.set_title(title)
    return ax


def save_measure_plot(path: str | os.PathLike, *, per_frame: Sequence[float], frame: np.ndarray,
                      mask: np.ndarray, flicker: np.ndarray, t: int, iou: Sequence[float] | None = None,
                      title: str | None = None, dpi: int = 110) -> Path:
    """One PNG: per-frame inconsistency over time (left) and the flicker overlay of frame ``t`` (right)."""
    plt = pyplot()
    h, w = frame.shape[:2]
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(13, 4), gridspec_kw={"width_ratios": [1.1, w / h]})
    try:
        plot_per_frame(per_frame, iou=iou, ax=a0, title=title, mark=t)
        a1.imshow(flicker_overlay(frame, mask, flicker))
        a1.set_title(f"frame {t}: red = disagrees with warped neighbours, yellow = mask boundary")
        a1.axis("off")
    except BaseException:
        plt.close(fig)
        raise
    return save_figure(fig, path, dpi=dpi)

