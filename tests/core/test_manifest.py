"""Manifests: schema validation with clear errors, path/env resolution, dispatch to refine-coco."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from steadyseg import manifest as mf
from steadyseg import manifest_cli
from steadyseg.datasets.synthetic import make_synthetic_coco

REPO = Path(__file__).resolve().parents[2]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_shipped_manifests_validate(monkeypatch, coco80):
    monkeypatch.delenv("STEADYSEG_SHARED_DATA", raising=False)
    monkeypatch.delenv("STEADYSEG_OUT", raising=False)
    job = mf.load_manifest(REPO / "manifests" / "coco-val2017-80-guided.yaml")
    assert job.kind == "refine-coco" and job.spec["refiner"]["name"] == "guided"
    # ../../shared/data relative to manifests/ is the shared data folder beside the repository
    assert Path(job.spec["source"]["annotations"]) == (REPO.parent / "shared" / "data" / "coco-val2017-80"
                                                      / "annotations" / "instances_val2017.json").resolve()
    assert Path(job.spec["output"]) == REPO / "out" / "coco-val2017-80-guided"
    monkeypatch.setenv("COCO_ROOT", "/data/coco")
    monkeypatch.setenv("CASCADEPSP_CHECKPOINT", "/weights/cascadepsp.pth")
    for split in ("train", "val"):
        job = mf.load_manifest(REPO / "manifests" / f"coco2017-{split}-cascadepsp.yaml")
        assert job.spec["source"]["images"] == f"/data/coco/{split}2017"
        assert job.spec["refiner"] == {"name": "cascadepsp", "checkpoint": "/weights/cascadepsp.pth",
                                       "params": {"device": "cpu", "fast": False, "l_max": 900, "l_min": 224,
                                                  "max_upscale": 2.0}}
    monkeypatch.delenv("COCO_ROOT")
    with pytest.raises(mf.ManifestError, match=r"coco2017-val-cascadepsp.yaml: key 'source.annotations': "
                                               r"environment variable \$\{COCO_ROOT\} is not set"):
        mf.load_manifest(REPO / "manifests" / "coco2017-val-cascadepsp.yaml")


BASE = """kind: refine-coco
name: t
source:
  annotations: data/annotations/instances.json
  images: data/images
refiner:
  name: identity
output: out
"""


@pytest.mark.parametrize("extra, message", [
    ("colour: red\n", r"m.yaml: unknown key 'colour'"),
    ("parameters:\n  gaurd: flag-only\n", r"m.yaml: unknown key 'parameters.gaurd'"),
    ("parameters:\n  guard: drop\n", r"key 'parameters.guard' must be one of \['keep-original', 'flag-only'\]"),
    ("parameters:\n  shard_size: many\n", r"key 'parameters.shard_size' must be int"),
    ("execution:\n  strict: 1\n", r"key 'execution.strict' must be bool"),
])
def test_schema_errors_name_the_key_and_the_file(tmp_path, extra, message):
    path = _write(tmp_path / "m.yaml", BASE + extra)
    with pytest.raises(mf.ManifestError, match=message):
        mf.load_manifest(path)


def test_missing_keys_kind_and_yaml_errors(tmp_path):
    with pytest.raises(mf.ManifestError, match="key 'output' is required"):
        mf.load_manifest(_write(tmp_path / "a.yaml", BASE.replace("output: out\n", "")))
    with pytest.raises(mf.ManifestError, match=r"key 'kind' must be one of \['refine-coco'\], got 'train'"):
        mf.load_manifest(_write(tmp_path / "b.yaml", BASE.replace("kind: refine-coco", "kind: train")))
    with pytest.raises(mf.ManifestError, match="c.yaml: not valid YAML"):
        mf.load_manifest(_write(tmp_path / "c.yaml", "kind: [unclosed\n"))
    with pytest.raises(FileNotFoundError, match="nope.yaml: manifest not found"):
        mf.load_manifest(tmp_path / "nope.yaml")


def test_run_a_manifest_end_to_end(tmp_path, monkeypatch, capsys):
    syn = make_synthetic_coco(tmp_path / "jobs" / "data", num_images=2, seed=7)
    assert syn["instances"] == tmp_path / "jobs" / "data" / "annotations" / "instances.json"
    monkeypatch.setenv("MY_OUT", str(tmp_path / "results"))
    path = _write(tmp_path / "jobs" / "m.yaml", BASE.replace("output: out", "output: ${MY_OUT}/variant")
                  + "parameters:\n  shard_size: 1\nexecution:\n  workers: 1\n")
    job = mf.load_manifest(path)
    assert job.spec["source"]["images"] == str(tmp_path / "jobs" / "data" / "images")  # relative to the manifest
    parser = argparse.ArgumentParser()
    manifest_cli.add_arguments(parser)
    assert manifest_cli.main(parser.parse_args([str(path), "--dry-run"])) == 0
    assert "kind: refine-coco" in capsys.readouterr().out and not (tmp_path / "results").exists()
    assert manifest_cli.main(parser.parse_args([str(path), "--no-progress"])) == 0
    out = tmp_path / "results" / "variant"
    run = json.loads((out / "run.json").read_text())
    assert run["refiner"]["name"] == "identity" and run["parameters"]["shard_size"] == 1
    assert (out / "instances.json").is_file() and (out / "manifest.yaml").is_file()
    assert manifest_cli.main(parser.parse_args([str(path), "--no-progress", "--resume"])) == 0  # all shards done
    assert json.loads((out / "run.json").read_text())["counts"]["shards_resumed"] == 2


def test_refiner_choices_come_from_the_registry(tmp_path, monkeypatch):
    """The schema holds no copy of the refiner names: a refiner registered in REFINERS is accepted."""
    from steadyseg.refine import refiners

    path = _write(tmp_path / "m.yaml", BASE.replace("  name: identity", "  name: my-refiner"))
    with pytest.raises(mf.ManifestError, match=r"key 'refiner.name' must be one of \['guided', 'cascadepsp', "
                                               r"'identity'\], got 'my-refiner'"):
        mf.load_manifest(path)
    monkeypatch.setitem(refiners.REFINERS, "my-refiner", refiners.REFINERS["identity"])
    assert mf.load_manifest(path).spec["refiner"]["name"] == "my-refiner"
