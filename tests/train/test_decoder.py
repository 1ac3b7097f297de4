"""The multi-input decoder: exact answers of the model, the loss and the training windows (no training here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steadyseg.datasets.synthetic import make_moving_shapes_video, write_video_folder
from steadyseg.train.decoder import (MultiInputDecoder, build_decoder, build_decoder_from_config, soften_onehot,
                                     teacher_logits)
from steadyseg.train.decoder_data import load_decoder_video, resize_flow, sample_window
from steadyseg.train.decoder_training import DecoderLoss, decoder_losses


def _onehot(labels: torch.Tensor, c: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels.long(), c).movedim(-1, -3).float()


def test_untrained_decoder_returns_the_teacher_exactly():
    torch.manual_seed(0)
    model = build_decoder(num_classes=3, inputs=5)
    frames = torch.rand(2, 5, 3, 37, 45)
    probs = soften_onehot(_onehot(torch.randint(0, 3, (2, 5, 37, 45)), 3), confidence=0.9)
    logits = model(frames, probs)
    assert logits.shape == (2, 5, 3, 37, 45)
    assert torch.equal(logits, teacher_logits(probs))
    torch.testing.assert_close(logits.softmax(dim=2), probs, rtol=0, atol=1e-6)
    soft = torch.rand(2, 5, 3, 37, 45).softmax(dim=2)  # soft teachers too
    torch.testing.assert_close(model(frames, soft).softmax(dim=2), soft, rtol=0, atol=1e-6)


def test_soften_onehot_values_and_void():
    onehot = np.zeros((3, 1, 3), np.float32)
    onehot[0, 0, 0] = onehot[2, 0, 1] = 1.0  # pixel 2 is void (all-zero column)
    p = soften_onehot(onehot, confidence=0.8)
    np.testing.assert_allclose(p[:, 0, 0], [0.8, 0.1, 0.1], rtol=1e-6)
    np.testing.assert_allclose(p[:, 0, 1], [0.1, 0.1, 0.8], rtol=1e-6)
    np.testing.assert_allclose(p[:, 0, 2], [1 / 3] * 3, rtol=1e-6)
    with pytest.raises(ValueError, match="confidence"):
        soften_onehot(onehot, confidence=0.3)


def test_encode_decode_equal_correction_and_channels_grow_with_inputs():
    torch.manual_seed(1)
    model = build_decoder(num_classes=2, inputs=3, width=8, hidden=4)
    torch.nn.init.normal_(model.head.weight, std=0.1)
    frames, probs = torch.rand(1, 3, 3, 20, 24), torch.rand(1, 3, 2, 20, 24).softmax(dim=2)
    torch.testing.assert_close(model.correction(frames, probs), model.decode(model.encode(frames, probs)))
    assert model.correction(frames, probs).shape == (1, 3, 2, 5, 6)
    assert model.joint[0][0].in_channels == 3 * 2 * 8 and model.head.out_channels == 3 * 2
    wide = build_decoder(num_classes=2, inputs=7, width=8, hidden=4)
    assert wide.joint[0][0].in_channels == 7 * 2 * 8 and wide.head.out_channels == 7 * 2
    cfg = {"num_classes": 2, "inputs": 3, "encoder": "small", "width": 8, "hidden": 4, "eps": 1e-4}
    rebuilt = build_decoder_from_config(cfg)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    torch.testing.assert_close(rebuilt(frames, probs), model(frames, probs))


def test_decoder_shape_errors():
    model = MultiInputDecoder(num_classes=2, inputs=3)
    with pytest.raises(ValueError, match="frames B×3×3×H×W"):
        model(torch.rand(1, 4, 3, 16, 16), torch.rand(1, 4, 2, 16, 16))
    with pytest.raises(ValueError, match="teacher probs"):
        model(torch.rand(1, 3, 3, 16, 16), torch.rand(1, 3, 5, 16, 16))
    with pytest.raises(ValueError, match="differ in size"):
        model(torch.rand(1, 3, 3, 16, 16), torch.rand(1, 3, 2, 16, 20))
    with pytest.raises(ValueError, match="encoder"):
        MultiInputDecoder(num_classes=2, encoder="resnet")
    with pytest.raises(ValueError, match="num_classes"):
        MultiInputDecoder(num_classes=1)
    with pytest.raises(ValueError, match="decoder config lacks"):
        build_decoder_from_config({"num_classes": 2})


def test_resize_flow_scales_vectors():
    flow = np.zeros((64, 80, 2), np.float32)
    flow[..., 0], flow[..., 1] = 4.0, -2.0
    small = resize_flow(flow, (32, 20))
    assert small.shape == (32, 20, 2)
    np.testing.assert_allclose(small[..., 0], 1.0)   # 4 px × 20/80
    np.testing.assert_allclose(small[..., 1], -1.0)  # −2 px × 32/64


@pytest.fixture(scope="module")
def perfect_video(tmp_path_factory):
    """Integer motion and exact labels as the teacher: bilinear warps of one-hot masks are exact shifts."""
    v = make_moving_shapes_video(num_frames=8, height=48, width=64, num_objects=2, flicker_px=0, seed=4,
                                 integer_motion=True)
    paths = write_video_folder(v, tmp_path_factory.mktemp("perfect"))
    return v, paths


@pytest.mark.parametrize("crop, hflip", [(None, 0.0), (None, 1.0), ((32, 40), 1.0)])
def test_perfect_teacher_windows_are_consistent(perfect_video, crop, hflip):
    """With exact, constant labels the consistency loss of the teacher is 0 on any window, flipped or cropped."""
    v, paths = perfect_video
    video = load_decoder_video(paths["frames"], paths["annotations"], inputs=4, num_classes=3, confidence=1.0,
                               flows=v.flows)
    assert video.labels is not None and np.array_equal(video.labels, v.labels.astype(np.uint8))
    for step in range(3):
        w = sample_window([video], inputs=4, seed=0, step=step, index=0, crop=crop, hflip_prob=hflip)
        probs = w.probs[None]
        terms = decoder_losses(teacher_logits(probs, eps=1e-9), w.labels[None], w.flows, w.valid, lambda_data=0.5)
        assert terms["consistency"] < 1e-6
        assert terms["valid_fraction"] > 0.5
        if crop is not None:
            assert w.frames.shape[-2:] == crop


def test_sample_window_is_a_function_of_seed_step_index(perfect_video):
    v, paths = perfect_video
    video = load_decoder_video(paths["frames"], paths["predictions"], inputs=3, num_classes=3, flows=v.flows)
    a = sample_window([video, video], inputs=3, seed=5, step=7, index=1, crop=(24, 24))
    b = sample_window([video, video], inputs=3, seed=5, step=7, index=1, crop=(24, 24))
    assert (a.video, a.start) == (b.video, b.start) and torch.equal(a.frames, b.frames)
    assert all(torch.equal(a.valid[k], b.valid[k]) for k in a.valid)
    starts = {(w.video, w.start) for w in (sample_window([video, video], inputs=3, seed=5, step=s, index=0)
                                           for s in range(40))}
    assert {vi for vi, _ in starts} == {0, 1} and {s for _, s in starts} <= set(range(6))


def test_consistency_gradient_moves_the_decoder(perfect_video):
    """The flicker of a shifted mask gives a nonzero consistency loss whose gradient reaches the decoder's head."""
    v, paths = perfect_video
    video = load_decoder_video(paths["frames"], paths["predictions"], inputs=3, num_classes=3, flows=v.flows)
    w = sample_window([video], inputs=3, seed=0, step=0, index=0, hflip_prob=0.0)
    w.probs[1] = w.probs[1].roll(2, dims=-1)  # frame 1 shifted by 2 px: inconsistent with its neighbours
    model = build_decoder(num_classes=3, inputs=3, width=4, hidden=4)
    terms = DecoderLoss(lambda_data=0.5)(model(w.frames[None], w.probs[None]), w.probs[None], w.flows, w.valid)
    assert set(terms) == {"consistency", "data", "total", "valid_fraction"}
    assert terms["consistency"] > 0.1
    torch.testing.assert_close(terms["total"], terms["consistency"] + terms["data"])
    terms["total"].backward()
    assert model.head.weight.grad.abs().sum() > 0


