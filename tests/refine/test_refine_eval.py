"""refine-eval: IoU, CascadePSP's boundary accuracy (hand-computed cases) and COCO comparisons."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from steadyseg.datasets.synthetic import make_synthetic_coco
from steadyseg.refine.coco import eval_cli
from steadyseg.refine.coco.evaluation import (boundary_accuracy, boundary_radii, compare_coco, evaluate_mask_pairs,
                                          mask_pair_metrics)


def test_boundary_radii_follow_cascadepsp():
    assert boundary_radii(480, 854) == [1, 1, 2, 3, 3]  # (854 + 480) / 300 = 4.45
    assert boundary_radii(100, 100) == [1, 1, 1, 1, 1]
    assert boundary_radii(2000, 2500) == [1, 3, 6, 9, 12]  # max radius 15


def test_boundary_accuracy_by_hand():
    ref = np.zeros((40, 40), bool)
    s = 10
    ref[15:15 + s, 15:15 + s] = True
    # radius 1: the 3x3 ellipse is a cross; the band is the 4s outer pixels (no corners) + the 4s-4 inner ring.
    ba, per = boundary_accuracy(np.zeros_like(ref), ref, radii=[1])
    assert per == [pytest.approx(4 * s / (8 * s - 4))] and ba == pytest.approx(4 * s / (8 * s - 4))
    ba, per = boundary_accuracy(ref, ref, radii=[1, 2, 3])
    assert ba == 1.0 and per == [1.0, 1.0, 1.0]
    assert np.isnan(boundary_accuracy(ref, np.zeros_like(ref), radii=[1])[0])  # no band: undefined


def test_iou_and_summary_by_hand():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[0:4, 0:5] = True  # 20 px
    b[2:6, 0:5] = True  # 20 px, overlap 10
    m = mask_pair_metrics(a, b)
    assert (m["intersection"], m["union"], m["iou"]) == (10, 30, pytest.approx(1 / 3))
    assert mask_pair_metrics(np.zeros_like(a), np.zeros_like(a))["iou"] == 1.0
    s = evaluate_mask_pairs([(a, b), (b, b)])
    assert s["iou"] == pytest.approx((10 + 20) / (30 + 20))  # ΣI/ΣU, not the mean
    assert s["mean_iou"] == pytest.approx((1 / 3 + 1) / 2) and s["count"] == 2
    with pytest.raises(ValueError, match="same shape"):
        mask_pair_metrics(a, b[:5])


def test_compare_coco_and_cli(tmp_path, capsys):
    syn = make_synthetic_coco(tmp_path / "s", num_images=3, seed=5)
    rep = compare_coco(syn["instances_true"], syn["instances_true"], original=syn["instances"], progress=False)
    assert rep["refined_vs_reference"]["iou"] == 1.0 and rep["refined_vs_reference"]["mba"] == 1.0
    assert rep["original_vs_reference"]["iou"] < 0.97
    assert rep["change"]["changed"] == rep["counts"]["scored"] > 0  # every polygon differs from the exact mask
    assert rep["counts"]["crowd_excluded"] == 1
    parser = argparse.ArgumentParser()
    eval_cli.add_arguments(parser)
    args = parser.parse_args(["--refined", str(syn["instances"]), "--reference", str(syn["instances_true"]),
                              "--original", str(syn["instances"]), "--json", str(tmp_path / "r" / "eval.json"),
                              "--no-progress"])
    assert eval_cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "mBA" in printed and "change vs original" in printed
    report = json.loads((tmp_path / "r" / "eval.json").read_text())
    assert report["refined_vs_reference"] == pytest.approx(report["original_vs_reference"])
    assert report["change"]["changed"] == 0 and (tmp_path / "r" / "eval.config.yaml").is_file()
    with pytest.raises(ValueError, match="needs --reference, --original"):
        eval_cli.main(parser.parse_args(["--refined", str(syn["instances"])]))
