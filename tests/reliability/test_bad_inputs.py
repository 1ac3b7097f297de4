"""Every command that reads user files, against the damaged inputs a user meets: ONE table.

Each row damages a copy of small synthetic inputs (``steadyseg.datasets.synthetic``), runs the command in-process
(``steadyseg.cli.main``) and checks the contract of docs/development.md ("Errors and partial outputs"):

* the exit status; for a failing row exactly one stderr line ``steadyseg <command>: error: ...`` that names the
  damaged file, and no traceback (``main`` returns instead of raising);
* the output: ``absent`` (nothing written), ``unchanged`` (an output path that is a file stays as it was), or
  ``complete`` (the command kept going past the bad item, recorded it with its file, and the row's check holds);
* the inputs are byte-identical afterwards, and no temporary file (``.<name>.*.tmp``) is left anywhere.

Commands that process many items (``flow``, ``refine-coco``, ``curate build``) keep going past a bad item, record
it and exit 0; under ``--strict`` they exit 1 with the one-line error.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from steadyseg.cli import main

T, H, W = 6, 48, 64  # the synthetic video: 6 frames of 64x48


# --------------------------------------------------------------------------------------------------- inputs
@pytest.fixture(scope="session")
def base_inputs(tmp_path_factory) -> Path:
    """Clean synthetic inputs, written once: a DAVIS-layout video, per-frame .npz probabilities, DAVIS-2016 style
    grayscale masks, a small COCO set, study files and a refine-coco manifest."""
    import cv2

    from steadyseg.datasets.synthetic import make_moving_shapes_video, make_synthetic_coco, write_video_folder

    root = tmp_path_factory.mktemp("reliability-inputs")
    video = make_moving_shapes_video(num_frames=T, height=H, width=W, num_objects=2, seed=3)
    write_video_folder(video, root / "davis", sequence="seq")
    npz = root / "npz"
    npz.mkdir()
    gray = root / "gray"
    gray.mkdir()
    jpg = root / "jpg"
    jpg.mkdir()
    for t in range(T):
        np.savez(npz / f"{t:05d}.npz", probs=video.probs[t].astype(np.float32))
        Image.fromarray(np.where(video.labels[t] > 0, 255, 0).astype(np.uint8), mode="L").save(gray / f"{t:05d}.png")
        cv2.imwrite(str(jpg / f"{t:05d}.jpg"), video.frames[t][..., ::-1].copy())
    make_synthetic_coco(root / "coco", num_images=3, height=60, width=80, seed=1)
    study = root / "study"
    study.mkdir()
    (study / "ratings.csv").write_text("video,worker,rating\nv/a,w1,3\nv/a,w2,4\nv/b,w1,2\nv/b,w2,2\n")
    (study / "measures.csv").write_text("video,E_cons\nv/a,0.1\nv/b,0.3\n")
    (study / "grid.json").write_text(json.dumps({"videos": {"v/a": {"accuracy_level": 0, "consistency_level": 0},
                                                            "v/b": {"accuracy_level": 1, "consistency_level": 0}}}))
    (root / "job.yaml").write_text(
        "kind: refine-coco\nname: job\nsource:\n  annotations: coco/annotations/instances.json\n"
        "  images: coco/images\nrefiner:\n  name: identity\nparameters:\n  shard_size: 2\noutput: ../out\n")
    return root


# the inputs of one row, inside its tmp_path
def frames(d: Path) -> Path:
    return d / "davis" / "JPEGImages" / "480p" / "seq"


def preds(d: Path) -> Path:
    return d / "davis" / "Predictions" / "seq"


def gt(d: Path) -> Path:
    return d / "davis" / "Annotations" / "480p" / "seq"


def coco(d: Path) -> Path:
    return d / "coco" / "annotations" / "instances.json"


def coco_images(d: Path) -> Path:
    return d / "coco" / "images"


# ------------------------------------------------------------------------------------------------- damages
def garbage(path: Path) -> str:
    path.write_bytes(b"this is not an image\x00\x01\x02" * 4)
    return path.name


def zero_bytes(path: Path) -> str:
    path.write_bytes(b"")
    return path.name


def truncate(path: Path, keep: float = 0.5) -> str:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path.name


def other_size(path: Path) -> str:
    Image.fromarray(np.full((H - 8, W - 8, 3), 90, np.uint8)).save(path)
    return path.name


def palette_to_gray(path: Path) -> str:
    with Image.open(path) as im:
        arr = np.array(im)
    Image.fromarray(arr.astype(np.uint8), mode="L").save(path)
    return path.name


def label_out_of_range(path: Path) -> str:
    arr = np.array(Image.open(path))
    arr[0, 0] = 7  # DAVIS-2016 binary masks hold only 0 and 255
    Image.fromarray(arr, mode="L").save(path)
    return path.name


def npz_with(path: Path, **arrays) -> str:
    np.savez(path, **arrays)
    return path.name


def probs(d: Path, t: int) -> np.ndarray:
    with np.load(d / "npz" / f"{t:05d}.npz") as z:
        return z["probs"]


def nan_probs(d: Path, t: int) -> str:
    p = probs(d, t).copy()
    p[0, 0, 0] = np.nan
    return npz_with(d / "npz" / f"{t:05d}.npz", probs=p)


def edit_json(path: Path, fn: Callable[[dict], None]) -> str:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))
    return path.name


def first_polygon_ann(data: dict) -> dict:
    return next(a for a in data["annotations"] if isinstance(a["segmentation"], list))


def two_point_polygon(data: dict) -> None:
    first_polygon_ann(data)["segmentation"] = [[10.0, 10.0, 20.0, 20.0]]


def coco_file_as_refined(d: Path) -> Path:
    """A "refined" COCO file for curate build (the exact masks of the synthetic set, same ids)."""
    return d / "coco" / "annotations" / "instances_true.json"


def torch_save(path: Path, obj) -> str:
    import torch

    torch.save(obj() if callable(obj) else obj, path)
    return path.name


def foreign_state_dict():
    import torch

    return {"fc.weight": torch.zeros(2, 3), "fc.bias": torch.zeros(2)}


def unwritable(tmp: Path) -> Path:
    """A folder the command cannot write into: read-only (0o555), or under /sys when running as root."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/sys") / f"steadyseg-test-{uuid.uuid4().hex[:8]}"
    folder = tmp / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    return folder / "out"