def test_teacher_with_too_many_classes_is_refused(perfect_video):
    v, paths = perfect_video
    with pytest.raises(ValueError, match=str(paths["predictions"]) + ".*does not fit 2 classes"):
        load_decoder_video(paths["frames"], paths["predictions"], inputs=3, num_classes=2, flows=v.flows)


def test_neighbour_guide_zero_flow_and_missing_neighbours():
    from steadyseg.train.decoder import guide_offsets, neighbour_guide

    assert guide_offsets(7) == [-3, -2, -1, 1, 2, 3] and guide_offsets(2) == []
    p = torch.rand(2, 6, 8).softmax(dim=0)
    valid = torch.ones(6, 8, dtype=torch.bool)
    valid[0] = False
    g = neighbour_guide([None, (p, torch.zeros(2, 6, 8), valid)], num_classes=2)
    assert g.shape == (6, 6, 8)
    assert torch.equal(g[:3], torch.zeros(3, 6, 8))              # a neighbour outside the video
    torch.testing.assert_close(g[3:5, 1:], p[:, 1:])             # zero flow: the neighbour itself
    assert torch.equal(g[3:5, 0], torch.zeros(2, 8)) and torch.equal(g[5], valid.float())
    shift = torch.zeros(2, 6, 8)
    shift[0] = 1.0                                               # F[t→n] = +1 px in x: reads the pixel to the right
    g = neighbour_guide([(p, shift, torch.ones(6, 8, dtype=torch.bool))], num_classes=2)
    torch.testing.assert_close(g[:2, :, :7], p[:, :, 1:])


