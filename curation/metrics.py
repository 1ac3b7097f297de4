"""Per-instance change metrics between an original and a refined instance mask (numpy + OpenCV, no fiftyone).

All masks are ``(H, W)`` bool (or {0, 1} integer) arrays of the same image. The numbers stored on every refined
label of a curation dataset:

- ``iou``: mask IoU of refined vs original, 1.0 when both are empty;
- ``area_ratio``: refined area / original area (``inf`` when the original is empty and the refined is not, 1.0
  when both are empty);
- ``boundary_f``: boundary F-score (DAVIS convention: 4-neighbour boundary pixels, match tolerance
  ``ceil(0.008 * image diagonal)`` pixels unless given), 1.0 when both are empty, 0.0 when exactly one is;
- ``centroid_shift``: distance in pixels between the mask centroids (NaN when either mask is empty).

Everything is computed on the crop that holds both masks plus the tolerance margin, so the cost grows with the
object, not with the image.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from steadyseg.accuracy import boundary_f, mask_boundary  # noqa: F401 - mask_boundary re-exported for callers

METRIC_NAMES = ("iou", "area_ratio", "boundary_f", "centroid_shift")
Box = tuple[int, int, int, int]  # (y0, y1, x0, x1), end exclusive


def davis_tolerance(height: int, width: int) -> int:
    """DAVIS boundary tolerance in pixels: ``ceil(0.008 * sqrt(H^2 + W^2))``."""
    return int(math.ceil(0.008 * math.hypot(height, width)))


def _check_pair(original: np.ndarray, refined: np.ndarray) -> None:
    if original.ndim != 2 or refined.ndim != 2:
        raise ValueError(f"expected two (H, W) masks, got shapes {original.shape} and {refined.shape}")
    if original.shape != refined.shape:
        raise ValueError(f"mask shapes differ: original {original.shape}, refined {refined.shape}")


def boundary_f_score(pred: np.ndarray, ref: np.ndarray, *, tolerance: int) -> float:
    """Boundary F-score of ``pred`` against ``ref`` (both ``(H, W)`` bool) with a match tolerance in pixels.

    The DAVIS boundary F of :func:`steadyseg.accuracy.boundary_f` (boundaries from
    :func:`steadyseg.accuracy.mask_boundary`): precision = share of pred boundary pixels within ``tolerance`` of a
    ref boundary pixel, recall the converse, F = 2PR / (P + R); 1.0 when both boundaries are empty, 0.0 when
    exactly one is.
    """
    _check_pair(pred, ref)
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 pixels, got {tolerance}")
    return boundary_f(pred, ref, bound_th=int(tolerance), void=None)


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight ``(y0, y1, x0, x1)`` (end exclusive) of a bool mask, None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _centroid(mask: np.ndarray) -> tuple[float, float] | None:
    """(x, y) mean of the mask's pixel coordinates, None when empty (image moments, no coordinate arrays)."""
    m = cv2.moments(mask.astype(np.uint8), binaryImage=True)
    if m["m00"] == 0:
        return None
    return m["m10"] / m["m00"], m["m01"] / m["m00"]


def instance_change_metrics(original: np.ndarray, refined: np.ndarray, *,
                            boundary_tolerance: int | None = None,
                            boxes: tuple[Box | None, Box | None] | None = None) -> dict[str, float]:
    """Change metrics of one instance (see the module docstring).

    Args:
        original: ``(H, W)`` bool mask before refinement.
        refined: ``(H, W)`` bool mask after refinement, same shape.
        boundary_tolerance: pixels for the boundary F-score; None = DAVIS ``ceil(0.008 * diagonal)``.
        boxes: the tight ``(y0, y1, x0, x1)`` boxes (end exclusive, None = empty) of both masks when the caller
            has them already (see :func:`mask_bbox`); computed here otherwise.

    Returns:
        dict with ``iou``, ``area_ratio``, ``boundary_f``, ``centroid_shift`` (floats) and ``area_original``,
        ``area_refined`` (ints, pixels).
    """
    _check_pair(original, refined)
    h, w = original.shape
    tol = davis_tolerance(h, w) if boundary_tolerance is None else int(boundary_tolerance)
    o = original.astype(bool, copy=False)
    r = refined.astype(bool, copy=False)
    bo, br = (mask_bbox(o), mask_bbox(r)) if boxes is None else boxes
    if bo is None and br is None:
        return {"iou": 1.0, "area_ratio": 1.0, "boundary_f": 1.0, "centroid_shift": float("nan"),
                "area_original": 0, "area_refined": 0}
    boxes = [b for b in (bo, br) if b is not None]
    y0 = max(min(b[0] for b in boxes) - tol - 1, 0)
    y1 = min(max(b[1] for b in boxes) + tol + 1, h)
    x0 = max(min(b[2] for b in boxes) - tol - 1, 0)
    x1 = min(max(b[3] for b in boxes) + tol + 1, w)
    oc, rc = o[y0:y1, x0:x1], r[y0:y1, x0:x1]
    a_o, a_r = int(oc.sum()), int(rc.sum())
    inter = int((oc & rc).sum())
    union = a_o + a_r - inter
    iou = inter / union if union else 1.0
    area_ratio = a_r / a_o if a_o else float("inf")
    # Crop borders that are not image borders are at least tol + 1 px away from both masks, so the boundary and
    # its dilation inside the crop equal those of the full image.
    bf = boundary_f_score(rc, oc, tolerance=tol)
    co, cr = _centroid(oc), _centroid(rc)
    shift = math.hypot(co[0] - cr[0], co[1] - cr[1]) if co is not None and cr is not None else float("nan")
    return {"iou": float(iou), "area_ratio": float(area_ratio), "boundary_f": float(bf),
            "centroid_shift": float(shift), "area_original": a_o, "area_refined": a_r}