def untrained_teacher(d: Path) -> Path:
    """A ``model.pt`` of an untrained tiny LRASPP teacher (random init, the project's format) under ``d``."""
    from steadyseg.train.checkpoint import build_teacher_from_config, save_model

    config = {"architecture": "lraspp_mobilenet_v3_large", "num_classes": 2, "names": ["__background__", "object"],
              "label_set": "file", "category_ids": [0, 1], "aux_loss": False, "width_mult": 0.25, "base_size": 32,
              "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    return save_model(d / "model.pt", kind="teacher", config=config,
                      state_dict=build_teacher_from_config(config).state_dict())


def train_teacher(*extra: str):
    return lambda d, out: ["train", "teacher", "--annotations", str(coco(d)), "--images", str(coco_images(d)),
                           "--labels", "file", "--split", "val", "--architecture", "lraspp_mobilenet_v3_large",
                           "--width-mult", "0.25", "--base-size", "32", "--crop-size", "32", "--batch-size", "2",
                           "--epochs", "1", "--workers", "0", "--quiet", "--out", str(out), *extra]


def predict(checkpoint: Callable[[Path], Path] = lambda d: d / "model.pt", *extra: str):
    return lambda d, out: ["predict", "--checkpoint", str(checkpoint(d)), "--frames", str(frames(d)),
                           "--out", str(out), "--quiet", *extra]


def train_decoder(*extra: str):
    return lambda d, out: ["train", "decoder", "--frames", str(frames(d)), "--teacher", str(preds(d)),
                           "--inputs", "3", "--steps", "1", "--quiet", "--out", str(out), *extra]


def train_video_model(*extra: str):
    return lambda d, out: ["train", "video-model", "--frames", str(frames(d)), "--masks", str(gt(d)), "--binary",
                           "--backbone", "mc3_18", "--decoder-channels", "8", "--clip-length", "3", "--epochs", "1",
                           "--clips-per-epoch", "1", "--quiet", "--out", str(out), *extra]