def test_training_guide_with_photometric_weights(perfect_video):
    """The guide of a training window with ``photometric_sigma``: each neighbour's weight channel is its validity
    times its photometric weight, computed from the training-size frames and flows. With a zero flow (a flow that
    missed the motion: forward and backward agree, so every pixel is valid) the moving shapes no longer match their
    warped neighbours and lose their weight; the static background keeps it."""
    from steadyseg.train.decoder import guide_offsets, photometric_weight
    from steadyseg.train.decoder_data import frame_tensor

    v, paths = perfect_video

    def still(p, q):
        return np.zeros((48, 64, 2), np.float32)

    plain, soft = (load_decoder_video(paths["frames"], paths["annotations"], inputs=5, num_classes=3, flows=still)
                   for _ in range(2))
    w0 = sample_window([plain], inputs=5, seed=0, step=0, index=0, hflip_prob=0.0, flow_guided=True)
    w1 = sample_window([soft], inputs=5, seed=0, step=0, index=0, hflip_prob=0.0, flow_guided=True,
                       photometric_sigma=0.1)
    t = w1.start + 2                                            # the window's middle frame: 4 neighbours inside
    moved = np.zeros((48, 64), bool)
    for k, d in enumerate(guide_offsets(5)):
        flow, valid = soft.pairs.get(t, t + d)
        assert valid.all()
        pw = photometric_weight(frame_tensor(soft.frames[t]), frame_tensor(soft.frames[t + d]),
                                torch.from_numpy(flow).permute(2, 0, 1), sigma=0.1)
        ch = 4 * k + 3                                          # (C + 1) channels per neighbour, the weight last
        assert torch.equal(w0.guide[2, ch], torch.ones(48, 64))
        torch.testing.assert_close(w1.guide[2, ch], pw, rtol=0, atol=1e-3)  # the guide is kept in float16
        changed = v.labels[t] != v.labels[t + d]                # where a shape came or went
        assert float(w1.guide[2, ch][torch.from_numpy(changed)].mean()) < 0.5
        moved |= changed
    assert float(w1.guide[2, 3][torch.from_numpy(~moved)].mean()) > 0.9


