"""Per-instance change metrics between an original and a refined instance mask (numpy + OpenCV, no fiftyone).

All masks are ``(H, W)`` bool (or {0, 1} integer) arrays of the same image. The numbers stored on every refined
label of a curation dataset:

- ``iou``: mask IoU of refined vs original, 1.0 when both are empty;
- ``area_ratio``: refined area / original area (``inf`` when the original is empty and the refined is not, 1.0
  when both are empty);
- ``boundary_f``: boundary F-score (DAVIS convention: 4-neighbour boundary pixels, match tolerance
  ``ceil(0.008 * image diagonal)`` pixels unless given), 1.0 when both are empty, 0.0 when exactly one is;
- ``centroid_shift``: distance in pixels between the mask centroids (NaN when either mask is empty); the
  difference of the centroids is computed from exact integer pixel-coordinate sums and rounded once, so it does not
  depend on where a crop starts.

Everything is computed on the *metric window*: the crop of the image that holds both masks plus a margin of one
pixel (:func:`metric_window`), so the cost grows with the object, not with the image or the tolerance. Callers that
can decode a mask straight into that window (``curate build`` decodes the RLE runs of the window only) call
:func:`window_change_metrics`; :func:`instance_change_metrics` takes full-image masks and cuts the window itself.
Both give the numbers of the full-image computation, bit for bit (tests/curation/test_metrics.py checks it on real
COCO masks).
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from steadyseg.accuracy import _disk, boundary_f, mask_boundary

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


def metric_window(box_original: Box | None, box_refined: Box | None, height: int, width: int) -> Box | None:
    """The ``(y0, y1, x0, x1)`` crop (end exclusive) on which the metrics of two masks are computed.

    Args:
        box_original, box_refined: tight boxes of the two masks (:func:`mask_bbox`; None = empty mask).
        height, width: the image size in pixels.

    Returns:
        the union of both boxes grown by one pixel on every side and clipped to the image; None when both masks
        are empty. Why one pixel is enough: a window border that is not an image border has a background row or
        column between it and both masks, so the DAVIS boundary pixels inside the window are those of the full
        image (the boundary of a mask reaches at most one pixel above and left of it), and every boundary pixel
        lies inside. Dilating a boundary by the tolerance inside the window (OpenCV takes outside as empty)
        therefore gives the full-image dilation at every boundary pixel, which is all the F-score reads.
    """
    boxes = [b for b in (box_original, box_refined) if b is not None]
    if not boxes:
        return None
    return (max(min(b[0] for b in boxes) - 1, 0), min(max(b[1] for b in boxes) + 1, height),
            max(min(b[2] for b in boxes) - 1, 0), min(max(b[3] for b in boxes) + 1, width))


def empty_pair_metrics() -> dict[str, float]:
    """The metrics of two empty masks (what :func:`instance_change_metrics` returns for them)."""
    return {"iou": 1.0, "area_ratio": 1.0, "boundary_f": 1.0, "centroid_shift": float("nan"),
            "area_original": 0, "area_refined": 0}


@functools.lru_cache(maxsize=64)
def _disk_kernel(radius: int) -> np.ndarray:
    """The ``(2r+1, 2r+1)`` uint8 disk of :func:`steadyseg.accuracy.boundary_f`, cached (never written to)."""
    kernel = _disk(radius)
    kernel.flags.writeable = False
    return kernel


def _window_boundary_f(pred: np.ndarray, ref: np.ndarray, tolerance: int) -> float:
    """:func:`steadyseg.accuracy.boundary_f` of two ``(h, w)`` bool window crops (no void), same float result.

    Same boundaries, disk and formula; only the copies differ (uint8 views instead of ``astype``, the disk cached,
    the matched pixels counted by indexing the dilation at the boundary pixels).
    """
    bp, bg = mask_boundary(pred), mask_boundary(ref)
    n_p, n_g = int(np.count_nonzero(bp)), int(np.count_nonzero(bg))
    if n_p == 0 and n_g == 0:
        return 1.0
    if n_p == 0 or n_g == 0:
        return 0.0
    if tolerance > 0:
        disk = _disk_kernel(int(tolerance))
        dp = cv2.dilate(bp.view(np.uint8), disk)
        dg = cv2.dilate(bg.view(np.uint8), disk)
    else:
        dp, dg = bp, bg
    precision = np.count_nonzero(dg[bp]) / n_p
    recall = np.count_nonzero(dp[bg]) / n_g
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def _area_and_coordinate_sums(mask: np.ndarray) -> tuple[int, int, int]:
    """``(area, sum of x, sum of y)`` of a ``(h, w)`` bool mask: exact integers (the moments m00, m10, m01)."""
    cols = np.count_nonzero(mask, axis=0)
    rows = np.count_nonzero(mask, axis=1)
    return int(cols.sum()), int(cols @ np.arange(mask.shape[1])), int(rows @ np.arange(mask.shape[0]))


def _unchanged_metrics(area: int) -> dict[str, float]:
    """Metrics of two equal masks of ``area`` pixels: what the general formulas of :func:`window_change_metrics`
    give exactly (IoU a/a, area ratio a/a, F from P = R = 1 or both boundaries empty, centroid shift 0)."""
    if area == 0:
        return empty_pair_metrics()
    return {"iou": 1.0, "area_ratio": 1.0, "boundary_f": 1.0, "centroid_shift": 0.0,
            "area_original": area, "area_refined": area}


def window_change_metrics(original: np.ndarray, refined: np.ndarray, *, tolerance: int) -> dict[str, float]:
    """Change metrics of one instance from its two masks cut to the :func:`metric_window`.

    Args:
        original, refined: ``(h, w)`` bool crops of the full-image masks, both cut to the same window of
            :func:`metric_window` (or any larger crop of the image). Passing the same array twice says that the
            masks are equal (nothing is compared).
        tolerance: boundary F tolerance in pixels (>= 0).

    Returns:
        the dict of :func:`instance_change_metrics`, equal to it for the full-image masks.
    """
    _check_pair(original, refined)
    if refined is original:  # the caller knows the masks are equal (same RLE): only the area is needed
        return _unchanged_metrics(int(np.count_nonzero(original)))
    a_o, sx_o, sy_o = _area_and_coordinate_sums(original)
    a_r, sx_r, sy_r = _area_and_coordinate_sums(refined)
    if a_o == a_r and sx_o == sx_r and sy_o == sy_r and np.array_equal(original, refined):
        return _unchanged_metrics(a_o)
    inter = int(np.count_nonzero(original & refined))
    union = a_o + a_r - inter
    iou = inter / union if union else 1.0
    area_ratio = a_r / a_o if a_o else float("inf")
    bf = _window_boundary_f(refined, original, int(tolerance))
    if a_o and a_r:
        # the centroid difference from the exact integer moments, rounded once: independent of the crop's origin
        shift = math.hypot((sx_o * a_r - sx_r * a_o) / (a_o * a_r), (sy_o * a_r - sy_r * a_o) / (a_o * a_r))
    else:
        shift = float("nan")
    return {"iou": float(iou), "area_ratio": float(area_ratio), "boundary_f": float(bf),
            "centroid_shift": float(shift), "area_original": a_o, "area_refined": a_r}


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
    if tol < 0:
        raise ValueError(f"boundary_tolerance must be >= 0 pixels, got {tol}")
    o = original.astype(bool, copy=False)
    r = refined.astype(bool, copy=False)
    bo, br = (mask_bbox(o), mask_bbox(r)) if boxes is None else boxes
    window = metric_window(bo, br, h, w)
    if window is None:
        return empty_pair_metrics()
    y0, y1, x0, x1 = window
    return window_change_metrics(o[y0:y1, x0:x1], r[y0:y1, x0:x1], tolerance=tol)
