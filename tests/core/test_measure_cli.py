"""``steadyseg measure`` (and :func:`steadyseg.measure_video.measure_video`) on a small synthetic video written in the
DAVIS layout: with the exact flow in the cache, every number equals the measure computed directly on the arrays."""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest
import yaml

from steadyseg import measure_cli


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    measure_cli.add_arguments(parser)
    return measure_cli.main(parser.parse_args(argv))


def _video():
    from steadyseg.datasets.synthetic import make_moving_shapes_video

    return make_moving_shapes_video(num_frames=10, height=64, width=80, seed=3, flicker_px=2)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from steadyseg.datasets.synthetic import write_video_folder

    return write_video_folder(_video(), tmp_path_factory.mktemp("synth"))


def test_results_equal_the_measures_on_the_arrays_under_exact_flow(synth, tmp_path, capsys):
    """The exact flow of the synthetic video is put into the cache under the keys the command will look up; the
    command then computes no flow, and each number equals the library measure applied to the in-memory arrays."""
    from steadyseg.accuracy import davis_scores
    from steadyseg.consistency_scores import mean_video_consistency, temporal_consistency_tc
    from steadyseg.datasets.flow import FlowProvider
    from steadyseg.datasets.video import open_video
    from steadyseg.measures import inconsistency, median_boundary, smoothness
    from steadyseg.pairs import window_pairs

    video = _video()
    window, cache = 2, tmp_path / "cache"
    provider = FlowProvider(open_video(synth["frames"]), backend="dis", preset="ultrafast", cache_dir=cache)
    for p, q in window_pairs(len(video), window):
        provider.cache.put(provider.key(p, q), video.flows(p, q))
    out = tmp_path / "res.json"
    assert _run(["--frames", str(synth["frames"]), "--masks", str(synth["predictions"]), "--gt",
                 str(synth["annotations"]), "--preset", "ultrafast", "--window", str(window), "--mvc-n", "3",
                 "--cache", str(cache), "--workers", "2", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["timing"]["flow_pairs_computed"] == 0 and res["timing"]["flow_pairs_cached"] == 2 * (9 + 8)

    pred, gt = list(video.flicker_labels), list(video.labels)
    norm = median_boundary(gt)
    expected = inconsistency(pred, video.flows, window=window, normalizer=norm)
    expected_gt = inconsistency(gt, video.flows, window=window, normalizer=norm)
    acc = davis_scores(pred, gt, binary=False)
    assert res["normalizer"] == norm and res["normalizer_source"] == "gt"
    assert res["inconsistency_raw"] == pytest.approx(expected.e_raw, rel=1e-12)
    assert res["inconsistency"] == pytest.approx(expected.e_cons, rel=1e-12)
    assert [f["inconsistency"] for f in res["frames"]] == pytest.approx(expected.per_frame.tolist(), rel=1e-12)
    assert [f["boundary"] for f in res["frames"]] == expected.boundary_counts.tolist()
    assert res["per_pair"] == pytest.approx({f"{p}-{q}": v for (p, q), v in expected.per_pair.items()}, rel=1e-12)
    assert res["gt"]["inconsistency_raw"] == pytest.approx(expected_gt.e_raw, rel=1e-12)
    assert res["smoothness"] == pytest.approx(smoothness(pred, sigma=1.0, normalizer=norm), rel=1e-12)
    assert res["tc"] == pytest.approx(temporal_consistency_tc(pred, video.flows), rel=1e-12)
    assert res["mvc"] == pytest.approx(mean_video_consistency(pred, gt, n=3), rel=1e-12)
    assert res["iou"] == pytest.approx(acc["mean_iou"]) and res["j_mean"] == pytest.approx(acc["J_mean"])
    assert res["f_mean"] == pytest.approx(acc["F_mean"]) and res["j_recall"] == pytest.approx(acc["J_recall"])
    # the flicker model is less consistent than the exact labels, which the exact flow carries almost perfectly
    assert expected_gt.e_raw < expected.e_raw
    assert f"{expected.e_cons:.4f}" in capsys.readouterr().out


def test_registered_in_cli():
    from steadyseg.cli import SUBCOMMANDS

    assert SUBCOMMANDS["measure"][0] == "steadyseg.measure_cli"


def test_measure_predictions_against_gt(synth, tmp_path, capsys):
    out = tmp_path / "out" / "res.json"
    png = tmp_path / "out" / "res.png"
    cache = tmp_path / "cache"
    argv = ["--frames", str(synth["frames"]), "--masks", str(synth["predictions"]), "--gt", str(synth["annotations"]),
            "--flow", "dis", "--preset", "ultrafast", "--window", "2", "--cache", str(cache), "--json", str(out),
            "--plot", str(png), "--plot-frame", "4"]
    assert _run(argv) == 0
    printed = capsys.readouterr().out
    assert "E_cons" in printed and "GT E_raw (floor)" in printed and "J mean" in printed
    res = json.loads(out.read_text())
    assert len(res["frames"]) == 10 and [f["name"] for f in res["frames"]] == [f"{t:05d}" for t in range(10)]
    assert res["normalizer_source"] == "gt"
    assert 0 < res["iou"] < 1 and 0 < res["j_recall"] <= 1 and 0 < res["mvc"] < 1
    # the per-frame flicker model is less consistent than the exact labels under the same flow
    assert res["inconsistency_raw"] > res["gt"]["inconsistency_raw"]
    assert res["config"]["window"] == 2 and res["config"]["preset"] == "ultrafast"
    cfg = yaml.safe_load((out.parent / "res.config.yaml").read_text())
    assert cfg["config"]["masks"] == str(synth["predictions"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert res["timing"]["flow_pairs_computed"] == 2 * (9 + 8)

    # second run: every flow comes from the cache and the numbers are identical
    out2 = tmp_path / "again.json"
    assert _run(argv[:-6] + ["--json", str(out2)]) == 0
    res2 = json.loads(out2.read_text())
    assert res2["timing"]["flow_pairs_computed"] == 0
    assert res2["inconsistency"] == res["inconsistency"] and res2["frames"] == res["frames"]


def test_measure_ground_truth_against_itself_and_max_frames(synth, tmp_path):
    out = tmp_path / "gt.json"
    assert _run(["--frames", str(synth["frames"]), "--masks", str(synth["annotations"]), "--gt",
                 str(synth["annotations"]), "--max-frames", "6", "--flow", "farneback", "--mvc-n", "4", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["num_frames"] == 6 and len(res["frames"]) == 6
    assert res["iou"] == 1.0 and res["j_mean"] == 1.0 and res["f_mean"] == 1.0 and res["mvc"] == 1.0
    assert res["inconsistency_raw"] == res["gt"]["inconsistency_raw"]


def test_measure_without_gt_self_normalised(synth, tmp_path):
    out = tmp_path / "self.json"
    assert _run(["--frames", str(synth["frames"]), "--masks", str(synth["predictions"]), "--binary",
                 "--preset", "ultrafast", "--window", "1", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["normalizer_source"] == "self" and res["iou"] is None and res["mvc"] is None
    assert np.isfinite(res["inconsistency"]) and res["frames"][0]["iou"] is None
    own = sorted(f["boundary"] for f in res["frames"])
    assert res["normalizer"] == pytest.approx(np.median(own))


def test_measure_errors(synth, tmp_path):
    with pytest.raises(ValueError, match="--frames DIR and --masks DIR"):
        _run(["--masks", str(synth["predictions"])])
    short = tmp_path / "short"
    shutil.copytree(synth["predictions"], short)
    (short / "00009.png").unlink()
    with pytest.raises(ValueError, match="--masks.*differ in count"):
        _run(["--frames", str(synth["frames"]), "--masks", str(short)])
    with pytest.raises(FileNotFoundError):
        _run(["--frames", str(tmp_path / "nope"), "--masks", str(short)])
    with pytest.raises(ValueError, match="--window must be"):
        _run(["--frames", str(synth["frames"]), "--masks", str(short), "--window", "0"])
