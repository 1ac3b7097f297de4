"""`steadyseg demo` runs every stage on its synthetic input and the 3D WGF makes the flickering model steadier."""

import json

from steadyseg.cli import main


def test_demo_runs_every_stage(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--frames", "12", "--no-curation"]) == 0
    record = json.loads((out / "demo.json").read_text())
    steps = [s["argv"][1] for s in record["steps"]]
    for command in ("refine-coco", "refine-eval", "flow", "measure", "postprocess", "study"):
        assert command in steps
    assert all(s["returncode"] == 0 for s in record["steps"])
    for path in ("coco-refined-guided/instances.json", "coco-refined-guided/run.json", "measure-raw.json",
                 "measure-raw.png", "masks-wgf3d", "study-grid/grid.json", "config.yaml"):
        assert (out / path).exists(), path
    raw, wgf = record["summary"]["raw"], record["summary"]["wgf3d"]
    # the per-frame model flickers; the 3D weighted guided filter must make it clearly more consistent
    assert wgf["inconsistency_raw"] < 0.7 * raw["inconsistency_raw"]
    assert wgf["iou"] > raw["iou"] - 0.02
    assert "summary" in capsys.readouterr().out
