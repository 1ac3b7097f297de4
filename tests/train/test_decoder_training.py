"""Training and prediction of the multi-input decoder on synthetic video with exact flow."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from steadyseg.accuracy import iou
from steadyseg.datasets.masks import open_masks
from steadyseg.datasets.synthetic import make_moving_shapes_video, write_video_folder
from steadyseg.measures import inconsistency
from steadyseg.train.checkpoint import load_model
from steadyseg.train.decoder_training import train_decoder
from steadyseg.train.predict import predict_video


@pytest.fixture(scope="module")
def flicker(tmp_path_factory):
    """16 frames of two shapes; the teacher is the flickering per-frame model (centres jittered ±2 px)."""
    v = make_moving_shapes_video(num_frames=16, height=64, width=80, num_objects=2, flicker_px=2, seed=1)
    return v, write_video_folder(v, tmp_path_factory.mktemp("flicker"))


def _labels(folder) -> np.ndarray:
    masks = open_masks(folder)
    return np.stack([masks[i] for i in range(len(masks))])


def _e_raw(labels: np.ndarray, flows) -> float:
    return inconsistency(list(labels), flows, window=3).e_raw


def _mean_iou(labels: np.ndarray, gt: np.ndarray) -> float:
    return float(np.mean([iou(a > 0, b > 0, void=None) for a, b in zip(labels, gt)]))


@pytest.mark.parametrize("data_target", ["teacher", "vote"])
def test_decoder_reduces_inconsistency_and_keeps_iou(flicker, tmp_path, data_target):
    v, paths = flicker
    run = tmp_path / "run"
    rec = train_decoder([(paths["frames"], paths["predictions"])], run, flows=[v.flows], inputs=3, steps=300,
                        lr=3e-3, lambda_data=0.5, seed=0, progress=False, data_target=data_target)
    assert rec["step"] == 300 and rec["num_classes"] == 3
    log = [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines()]
    steps = [r for r in log if r["type"] == "step"]
    assert len(steps) == 300 and {"loss_consistency", "loss_data", "loss_total", "valid_fraction"} <= set(steps[0])
    assert np.mean([r["loss_consistency"] for r in steps[-20:]]) < 0.5 * steps[0]["loss_consistency"]
    predict_video(run / "model.pt", paths["frames"], tmp_path / "pred", teacher=paths["predictions"], progress=False)
    out = _labels(tmp_path / "pred")
    e_teacher, e_out = _e_raw(v.flicker_labels, v.flows), _e_raw(out, v.flows)
    iou_teacher, iou_out = _mean_iou(v.flicker_labels, v.labels), _mean_iou(out, v.labels)
    # measured: E_raw 0.0346 → 0.0264 (−24 %), IoU 0.836 → 0.850
    assert e_out < 0.85 * e_teacher
    assert iou_out > iou_teacher - 0.01


def test_perfect_constant_teacher_is_left_unchanged(tmp_path):
    """Exact labels as the teacher (confidence 1): zero consistency loss, and training changes no label."""
    v = make_moving_shapes_video(num_frames=8, height=48, width=64, num_objects=2, flicker_px=0, seed=4,
                                 integer_motion=True)
    paths = write_video_folder(v, tmp_path / "video")
    run = tmp_path / "run"
    train_decoder([(paths["frames"], paths["annotations"])], run, flows=[v.flows], inputs=3, steps=20, lr=3e-3,
                  confidence=1.0, seed=0, progress=False)
    steps = [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines()][:-1]
    assert max(r["loss_consistency"] for r in steps) < 1e-3  # eps = 1e-4 clipping of the teacher's logits only
    predict_video(run / "model.pt", paths["frames"], tmp_path / "pred", teacher=paths["annotations"],
                  progress=False)
    assert np.array_equal(_labels(tmp_path / "pred"), v.labels)


def test_resume_equals_uninterrupted(flicker, tmp_path):
    v, paths = flicker
    common = dict(flows=[v.flows], inputs=3, lr=3e-3, seed=2, progress=False, crop=(48, 48), batch_size=2)
    videos = [(paths["frames"], paths["predictions"])]
    train_decoder(videos, tmp_path / "a", steps=4, **common)
    train_decoder(videos, tmp_path / "b", steps=2, **common)
    train_decoder(videos, tmp_path / "b", steps=4, resume=True, **common)
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    log_b = [json.loads(ln) for ln in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log_b if r["type"] == "step"] == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="already holds a training state"):
        train_decoder(videos, tmp_path / "a", steps=4, **common)
    with pytest.raises(ValueError, match="lr"):
        train_decoder(videos, tmp_path / "a", steps=6, resume=True, **{**common, "lr": 1e-2})
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train_decoder(videos, tmp_path / "c", steps=6, resume=True, **common)


def test_reduced_size_training_predicts_at_full_resolution_in_the_teacher_format(tmp_path):
    """DAVIS-2016 {0, 255} teacher, optical flow from the cache, training at half size: outputs are full size,
    {0, 255}, and an untrained decoder reproduces the teacher exactly."""
    from steadyseg.cli import main as cli_main

    v = make_moving_shapes_video(num_frames=6, height=64, width=96, num_objects=1, flicker_px=1, seed=3)
    paths = write_video_folder(v, tmp_path / "video")
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    for t in range(len(v)):
        Image.fromarray((v.flicker_labels[t] * 255).astype(np.uint8), mode="L").save(teacher / f"{t:05d}.png")
    assert open_masks(teacher).reading == "davis2016-binary"
    run = tmp_path / "run"
    assert cli_main(["train", "decoder", "--frames", str(paths["frames"]), "--teacher", str(teacher), "--out",
                     str(run), "--inputs", "3", "--size", "32", "48", "--steps", "0", "--quiet"]) == 0
    kind, config, _ = load_model(run / "model.pt")
    assert kind == "decoder" and config["size"] == [32, 48] and config["num_classes"] == 2
    assert any((run / "cache" / "flow").rglob("*.flow"))
    out = tmp_path / "pred"
    assert cli_main(["predict", "--checkpoint", str(run / "model.pt"), "--frames", str(paths["frames"]),
                     "--teacher", str(teacher), "--out", str(out), "--probs", "--quiet"]) == 0
    for t in range(len(v)):
        img = np.array(Image.open(out / f"{t:05d}.png"))
        assert img.shape == (64, 96) and set(np.unique(img)) <= {0, 255}
        assert np.array_equal(img, (v.flicker_labels[t] * 255).astype(np.uint8))
        with np.load(out / "probs" / f"{t:05d}.npz") as z:
            p = z["probs"].astype(np.float32)
        assert p.shape == (2, 64, 96)
        np.testing.assert_allclose(p[1], np.where(v.flicker_labels[t] == 1, 0.9, 0.1), atol=1e-3)
    # a few steps at the reduced size still give full-resolution output
    assert cli_main(["train", "decoder", "--frames", str(paths["frames"]), "--teacher", str(teacher), "--out",
                     str(run), "--steps", "3", "--resume", "--quiet"]) == 0
    shutil.rmtree(out)
    predict_video(run / "model.pt", paths["frames"], out, teacher=teacher, progress=False)
    assert np.array(Image.open(out / "00000.png")).shape == (64, 96)


def test_palette_is_kept(flicker, tmp_path):
    v, paths = flicker
    run = tmp_path / "run"
    train_decoder([(paths["frames"], paths["predictions"])], run, flows=[v.flows], inputs=3, steps=0,
                  progress=False)
    predict_video(run / "model.pt", paths["frames"], tmp_path / "pred", teacher=paths["predictions"],
                  progress=False)
    with Image.open(paths["predictions"] / "00003.png") as src, Image.open(tmp_path / "pred" / "00003.png") as dst:
        assert dst.mode == "P" and dst.getpalette() == src.getpalette()
        assert np.array_equal(np.array(dst), np.array(src))


def test_bad_inputs_name_the_files(flicker, tmp_path):
    v, paths = flicker
    short = tmp_path / "short"
    shutil.copytree(paths["predictions"], short)
    (short / "00015.png").unlink()
    with pytest.raises(ValueError, match=f"frames {paths['frames']} .*masks {short} .*differ in count"):
        train_decoder([(paths["frames"], short)], tmp_path / "r1", flows=[v.flows], inputs=3, steps=1,
                      progress=False)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        predict_video(tmp_path / "missing.pt", paths["frames"], tmp_path / "p0", teacher=paths["predictions"],
                      progress=False)
    run = tmp_path / "two"
    binary = tmp_path / "binary"
    binary.mkdir()
    for t in range(len(v)):
        Image.fromarray(((v.flicker_labels[t] > 0) * 255).astype(np.uint8), mode="L").save(binary / f"{t:05d}.png")
    train_decoder([(paths["frames"], binary)], run, flows=[v.flows], inputs=3, steps=0, progress=False)
    with pytest.raises(ValueError, match=f"{paths['predictions']}: teacher label 2 .*does not fit 2 classes"):
        predict_video(run / "model.pt", paths["frames"], tmp_path / "p1", teacher=paths["predictions"],
                      progress=False)
    with pytest.raises(ValueError, match="give --teacher"):
        predict_video(run / "model.pt", paths["frames"], tmp_path / "p2", progress=False)
    with pytest.raises(ValueError, match="fewer than the window"):
        train_decoder([(paths["frames"], paths["predictions"])], tmp_path / "r2", flows=[v.flows], inputs=20,
                      steps=1, progress=False)


def test_ddp_two_gloo_processes_equal_one_process_with_the_global_batch(flicker, tmp_path, spawn_gloo):
    v, paths = flicker
    videos = [(paths["frames"], paths["predictions"])]
    kwargs = dict(inputs=3, lr=3e-3, seed=1, steps=2, progress=False, crop=(48, 48))
    train_decoder(videos, tmp_path / "one", flows=[v.flows], batch_size=2, device="cpu", **kwargs)
    spawn_gloo(train_decoder, videos, [v.flows], tmp_path / "two", {**kwargs, "batch_size": 1})
    one = [json.loads(ln) for ln in (tmp_path / "one" / "log.jsonl").read_text().splitlines()]
    two = [json.loads(ln) for ln in (tmp_path / "two" / "log.jsonl").read_text().splitlines()]
    assert two[-1]["world_size"] == 2
    a = torch.load(tmp_path / "one" / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "two" / "checkpoints" / "last.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    # process 0 logs its own windows (the one-process run saw them first) and the loss terms of the global batch
    assert [r["windows"][0] for r in two[:2]] == [r["windows"][0] for r in one[:2]]
    for r1, r2 in zip(one[:2], two[:2]):
        for k in ("loss_consistency", "loss_data", "loss_total"):
            assert r2[k] == pytest.approx(r1[k], rel=1e-5), k


@pytest.mark.parametrize("flow_guided", [False, True])
def test_causal_model_never_reads_a_future_frame_and_streams_like_offline(flicker, tmp_path, flow_guided):
    """Causal (and causal + flow-guided, whose guides come from the previous frames): perturbing frames 10.. and
    their teacher masks changes no output before frame 10; the stream gives the offline result frame by frame."""
    from steadyseg.datasets.video import open_video
    from steadyseg.train.decoder import guide_offsets
    from steadyseg.train.decoder_data import read_teacher_probs
    from steadyseg.train.decoder_predict import DecoderStream

    v, paths = flicker
    run = tmp_path / "run"
    train_decoder([(paths["frames"], paths["predictions"])], run, flows=[v.flows], inputs=3, steps=30, lr=3e-3,
                  causal=True, flow_guided=flow_guided, progress=False)
    kind, config, model = load_model(run / "model.pt")
    assert config["causal"] is True and config["flow_guided"] is flow_guided
    assert guide_offsets(3, causal=True) == [-2, -1] and guide_offsets(7, causal=True) == [-6, -5, -4, -3, -2, -1]
    assert guide_offsets(7) == [-3, -2, -1, 1, 2, 3]
    predict_video(run / "model.pt", paths["frames"], tmp_path / "a", teacher=paths["predictions"], probs=True,
                  progress=False)
    # the same video with frames 10.. replaced by noise and the teacher's masks 10.. emptied
    frames2, teacher2 = tmp_path / "frames2", tmp_path / "teacher2"
    shutil.copytree(paths["frames"], frames2)
    shutil.copytree(paths["predictions"], teacher2)
    rng = np.random.default_rng(0)
    for t in range(10, 16):
        Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(frames2 / f"{t:05d}.png")
        with Image.open(teacher2 / f"{t:05d}.png") as im:
            empty = Image.fromarray(np.zeros((64, 80), np.uint8), mode="P")
            empty.putpalette(im.getpalette())
        empty.save(teacher2 / f"{t:05d}.png")
    predict_video(run / "model.pt", frames2, tmp_path / "b", teacher=teacher2, probs=True, progress=False)
    changed = []
    for t in range(16):
        with np.load(tmp_path / "a" / "probs" / f"{t:05d}.npz") as za, \
                np.load(tmp_path / "b" / "probs" / f"{t:05d}.npz") as zb:
            changed.append(not np.array_equal(za["probs"], zb["probs"]))
    assert changed == [False] * 10 + [True] * 6
    if flow_guided:
        return
    # streaming gives the offline (causal) result frame by frame
    video, masks = open_video(paths["frames"]), open_masks(paths["predictions"])
    stream = DecoderStream(model, size=None)
    with torch.inference_mode():
        for t in range(16):
            p = stream.step(video[t], read_teacher_probs(masks, t, num_classes=3, confidence=0.9))
            with np.load(tmp_path / "a" / "probs" / f"{t:05d}.npz") as za:
                np.testing.assert_allclose(p, za["probs"].astype(np.float32), atol=1e-3)  # stored as float16


def test_flow_guided_decoder_trains_and_predicts(flicker, tmp_path):
    """Flow-guided: exact flow in training, DIS flow computed by the predictor; untrained = the teacher."""
    v, paths = flicker
    videos = [(paths["frames"], paths["predictions"])]
    train_decoder(videos, tmp_path / "zero", flows=[v.flows], inputs=5, steps=0, flow_guided=True, progress=False)
    predict_video(tmp_path / "zero" / "model.pt", paths["frames"], tmp_path / "p0", teacher=paths["predictions"],
                  progress=False)
    assert np.array_equal(_labels(tmp_path / "p0"), v.flicker_labels)
    rec = train_decoder(videos, tmp_path / "run", flows=[v.flows], inputs=5, steps=20, lr=3e-3, flow_guided=True,
                        crop=(48, 64), progress=False)
    assert rec["step"] == 20 and np.isfinite(rec["final_loss_terms"]["total"])
    kind, config, model = load_model(tmp_path / "run" / "model.pt")
    assert config["flow_guided"] is True and model.guide_channels == 4 * 4
    predict_video(tmp_path / "run" / "model.pt", paths["frames"], tmp_path / "p1", teacher=paths["predictions"],
                  progress=False)
    assert _labels(tmp_path / "p1").shape == v.flicker_labels.shape


def test_vote_data_target_options_and_what_the_run_keeps(flicker, tmp_path):
    """``data_target="vote"`` needs N ≥ 3 and the consistency objective; ``photometric_sigma`` then weighs the
    vote target of a model that is not flow-guided (which keeps no guide weights in its model config)."""
    v, paths = flicker
    videos = [(paths["frames"], paths["predictions"])]
    with pytest.raises(ValueError, match="data_target 'vote'.*inputs >= 3"):
        train_decoder(videos, tmp_path / "r1", flows=[v.flows], inputs=1, steps=1, data_target="vote",
                      progress=False)
    with pytest.raises(ValueError, match="data_target must be 'teacher' or 'vote'"):
        train_decoder(videos, tmp_path / "r2", flows=[v.flows], inputs=3, steps=1, data_target="gt", progress=False)
    with pytest.raises(ValueError, match="photometric_sigma .*needs flow_guided .*or data_target 'vote'"):
        train_decoder(videos, tmp_path / "r3", flows=[v.flows], inputs=3, steps=1, photometric_sigma=0.1,
                      progress=False)
    rec = train_decoder(videos, tmp_path / "run", flows=[v.flows], inputs=3, steps=2, data_target="vote",
                        photometric_sigma=0.1, progress=False)
    assert rec["step"] == 2 and np.isfinite(rec["final_loss_terms"]["data"])
    _, config, _ = load_model(tmp_path / "run" / "model.pt")
    assert config["photometric_sigma"] is None and config["flow_guided"] is False
    run_config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["config"]
    assert run_config["data_target"] == "vote" and run_config["photometric_sigma"] == 0.1


def test_deeplabv3_encoder_reads_cached_frozen_backbone_features(flicker, tiny_run, tmp_path):
    """The frozen backbone of a teacher model.pt (the tiny MobileNetV3 teacher): features cached once per video."""
    from steadyseg.train.decoder_backbone import FrozenBackbone

    v, paths = flicker
    videos = [(paths["frames"], paths["predictions"])]
    ckpt = tiny_run / "model.pt"
    run = tmp_path / "run"
    train_decoder(videos, run, flows=[v.flows], inputs=3, steps=0, encoder="deeplabv3", encoder_checkpoint=ckpt,
                  progress=False)
    cached = list((run / "cache" / "features").glob("*.npy"))
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    kind, config, model = load_model(run / "model.pt")
    backbone = FrozenBackbone(ckpt)
    assert config["encoder"] == "deeplabv3" and config["feature_channels"] == backbone.channels
    assert all(not p.requires_grad for p in backbone.backbone.parameters())
    predict_video(run / "model.pt", paths["frames"], tmp_path / "p0", teacher=paths["predictions"], progress=False)
    assert np.array_equal(_labels(tmp_path / "p0"), v.flicker_labels)  # untrained: the teacher
    rec = train_decoder(videos, run, flows=[v.flows], inputs=3, steps=5, encoder="deeplabv3",
                        encoder_checkpoint=ckpt, resume=True, progress=False)
    assert rec["step"] == 5 and cached[0].stat().st_mtime_ns == mtime  # features read from the cache
    predict_video(run / "model.pt", paths["frames"], tmp_path / "p1", teacher=paths["predictions"], progress=False)
    assert _labels(tmp_path / "p1").shape == v.flicker_labels.shape
    with pytest.raises(ValueError, match="no crop"):
        train_decoder(videos, tmp_path / "bad", flows=[v.flows], inputs=3, steps=1, encoder="deeplabv3",
                      encoder_checkpoint=ckpt, crop=(32, 32), progress=False)
    with pytest.raises(ValueError, match="needs encoder_checkpoint"):
        train_decoder(videos, tmp_path / "bad", flows=[v.flows], inputs=3, steps=1, encoder="deeplabv3",
                      progress=False)
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        train_decoder(videos, tmp_path / "bad", flows=[v.flows], inputs=3, steps=1, encoder="deeplabv3",
                      encoder_checkpoint=tmp_path / "nope.pt", progress=False)


def test_deeplabv3_encoder_from_a_torchvision_resnet50_checkpoint(tmp_path):
    """The torchvision branch: an ImageNet-layout ResNet-50 state dict (random init, ~100 MB) as the frozen
    backbone of deeplabv3_resnet50: 2048 channels at stride 8 (dilated layer3/4)."""
    import torchvision

    from steadyseg.train.decoder_backbone import FrozenBackbone, video_features

    torch.manual_seed(0)
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tmp_path / "resnet50.pth")
    backbone = FrozenBackbone(tmp_path / "resnet50.pth")
    assert backbone.channels == 2048
    frames = np.random.default_rng(0).integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    feats = video_features(backbone, frames, cache_dir=tmp_path / "cache")
    assert feats.shape == (2, 2048, 8, 12) and feats.dtype == np.float16
    assert np.array_equal(video_features(backbone, frames, cache_dir=tmp_path / "cache"), feats)  # from the cache
    torch.save({"fc.weight": torch.zeros(2, 3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="other.pth: keys do not match the model"):
        FrozenBackbone(tmp_path / "other.pth")


def test_balance_videos_weights_each_window_by_its_video(flicker, tmp_path):
    """Two videos (the flickering teacher and the exact labels), ``balance="videos"``, lr 0 (the model stays the
    teacher): every logged consistency term is the window's unweighted term times its video's weight, and the
    flickering video weighs less."""
    import yaml

    from steadyseg.train.decoder import teacher_logits
    from steadyseg.train.decoder_data import load_decoder_video, sample_window
    from steadyseg.train.decoder_training import decoder_losses

    v, paths = flicker
    videos = [(paths["frames"], paths["predictions"]), (paths["frames"], paths["annotations"])]
    run = tmp_path / "run"
    train_decoder(videos, run, flows=[v.flows, v.flows], inputs=3, steps=6, lr=0.0, seed=3, balance="videos",
                  num_classes=3, progress=False)
    cfg = yaml.safe_load((run / "config.yaml").read_text())["config"]
    flick, weights = cfg["video_flicker"], cfg["video_weights"]
    assert flick[0] > 2 * flick[1] > 0 and weights[0] < 1 < weights[1]
    assert weights == pytest.approx([min(10.0, np.mean(flick) / f) for f in flick])  # clipped at 10
    data = [load_decoder_video(f, t, inputs=3, num_classes=3, flows=v.flows) for f, t in videos]
    steps = [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines() if '"step"' in ln][:6]
    assert {r["windows"][0][0] for r in steps} == {0, 1}
    for r in steps:
        w = sample_window(data, inputs=3, seed=3, step=r["step"] - 1, index=0, balance="videos")
        assert [w.video, w.start] == r["windows"][0]
        plain = decoder_losses(teacher_logits(w.probs[None]), w.labels[None], w.flows, w.valid)["consistency"]
        assert r["loss_consistency"] == pytest.approx(weights[w.video] * float(plain), rel=1e-5)


@pytest.mark.parametrize("sigma", [None, 0.1])
def test_vote_base_predicts_the_full_size_flow_vote(flicker, tmp_path, sigma):
    """An untrained decoder with base "vote" predicts the vote of each frame and its neighbours warped by the
    predictor's (DIS) flow at full size (with ``photometric_sigma``: each neighbour weighted by its colour match):
    equal to that vote computed here, and less flicker than the teacher."""
    from steadyseg.datasets.flow import FlowProvider
    from steadyseg.datasets.video import open_video
    from steadyseg.train.decoder import guide_offsets, neighbour_guide, neighbour_vote, photometric_weight
    from steadyseg.train.decoder_data import frame_tensor, read_teacher_probs
    from steadyseg.warp import valid_mask_torch

    v, paths = flicker
    videos = [(paths["frames"], paths["predictions"])]
    with pytest.raises(ValueError, match="needs flow_guided"):
        train_decoder(videos, tmp_path / "bad", flows=[v.flows], inputs=5, steps=0, base="vote", progress=False)
    with pytest.raises(ValueError, match="photometric_sigma weights the warped neighbours"):
        train_decoder(videos, tmp_path / "bad", flows=[v.flows], inputs=5, steps=0, photometric_sigma=0.1,
                      progress=False)
    with pytest.raises(ValueError, match="photometric_sigma must be > 0"):
        train_decoder(videos, tmp_path / "bad", flows=[v.flows], inputs=5, steps=0, flow_guided=True,
                      photometric_sigma=-1.0, progress=False)
    with pytest.raises(ValueError, match="loss_photometric_sigma must be > 0"):
        train_decoder(videos, tmp_path / "bad", flows=[v.flows], inputs=5, steps=0, loss_photometric_sigma=0.0,
                      progress=False)
    with pytest.raises(ValueError, match="needs the consistency objective"):
        train_decoder(videos, tmp_path / "bad", flows=[v.flows], inputs=1, steps=0, objective="ti",
                      loss_photometric_sigma=0.1, progress=False)
    if sigma is not None:  # the loss weighted by colour too: a short run trains and logs finite terms
        rec = train_decoder(videos, tmp_path / "lossw", flows=[v.flows], inputs=5, steps=3, flow_guided=True,
                            base="vote", photometric_sigma=sigma, loss_photometric_sigma=sigma, progress=False)
        assert rec["step"] == 3 and all(np.isfinite(x) for x in rec["final_loss_terms"].values())
    train_decoder(videos, tmp_path / "zero", flows=[v.flows], inputs=5, steps=0, flow_guided=True, base="vote",
                  size=(32, 40), photometric_sigma=sigma, progress=False)
    predict_video(tmp_path / "zero" / "model.pt", paths["frames"], tmp_path / "p0", teacher=paths["predictions"],
                  progress=False, flow_cache=tmp_path / "flows")
    out = _labels(tmp_path / "p0")
    assert out.shape == v.flicker_labels.shape
    assert _e_raw(out, v.flows) < 0.8 * _e_raw(v.flicker_labels, v.flows)
    masks, frames = open_masks(paths["predictions"]), open_video(paths["frames"])
    provider = FlowProvider(frames, cache_dir=tmp_path / "flows")
    probs = [torch.from_numpy(read_teacher_probs(masks, i, num_classes=3, confidence=0.9)) for i in range(16)]
    for t in (0, 7):
        neighbours = []
        for d in guide_offsets(5):
            n = t + d
            if not 0 <= n < 16:
                neighbours.append(None)
                continue
            f_tn = torch.from_numpy(provider(t, n)).permute(2, 0, 1)
            f_nt = torch.from_numpy(provider(n, t)).permute(2, 0, 1)
            weight = valid_mask_torch(f_tn[None], f_nt[None])[0, 0]
            if sigma is not None:
                weight = weight * photometric_weight(frame_tensor(frames[t]), frame_tensor(frames[n]), f_tn,
                                                     sigma=sigma)
            neighbours.append((probs[n], f_tn, weight))
        guide = neighbour_guide(neighbours, num_classes=3)
        vote = neighbour_vote(probs[t], guide, num_classes=3)
        decided = (vote.topk(2, dim=0).values.diff(dim=0).abs() > 1e-3)[0].numpy()  # no near-ties
        assert decided.mean() > 0.95
        assert np.array_equal(out[t][decided], vote.argmax(dim=0).numpy()[decided])
