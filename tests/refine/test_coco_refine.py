"""The refine-coco driver: round trips through pycocotools, resume, guard, bad inputs, joblib and Dask."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from steadyseg import files
from steadyseg.datasets import coco as coco_io
from steadyseg.datasets.synthetic import make_synthetic_coco
from steadyseg.refine.coco import cli as coco_cli
from steadyseg.refine.coco import refine_coco
from steadyseg.refine.coco.evaluation import compare_coco
from steadyseg.refine.refiners import REFINERS, IdentityRefiner


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synthetic_coco(tmp_path_factory.mktemp("synth"), num_images=6, seed=3)


def _masks(data: dict) -> dict:
    sizes = {im["id"]: (im["height"], im["width"]) for im in data["images"]}
    return {a["id"]: coco_io.annotation_to_mask(a, *sizes[a["image_id"]]) for a in data["annotations"]}


def test_identity_round_trip_on_real_coco(coco80, tmp_path):
    ann = coco80 / "annotations" / "instances_val2017.json"
    before = files.sha256_file(ann)
    record = refine_coco(ann, coco80 / "val2017", tmp_path / "out", refiner="identity", shard_size=20,
                         progress=False)
    assert files.sha256_file(ann) == before  # inputs are never modified
    src, out = coco_io.load_coco_json(ann), coco_io.load_coco_json(tmp_path / "out" / "instances.json")
    assert out["images"] == src["images"] and out["categories"] == src["categories"]
    assert [a["id"] for a in out["annotations"]] == [a["id"] for a in src["annotations"]]
    assert record["counts"]["annotations"] == 815 and record["counts"]["crowd"] == 11
    assert record["counts"]["failed"] == 0 and record["counts"]["refined"] == 804
    api = coco_io.coco_api(tmp_path / "out" / "instances.json")  # pycocotools reads it
    src_masks = _masks(src)
    for a_src, a in zip(src["annotations"], out["annotations"]):
        if a_src["iscrowd"]:
            assert a == {**a_src, "refine": {"skipped": "crowd", "refiner": "identity"}}
            continue
        assert a["original_bbox"] == a_src["bbox"]
        assert a["refine"] == {"iou_with_original": 1.0, "area_ratio": 1.0, "guard": None,
                               "kept_original": False, "refiner": "identity"}
        np.testing.assert_array_equal(api.annToMask(a).astype(bool), src_masks[a["id"]])
        assert a["area"] == coco_io.rle_area(a["segmentation"]) == src_masks[a["id"]].sum()
        assert np.allclose(a["bbox"], coco_io.rle_bbox(a["segmentation"]))
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["segmentation"],
             "score": 1.0} for a in out["annotations"] if not a["iscrowd"]]
    stats = coco_io.evaluate_segm(ann, dets)
    assert stats["AP"] == pytest.approx(1.0)
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["status"] == "complete" and run["inputs"]["annotations"]["sha256"] == before
    assert run["inputs"]["images"]["hashed"] == 80
    assert run["outputs"]["instances"]["sha256"] == files.sha256_file(tmp_path / "out" / "instances.json")
    assert (tmp_path / "out" / "config.yaml").is_file() and len(list((tmp_path / "out" / "shards").glob("*"))) == 4


def test_guided_refine_coco_improves_synthetic_masks(synth, tmp_path):
    record = refine_coco(synth["instances"], synth["images"], tmp_path / "g", refiner="guided", progress=False)
    assert record["counts"]["failed"] == 0
    rep = compare_coco(tmp_path / "g" / "instances.json", synth["instances_true"], original=synth["instances"],
                       progress=False)
    before, after = rep["original_vs_reference"], rep["refined_vs_reference"]
    assert after["iou"] > before["iou"] + 0.03, (before, after)
    assert after["mba"] > before["mba"] + 0.1, (before, after)


class Killed(BaseException):
    """Stands in for a killed process (not an Exception, so the driver does not record it as a failure)."""


_BUDGET: dict[str, int | None] = {"calls_left": None}


class _KillableIdentity(IdentityRefiner):
    def refine(self, image, mask):
        if _BUDGET["calls_left"] is not None:
            if _BUDGET["calls_left"] <= 0:
                raise Killed()
            _BUDGET["calls_left"] -= 1
        return super().refine(image, mask)


def test_resume_after_a_kill_gives_identical_bytes(synth, tmp_path, monkeypatch):
    monkeypatch.setitem(REFINERS, "killable", lambda: _KillableIdentity())
    kw = dict(refiner="killable", shard_size=1, progress=False)
    refine_coco(synth["instances"], synth["images"], tmp_path / "full", **kw)
    _BUDGET["calls_left"] = 5
    try:
        with pytest.raises(Killed):
            refine_coco(synth["instances"], synth["images"], tmp_path / "killed", **kw)
    finally:
        _BUDGET["calls_left"] = None
    shards = sorted((tmp_path / "killed" / "shards").glob("shard-*.json"))
    assert 0 < len(shards) < 6 and not (tmp_path / "killed" / "instances.json").exists()
    with pytest.raises(ValueError, match="already holds a refine-coco run"):
        refine_coco(synth["instances"], synth["images"], tmp_path / "killed", **kw)
    with pytest.raises(ValueError, match="parameters differ.*min_area_ratio"):
        refine_coco(synth["instances"], synth["images"], tmp_path / "killed", resume=True, min_area_ratio=0.3,
                    **kw)
    record = refine_coco(synth["instances"], synth["images"], tmp_path / "killed", resume=True, **kw)
    assert record["counts"]["shards_resumed"] == len(shards) and record["counts"]["shards_run"] == 6 - len(shards)
    assert ((tmp_path / "killed" / "instances.json").read_bytes()
            == (tmp_path / "full" / "instances.json").read_bytes())


class _Vanish(IdentityRefiner):
    def refine(self, image, mask):
        return np.zeros(mask.shape, np.float32)


class _Shrink(IdentityRefiner):
    def refine(self, image, mask):
        out = np.zeros(mask.shape, np.float32)
        rows = np.flatnonzero(mask.any(1))
        out[rows[0]] = mask[rows[0]]  # keep one row of the object: a tiny fraction of its area
        return out


@pytest.mark.parametrize("policy", ["keep-original", "flag-only"])
@pytest.mark.parametrize("behaviour", ["vanished", "shrunk"])
def test_small_object_guard(synth, tmp_path, monkeypatch, policy, behaviour):
    monkeypatch.setitem(REFINERS, "bad", lambda: {"vanished": _Vanish, "shrunk": _Shrink}[behaviour]())
    record = refine_coco(synth["instances"], synth["images"], tmp_path / "o", refiner="bad", guard=policy,
                         min_area_ratio=0.5, progress=False)
    src = coco_io.load_coco_json(synth["instances"])
    out = coco_io.load_coco_json(tmp_path / "o" / "instances.json")
    src_masks, out_masks = _masks(src), _masks(out)
    refined = [a for a in out["annotations"] if not a["iscrowd"]]
    assert record["counts"][f"guard_{behaviour}"] == len(refined) > 0
    for a in refined:
        r = a["refine"]
        assert r["guard"] == behaviour and r["refiner"] == "bad"
        assert r["kept_original"] is (policy == "keep-original")
        if policy == "keep-original":
            np.testing.assert_array_equal(out_masks[a["id"]], src_masks[a["id"]])
        else:
            assert out_masks[a["id"]].sum() == (0 if behaviour == "vanished" else a["area"]) < src_masks[a["id"]].sum()
            assert r["area_ratio"] < 0.5
    assert record["counts"]["kept_original"] == (len(refined) if policy == "keep-original" else 0)


def _bad_input_set(synth, tmp_path: Path) -> tuple[Path, Path]:
    images = tmp_path / "images"
    shutil.copytree(synth["images"], images)
    data = coco_io.load_coco_json(synth["instances"])
    (images / "garbage.png").write_bytes(b"this is not an image")
    data["images"].append({**data["images"][0], "id": 901, "file_name": "missing.png"})
    data["images"].append({**data["images"][0], "id": 902, "file_name": "garbage.png"})
    good = next(a for a in data["annotations"] if not a["iscrowd"])
    data["annotations"] += [
        {**good, "id": 1001, "image_id": 901},
        {**good, "id": 1002, "image_id": 902},
        {**good, "id": 1003, "segmentation": [[10.0, 10.0, 20.0, 20.0]]},
        {**good, "id": 1004, "bbox": [5000.0, 5000.0, 10.0, 10.0]},
        {**good, "id": 1005, "image_id": 777},
    ]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    return path, images


def test_bad_inputs_are_recorded_and_the_run_goes_on(synth, tmp_path):
    ann, images = _bad_input_set(synth, tmp_path)
    record = refine_coco(ann, images, tmp_path / "o", refiner="identity", progress=False)
    errors = {f["id"]: f["error"] for f in record["failures"]}
    assert set(errors) == {1001, 1002, 1003, 1004, 1005}
    assert "missing.png: image file not found" in errors[1001] and "annotation 1001" in errors[1001]
    assert "garbage.png: cannot decode image" in errors[1002]
    assert "annotation 1003" in errors[1003] and "fewer than 3 points" in errors[1003]
    assert "annotation 1004" in errors[1004] and "outside the image" in errors[1004]
    assert "annotation 1005" in errors[1005] and "unknown image id 777" in errors[1005]
    src = json.loads(ann.read_text())
    out = coco_io.load_coco_json(tmp_path / "o" / "instances.json")
    for a_src, a in zip(src["annotations"], out["annotations"]):
        if a["id"] in errors:
            assert a == {**a_src, "refine": {"error": errors[a["id"]]}}  # copied unchanged, with the error
        elif not a["iscrowd"]:
            assert "iou_with_original" in a["refine"]
    assert record["counts"]["failed"] == 5 and record["counts"]["refined"] == len(src["annotations"]) - 6


def test_strict_stops_at_the_first_bad_input(synth, tmp_path):
    ann, images = _bad_input_set(synth, tmp_path)
    with pytest.raises(ValueError, match="annotation 1005: unknown image id 777"):
        refine_coco(ann, images, tmp_path / "o", refiner="identity", strict=True, progress=False)
    src = json.loads(ann.read_text())
    src["annotations"] = [a for a in src["annotations"] if a["id"] != 1005]
    ann.write_text(json.dumps(src))
    with pytest.raises(ValueError, match="annotation 1003: polygon with fewer than 3 points"):
        refine_coco(ann, images, tmp_path / "o2", refiner="identity", strict=True, progress=False)
    src["annotations"] = [a for a in src["annotations"] if a["id"] < 1003]
    ann.write_text(json.dumps(src))
    with pytest.raises(ValueError, match="missing.png: image file not found"):
        refine_coco(ann, images, tmp_path / "o3", refiner="identity", strict=True, progress=False)


def test_malformed_json_names_the_file(synth, tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text('{"images": [], "annotations": [')
    with pytest.raises(coco_io.CocoFormatError, match=r"broken.json: malformed JSON at line 1"):
        refine_coco(bad, synth["images"], tmp_path / "o", progress=False)
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        refine_coco(tmp_path / "nowhere.json", synth["images"], tmp_path / "o", progress=False)


def test_cli_main_and_joblib_workers_match_one_process(synth, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    coco_cli.add_arguments(parser)
    common = ["--annotations", str(synth["instances"]), "--images", str(synth["images"]), "--refiner", "guided",
              "--shard-size", "2", "--no-progress"]
    assert coco_cli.main(parser.parse_args([*common, "--out", str(tmp_path / "one")])) == 0
    assert "refine-coco: " in capsys.readouterr().out
    assert coco_cli.main(parser.parse_args([*common, "--out", str(tmp_path / "two"), "--workers", "2"])) == 0
    one, two = (tmp_path / "one" / "instances.json").read_bytes(), (tmp_path / "two" / "instances.json").read_bytes()
    assert one == two
    run = json.loads((tmp_path / "two" / "run.json").read_text())
    assert run["execution"]["workers"] == 2 and run["refiner"]["name"] == "guided"
    assert len({s["pid"] for s in run["timings"]["shards"]}) >= 1
    assert coco_cli.parse_refiner_args(["eps=0.01", "fast=true", "device=cpu"]) == {
        "eps": 0.01, "fast": True, "device": "cpu"}


def test_local_dask_cluster_of_two_workers(synth, tmp_path):
    import distributed  # the [distributed] extra, installed by `make test`; never skipped
    ref = refine_coco(synth["instances"], synth["images"], tmp_path / "local", refiner="guided", shard_size=2,
                      progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster:
        record = refine_coco(synth["instances"], synth["images"], tmp_path / "dask", refiner="guided",
                             shard_size=2, scheduler=cluster.scheduler_address, progress=False)
    assert record["counts"] == {**ref["counts"]}
    assert (tmp_path / "dask" / "instances.json").read_bytes() == (tmp_path / "local" / "instances.json").read_bytes()
    assert record["execution"]["scheduler"].startswith("tcp://")


def test_refine_coco_with_cascadepsp(tmp_path):
    """The real CascadePSP network (random weights, official checkpoint format) end to end on one small image."""
    import torch

    from steadyseg.refine.cascadepsp.network import build_cascadepsp_net, to_official_state_dict

    torch.manual_seed(0)
    ckpt = tmp_path / "random-cascadepsp.pth"
    torch.save(to_official_state_dict(build_cascadepsp_net()), ckpt)
    syn = make_synthetic_coco(tmp_path / "one", num_images=1, height=48, width=64, seed=1)
    data = coco_io.load_coco_json(syn["instances"])
    first = next(a for a in data["annotations"] if not a["iscrowd"])
    data["annotations"] = [a for a in data["annotations"] if a is first or a["iscrowd"]]  # one crop only
    (tmp_path / "one.json").write_text(json.dumps(data))
    syn = {**syn, "instances": tmp_path / "one.json"}
    record = refine_coco(syn["instances"], syn["images"], tmp_path / "o", refiner="cascadepsp", checkpoint=ckpt,
                         refiner_kwargs={"fast": True, "l_max": 64, "l_min": 32}, progress=False)
    assert record["counts"]["failed"] == 0 and record["counts"]["refined"] == 1 and record["counts"]["crowd"] == 1
    assert record["refiner"]["checkpoint"]["sha256"] == files.sha256_file(ckpt)
    out = coco_io.load_coco_json(tmp_path / "o" / "instances.json")
    assert all(a["refine"].get("refiner") == "cascadepsp" for a in out["annotations"])
    with pytest.raises(ValueError, match="needs --checkpoint"):
        refine_coco(syn["instances"], syn["images"], tmp_path / "o2", refiner="cascadepsp", progress=False)
