"""mVC and TC (steadyseg.consistency_scores) on shapes with answers computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from steadyseg.consistency_scores import mean_video_consistency, temporal_consistency_tc
from steadyseg.warp import ValidityThresholds


def _sq(x0, y0=10, size=10, h=40, w=40, value=1):
    m = np.zeros((h, w), np.uint8)
    m[y0:y0 + size, x0:x0 + size] = value
    return m


def test_mean_video_consistency():
    gt = [_sq(5)] * 4
    assert mean_video_consistency(gt, gt, n=2) == 1.0
    # prediction flickers on 10 pixels (one column) in frame 2: clips (1,2) and (2,3) lose those 10 of 1600
    pred = [_sq(5)] * 4
    pred[2] = _sq(5)
    pred[2][10:20, 15] = 1
    assert mean_video_consistency(pred, gt, n=2) == pytest.approx((1 + 2 * 1590 / 1600) / 3)
    assert mean_video_consistency(pred, gt, n=4) == pytest.approx(1590 / 1600)
    assert np.isnan(mean_video_consistency(pred[:2], gt[:2], n=4))


def test_temporal_consistency_tc():
    def pan(p, q):
        f = np.zeros((40, 40, 2), np.float32)
        f[..., 0] = q - p
        return f
    moving = [_sq(5 + t) for t in range(4)]
    assert temporal_consistency_tc(moving, pan) == 1.0
    static = [_sq(5)] * 2
    # warped previous (square at 6) vs the current (at 5), columns ≥ 1 valid: class 1 IoU 90/110, class 0 on
    # the 40·39 valid pixels: (1560 − 110)/(1560 − 90)
    expected = np.mean([90 / 110, (1560 - 110) / (1560 - 90)])
    assert temporal_consistency_tc(static, pan) == pytest.approx(expected)
    # the thresholds reach the valid mask: with both forward–backward terms 0, |a + b|² = 0 < 0 fails everywhere
    assert np.isnan(temporal_consistency_tc(static, pan, thresholds=ValidityThresholds(fb_alpha=0.0, fb_beta=0.0)))
