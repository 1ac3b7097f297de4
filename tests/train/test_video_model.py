"""Video models: the protocol and its adapter, the reference 3D-conv model, supervised training, consistency
fine-tuning, prediction with overlapping clips, ``bench tradeoff`` and the errors users meet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from steadyseg.accuracy import iou
from steadyseg.datasets.masks import open_masks
from steadyseg.datasets.synthetic import make_moving_shapes_video, write_video_folder
from steadyseg.measures import inconsistency
from steadyseg.train.predict import predict_video
from steadyseg.train.video_model import VideoModelAdapter, build_user_model, import_factory, load_user_weights
from steadyseg.train.video_predict import VideoModelPredictor, clip_starts
from steadyseg.train.video_training import train_video_model, video_model_losses

TINY = str(Path(__file__).with_name("tiny_video_model.py")) + ":make_model"


@pytest.fixture(scope="module")
def flicker(tmp_path_factory):
    """16 frames 48×64 of two shapes with exact flow; ``predictions`` is a flickering (±2 px) labelling."""
    v = make_moving_shapes_video(num_frames=16, height=48, width=64, num_objects=2, flicker_px=2, seed=1)
    return v, write_video_folder(v, tmp_path_factory.mktemp("vm"))


def _labels(folder) -> np.ndarray:
    masks = open_masks(folder)
    return np.stack([masks[i] for i in range(len(masks))])


def _state(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "model.pt", weights_only=True)["state_dict"]


# ------------------------------------------------------------------------------------------------ the adapter
class _Record(nn.Module):
    """Returns its input as logits (channels = the 3 colour channels) and remembers what it was given."""

    def forward(self, x):
        self.seen = x.detach().clone()
        return {"logits": x * 1.0, "aux": x}


def test_adapter_layout_padding_and_normalisation_round_trip():
    clip = torch.rand(2, 3, 3, 10, 13)  # B T 3 H W
    rec = _Record()
    model = VideoModelAdapter(rec, layout="BCTHW", output_key="logits", scale=255.0, mean=[10.0, 20.0, 30.0],
                              std=[2.0, 4.0, 5.0], size_multiple=8, time_multiple=2, num_classes=3)
    out = model(clip)
    # the module sees channels first, time padded 3 → 4 (last frame repeated), size padded 10×13 → 16×16
    assert rec.seen.shape == (2, 3, 4, 16, 16)
    expect = (clip * 255.0 - torch.tensor([10.0, 20.0, 30.0]).view(1, 1, 3, 1, 1)) / torch.tensor(
        [2.0, 4.0, 5.0]).view(1, 1, 3, 1, 1)
    torch.testing.assert_close(rec.seen.transpose(1, 2)[:, :3, :, :10, :13], expect)
    torch.testing.assert_close(rec.seen[:, :, 3], rec.seen[:, :, 2])  # time padding repeats the last frame
    torch.testing.assert_close(rec.seen[..., 15], rec.seen[..., 12])  # replicate padding of the width
    # back in the protocol's layout, padding cropped away: exactly the normalised clip
    assert out.shape == (2, 3, 3, 10, 13)
    torch.testing.assert_close(out, expect)


def test_adapter_resizes_low_resolution_logits_and_refuses_wrong_outputs():
    class Half(nn.Module):
        def forward(self, x):  # B T 3 H W → B T 2 H/2 W/2
            return x[:, :, :2, ::2, ::2]

    out = VideoModelAdapter(Half())(torch.rand(1, 2, 3, 8, 8))
    assert out.shape == (1, 2, 2, 8, 8)
    with pytest.raises(ValueError, match="declare which one holds the logits"):
        VideoModelAdapter(_Record())(torch.rand(1, 2, 3, 8, 8))
    with pytest.raises(ValueError, match="3 output channels, but the model is declared with 2 classes"):
        VideoModelAdapter(_Record(), output_key="logits", num_classes=2)(torch.rand(1, 2, 3, 8, 8))
    with pytest.raises(ValueError, match="do not match the clip's batch 1 and length 2"):
        VideoModelAdapter(_Record(), output_key="logits", output_layout="BCTHW")(torch.rand(1, 2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"expected a \(B, T, 3, H, W\) float tensor"):
        VideoModelAdapter(Half())(torch.rand(1, 3, 2, 8, 8))
    with pytest.raises(ValueError, match="unknown adapter options"):
        VideoModelAdapter(Half(), layot="BCTHW")


# ------------------------------------------------------------------------------------------ the reference model
@pytest.mark.parametrize("backbone", ["r3d_18", "mc3_18", "r2plus1d_18"])
def test_reference_model_shapes_and_size(backbone):
    import torchvision.models.video as video

    from steadyseg.train.video_reference import build_reference_model

    model = build_reference_model(backbone=backbone, num_classes=3, decoder_channels=16).eval()
    # torchvision's backbone without its classifier, + the decoder at D = 16: laterals of layer1..4 (1×1×1 convs
    # with bias), 3 refine blocks (2 GroupNorms and 2 3×3×3 convs each), a 3×3×3 head to 3 classes
    d = 16
    backbone_params = sum(p.numel() for k, p in getattr(video, backbone)(weights=None).named_parameters()
                          if not k.startswith("fc."))
    decoder_params = ((64 + 128 + 256 + 512) * d + 4 * d + 3 * (2 * 2 * d + 2 * (d * d * 27 + d))
                      + d * 3 * 27 + 3)
    assert sum(p.numel() for p in model.parameters()) == backbone_params + decoder_params
    assert backbone_params == {"r3d_18": 33_166_272, "mc3_18": 11_490_240, "r2plus1d_18": 31_300_125}[backbone]
    with torch.no_grad():
        y = model(torch.rand(1, 3, 3, 20, 36))  # odd sizes: padded to 32×48 inside, cropped back
    assert y.shape == (1, 3, 3, 20, 36) and torch.isfinite(y).all()


def test_reference_backbone_checkpoint_is_loaded_and_checked(tmp_path):
    import torchvision.models.video as video

    from steadyseg.train.video_reference import Conv3DSegNet

    torch.manual_seed(5)
    src = video.mc3_18(weights=None)
    torch.save(src.state_dict(), tmp_path / "mc3.pth")
    net = Conv3DSegNet(backbone="mc3_18", num_classes=2, decoder_channels=8, backbone_checkpoint=tmp_path / "mc3.pth")
    torch.testing.assert_close(net.layer4[0].conv1[0].weight, src.layer4[0].conv1[0].weight)
    with pytest.raises(ValueError, match="mc3.pth: not a state dict of this torchvision backbone"):
        Conv3DSegNet(backbone="r3d_18", num_classes=2, decoder_channels=8, backbone_checkpoint=tmp_path / "mc3.pth")


# --------------------------------------------------------------------------------------------------- losses
def test_losses_by_hand():
    logits = torch.zeros(1, 2, 2, 1, 2)  # uniform: CE = log 2 everywhere
    labels = torch.tensor([[[[0, 1]], [[255, 1]]]])
    t = video_model_losses(logits, labels, soft_iou_weight=1.0)
    assert t["data"].item() == pytest.approx(np.log(2))
    # foreground: p = 0.5 on the 3 non-void pixels, y = 1 on 2 of them: I = 1, U = 0.5 + 2 = 2.5 → 1 − 0.4
    assert t["soft_iou"].item() == pytest.approx(0.6)
    assert "consistency" not in t and t["total"].item() == pytest.approx(np.log(2) + 0.6)
    with pytest.raises(ValueError, match="needs the clip's flows"):
        video_model_losses(logits, labels, consistency_weight=1.0)


# -------------------------------------------------------------------------------------------------- prediction
def test_clip_starts_cover_every_frame():
    assert clip_starts(16, 4, 2) == [0, 2, 4, 6, 8, 10, 12]
    assert clip_starts(11, 4, 2) == [0, 2, 4, 6, 7]
    assert clip_starts(3, 8, 4) == [0]


class _FrameMean(nn.Module):
    """Per-frame logits [0, 10·(mean colour − 0.5)]: the same for a frame in every clip that holds it."""

    def forward(self, x):  # B T 3 H W
        fg = 10.0 * (x.mean(dim=2, keepdim=True) - 0.5)
        return torch.cat([torch.zeros_like(fg), fg], dim=2)


@pytest.mark.parametrize("num_frames", [3, 8, 11])
def test_predictor_averages_overlapping_clips_and_yields_every_frame_in_order(num_frames):
    rng = np.random.default_rng(num_frames)
    frames = [rng.integers(0, 256, (6, 10, 3), dtype=np.uint8) for _ in range(num_frames)]
    config = {"clip_length": 4, "size": None, "num_classes": 2, "names": ["background", "object 1"]}
    pred = VideoModelPredictor(VideoModelAdapter(_FrameMean()).eval(), config, torch.device("cpu"))
    got = list(pred.iter_video(frames))
    assert [i for i, _ in got] == list(range(num_frames))
    for i, p in got:
        fg = 10.0 * (frames[i].astype(np.float32) / 255.0 - 0.5).mean(axis=2)
        np.testing.assert_allclose(p[1], 1.0 / (1.0 + np.exp(-fg)), atol=1e-5)


# --------------------------------------------------------------------------------- training and fine-tuning
def _e_raw_iou(folder, v) -> tuple[float, float]:
    lab = _labels(folder)
    e = inconsistency(list(lab), v.flows, window=3).e_raw
    j = float(np.mean([iou(a > 0, b > 0, void=None) for a, b in zip(lab, v.labels)]))
    return e, j


def test_consistency_finetuning_lowers_e_raw_of_a_flickering_model(flicker, tmp_path):
    """A per-frame user model trained on flickering labels, then fine-tuned on the same labels with W = 10 vs W = 0.

    Measured (exact flow, K = 3): start E_raw 0.0104, IoU 0.855; W = 0 for 40 epochs: 0.0105 / 0.862;
    W = 10: 0.0058 / 0.901 (−45 % E_raw).
    """
    v, paths = flicker
    common = dict(binary=True, clip_length=4, seed=0, progress=False, flows=[v.flows])
    videos = [(paths["frames"], paths["predictions"])]
    train_video_model(videos, tmp_path / "start", model=TINY, epochs=100, lr=3e-3, **common)
    runs = {}
    for w in (0.0, 10.0):
        run = tmp_path / f"w{w:g}"
        train_video_model(videos, run, init=tmp_path / "start" / "model.pt", epochs=40, consistency_weight=w,
                          lr=1e-3, **common)
        predict_video(run / "model.pt", paths["frames"], tmp_path / f"pred{w:g}", progress=False)
        runs[w] = _e_raw_iou(tmp_path / f"pred{w:g}", v)
    (e0, j0), (e1, j1) = runs[0.0], runs[10.0]
    assert e1 < 0.75 * e0
    assert j1 > j0 - 0.01
    # binary models write DAVIS-2016 {0, 255} masks; an epoch-NNN.pt per epoch, epoch-000 = the starting weights
    assert set(np.unique(np.asarray(Image.open(tmp_path / "pred10" / "00000.png")))) <= {0, 255}
    assert len(list((tmp_path / "w10").glob("epoch-*.pt"))) == 41
    start, ep0 = _state(tmp_path / "start"), torch.load(tmp_path / "w10" / "epoch-000.pt", weights_only=True)
    assert all(torch.equal(start[k], ep0["state_dict"][k]) for k in start)
    log = [json.loads(ln) for ln in (tmp_path / "w10" / "log.jsonl").read_text().splitlines()]
    assert {"loss_data", "loss_consistency", "valid_fraction", "epoch"} <= set(log[0])


def test_weight_zero_is_plain_supervised_finetuning(flicker, tmp_path):
    v, paths = flicker
    videos = [(paths["frames"], paths["annotations"])]
    common = dict(model=TINY, model_args={"width": 8}, clip_length=3, epochs=2, seed=3, progress=False, crop=(40, 40))
    train_video_model(videos, tmp_path / "plain", **common)
    rec = train_video_model(videos, tmp_path / "w0", consistency_weight=0.0, flows=[v.flows], **common)
    a, b = _state(tmp_path / "plain"), _state(tmp_path / "w0")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert rec["num_classes"] == 3 and "consistency" not in rec["final_loss_terms"]


def test_resume_equals_uninterrupted(flicker, tmp_path):
    v, paths = flicker
    videos = [(paths["frames"], paths["annotations"])]
    common = dict(model=TINY, model_args={"width": 8}, clip_length=4, seed=2, progress=False, crop=(40, 48),
                  batch_size=2, consistency_weight=1.0, flows=[v.flows], binary=True, clips_per_epoch=4)
    train_video_model(videos, tmp_path / "a", epochs=2, **common)
    train_video_model(videos, tmp_path / "a", epochs=4, resume=True, **common)
    train_video_model(videos, tmp_path / "b", epochs=4, **common)
    a, b = _state(tmp_path / "a"), _state(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    la = (tmp_path / "a" / "log.jsonl").read_text().splitlines()
    lb = (tmp_path / "b" / "log.jsonl").read_text().splitlines()
    assert [json.loads(x)["loss"] for x in la[:-1]] == [json.loads(x)["loss"] for x in lb[:-1]]
    assert sorted(p.name for p in (tmp_path / "a").glob("epoch-*.pt")) == [f"epoch-00{k}.pt" for k in range(5)]


def test_reference_model_trains_a_few_steps_and_predicts(flicker, tmp_path):
    v, paths = flicker
    rec = train_video_model([(paths["frames"], paths["annotations"])], tmp_path / "run", backbone="mc3_18",
                            decoder_channels=8, clip_length=4, size=(32, 48), binary=True, epochs=1,
                            clips_per_epoch=3, lr=1e-3, seed=0, progress=False, consistency_weight=1.0,
                            flows=[v.flows])
    log = [json.loads(ln) for ln in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert rec["step"] == 3 and all(np.isfinite(r["loss"]) for r in log[:-1])
    out = predict_video(tmp_path / "run" / "model.pt", paths["frames"], tmp_path / "pred", probs=True,
                        progress=False)
    assert out["kind"] == "video-model" and out["count"] == 16
    p = np.load(tmp_path / "pred" / "probs" / "00000.npz")["probs"]
    assert p.shape == (2, 48, 64)  # predicted at 32×48, written at the video's full size


def test_ddp_two_gloo_processes_equal_one_process_with_the_global_batch(flicker, tmp_path, spawn_gloo):
    v, paths = flicker
    videos = [(paths["frames"], paths["annotations"])]
    kwargs = dict(model=TINY, model_args={"width": 8}, clip_length=3, seed=1, epochs=2, clips_per_epoch=2,
                  progress=False, crop=(40, 40), consistency_weight=1.0, binary=True)
    train_video_model(videos, tmp_path / "one", flows=[v.flows], batch_size=2, device="cpu", **kwargs)
    spawn_gloo(train_video_model, videos, [v.flows], tmp_path / "two", {**kwargs, "batch_size": 1})
    a, b = _state(tmp_path / "one"), _state(tmp_path / "two")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------ user models, errors
def test_user_factory_by_module_path_and_its_errors(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(
        "from torch import nn\n"
        "def make(num_classes=2):\n    return nn.Conv3d(3, num_classes, 1)\n"
        "def not_a_module():\n    return 3\n"
        "VALUE = 1\n")
    monkeypatch.chdir(tmp_path)  # a console script finds modules of the working directory, like python -m
    model = build_user_model("my_models:make", num_classes=4, adapter={"layout": "BCTHW"})
    assert model(torch.rand(1, 2, 3, 4, 4)).shape == (1, 2, 4, 4, 4)
    assert import_factory(f"{tmp_path / 'my_models.py'}:make") is not None
    with pytest.raises(ValueError, match="cannot import 'no_such_module' .*ModuleNotFoundError"):
        import_factory("no_such_module:make")
    with pytest.raises(ValueError, match="has no callable 'VALUE'"):
        import_factory("my_models:VALUE")
    with pytest.raises(ValueError, match="expected 'module.path:factory'"):
        import_factory("my_models.make")
    with pytest.raises(ValueError, match="missing.py not found"):
        import_factory("missing.py:make")
    with pytest.raises(ValueError, match="returned int, not a torch nn.Module"):
        build_user_model("my_models:not_a_module")


def test_checkpoint_that_does_not_fit_lists_the_mismatches(tmp_path):
    model = build_user_model(TINY, model_args={"width": 8}, num_classes=2)
    other = build_user_model(TINY, model_args={"width": 4}, num_classes=2)
    torch.save({"state_dict": {"module." + k: v for k, v in other.model.state_dict().items()}}, tmp_path / "w4.pt")
    with pytest.raises(ValueError, match=r"w4.pt: the checkpoint does not fit .*shape mismatches .*body.0.weight"):
        load_user_weights(model.model, tmp_path / "w4.pt")
    sd = model.model.state_dict()
    torch.save({k: v for k, v in sd.items() if k != "body.6.bias"} | {"extra": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match=r"missing keys: body.6.bias; unexpected keys: extra"):
        load_user_weights(model.model, tmp_path / "x.pt")
    torch.save({"module." + k: v * 0 for k, v in sd.items()}, tmp_path / "ok.pt")  # DDP prefix removed
    load_user_weights(model.model, tmp_path / "ok.pt")
    assert all(float(v.abs().sum()) == 0 for v in model.model.state_dict().values())


def test_training_errors_name_the_problem(flicker, tmp_path):
    v, paths = flicker
    videos = [(paths["frames"], paths["annotations"])]
    with pytest.raises(ValueError, match=r"16 frames, fewer than the clip length 20"):
        train_video_model(videos, tmp_path / "a", model=TINY, clip_length=20, epochs=1, progress=False)
    with pytest.raises(ValueError, match="cannot import"):
        train_video_model(videos, tmp_path / "b", model="nowhere.models:make", epochs=1, progress=False)
    with pytest.raises(ValueError, match="give epochs or minutes"):
        train_video_model(videos, tmp_path / "c", model=TINY, progress=False)
    with pytest.raises(ValueError, match="the model comes from it"):
        train_video_model(videos, tmp_path / "d", init=tmp_path / "x.pt", model=TINY, epochs=1, progress=False)
    with pytest.raises(FileNotFoundError, match="x.pt: model checkpoint not found"):
        train_video_model(videos, tmp_path / "e", init=tmp_path / "x.pt", epochs=1, progress=False)


def test_cli_trains_a_user_model_predicts_and_draws_the_tradeoff(flicker, tmp_path):
    from steadyseg.cli import main

    v, paths = flicker
    fr, gt = str(paths["frames"]), str(paths["annotations"])
    init = build_user_model(TINY, model_args={"width": 8}, num_classes=2)
    torch.save(init.model.state_dict(), tmp_path / "init.pt")
    base = ["train", "video-model", "--frames", fr, "--masks", gt, "--binary", "--clip-length", "4",
            "--clips-per-epoch", "2", "--quiet"]
    assert main(base + ["--out", str(tmp_path / "sup"), "--model", TINY, "--model-arg", "width=8",
                        "--checkpoint", str(tmp_path / "init.pt"), "--epochs", "1"]) == 0
    assert main(base + ["--out", str(tmp_path / "ft"), "--init", str(tmp_path / "sup" / "model.pt"),
                        "--consistency-weight", "1", "--epochs", "2", "--flow", "farneback"]) == 0
    assert main(["predict", "--checkpoint", str(tmp_path / "ft" / "model.pt"), "--frames", fr, "--out",
                 str(tmp_path / "pred"), "--quiet"]) == 0
    assert len(list((tmp_path / "pred").glob("*.png"))) == 16
    ckpts = sorted(str(p) for p in (tmp_path / "ft").glob("epoch-*.pt"))
    assert main(["bench", "tradeoff", "--checkpoints", *ckpts, "--frames", fr, "--gt", gt, "--binary",
                 "--max-frames", "6", "--out", str(tmp_path / "trade"), "--workers", "1", "--quiet"]) == 0
    res = json.loads((tmp_path / "trade" / "results.json").read_text())
    points = res["mean"]["ft"]
    assert list(points) == ["epoch-000", "epoch-001", "epoch-002"]
    assert all(0 <= points[p]["jf"] <= 1 and points[p]["e_raw"] >= 0 for p in points)
    assert (tmp_path / "trade" / "fig10-tradeoff.png").stat().st_size > 0
    # a rerun reuses every prediction and measure
    mtime = (tmp_path / "trade" / "synthetic" / "ft" / "epoch-001" / "00000.png").stat().st_mtime
    assert main(["bench", "tradeoff", "--checkpoints", *ckpts, "--frames", fr, "--gt", gt, "--binary",
                 "--max-frames", "6", "--out", str(tmp_path / "trade"), "--workers", "1", "--quiet"]) == 0
    assert (tmp_path / "trade" / "synthetic" / "ft" / "epoch-001" / "00000.png").stat().st_mtime == mtime
    # a video model takes no teacher; a decoder checkpoint is refused by bench tradeoff
    assert main(["predict", "--checkpoint", str(tmp_path / "ft" / "model.pt"), "--frames", fr, "--teacher", gt,
                 "--out", str(tmp_path / "p2")]) == 1


def test_time_budget_stops_the_run_and_counts_earlier_runs(flicker, tmp_path):
    v, paths = flicker
    videos = [(paths["frames"], paths["annotations"])]
    common = dict(model=TINY, model_args={"width": 8}, clip_length=3, seed=0, progress=False, binary=True)
    rec = train_video_model(videos, tmp_path / "run", epochs=1, **common)
    assert rec["stop_reason"] == "epochs" and rec["step"] == 5  # 16 frames // 3 = 5 clips per epoch
    # resuming with a budget the first run already used up: no step, and the model is written again
    rec = train_video_model(videos, tmp_path / "run", epochs=10, minutes=1e-6, resume=True, **common)
    assert rec["stop_reason"] == "time budget" and rec["step"] == 5
    assert (tmp_path / "run" / "model.pt").is_file()