def test_loss_with_photometric_weights_stops_punishing_a_wrong_flow(perfect_video):
    """A zero flow on a video whose shapes move (every pixel valid by the forward-backward check): the exact labels
    contradict their warped neighbours where the shapes moved, so the plain loss punishes the right answer; with
    ``loss_photometric_sigma`` those pixel pairs lose their weight (the colours disagree there) and the loss of the
    exact labels falls. Each weight is ``M[p→q]`` times the photometric weight of frame p warped into frame q."""
    from steadyseg.train.decoder import photometric_weight

    v, paths = perfect_video
    video = load_decoder_video(paths["frames"], paths["annotations"], inputs=4, num_classes=3, confidence=1.0,
                               flows=lambda p, q: np.zeros((48, 64, 2), np.float32))
    plain = sample_window([video], inputs=4, seed=0, step=0, index=0, hflip_prob=0.0)
    soft = sample_window([video], inputs=4, seed=0, step=0, index=0, hflip_prob=0.0, loss_photometric_sigma=0.1)
    assert plain.start == soft.start and set(plain.valid) == set(soft.valid)
    for (p, q), m in soft.valid.items():
        assert plain.valid[(p, q)].all() and m.dtype == torch.float32
        torch.testing.assert_close(m[0, 0], photometric_weight(soft.frames[q], soft.frames[p],
                                                               soft.flows[(q, p)][0], sigma=0.1))
    logits = teacher_logits(plain.probs[None], eps=1e-9)
    loss_plain = decoder_losses(logits, plain.labels[None], plain.flows, plain.valid)["consistency"]
    loss_soft = decoder_losses(logits, soft.labels[None], soft.flows, soft.valid)["consistency"]
    assert loss_plain > 0.02 and loss_soft < 0.3 * loss_plain
    video.features = np.zeros((8, 4, 12, 16), np.float16)  # a "deeplabv3" video: no frames to compare
    with pytest.raises(ValueError, match="not available with backbone features"):
        sample_window([video], inputs=4, seed=0, step=0, index=0, hflip_prob=0.0, loss_photometric_sigma=0.1)


def test_flow_guided_decoder_needs_its_guide_and_starts_as_the_teacher():
    model = build_decoder(num_classes=2, inputs=5, flow_guided=True)
    assert model.guide_channels == 4 * 3
    frames, probs = torch.rand(1, 5, 3, 16, 20), torch.rand(1, 5, 2, 16, 20).softmax(dim=2)
    with pytest.raises(ValueError, match="needs guide"):
        model(frames, probs)
    with pytest.raises(ValueError, match="not flow-guided"):
        build_decoder(num_classes=2, inputs=5)(frames, probs, torch.rand(1, 5, 12, 16, 20))
    out = model(frames, probs, torch.rand(1, 5, 12, 16, 20))
    torch.testing.assert_close(out.softmax(dim=2), probs, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="inputs >= 3"):
        build_decoder(num_classes=2, inputs=2, flow_guided=True)


def test_balance_videos_draws_every_video_alike(perfect_video):
    """Windows of a 8-frame and a 4-frame video, N = 3: 6 + 2 windows. Uniform over windows draws the short video
    a quarter of the time; ``balance="videos"`` half of the time."""
    import dataclasses

    v, paths = perfect_video
    long = load_decoder_video(paths["frames"], paths["predictions"], inputs=3, num_classes=3, flows=v.flows)
    short = dataclasses.replace(long, frames=long.frames[:4], probs=long.probs[:4], labels=None, guides={})
    share = {}
    for balance in ("windows", "videos"):
        draws = [sample_window([long, short], inputs=3, seed=0, step=s, index=0, balance=balance)
                 for s in range(400)]
        assert {w.start for w in draws if w.video == 1} == {0, 1}
        share[balance] = np.mean([w.video == 1 for w in draws])
    assert 0.19 < share["windows"] < 0.31 and 0.43 < share["videos"] < 0.57
    with pytest.raises(ValueError, match="balance"):
        sample_window([long], inputs=3, seed=0, step=0, index=0, balance="frames")


def test_video_balance_weights_by_hand():
    from steadyseg.train.decoder_data import video_balance_weights

    assert video_balance_weights([0.01, 0.03]) == pytest.approx([2.0, 2 / 3])       # mean 0.02
    assert video_balance_weights([0.001, 0.1, 0.1]) == pytest.approx([10.0, 0.67, 0.67])  # 67 clipped to 10
    # no flicker: the most; the other keeps mean(w·f) = mean(f) = 0.1
    assert video_balance_weights([0.0, 0.2], max_ratio=4) == pytest.approx([4.0, 1.0])
    assert video_balance_weights([0.0, 0.0]) == [1.0, 1.0]
    # power 0.5: weights ∝ (1/f)^0.5 = ratio 2 for f = 0.01, 0.04, scaled so that mean(w·f) = mean(f) = 0.025
    assert video_balance_weights([0.01, 0.04], power=0.5) == pytest.approx([5 / 3, 5 / 6])
    assert video_balance_weights([0.01, 0.04], power=0.0) == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError, match="power"):
        video_balance_weights([0.1], power=2.0)
    with pytest.raises(ValueError, match="flicker"):
        video_balance_weights([0.1, -0.1])
    with pytest.raises(ValueError, match="max_ratio"):
        video_balance_weights([0.1], max_ratio=0.5)