def damage_both(*damages: Callable[[Path], str]) -> Callable[[Path], str]:
    """Apply several damages; the error must name the last one's file."""
    def run(d: Path) -> str:
        return [damage(d) for damage in damages][-1]
    return run


# ----------------------------------------------------------------------------------------------- the table
@dataclass
class Row:
    id: str
    damage: Callable[[Path], str]  # damages the inputs under d; returns the file name the error must name
    argv: Callable[[Path, Path], list[str]]  # (inputs d, output path) -> argv
    rc: int = 1
    output: str = "absent"  # "absent" | "unchanged" | "complete"
    check: Callable[[Path, Path, str], None] | None = None  # (inputs, output, stdout) for "complete"
    out_is: Callable[[Path], Path] | None = None  # where the output goes (default tmp/out)
    fiftyone: bool = False


def measure(m: Callable[[Path], Path] = preds, *extra: str) -> Callable[[Path, Path], list[str]]:
    return lambda d, out: ["measure", "--frames", str(frames(d)), "--masks", str(m(d)), "--window", "1",
                           "--workers", "1", "--json", str(out / "m.json"), *extra]


def flow(*extra: str):
    return lambda d, out: ["flow", "--frames", str(frames(d)), "--cache", str(out), "--window", "1", "--quiet",
                           *extra]


def refine(*extra: str, annotations: Callable[[Path], Path] = coco):
    return lambda d, out: ["refine-coco", "--annotations", str(annotations(d)), "--images", str(coco_images(d)),
                           "--out", str(out), "--no-progress", *extra]


def prefill_cache(d: Path, out: Path) -> str:
    from steadyseg.datasets.flow import precompute_video_flows

    precompute_video_flows(frames(d), out, window=1, progress=False)
    entry = sorted(out.rglob("*.flow"))[3]
    return truncate(entry, 0.6)


def check_cache_complete(d: Path, out: Path, stdout: str) -> None:
    from steadyseg.datasets.flow import FlowCache

    assert "1 computed" in stdout, stdout
    cache = FlowCache(out)
    entries = sorted(out.rglob("*.flow"))
    assert len(entries) == 2 * (T - 1)
    assert all(cache.get(p.stem) is not None for p in entries)


def check_flow_recorded(name: str):
    def check(d: Path, out: Path, stdout: str) -> None:
        import yaml

        assert "1 unreadable frame(s) skipped" in stdout and name in stdout, stdout
        record = yaml.safe_load(next(out.glob("flow-run-*.yaml")).read_text())["config"]
        assert [Path(f["file"]).name for f in record["failures"]] == [name]
        assert record["result"]["skipped_pairs"] == 4  # frame 3 of 6 with window 1: 3->2, 3->4, 2->3, 4->3
        assert len(list(out.rglob("*.flow"))) == 2 * (T - 1) - 4
    return check


def check_refine_recorded(file_name: str, n_failed: int = 1):
    def check(d: Path, out: Path, stdout: str) -> None:
        run = json.loads((out / "run.json").read_text())
        assert run["status"] == "complete" and run["counts"]["failed"] == n_failed, run["counts"]
        assert [Path(f["file"]).name for f in run["failures"]] == [file_name] * n_failed
        assert f"{n_failed} failed" in stdout
        data = json.loads((out / "instances.json").read_text())
        assert len(data["annotations"]) == len(json.loads(coco(d).read_text())["annotations"])
    return check


def curate_build(*extra: str):
    return lambda d, out: ["curate", "build", "--original", str(coco(d)), "--refined",
                           str(coco_file_as_refined(d)), "--images", str(coco_images(d)), "--name", out.name,
                           *extra]


def check_curate_recorded(d: Path, out: Path, stdout: str) -> None:
    import fiftyone as fo

    ds = fo.load_dataset(out.name)
    failures = ds.info["steadyseg"]["ingest"]["failures"]
    assert [Path(f["file"]).name for f in failures] == ["instances_true.json"]
    assert len(ds) == 2 and "1 image(s) skipped" in stdout


