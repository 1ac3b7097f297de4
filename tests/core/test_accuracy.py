"""DAVIS J/F on shapes with answers computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from steadyseg.accuracy import boundary_f, davis_scores, iou, mask_boundary


def _sq(x0, y0=10, size=10, h=40, w=40, value=1):
    m = np.zeros((h, w), np.uint8)
    m[y0:y0 + size, x0:x0 + size] = value
    return m


def test_iou_closed_form():
    assert iou(_sq(5), _sq(5)) == 1.0
    # 10×10 squares overlapping in 10×5: 50 / 150
    assert iou(_sq(5), _sq(10)) == pytest.approx(50 / 150)
    assert iou(_sq(0), _sq(20)) == 0.0
    assert iou(np.zeros((4, 4), bool), np.zeros((4, 4), bool)) == 1.0
    # void in gt (255) removes those pixels from both masks
    gt = _sq(5)
    gt[10:20, 10:15] = 255
    assert iou(_sq(5), gt) == pytest.approx(1.0)
    assert iou(_sq(10), gt) == pytest.approx(0 / 100)   # pred's overlap with gt lies inside void
    with pytest.raises(ValueError, match="shapes differ"):
        iou(np.zeros((3, 3)), np.zeros((4, 4)))


def test_mask_boundary_follows_the_official_seg2bmap():
    # a 10×10 square (rows 10..19, columns 5..14): the row above it (11 px, with the corner at column 4), the
    # column to its left (10), its own last column (10) and last row (9 more) → 40
    assert mask_boundary(_sq(5)).sum() == 40
    # a one-pixel object away from the border: the 2×2 block up and left of it
    one = np.zeros((6, 6), bool)
    one[2, 2] = True
    assert sorted(map(tuple, np.argwhere(mask_boundary(one)))) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    # an object that fills the image has no boundary (the border is not an edge)
    assert not mask_boundary(np.ones((4, 6), bool)).any()
    # a one-pixel object in the bottom-right corner: the last row compares only with the right neighbour, the
    # last column only with the lower one, and the corner pixel itself is never a boundary pixel
    corner = np.zeros((4, 6), bool)
    corner[3, 5] = True
    assert sorted(map(tuple, np.argwhere(mask_boundary(corner)))) == [(2, 4), (2, 5), (3, 4)]
    # an object along the right border: the column left of it, nothing on the border column except its last row
    right = np.zeros((4, 6), bool)
    right[:, 4:] = True
    assert sorted(map(tuple, np.argwhere(mask_boundary(right)))) == [(0, 3), (1, 3), (2, 3), (3, 3)]


def test_tolerance_disk_is_the_euclidean_disk():
    from steadyseg.accuracy import _disk

    # offsets with dy² + dx² ≤ r²: r = 1 is a plus (5 px), r = 2 has 13 px (not the 5×5 ellipse of OpenCV)
    assert _disk(1).tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    assert _disk(2).sum() == 13 and _disk(8).sum() == 197


def test_boundary_f_of_one_pixel_objects_by_hand():
    # 20×20: r = ceil(0.008 · 28.28) = 1 (a plus). Boundaries {(1,1),(1,2),(2,1),(2,2)} and {(1,3),(1,4),(2,3),
    # (2,4)}: (1,2) and (2,2) lie next to (1,3) and (2,3) → P = R = 2/4 → F = 0.5
    a, b = np.zeros((20, 20), bool), np.zeros((20, 20), bool)
    a[2, 2] = b[2, 4] = True
    assert boundary_f(a, b) == pytest.approx(0.5)
    # one pixel apart diagonally: (1,1)…(2,2) vs (2,2)…(3,3): (2,2) shared, (1,2)/(2,1) touch (2,2) → P = R = 3/4
    c = np.zeros((20, 20), bool)
    c[3, 3] = True
    assert boundary_f(a, c) == pytest.approx(0.75)


def test_boundary_f_closed_form():
    a = _sq(5)
    assert boundary_f(a, a) == 1.0
    # tolerance 0 px, shift by one column: 40 boundary pixels each; the row above shares 10 pixels, the last row
    # 10 (its left end is the left column's last pixel) → P = R = 20/40, F = 0.5
    assert boundary_f(_sq(6), a, bound_th=0) == pytest.approx(0.5)
    # default tolerance: ceil(0.008 · hypot(40, 40)) = 1 px covers a one-pixel shift
    assert boundary_f(_sq(6), a) == 1.0
    # far apart: nothing matches
    assert boundary_f(_sq(0, 0), _sq(28, 28)) == 0.0
    empty = np.zeros((40, 40), np.uint8)
    assert boundary_f(empty, empty) == 1.0 and boundary_f(a, empty) == 0.0
    # bound_th ≥ 1 is a radius in pixels: a 3-px shift matches with r = 3, not with r = 2 on the vertical edges
    assert boundary_f(_sq(8), a, bound_th=3) == 1.0
    assert boundary_f(_sq(8), a, bound_th=2) < 1.0


def test_davis_scores_binary_and_multi():
    gt = [_sq(5), _sq(6), _sq(7), _sq(8)]
    pred = [_sq(5), _sq(6), _sq(12), np.zeros((40, 40), np.uint8)]
    s = davis_scores(pred, gt, binary=True)
    assert s["objects"][1]["J"] == pytest.approx([1, 1, 50 / 150, 0])
    assert s["J_mean"] == pytest.approx((2 + 50 / 150) / 4)
    assert s["J_recall"] == 0.5
    assert s["iou"] == pytest.approx([1, 1, 50 / 150, 0]) and s["frames"] == 4
    assert s["objects"][1]["F"][:2] == [1.0, 1.0] and s["objects"][1]["F"][3] == 0.0
    # two objects, the second appears in frame 1; the prediction has it already in frame 0 (false positive)
    g2 = [_sq(5), _sq(5) + _sq(25, value=2), _sq(5) + _sq(25, value=2)]
    p2 = [_sq(5) + _sq(25, value=2), _sq(5) + _sq(25, value=2), _sq(5)]
    m = davis_scores(p2, g2, binary=False)
    assert sorted(m["objects"]) == [1, 2]
    assert m["objects"][1]["J"] == [1.0, 1.0, 1.0]
    assert m["objects"][2]["J"] == [0.0, 1.0, 0.0]
    assert m["J_mean"] == pytest.approx((1 + 1 / 3) / 2)
    with pytest.raises(ValueError, match="more"):
        davis_scores(gt, gt[:2], binary=True)