def test_teacher_flicker_of_a_static_video_by_hand(tmp_path):
    """A still video (zero flow, every pixel valid), 16×20, 4 frames, N = 4: frame 2 alone labels a 4×4 block.
    The 6 ordered pairs with frame 2 disagree on 16 of 320 pixels, the other 6 on none: 6/12 · 16/320 = 0.025."""
    import cv2

    from steadyseg.train.decoder_data import teacher_flicker

    (tmp_path / "f").mkdir()
    (tmp_path / "t").mkdir()
    for i in range(4):
        cv2.imwrite(str(tmp_path / "f" / f"{i:05d}.png"), np.full((16, 20, 3), 80, np.uint8))
        lab = np.zeros((16, 20), np.uint8)
        if i == 2:
            lab[4:8, 6:10] = 1
        cv2.imwrite(str(tmp_path / "t" / f"{i:05d}.png"), lab)
    still = lambda p, q: np.zeros((16, 20, 2), np.float32)  # noqa: E731
    video = load_decoder_video(tmp_path / "f", tmp_path / "t", inputs=4, num_classes=2, flows=still)
    assert teacher_flicker(video, inputs=4) == pytest.approx(0.025, abs=1e-7)
    assert teacher_flicker(video, inputs=3) == pytest.approx((4 / 6 + 4 / 6) / 2 * 16 / 320, abs=1e-7)
    assert teacher_flicker(video, inputs=1) == 0.0


def test_neighbour_vote_by_hand():
    from steadyseg.train.decoder import neighbour_vote

    p = torch.tensor([0.9, 0.1])[:, None, None].expand(2, 2, 3).clone()       # the frame: class 0
    q = torch.tensor([0.1, 0.9])[:, None, None].expand(2, 2, 3).clone()       # a neighbour: class 1
    valid = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    guide = torch.cat([q * valid, valid[None], torch.zeros(3, 2, 3)])         # 2 neighbours, the second missing
    vote = neighbour_vote(p, guide, num_classes=2)
    torch.testing.assert_close(vote[:, 0, 0], torch.tensor([0.5, 0.5]))        # (0.9 + 0.1) / 2
    torch.testing.assert_close(vote[:, 1, 2], p[:, 1, 2])                      # nothing valid: the frame itself
    torch.testing.assert_close(vote.sum(dim=0), torch.ones(2, 3))
    with pytest.raises(ValueError, match="neighbour_vote"):
        neighbour_vote(p, guide[:5], num_classes=2)


