"""``steadyseg bench`` on a synthetic flickering video: rows, columns, reuse, plots, errors, the shipped manifest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from steadyseg.cli import main as cli_main
from steadyseg.datasets.synthetic import make_moving_shapes_video, write_video_folder
from steadyseg.errors import InputError
from steadyseg.train.bench import COLUMNS, load_bench_manifest, parse_method, run_bench

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """12 frames of two shapes; the teacher is the flickering per-frame model (centres jittered ±2 px)."""
    v = make_moving_shapes_video(num_frames=12, height=48, width=64, num_objects=2, flicker_px=2, seed=1)
    paths = write_video_folder(v, tmp_path_factory.mktemp("bench-video"))
    return v, {"frames": paths["frames"], "gt": paths["annotations"], "teacher": paths["predictions"]}


@pytest.fixture(scope="module")
def tiny_decoder(video, tmp_path_factory):
    """A decoder with N = 3 trained for 10 steps (the bench only needs a model to run)."""
    from steadyseg.train.decoder_training import train_decoder

    v, p = video
    run = tmp_path_factory.mktemp("bench-decoder") / "run"
    train_decoder([(p["frames"], p["teacher"])], run, flows=[v.flows], inputs=3, steps=10, lr=3e-3, seed=0,
                  progress=False)
    return run / "model.pt"


@pytest.fixture(scope="module")
def bench(video, tiny_decoder, tmp_path_factory):
    _, p = video
    out = tmp_path_factory.mktemp("bench") / "out"
    methods = ["teacher", "gauss:1", "wgf3d", f"decoder:dec={tiny_decoder}", f"decoder+wgf3d:dec={tiny_decoder}"]
    res = run_bench([p], out, methods=methods, workers=1, progress=False)
    return out, res, methods


def test_results_have_every_row_and_column(bench):
    out, res, methods = bench
    on_disk = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in on_disk["rows"]] == methods
    table = on_disk["videos"]["synthetic"]
    assert len(table) == len(methods)
    for rec in list(table.values()) + list(on_disk["mean"].values()):
        assert {k for k, _, _ in COLUMNS} <= set(rec)
        for key in ("recall", "iou", "j_mean", "f_mean", "e_smooth", "e_raw", "e_cons", "e_raw_change"):
            assert rec[key] is not None
    assert table["teacher"]["e_raw_change"] == 0.0 and table["teacher"]["fps"] is None
    assert table["wgf3d"]["fps"] > 0 and table["decoder-dec"]["fps"] > 0 and table["decoder-wgf3d-dec"]["fps"] > 0
    # the 3D WGF votes the flicker away in time
    assert table["wgf3d"]["e_raw"] < table["teacher"]["e_raw"]
    assert table["wgf3d"]["e_raw_change"] < 0
    # one normaliser per video, shared by every row (the ground truth's)
    assert len({json.loads((out / "synthetic" / r["slug"] / "bench.json").read_text())["measures"]["values"]
                ["normalizer"] for r in on_disk["rows"]}) == 1
    assert on_disk["rows"][3]["inputs"] == 3


def test_markdown_tables_and_plots(bench):
    out, res, _ = bench
    md = (out / "results.md").read_text()
    assert "## synthetic" in md and "## Mean over 1 video(s)" in md
    assert "| Method | Recall | IoU | J | F | E_smooth | E_raw | E_cons | ΔE_raw | fps |" in md
    assert "| Naive (teacher) |" in md and "| 3D WGF |" in md and "| dec + 3D WGF |" in md
    assert (out / "fig9-recall-vs-eraw.png").stat().st_size > 1000
    assert (out / "fig9-iou-vs-eraw.png").stat().st_size > 1000
    assert not (out / "fig7-inputs.png").exists()  # one N only
    assert (out / "config.yaml").is_file()


def test_rerun_reuses_the_rows(bench, video, monkeypatch):
    out, res, methods = bench
    _, p = video
    row_files = {f: f.stat().st_mtime_ns for f in (out / "synthetic").rglob("*") if f.is_file()}
    import steadyseg.measure_video
    import steadyseg.refine.postprocess.video_filter
    import steadyseg.train.predict

    def forbidden(*a, **k):
        raise AssertionError("a row was recomputed")

    monkeypatch.setattr(steadyseg.train.predict, "predict_video", forbidden)
    monkeypatch.setattr(steadyseg.refine.postprocess.video_filter, "postprocess_video", forbidden)
    monkeypatch.setattr(steadyseg.measure_video, "measure_video", forbidden)
    again = run_bench([p], out, methods=methods, workers=1, progress=False)
    assert again["videos"] == res["videos"]
    assert {f: f.stat().st_mtime_ns for f in row_files} == row_files


def test_filter_rows_take_parameters_and_a_changed_default_is_recomputed(bench, video, monkeypatch, tmp_path):
    """``wgf3d:KEY=VALUE,...`` rows; the filter rows' cache records the resolved parameters, so changing the
    default filter (as a new release may) recomputes them instead of reusing masks of the old default."""
    import steadyseg.refine.postprocess.video_filter as vf

    row = parse_method("wgf3d:strength=light,eps=0.02")
    assert (row.kind, row.label, row.slug) == ("wgf3d", "3D WGF (strength=light, eps=0.02)",
                                               "wgf3d-strength-light-eps-0.02")
    method, params = row.postprocess()
    assert method == "wgf" and params["temporal_radius"] == vf.WGF_PRESETS["light"]["temporal_radius"]
    assert params["eps"] == 0.02
    assert parse_method("wgf2d").postprocess()[1]["temporal_radius"] == 0
    for bad, why in (("wgf3d:nope=1", "nope"), ("wgf3d:strength=huge", "huge"), ("wgf2d:temporal_radius=2", "wgf3d"),
                     ("wgf3d:eps", "KEY=VALUE")):
        with pytest.raises(InputError, match=why):
            parse_method(bad)
    out, res, methods = bench
    _, p = video
    out = shutil.copytree(out, tmp_path / "out")  # the module's bench folder stays as it was
    calls = []
    real = vf.postprocess_video

    def counting(*a, **k):
        calls.append(k)
        return real(*a, **k)

    monkeypatch.setattr(vf, "postprocess_video", counting)
    monkeypatch.setitem(vf.WGF_PRESETS[vf.DEFAULT_STRENGTH], "eps", 0.5)  # another default: wgf rows recomputed
    again = run_bench([p], out, methods=methods, workers=1, progress=False)
    assert sorted(k["eps"] for k in calls) == [0.5, 0.5] and len(calls) == 2  # wgf3d and decoder+wgf3d
    assert again["videos"]["synthetic"]["gauss-1"] == res["videos"]["synthetic"]["gauss-1"]


def test_max_frames_and_two_decoders_give_fig7(video, tiny_decoder, tmp_path):
    from steadyseg.train.decoder_training import train_decoder

    v, p = video
    train_decoder([(p["frames"], p["teacher"])], tmp_path / "n1", flows=[v.flows], inputs=1, steps=2, seed=0,
                  progress=False)
    out = tmp_path / "out"
    res = run_bench([p], out, methods=["teacher", f"decoder:n3={tiny_decoder}", f"decoder:n1={tmp_path / 'n1'}"
                                       "/model.pt", f"decoder:n3b={tiny_decoder}"], max_frames=8, workers=1,
                    progress=False)
    assert [r["inputs"] for r in res["rows"]] == [None, 3, 1, 3]  # two rows of one N are two points of Fig. 7
    assert res["videos"]["synthetic"]["decoder-n3"]["recall"] is not None
    assert (out / "fig7-inputs.png").stat().st_size > 1000
    assert len(list((out / "synthetic" / "decoder-n3").glob("*.png"))) == 8


def test_bad_inputs_name_the_file(video, tmp_path, capsys):
    _, p = video
    short = tmp_path / "short"
    shutil.copytree(p["teacher"], short)
    sorted(short.glob("*.png"))[-1].unlink()
    with pytest.raises(InputError, match=str(short)):
        run_bench([{**p, "teacher": short}], tmp_path / "o1", methods=["teacher"], progress=False)
    with pytest.raises(InputError, match="unknown method 'median:3'"):
        parse_method("median:3")
    with pytest.raises(InputError, match="no such checkpoint"):
        run_bench([p], tmp_path / "o2", methods=[f"decoder:x={tmp_path / 'none.pt'}"], progress=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"videos:\n  - {{frames: {p['frames']}, gt: {p['gt']}, teacher: {p['teacher']}}}\n"
                   "method: [teacher]\n")
    with pytest.raises(InputError, match=rf"{bad}: top level: unknown key\(s\) \['method'\]"):
        load_bench_manifest(bad)
    bad.write_text(f"videos:\n  - {{frames: {p['frames']}, gt: {p['gt']}, teacher: {p['teacher']}}}\n"
                   "methods: [teacher, median:3]\n")
    with pytest.raises(InputError, match=rf"{bad}: unknown method 'median:3'"):
        load_bench_manifest(bad)
    bad.write_text(f"videos:\n  - {{frames: {p['frames']}, gt: {p['gt']}}}\n")
    with pytest.raises(InputError, match=r"videos\[0\]: missing key\(s\) \['teacher'\]"):
        load_bench_manifest(bad)
    # the CLI: one line naming the file, exit status 1
    rc = cli_main(["bench", "--frames", str(p["frames"]), "--gt", str(p["gt"]), "--out", str(tmp_path / "o3")])
    assert rc == 1 and "--teacher" in capsys.readouterr().err
    rc = cli_main(["bench", "--manifest", str(bad), "--out", str(tmp_path / "o4")])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and str(bad) in err


def test_cli_with_flags(video, tmp_path, capsys):
    _, p = video
    rc = cli_main(["bench", "--frames", str(p["frames"]), "--gt", str(p["gt"]), "--teacher", str(p["teacher"]),
                   "--out", str(tmp_path / "out"), "--method", "teacher", "--method", "wgf2d", "--max-frames", "6",
                   "--workers", "1", "--preset", "fast", "--quiet"])
    assert rc == 0 and "2D WGF" in capsys.readouterr().out
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(res["videos"]["synthetic"]) == {"teacher", "wgf2d"} and res["config"]["max_frames"] == 6
    assert res["config"]["preset"] == "fast"


def test_manifest_paths_are_relative_to_the_manifest(tmp_path):
    (tmp_path / "m").mkdir()
    f = tmp_path / "m" / "bench.yaml"
    f.write_text("videos:\n  - {name: a, frames: ../v/f, gt: ../v/g, teacher: ../v/t}\n"
                 "methods: [teacher, 'decoder:n7=../runs/n7/model.pt']\noptions: {max_frames: 5}\nout: ../out\n")
    job = load_bench_manifest(f)
    assert job["videos"] == [{"name": "a", "frames": tmp_path / "v" / "f", "gt": tmp_path / "v" / "g",
                              "teacher": tmp_path / "v" / "t"}]
    assert job["methods"] == ["teacher", f"decoder:n7={tmp_path / 'runs' / 'n7' / 'model.pt'}"]
    assert job["options"] == {"max_frames": 5} and job["out"] == tmp_path / "out"


def test_shipped_manifest_validates(monkeypatch, tmp_path):
    monkeypatch.setenv("STEADYSEG_SHARED_DATA", str(tmp_path / "data"))
    job = load_bench_manifest(REPO / "manifests" / "bench-davis-osvos.yaml")
    assert len(job["videos"]) == 8
    assert job["videos"][0]["frames"] == tmp_path / "data" / "davis2016" / "JPEGImages" / "480p" / "blackswan"
    assert job["videos"][0]["teacher"] == tmp_path / "data" / "davis2017-osvos" / "blackswan"
    assert [parse_method(m).kind for m in job["methods"]] == ["teacher"] + ["gauss"] * 4 + ["wgf2d", "wgf3d"]
    assert job["options"]["binary"] is True


def test_cached_measures_of_an_older_accuracy_version_get_their_accuracy_recomputed(bench, video):
    """bench.json written before the DAVIS boundary convention: J/F/recall are recomputed, E_* kept (no flow)."""
    from steadyseg.train.bench import ACCURACY_VERSION, measure_row

    out, res, _ = bench
    _, p = video
    row_dir = out / "synthetic" / "gauss-1"
    rec = json.loads((row_dir / "bench.json").read_text())
    good = dict(rec["measures"]["values"])
    stale = {**good, "f_mean": -1.0, "e_raw": 123.0}
    del stale["accuracy_version"]
    (row_dir / "bench.json").write_text(json.dumps({**rec, "measures": {**rec["measures"], "values": stale}}))
    cfg = {**res["config"], "cache": out / "no-flow-cache-needed"}
    values = measure_row(Path(rec["masks"]), p, row_dir, cfg)
    assert values["f_mean"] == pytest.approx(good["f_mean"]) and values["e_raw"] == 123.0
    assert values["accuracy_version"] == ACCURACY_VERSION
    assert not (out / "no-flow-cache-needed").exists()
    (row_dir / "bench.json").write_text(json.dumps(rec))  # the module's other tests see the bench as it was
