"""Change metrics with answers computed by hand (no fiftyone, no database)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from steadyseg.curation.metrics import boundary_f_score, davis_tolerance, instance_change_metrics, mask_boundary


def square(h=60, w=80, y0=10, x0=10, size=20):
    m = np.zeros((h, w), dtype=bool)
    m[y0:y0 + size, x0:x0 + size] = True
    return m


def test_shift_by_two_pixels_has_known_numbers():
    a = square()
    b = np.roll(a, 2, axis=1)
    m = instance_change_metrics(a, b, boundary_tolerance=0)
    assert m["iou"] == pytest.approx(360 / 440)  # 20x18 overlap, 20x22 union
    assert m["area_ratio"] == 1.0
    assert m["centroid_shift"] == pytest.approx(2.0)
    # 80 boundary pixels each (DAVIS seg2bmap: the row above and the column left of the square, its last row and
    # last column); the row above and the last row overlap on 19 columns each -> P = R = 38/80
    assert m["boundary_f"] == pytest.approx(38 / 80)
    assert instance_change_metrics(a, b, boundary_tolerance=2)["boundary_f"] == 1.0


def test_identical_empty_and_vanished():
    a = square()
    same = instance_change_metrics(a, a.copy())
    assert (same["iou"], same["area_ratio"], same["boundary_f"], same["centroid_shift"]) == (1.0, 1.0, 1.0, 0.0)
    gone = instance_change_metrics(a, np.zeros_like(a))
    assert gone["iou"] == 0.0 and gone["area_ratio"] == 0.0 and gone["boundary_f"] == 0.0
    assert math.isnan(gone["centroid_shift"])
    both = instance_change_metrics(np.zeros_like(a), np.zeros_like(a))
    assert both["iou"] == 1.0 and both["area_ratio"] == 1.0
    assert instance_change_metrics(np.zeros_like(a), a)["area_ratio"] == math.inf


def test_erosion_area_ratio_and_davis_tolerance():
    a, b = square(size=20), square(y0=15, x0=15, size=10)
    m = instance_change_metrics(a, b)
    assert m["area_ratio"] == pytest.approx(0.25) and m["iou"] == pytest.approx(0.25)
    assert m["centroid_shift"] == pytest.approx(0.0)
    assert davis_tolerance(480, 854) == math.ceil(0.008 * math.hypot(480, 854)) == 8


def _full_image_boundary_f(p, r, tol):
    """Reference without cropping: brute-force distances between boundary pixels."""
    bp, br = np.argwhere(mask_boundary(p)), np.argwhere(mask_boundary(r))
    if len(bp) == 0 and len(br) == 0:
        return 1.0
    if len(bp) == 0 or len(br) == 0:
        return 0.0
    d = np.sqrt(((bp[:, None, :] - br[None, :, :]) ** 2).sum(-1))
    prec, rec = (d.min(1) <= tol + 1e-9).mean(), (d.min(0) <= tol + 1e-9).mean()
    return 0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cropped_metrics_equal_full_image_reference(seed):
    """Random blobs touching the image border: crop-based numbers equal full-image ones."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = 40, 50
    a = np.zeros((h, w), np.uint8)
    b = np.zeros((h, w), np.uint8)
    cv2.circle(a, (int(rng.integers(0, 12)), int(rng.integers(10, 30))), 9, 1, -1)
    cv2.circle(b, (int(rng.integers(0, 12)), int(rng.integers(10, 30))), 8, 1, -1)
    a, b = a.astype(bool), b.astype(bool)
    tol = 1  # with radius 1 the ellipse kernel is the 3x3 cross: distance <= 1
    m = instance_change_metrics(a, b, boundary_tolerance=tol)
    assert m["boundary_f"] == pytest.approx(boundary_f_score(b, a, tolerance=tol))
    assert m["boundary_f"] == pytest.approx(_full_image_boundary_f(b, a, tol))
    inter, union = (a & b).sum(), (a | b).sum()
    assert m["iou"] == pytest.approx(inter / union)


def test_shape_errors_name_the_problem():
    with pytest.raises(ValueError, match="shapes differ"):
        instance_change_metrics(np.zeros((4, 5), bool), np.zeros((5, 4), bool))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        instance_change_metrics(np.zeros((4, 5, 1), bool), np.zeros((4, 5, 1), bool))