def test_photometric_weight_by_hand():
    from steadyseg.train.decoder import neighbour_guide, neighbour_vote, photometric_weight

    grey = torch.full((3, 4, 5), 0.5)
    reddish = grey.clone()
    reddish[0] += 0.1                                                          # colour distance 0.1
    zero = torch.zeros(2, 4, 5)
    torch.testing.assert_close(photometric_weight(grey, grey, zero, sigma=0.1), torch.ones(4, 5))
    torch.testing.assert_close(photometric_weight(grey, reddish, zero, sigma=0.1),
                               torch.full((4, 5), float(np.exp(-0.5))))        # exp(-0.1² / (2·0.1²))
    torch.testing.assert_close(photometric_weight(grey, reddish, zero, sigma=0.2),
                               torch.full((4, 5), float(np.exp(-0.125))))
    # frame n is frame t moved 1 px right, the flow F[t→n] says so: the warp matches except in the last column,
    # whose sample x + 1 leaves the frame (it reads 0 where the ramp is 1: distance² = 3, / (2 · 0.5²) = 6)
    ramp = torch.linspace(0, 1, 5)[None, None].expand(3, 4, 5).clone()
    moved = torch.cat([torch.zeros(3, 4, 1), ramp[:, :, :-1]], dim=2)
    flow = torch.stack([torch.ones(4, 5), torch.zeros(4, 5)])
    w = photometric_weight(ramp, moved, flow, sigma=0.5)
    torch.testing.assert_close(w[:, :4], torch.ones(4, 4))
    torch.testing.assert_close(w[:, 4], torch.full((4,), float(np.exp(-6.0))))
    with pytest.raises(ValueError, match="sigma must be > 0"):
        photometric_weight(grey, grey, zero, sigma=0.0)
    with pytest.raises(ValueError, match="photometric_weight: expected"):
        photometric_weight(grey, grey[:, :3], zero, sigma=0.1)
    # a soft weight in the guide makes the vote a weighted mean: (0.9 + 0.25 · 0.1) / 1.25 for class 0
    p = torch.tensor([0.9, 0.1])[:, None, None].expand(2, 4, 5).clone()
    q = torch.tensor([0.1, 0.9])[:, None, None].expand(2, 4, 5).clone()
    guide = neighbour_guide([(q, zero, torch.full((4, 5), 0.25))], num_classes=2)
    torch.testing.assert_close(guide[2], torch.full((4, 5), 0.25))
    torch.testing.assert_close(neighbour_vote(p, guide, num_classes=2)[:, 0, 0], torch.tensor([0.74, 0.26]))


def test_vote_base_decoder_starts_as_the_vote():
    from steadyseg.train.decoder import neighbour_vote

    model = build_decoder(num_classes=2, inputs=5, flow_guided=True, base="vote")
    frames, probs = torch.rand(1, 5, 3, 16, 20), torch.rand(1, 5, 2, 16, 20).softmax(dim=2)
    valid = (torch.rand(1, 5, 4, 1, 16, 20) > 0.5).float()                   # 4 neighbours per frame
    guide = torch.cat([torch.rand(1, 5, 4, 2, 16, 20).softmax(dim=3) * valid, valid], dim=3).flatten(2, 3)
    vote = neighbour_vote(probs, guide, num_classes=2)
    torch.testing.assert_close(model(frames, probs, guide).softmax(dim=2), vote, rtol=0, atol=1e-6)
    assert not torch.allclose(vote, probs)
    rebuilt = build_decoder_from_config({"num_classes": 2, "inputs": 5, "encoder": "small", "width": 16,
                                         "hidden": 16, "eps": 1e-4, "flow_guided": True, "base": "vote"})
    assert rebuilt.base == "vote"
    with pytest.raises(ValueError, match="needs a flow-guided"):
        build_decoder(num_classes=2, inputs=5, base="vote")
    with pytest.raises(ValueError, match="unknown decoder base"):
        build_decoder(num_classes=2, inputs=5, flow_guided=True, base="median")


def _still_video(tmp_path, blocks, *, soft=False):
    """5 identical frames 16×20 (a texture: every pixel its own grey; zero flow, every pixel valid); ``blocks[i]``
    lists ((y, x) slices, label) of frame i (label 1, or 255 = void). ``soft``: the teacher as .npy probabilities
    (p1 = 0.8 where labelled 1, else 0.3) instead."""
    import cv2

    (tmp_path / "f").mkdir()
    (tmp_path / "t").mkdir()
    grey = np.arange(16 * 20, dtype=np.uint8).reshape(16, 20)[..., None]  # 320 values: mod 256, unique per crop
    for i, frame_blocks in enumerate(blocks):
        cv2.imwrite(str(tmp_path / "f" / f"{i:05d}.png"), np.repeat(grey, 3, axis=2))
        lab = np.zeros((16, 20), np.uint8)
        for (ys, xs), value in frame_blocks:
            lab[ys, xs] = value
        if soft:
            p1 = np.where(lab == 1, 0.8, 0.3).astype(np.float32)
            np.save(tmp_path / "t" / f"{i:05d}.npy", np.stack([1.0 - p1, p1]))
        else:
            cv2.imwrite(str(tmp_path / "t" / f"{i:05d}.png"), lab)
    still = lambda p, q: np.zeros((16, 20, 2), np.float32)  # noqa: E731
    return load_decoder_video(tmp_path / "f", tmp_path / "t", inputs=3, num_classes=2, flows=still)