def build_dataset_then(d: Path, out: Path) -> str:
    from steadyseg.curation.build import build_curation_dataset

    build_curation_dataset(coco(d), coco_file_as_refined(d), coco_images(d), out.name, progress=False)
    return "blocker"


ROWS = [
    # measure: masks and frames
    Row("measure/corrupt-mask-png", lambda d: garbage(preds(d) / "00003.png"), measure()),
    Row("measure/zero-byte-frame", lambda d: zero_bytes(frames(d) / "00002.png"), measure()),
    Row("measure/truncated-png-frame", lambda d: truncate(frames(d) / "00004.png"), measure()),
    Row("measure/truncated-jpeg-frame", lambda d: truncate(d / "jpg" / "00003.jpg"),
        lambda d, out: measure()(d, out)[:1] + ["--frames", str(d / "jpg")] + measure()(d, out)[3:]),
    Row("measure/frame-of-another-size", lambda d: other_size(frames(d) / "00003.png"), measure()),
    Row("measure/palette-and-grayscale-mixed", lambda d: palette_to_gray(preds(d) / "00004.png"), measure()),
    Row("measure/label-out-of-range", lambda d: label_out_of_range(d / "gray" / "00002.png"),
        measure(lambda d: d / "gray")),
    Row("measure/npz-wrong-key", lambda d: npz_with(d / "npz" / "00003.npz", a=probs(d, 3), b=probs(d, 3)),
        measure(lambda d: d / "npz")),
    Row("measure/npz-wrong-shape", lambda d: npz_with(d / "npz" / "00003.npz", probs=probs(d, 3)[0]),
        measure(lambda d: d / "npz")),
    Row("measure/npz-wrong-dtype", lambda d: npz_with(d / "npz" / "00003.npz", probs=(probs(d, 3) * 9).astype(int)),
        measure(lambda d: d / "npz")),
    Row("measure/npz-nan", lambda d: nan_probs(d, 3), measure(lambda d: d / "npz")),
    Row("measure/output-folder-is-a-file", lambda d: "blocker", measure(), output="unchanged"),
    Row("measure/read-only-output-folder", lambda d: "steadyseg-test-" if os.geteuid() == 0 else "readonly",
        measure(), out_is=unwritable),
    # flow: the cache is resumable; a bad frame is skipped and recorded
    Row("flow/cache-entry-truncated-mid-write", lambda d: "", flow(), rc=0, output="complete",
        check=check_cache_complete),
    Row("flow/corrupt-frame-recorded", lambda d: garbage(frames(d) / "00003.png"), flow(), rc=0, output="complete",
        check=check_flow_recorded("00003.png")),
    Row("flow/corrupt-frame-strict", lambda d: garbage(frames(d) / "00003.png"), flow("--strict")),
    # postprocess: the output folder appears complete or not at all
    Row("postprocess-wgf/corrupt-mask-png", lambda d: garbage(preds(d) / "00004.png"),
        lambda d, out: ["postprocess", "wgf", "--frames", str(frames(d)), "--masks", str(preds(d)), "--out",
                        str(out), "--no-progress"]),
    Row("postprocess-gauss/npz-nan-mid-video", lambda d: nan_probs(d, 4),
        lambda d, out: ["postprocess", "gauss", "--probs", str(d / "npz"), "--out", str(out), "--no-progress"]),
    Row("postprocess-gauss/output-folder-is-a-file", lambda d: "blocker",
        lambda d, out: ["postprocess", "gauss", "--masks", str(preds(d)), "--out", str(out), "--no-progress"],
        output="unchanged"),
    # study
    Row("study-make-grid/corrupt-mask", lambda d: garbage(gt(d) / "00002.png"),
        lambda d, out: ["study", "make-grid", "--frames", str(frames(d)), "--masks", str(gt(d)), "--out", str(out),
                        "--erosion-levels", "0", "2", "--displacement-levels", "0", "2"]),
    Row("study-make-grid/corrupt-middle-frame", lambda d: garbage(frames(d) / "00003.png"),
        lambda d, out: ["study", "make-grid", "--frames", str(frames(d)), "--masks", str(gt(d)), "--out", str(out),
                        "--erosion-levels", "0", "2", "--displacement-levels", "0", "2"]),
    Row("study-analyze/truncated-grid-json", lambda d: truncate(d / "study" / "grid.json"),
        lambda d, out: ["study", "analyze", "--ratings", str(d / "study" / "ratings.csv"), "--measures",
                        str(d / "study" / "measures.csv"), "--grid", str(d / "study" / "grid.json"), "--json",
                        str(out / "a.json")]),
    # refine-coco: bad annotations and images are recorded (file + reason); --strict stops with one line
    Row("refine-coco/truncated-json", lambda d: truncate(coco(d)), refine()),
    Row("refine-coco/missing-key", lambda d: edit_json(coco(d), lambda c: c.pop("categories")), refine()),
    Row("refine-coco/unknown-image", lambda d: edit_json(coco(d), lambda c: c["annotations"][0].update(image_id=99)),
        refine(), rc=0, output="complete", check=check_refine_recorded("instances.json")),
    Row("refine-coco/unknown-category",
        lambda d: edit_json(coco(d), lambda c: c["annotations"][0].update(category_id=999)),
        refine(), rc=0, output="complete", check=check_refine_recorded("instances.json")),
    Row("refine-coco/unknown-category-strict",
        lambda d: edit_json(coco(d), lambda c: c["annotations"][0].update(category_id=999)), refine("--strict")),
    Row("refine-coco/polygon-of-2-points", lambda d: edit_json(coco(d), two_point_polygon), refine(), rc=0,
        output="complete", check=check_refine_recorded("instances.json")),
    Row("refine-coco/polygon-of-2-points-strict", lambda d: edit_json(coco(d), two_point_polygon),
        refine("--strict")),
    Row("refine-coco/bbox-outside-image",
        lambda d: edit_json(coco(d), lambda c: first_polygon_ann(c).update(bbox=[500.0, 500.0, 10.0, 10.0])),
        refine(), rc=0, output="complete", check=check_refine_recorded("instances.json")),
    Row("refine-coco/corrupt-image", lambda d: garbage(coco_images(d) / "000000000002.png"), refine(), rc=0,
        output="complete", check=lambda d, out, so: check_refine_recorded("000000000002.png", n_failed=len(
            [a for a in json.loads(coco(d).read_text())["annotations"] if a["image_id"] == 2]))(d, out, so)),
    Row("refine-coco/checkpoint-not-a-state-dict", lambda d: torch_save(d / "ckpt.pth", [1, 2, 3]),
        refine("--refiner", "cascadepsp", "--checkpoint", "CKPT")),
    Row("refine-coco/checkpoint-foreign-keys", lambda d: torch_save(d / "ckpt.pth", foreign_state_dict),
        refine("--refiner", "cascadepsp", "--checkpoint", "CKPT")),
    Row("refine-coco/output-folder-is-a-file", lambda d: "blocker", refine(), output="unchanged"),
    Row("refine-coco/read-only-output-folder", lambda d: "steadyseg-test-" if os.geteuid() == 0 else "readonly",
        refine(), out_is=unwritable),
    # refine-eval
    Row("refine-eval/truncated-refined-json", lambda d: truncate(coco_file_as_refined(d)),
        lambda d, out: ["refine-eval", "--refined", str(coco_file_as_refined(d)), "--original", str(coco(d)),
                        "--no-progress"]),
    # run: manifests
    Row("run/manifest-unknown-key",
        lambda d: (d / "job.yaml").write_text((d / "job.yaml").read_text() + "paramters: {}\n") and "job.yaml",
        lambda d, out: ["run", str(d / "job.yaml")]),
    Row("run/manifest-wrong-type",
        lambda d: (d / "job.yaml").write_text((d / "job.yaml").read_text().replace("shard_size: 2",
                                                                                   "shard_size: two")) and "job.yaml",
        lambda d, out: ["run", str(d / "job.yaml")]),
    Row("run/manifest-not-yaml",
        lambda d: (d / "job.yaml").write_text("kind: [refine-coco\n  name: {") and "job.yaml",
        lambda d, out: ["run", str(d / "job.yaml")]),
    # curate (FiftyOne, private mongod): few rows
    Row("curate-build/truncated-refined-json", lambda d: truncate(coco_file_as_refined(d)), curate_build(),
        fiftyone=True),
    Row("curate-build/polygon-of-2-points", lambda d: edit_json(coco_file_as_refined(d), _true_polygon_2_points),
        curate_build(), rc=0, output="complete", check=check_curate_recorded, fiftyone=True),
    Row("curate-build/polygon-of-2-points-strict",
        lambda d: edit_json(coco_file_as_refined(d), _true_polygon_2_points), curate_build("--strict"),
        output="complete", check=lambda d, out, so: None, fiftyone=True),
    Row("curate-export/output-folder-is-a-file", lambda d: "blocker",
        lambda d, out: ["curate", "export", out.name, "--out", str(d.parent / "blocker" / "curated.json")],
        output="unchanged", fiftyone=True),
    # training and prediction (issues 10 and 11)
    Row("coco-targets/truncated-json", lambda d: truncate(coco(d)),
        lambda d, out: ["coco-targets", "--annotations", str(coco(d)), "--images", str(coco_images(d)),
                        "--labels", "file", "--out", str(out)]),
    Row("train-teacher/truncated-json", lambda d: truncate(coco(d)), train_teacher()),
    Row("train-teacher/init-not-a-state-dict", lambda d: torch_save(d / "ckpt.pth", [1, 2, 3]),
        train_teacher("--init", "CKPT")),
    Row("train-teacher/output-folder-is-a-file", lambda d: "blocker", train_teacher(), output="unchanged"),
    Row("train-decoder/teacher-count-mismatch", lambda d: _remove(preds(d) / f"{T - 1:05d}.png"), train_decoder()),
    Row("train-decoder/corrupt-teacher-mask", lambda d: garbage(preds(d) / "00002.png"), train_decoder()),
    Row("predict/checkpoint-foreign-keys", lambda d: torch_save(d / "ckpt.pth", foreign_state_dict),
        predict(lambda d: d / "ckpt.pth")),
    Row("predict/missing-checkpoint", lambda d: "model.pt", predict()),
    Row("predict/corrupt-frame-mid-video",
        damage_both(lambda d: untrained_teacher(d).name, lambda d: garbage(frames(d) / "00003.png")), predict()),
    Row("bench/teacher-count-mismatch", lambda d: _remove(preds(d) / f"{T - 1:05d}.png"),
        lambda d, out: ["bench", "--frames", str(frames(d)), "--gt", str(gt(d)), "--teacher", str(preds(d)),
                        "--method", "teacher", "--method", "wgf3d", "--out", str(out), "--quiet"]),
    Row("bench/manifest-unknown-key", lambda d: _write(d / "bench.yaml", "videos: []\nmethods: [teacher]\ncolour: red\n"),
        lambda d, out: ["bench", "--manifest", str(d / "bench.yaml"), "--out", str(out), "--quiet"]),
    # video models (issue 12)
    Row("train-video-model/masks-count-mismatch", lambda d: _remove(gt(d) / f"{T - 1:05d}.png"), train_video_model()),
    Row("train-video-model/corrupt-mask", lambda d: garbage(gt(d) / "00002.png"), train_video_model()),
    Row("train-video-model/checkpoint-does-not-fit", lambda d: torch_save(d / "ckpt.pth", foreign_state_dict),
        lambda d, out: train_video_model("--checkpoint", str(d / "ckpt.pth"))(d, out)),
    Row("train-video-model/factory-file-missing", lambda d: "my_model.py",
        lambda d, out: train_video_model("--model", f"{d / 'my_model.py'}:make")(d, out)),
    Row("bench-tradeoff/missing-checkpoint", lambda d: "epoch-003.pt",
        lambda d, out: ["bench", "tradeoff", "--checkpoints", str(d / "epoch-003.pt"), "--frames", str(frames(d)),
                        "--gt", str(gt(d)), "--out", str(out), "--quiet"]),
    Row("eval/truncated-json", damage_both(lambda d: untrained_teacher(d).name, lambda d: truncate(coco(d))),
        lambda d, out: ["eval", "--checkpoint", str(d / "model.pt"), "--annotations", str(coco(d)),
                        "--images", str(coco_images(d)), "--out", str(out / "eval.json")]),
]


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return path.name


