"""The TI baseline: its transform, its loss and `steadyseg train ti` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from steadyseg.datasets.masks import open_masks
from steadyseg.datasets.synthetic import make_moving_shapes_video, write_video_folder
from steadyseg.train.checkpoint import load_model
from steadyseg.train.ti import TI_TRANSFORM, TILoss, apply_transform, random_transform, ti_losses


def test_apply_transform_identity_and_integer_shift():
    x = torch.rand(2, 3, 12, 16)
    eye = torch.tensor([[1.0, 0, 0], [0, 1, 0]]).expand(2, 2, 3)
    out, inside = apply_transform(x, eye)
    torch.testing.assert_close(out, x)
    assert inside.all()
    shift = eye.clone()
    shift[:, 0, 2] = 2.0 / 16  # source x = output x + 1 px
    out, inside = apply_transform(x, shift)
    torch.testing.assert_close(out[..., :15], x[..., 1:])
    assert not inside[..., 15].any() and inside[..., :15].all()


def test_random_transform_stays_in_eilertsens_ranges():
    rng = np.random.default_rng(0)
    for _ in range(50):
        t = random_transform(rng, height=60, width=80)
        theta = t["theta"]
        assert abs(theta[0, 2]) <= TI_TRANSFORM["shift_px"] * 2 / 80 + 1e-6
        assert abs(theta[1, 2]) <= TI_TRANSFORM["shift_px"] * 2 / 60 + 1e-6
        assert TI_TRANSFORM["noise"][0] <= t["noise"] <= TI_TRANSFORM["noise"][1]
        # zoom ±3 %, rotation/shear ±1°: the linear part is within a few per cent of the identity
        assert np.abs(theta[:, :2] - np.eye(2)).max() < 0.07


def test_ti_losses_zero_for_an_invariant_output_and_weights():
    logits = torch.randn(1, 2, 10, 12, requires_grad=True)
    eye = torch.tensor([[[1.0, 0, 0], [0, 1, 0]]])
    labels = logits.detach().argmax(dim=1)
    terms = ti_losses(logits, logits, eye, labels, alpha=0.95)
    assert float(terms["transform_invariance"].detach()) < 1e-10
    torch.testing.assert_close(terms["total"], terms["transform_invariance"] + terms["data"])
    other = TILoss(alpha=0.5)(logits, torch.randn(1, 2, 10, 12), eye, labels)
    assert other["transform_invariance"] > 0
    other["total"].backward()
    assert logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="alpha"):
        TILoss(alpha=1.5)


def test_train_ti_cli_resumes_exactly_and_predicts(tmp_path):
    from steadyseg.cli import main as cli_main
    from steadyseg.train.predict import predict_video

    v = make_moving_shapes_video(num_frames=6, height=48, width=64, num_objects=1, flicker_px=1, seed=2)
    paths = write_video_folder(v, tmp_path / "video")
    base = ["train", "ti", "--frames", str(paths["frames"]), "--teacher", str(paths["predictions"]), "--seed", "1",
            "--lr", "3e-3", "--quiet"]
    assert cli_main(base + ["--out", str(tmp_path / "a"), "--steps", "4"]) == 0
    assert cli_main(base + ["--out", str(tmp_path / "b"), "--steps", "2"]) == 0
    assert cli_main(base + ["--out", str(tmp_path / "b"), "--steps", "4", "--resume"]) == 0
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(ln) for ln in (tmp_path / "a" / "log.jsonl").read_text().splitlines()][:-1]
    assert {"loss_transform_invariance", "loss_data", "loss_total"} <= set(steps[0])
    kind, config, model = load_model(tmp_path / "a" / "model.pt")
    assert kind == "decoder" and config["inputs"] == 1
    predict_video(tmp_path / "a" / "model.pt", paths["frames"], tmp_path / "pred", teacher=paths["predictions"],
                  progress=False)
    masks = open_masks(tmp_path / "pred")
    assert len(masks) == 6 and masks.size == (48, 64)
    from steadyseg.train.decoder_training import train_decoder

    with pytest.raises(ValueError, match="inputs=1"):
        train_decoder([(paths["frames"], paths["predictions"])], tmp_path / "c", objective="ti", inputs=3, steps=1,
                      progress=False)