def test_vote_target_by_hand(tmp_path):
    """N = 3 on a still video: each frame's target is the argmax of (P_t + P_t−1 + P_t+1) / 3 (one neighbour at the
    ends). A block labelled 1 in frames 0, 1, 3, 4 and missing in frame 2 (confidence 0.9): frame 2 votes
    (0.1 + 0.9 + 0.9) / 3 = 0.63 → 1, the flicker repaired; a speck labelled in frame 2 only votes 0.37 → 0; a void
    pixel of the teacher stays void."""
    from steadyseg.labels import VOID
    from steadyseg.train.decoder_data import vote_target

    block, speck, void = (slice(4, 8), slice(6, 10)), (slice(12, 14), slice(2, 4)), (slice(0, 1), slice(19, 20))
    blocks = [[(block, 1)], [(block, 1)], [(speck, 1), (void, VOID)], [(block, 1)], [(block, 1)]]
    video = _still_video(tmp_path, blocks)
    want = np.zeros((16, 20), np.uint8)
    want[block] = 1
    for t in range(5):
        target = vote_target(video, t, inputs=3)
        assert target.dtype == np.uint8 and target.shape == (16, 20)
        expect = want.copy()
        if t == 2:
            expect[void] = VOID
        assert np.array_equal(target, expect), t
    assert video.guides == {} and set(video.vote_targets) == set(range(5))  # the guides are not kept by default


def test_vote_target_of_a_soft_teacher_is_the_mean_of_probabilities(tmp_path):
    """A soft teacher (.npy, p1 = 0.8 on the block, 0.3 elsewhere): the target is the vote itself (float16), e.g.
    (0.3 + 0.8 + 0.8) / 3 on frame 2's missing block and (0.8 + 0.8) / 2 on frame 0's."""
    from steadyseg.train.decoder_data import vote_target

    block = (slice(4, 8), slice(6, 10))
    video = _still_video(tmp_path, [[(block, 1)], [(block, 1)], [], [(block, 1)], [(block, 1)]], soft=True)
    assert video.labels is None
    t2, t0 = vote_target(video, 2, inputs=3), vote_target(video, 0, inputs=3)
    assert t2.dtype == np.float16 and t2.shape == (2, 16, 20)
    np.testing.assert_allclose(t2[1][block], (0.3 + 0.8 + 0.8) / 3, atol=2e-3)
    np.testing.assert_allclose(t2[1, 0, 0], 0.3, atol=2e-3)
    np.testing.assert_allclose(t0[1][block], 0.8, atol=2e-3)
    np.testing.assert_allclose(t2.sum(axis=0), 1.0, atol=2e-3)


def test_sample_window_carries_the_vote_targets_cut_and_flipped(tmp_path):
    """``data_target="vote"``: the window's targets are the frames' vote targets, cropped and flipped with the
    frames; with the teacher as the target the window has none."""
    from steadyseg.train.decoder_data import vote_target

    block = (slice(4, 8), slice(6, 10))
    video = _still_video(tmp_path, [[(block, 1)], [(block, 1)], [], [(block, 1)], [(block, 1)]])
    plain = sample_window([video], inputs=3, seed=0, step=0, index=0)
    assert plain.targets is None
    w = sample_window([video], inputs=3, seed=0, step=0, index=0, crop=(12, 16), hflip_prob=1.0, data_target="vote")
    assert w.targets.dtype == torch.int64 and w.targets.shape == (3, 12, 16)
    (y0, x0) = next((y, x) for y in range(5) for x in range(5)
                    if torch.equal(w.frames[0], torch.from_numpy(video.frames[w.start, y:y + 12, x:x + 16]).permute(
                        2, 0, 1).float().div(255).flip(-1)))
    for k in range(3):
        want = torch.from_numpy(vote_target(video, w.start + k, inputs=3)[y0:y0 + 12, x0:x0 + 16].astype(np.int64))
        assert torch.equal(w.targets[k], want.flip(-1))
    with pytest.raises(ValueError, match="data_target"):
        sample_window([video], inputs=3, seed=0, step=0, index=0, data_target="gt")