def _remove(path: Path) -> str:
    path.unlink()
    return path.parent.name


def _true_polygon_2_points(data: dict) -> None:
    """Give one annotation of image 1 (of the exact-mask file) a polygon of 2 points."""
    ann = next(a for a in data["annotations"] if a["image_id"] == 1 and not a["iscrowd"])
    ann["segmentation"] = [[10.0, 10.0, 20.0, 20.0]]


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input(row: Row, base_inputs: Path, tmp_path: Path, capsys, request):
    d = tmp_path / "in"
    shutil.copytree(base_inputs, d)
    out = row.out_is(tmp_path) if row.out_is is not None else tmp_path / "out"
    if row.fiftyone:
        request.getfixturevalue("fo_env")
        out = tmp_path / f"rel-{uuid.uuid4().hex[:8]}"  # the dataset name is out.name
    if row.id.startswith("flow/cache-entry"):
        name = prefill_cache(d, out)
    elif row.id.startswith("curate-export"):
        name = build_dataset_then(d, out)
    else:
        name = row.damage(d)
    blocker = tmp_path / "blocker"
    if row.output == "unchanged":
        blocker.write_text("a file where the output folder should be\n")
        if not row.id.startswith("curate-export"):
            out = blocker
    argv = [str(d / "ckpt.pth") if a == "CKPT" else a for a in row.argv(d, out)]
    if row.id.startswith("run/"):  # the manifest's output is ../out relative to it: tmp/out
        out = tmp_path / "out"
    before = _hashes(d)
    capsys.readouterr()

    rc = main(argv)  # an uncaught exception here is a traceback: the row fails

    captured = capsys.readouterr()
    command = argv[0]
    errors = [line for line in captured.err.splitlines() if line.startswith(f"steadyseg {command}: error: ")]
    assert "Traceback" not in captured.err
    assert rc == row.rc, (captured.out, captured.err)
    if row.rc != 0:
        assert len(errors) == 1, captured.err
        assert name in errors[0], errors[0]
    else:
        assert not errors, captured.err
    assert _hashes(d) == before, "an input file was modified"
    if row.output == "absent":
        assert not out.exists(), sorted(out.rglob("*")) if out.is_dir() else out
        if row.fiftyone:
            import fiftyone as fo

            assert not fo.dataset_exists(out.name)
    elif row.output == "unchanged":
        assert blocker.read_text() == "a file where the output folder should be\n"
    else:
        row.check(d, out, captured.out)
    assert not [p for p in tmp_path.rglob(".*.tmp")], "orphan temporary files"


