"""steadyseg eval (confusion-matrix scores) and steadyseg predict (shapes, formats, value ranges)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from steadyseg.cli import main as cli_main
from steadyseg.datasets.masks import open_masks
from steadyseg.datasets.synthetic import make_moving_shapes_video, write_video_folder
from steadyseg.train.evaluate import evaluate_checkpoint
from steadyseg.train.metrics import ConfusionMatrix, scores
from steadyseg.train.predict import predict_video


def test_confusion_matrix_by_hand():
    cm = ConfusionMatrix(4)
    cm.update(torch.tensor([0, 0, 1, 1, 2, 255]), torch.tensor([0, 1, 1, 1, 0, 2]))
    m = cm.matrix()
    np.testing.assert_array_equal(m[:3, :3], [[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    assert m[3].sum() == 0 and m[:, 3].sum() == 0
    r = scores(m, ["bg", "a", "b", "c"])
    # IoU: bg 1/(2+2-1), a 2/(2+3-2), b 0/(1+0-0); class c never occurs → None, not averaged
    assert r["per_class"]["bg"]["iou"] == pytest.approx(1 / 3)
    assert r["per_class"]["a"]["iou"] == pytest.approx(2 / 3)
    assert r["per_class"]["b"]["iou"] == 0.0 and r["per_class"]["c"]["iou"] is None
    assert r["miou"] == pytest.approx(1 / 3)
    assert r["pixel_accuracy"] == pytest.approx(3 / 5) and r["pixels"] == 5
    assert r["mean_class_accuracy"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    with pytest.raises(ValueError, match="shape"):
        cm.update(torch.zeros(3), torch.zeros(4))


def test_eval_cli_json(tiny_run, synthetic_coco, tmp_path, capsys):
    out = tmp_path / "eval.json"
    rc = cli_main(["eval", "--checkpoint", str(tiny_run / "model.pt"), "--annotations",
                   str(synthetic_coco["instances"]), "--images", str(synthetic_coco["images"]), "--out", str(out),
                   "--device", "cpu", "--quiet"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads(out.read_text())
    assert printed["miou"] == saved["miou"] and "confusion" in saved and "confusion" not in printed
    assert saved["images"] == 6 and saved["label_set"] == "file" and saved["base_size"] == 32
    assert 0.0 <= saved["pixel_accuracy"] <= 1.0 and 0.0 <= saved["miou"] <= 1.0
    assert set(saved["per_class"]) == {"__background__", "person", "car", "dog"}
    # pixels counted = every non-void target pixel at the evaluation size (shorter side 32: 32x42 per image)
    assert saved["pixels"] <= 6 * 32 * 42 and np.array(saved["confusion"]).sum() == saved["pixels"]
    with pytest.raises(ValueError, match="differ from the model"):
        evaluate_checkpoint(tiny_run / "model.pt", synthetic_coco["instances"], synthetic_coco["images"],
                            labels="voc21", device="cpu", progress=False)


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory):
    video = make_moving_shapes_video(num_frames=5, height=40, width=56, num_objects=2, seed=1)
    return write_video_folder(video, tmp_path_factory.mktemp("video"))["frames"]


def test_predict_labels_and_probs(tiny_run, frames_dir, tmp_path):
    out = tmp_path / "pred"
    rc = cli_main(["predict", "--checkpoint", str(tiny_run / "model.pt"), "--frames", str(frames_dir), "--out",
                   str(out), "--probs", "--batch-size", "2", "--device", "cpu", "--quiet"])
    assert rc == 0
    pngs = sorted(out.glob("*.png"))
    assert [p.stem for p in pngs] == [f"{t:05d}" for t in range(5)]
    for p in pngs:
        with Image.open(p) as im:
            assert im.mode == "P" and im.size == (56, 40)
            assert np.array(im).max() < 4
        z = np.load(out / "probs" / f"{p.stem}.npz")
        probs = z["probs"]
        assert probs.dtype == np.float16 and probs.shape == (4, 40, 56)
        assert probs.min() >= 0 and probs.max() <= 1
        np.testing.assert_allclose(probs.astype(np.float32).sum(0), 1.0, atol=5e-3)
        with Image.open(p) as im:
            np.testing.assert_array_equal(np.array(im), probs.astype(np.float32).argmax(0))
    rec = json.loads((out / "predict.json").read_text())
    assert rec["kind"] == "teacher" and rec["count"] == 5 and rec["num_classes"] == 4
    stack = open_masks(out / "probs")  # readable by the other stages
    assert stack.reading == "soft-probs" and stack.probs(0).shape == (4, 40, 56)
    # batching does not change the result
    one = predict_video(tiny_run / "model.pt", frames_dir, tmp_path / "one", probs=True, batch_size=1,
                        device="cpu", progress=False)
    assert one["count"] == 5
    np.testing.assert_allclose(np.load(tmp_path / "one" / "probs" / "00003.npz")["probs"].astype(np.float32),
                               np.load(out / "probs" / "00003.npz")["probs"].astype(np.float32), atol=2e-3)


def test_predict_foreground(tiny_run, frames_dir, tmp_path):
    out = tmp_path / "fg"
    rec = predict_video(tiny_run / "model.pt", frames_dir, out, probs=True, foreground=True, device="cpu",
                        progress=False)
    assert rec["names"] == ["background", "foreground"]
    p = np.load(out / "probs" / "00000.npz")["probs"].astype(np.float32)
    assert p.shape == (2, 40, 56)
    np.testing.assert_allclose(p[0] + p[1], 1.0, atol=2e-3)
    masks = open_masks(out, binary=True)
    assert set(np.unique(masks[0]).tolist()) <= {0, 1}
    np.testing.assert_array_equal(masks[0], (p[1] > 0.5).astype(np.int32))
