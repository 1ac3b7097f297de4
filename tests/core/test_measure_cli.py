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


# ---------------------------------------------------------------------------------------- default cache, --masks x N
def test_default_persistent_cache_and_no_cache(synth, tmp_path, monkeypatch):
    """Without --cache the flows go to <STEADYSEG_CACHE_DIR>/flow (tests point it at a temporary folder) and the next
    run computes none; --no-cache computes them in a temporary cache that is removed; XDG_CACHE_HOME is the default
    root when STEADYSEG_CACHE_DIR is not set."""
    import os

    from steadyseg.datasets.flow import cache_info, default_cache_root, default_flow_cache_dir

    assert str(default_cache_root()) == os.environ["STEADYSEG_CACHE_DIR"]  # the conftest fixture's folder
    assert not default_flow_cache_dir().is_relative_to(os.path.expanduser("~/.cache"))
    argv = ["--frames", str(synth["frames"]), "--masks", str(synth["predictions"]), "--preset", "ultrafast",
            "--window", "1", "--workers", "1"]
    out1, out2, out3 = tmp_path / "1.json", tmp_path / "2.json", tmp_path / "3.json"
    assert _run(argv + ["--json", str(out1)]) == 0
    r1 = json.loads(out1.read_text())
    assert r1["config"]["cache"] == str(default_flow_cache_dir())
    info = cache_info()
    assert r1["timing"]["flow_pairs_computed"] == info["kinds"]["flow"]["entries"] == 18
    assert r1["timing"]["valid_masks_computed"] == info["kinds"]["valid"]["entries"] == 18
    assert r1["timing"]["nearest_maps_computed"] == info["kinds"]["nearest-map"]["entries"] == 18
    assert _run(argv + ["--json", str(out2)]) == 0
    r2 = json.loads(out2.read_text())
    assert r2["timing"]["flow_pairs_computed"] == 0 and r2["timing"]["valid_masks_cached"] == 18
    assert r2["timing"]["valid_masks_computed"] == 0
    # warm: M and the nearest sampling maps come from the cache, and no flow is read at all
    assert r2["timing"]["nearest_maps_cached"] == 18 and r2["timing"]["nearest_maps_computed"] == 0
    assert r2["timing"]["flows_read"] == 0 and r1["timing"]["flows_read"] == 18
    for key in ("inconsistency", "inconsistency_raw", "smoothness", "tc", "frames", "per_pair"):
        assert r2[key] == r1[key], key
    assert _run(argv + ["--no-cache", "--json", str(out3)]) == 0
    r3 = json.loads(out3.read_text())
    assert r3["config"]["cache"] is None and r3["timing"]["flow_pairs_computed"] == 18
    assert cache_info()["entries"] == 54  # nothing added (18 flows, 18 masks M, 18 sampling maps)
    # (not compared with r1: OpenCV's DIS gives a different flow on the first call of a fresh DIS object)
    with pytest.raises(ValueError, match="--no-cache"):
        _run(argv + ["--no-cache", "--cache", str(tmp_path / "c")])

    monkeypatch.delenv("STEADYSEG_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_flow_cache_dir() == tmp_path / "xdg" / "steadyseg" / "flow"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_flow_cache_dir() == tmp_path / "home" / ".cache" / "steadyseg" / "flow"


def test_library_cache_argument(synth, tmp_path):
    """measure_video(cache=None) uses the default cache, cache=False a temporary one, a path that folder."""
    from steadyseg.datasets.flow import cache_info, default_flow_cache_dir
    from steadyseg.measure_video import measure_video, resolve_cache

    assert resolve_cache(None) == default_flow_cache_dir() and resolve_cache(False) is None
    assert resolve_cache(tmp_path / "c") == tmp_path / "c"
    with pytest.raises(ValueError, match="True"):
        resolve_cache(True)
    kw = dict(frames=synth["frames"], masks=synth["predictions"], preset="ultrafast", window=1, workers=1,
              progress=False)
    r = measure_video(cache=False, **kw)
    assert r["config"]["cache"] is None and cache_info()["entries"] == 0
    r = measure_video(cache=tmp_path / "c", **kw)
    assert r["config"]["cache"] == str(tmp_path / "c") and cache_info(tmp_path / "c")["entries"] == 54
    assert cache_info()["entries"] == 0


def test_several_masks_in_one_call(synth, tmp_path, capsys):
    """--masks A --masks B: one table with a row per folder, one JSON with a result per folder, each equal to the
    result of its own run; the flows and validity masks are computed once."""
    cache = tmp_path / "cache"
    common = ["--frames", str(synth["frames"]), "--gt", str(synth["annotations"]), "--preset", "ultrafast",
              "--window", "2", "--workers", "2", "--cache", str(cache), "--mvc-n", "3"]
    out = tmp_path / "both.json"
    png = tmp_path / "plots" / "p.png"
    assert _run(common + ["--masks", str(synth["predictions"]), "--masks", str(synth["annotations"]),
                          "--json", str(out), "--plot", str(png)]) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert lines[0].split()[:5] == ["masks", "E_cons", "E_raw", "E_smooth", "TC"]
    # both folders are named "synthetic": the rows name them by their whole path
    assert lines[1].split()[0] == str(synth["predictions"]) and lines[2].split()[0] == str(synth["annotations"])
    assert "GT floor" in printed
    both = json.loads(out.read_text())
    assert both["masks"] == [str(synth["predictions"]), str(synth["annotations"])] and len(both["results"]) == 2
    pred, gt = both["results"]
    assert pred["timing"]["flow_pairs_computed"] == 34 and pred["timing"]["valid_masks_computed"] == 34
    assert gt["iou"] == 1.0 and gt["inconsistency_raw"] == pred["gt"]["inconsistency_raw"]
    cfg = yaml.safe_load((tmp_path / "both.config.yaml").read_text())
    assert cfg["config"]["masks"] == both["masks"]
    assert (tmp_path / "plots" / "p-1.png").is_file() and (tmp_path / "plots" / "p-2.png").is_file()
    for masks, res in ((synth["predictions"], pred), (synth["annotations"], gt)):
        single = tmp_path / f"single-{masks.name}.json"
        assert _run(common + ["--masks", str(masks), "--json", str(single)]) == 0
        alone = json.loads(single.read_text())
        assert alone["timing"]["flow_pairs_computed"] == 0 and alone["timing"]["valid_masks_computed"] == 0
        for key in set(alone) - {"timing"}:
            assert res[key] == alone[key], key


def test_real_video_cold_and_warm_are_bit_identical(davis2016, davis_osvos, tmp_path):
    """blackswan, 12 frames at 854×480: the first run (flows and validity masks computed) and the second (both
    read from the cache) give the same numbers, equal to the per-pair functions and to TC computed on its own."""
    from steadyseg.consistency_scores import temporal_consistency_tc
    from steadyseg.datasets.flow import FlowProvider
    from steadyseg.datasets.masks import open_masks
    from steadyseg.datasets.video import open_video
    from steadyseg.measure_video import measure_videos
    from steadyseg.measures import pair_inconsistency

    seq, n, window = "blackswan", 12, 2
    frames, gt = davis2016 / "JPEGImages" / "480p" / seq, davis2016 / "Annotations" / "480p" / seq
    kw = dict(frames=frames, masks=[davis_osvos / seq, gt], gt=gt, binary=True, preset="ultrafast", window=window,
              max_frames=n, workers=2, progress=False, cache=tmp_path / "cache")
    cold = measure_videos(**kw)
    warm = measure_videos(**kw)
    assert cold[0]["timing"]["valid_masks_computed"] == 2 * (11 + 10)
    assert warm[0]["timing"]["valid_masks_cached"] == 2 * (11 + 10) and warm[0]["timing"]["valid_masks_computed"] == 0
    for c, w in zip(cold, warm):
        for key in set(c) - {"timing"}:
            assert c[key] == w[key], key
    flows = FlowProvider(open_video(frames, max_frames=n), preset="ultrafast", cache_dir=tmp_path / "cache")
    pred = open_masks(davis_osvos / seq, binary=True, max_frames=n)
    labels = [pred[i].astype(np.uint8) for i in range(n)]
    ref = {f"{p}-{q}": pair_inconsistency(labels[p], labels[q], flow_p_to_q=flows(p, q), flow_q_to_p=flows(q, p))[0]
           for q in range(n) for p in range(max(0, q - window), q)}
    assert warm[0]["per_pair"] == dict(sorted(ref.items()))
    assert warm[0]["tc"] == temporal_consistency_tc(pred, flows)
    assert warm[1]["inconsistency_raw"] == warm[0]["gt"]["inconsistency_raw"] < warm[0]["inconsistency_raw"]
