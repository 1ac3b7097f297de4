"""kind: train-teacher manifests (schema + runner in steadyseg.train.teacher_manifest, registered in steadyseg.manifest)."""

import json

import pytest

from steadyseg import manifest as mf
from steadyseg.train.teacher_manifest import TRAIN_TEACHER_SCHEMA, run_train_teacher


@pytest.fixture()
def kinds():
    assert mf.manifest_kinds()["train-teacher"] == (TRAIN_TEACHER_SCHEMA, run_train_teacher)


FULL = """kind: train-teacher
name: teacher-voc21-original
data:
  annotations: ${COCO_ROOT}/annotations/instances_train2017.json
  images: ${COCO_ROOT}/train2017
  labels: voc21
  split: train
validation:
  annotations: ${COCO_ROOT}/annotations/instances_val2017.json
  images: ${COCO_ROOT}/val2017
model:
  architecture: deeplabv3_resnet50
  aux_loss: true
  init: ${RESNET50_IMAGENET}
recipe: {epochs: 30, base_size: 520, crop_size: 480, batch_size: 4, lr: 0.02, momentum: 0.9, weight_decay: 0.0001,
         lr_power: 0.9, aux_weight: 0.5, aux_lr_mult: 10.0, seed: 0, eval_every: 1, amp: true}
execution: {workers: 8, device: cuda}
output: ${STEADYSEG_OUT:-../out}/teacher-voc21-original
"""


def test_full_scale_manifest_validates(kinds, tmp_path, monkeypatch):
    monkeypatch.setenv("COCO_ROOT", "/data/coco")
    monkeypatch.setenv("RESNET50_IMAGENET", "/weights/r50.pth")
    (tmp_path / "m.yaml").write_text(FULL)
    job = mf.load_manifest(tmp_path / "m.yaml")
    assert job.spec["model"]["init"] == "/weights/r50.pth"
    assert job.spec["data"]["annotations"] == "/data/coco/annotations/instances_train2017.json"
    (tmp_path / "bad.yaml").write_text(FULL.replace("lr_power", "lr_powr"))
    with pytest.raises(mf.ManifestError, match="lr_powr"):
        mf.load_manifest(tmp_path / "bad.yaml")


def test_tiny_manifest_runs(kinds, synthetic_coco, tmp_path):
    text = f"""kind: train-teacher
name: tiny
data: {{annotations: {synthetic_coco['instances']}, images: {synthetic_coco['images']}, labels: file}}
model: {{architecture: lraspp_mobilenet_v3_large, width_mult: 0.25}}
recipe: {{epochs: 1, base_size: 32, crop_size: 32, batch_size: 2, seed: 1}}
execution: {{workers: 0, device: cpu}}
output: {tmp_path / 'out'}
"""
    (tmp_path / "tiny.yaml").write_text(text)
    record = mf.run_manifest(tmp_path / "tiny.yaml", progress=False)
    assert record["counts"] == {"steps": 3, "epochs": 1.0}
    assert (tmp_path / "out" / "model.pt").is_file() and (tmp_path / "out" / "manifest.yaml").is_file()
    assert json.loads((tmp_path / "out" / "run.json").read_text())["step"] == 3


@pytest.mark.parametrize("variant", ["original", "refined", "curated"])
def test_shipped_teacher_manifests_validate(variant, monkeypatch):
    """The paper's three teachers: same recipe and seed, only the training annotations differ."""
    from pathlib import Path

    monkeypatch.setenv("COCO_ROOT", "/data/coco")
    monkeypatch.setenv("RESNET50_IMAGENET", "/weights/r50.pth")
    manifests = Path(__file__).resolve().parents[2] / "manifests"
    job = mf.load_manifest(manifests / f"teacher-voc21-{variant}.yaml")
    base = mf.load_manifest(manifests / "teacher-voc21-original.yaml")
    assert job.kind == "train-teacher" and job.spec["recipe"] == base.spec["recipe"]
    assert job.spec["model"] == base.spec["model"]
    assert (job.spec["data"]["annotations"] == base.spec["data"]["annotations"]) == (variant == "original")