def test_debug_shows_the_traceback(base_inputs: Path, tmp_path: Path, monkeypatch):
    """``--debug`` (or STEADYSEG_DEBUG=1) re-raises the input error instead of the one-line message."""
    from steadyseg.errors import InputError

    d = tmp_path / "in"
    shutil.copytree(base_inputs, d)
    garbage(preds(d) / "00003.png")
    with pytest.raises(InputError, match="00003.png"):
        main(["--debug", *measure()(d, tmp_path / "out")])
    monkeypatch.setenv("STEADYSEG_DEBUG", "1")
    with pytest.raises(InputError, match="00003.png"):
        main(measure()(d, tmp_path / "out"))


def test_console_script_prints_one_line(base_inputs: Path, tmp_path: Path):
    """The real process (``python -m steadyseg.cli``): exit status 1 and one stderr line, no traceback, no
    OpenCV/libpng warnings."""
    d = tmp_path / "in"
    shutil.copytree(base_inputs, d)
    truncate(frames(d) / "00004.png")
    env = {**os.environ, "STEADYSEG_DEBUG": "0"}
    proc = subprocess.run([sys.executable, "-m", "steadyseg.cli", *flow()(d, tmp_path / "out"), "--strict"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines() == [proc.stderr.strip()] and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("steadyseg flow: error: ") and "00004.png" in proc.stderr
