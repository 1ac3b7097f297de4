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


def test_mask_boundary():
    assert mask_boundary(_sq(5)).sum() == 36


def test_boundary_f_closed_form():
    a = _sq(5)
    assert boundary_f(a, a) == 1.0
    # tolerance 0 px, shift by one column: the top and bottom rows share 9 pixels each → P = R = 18/36, F = 0.5
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
