"""CascadePSPRefiner: global and local steps, determinism, checkpoint handling, input checks, patch planning.

A seeded random-init network checks plumbing and hand-checkable properties only; parity with the official
weights and outputs is not checked here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steadyseg.refine.cascadepsp.network import build_cascadepsp_net, to_official_state_dict
from steadyseg.refine.cascadepsp.refiner import CascadePSPRefiner, plan_patches


@pytest.fixture(scope="session")
def cascadepsp_checkpoint(tmp_path_factory):
    """A random-init checkpoint in the official layout, saved once per test session (~270 MB in tmp)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("cascadepsp") / "model"
    torch.save(to_official_state_dict(build_cascadepsp_net()), path)
    return path


@pytest.fixture(scope="module")
def refiner(cascadepsp_checkpoint):
    return CascadePSPRefiner(checkpoint=cascadepsp_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def sample():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(120, 160, 3), dtype=np.uint8)
    mask = np.zeros((120, 160), dtype=bool)
    mask[30:95, 40:125] = True
    image[mask] = (image[mask] // 4 + 150).astype(np.uint8)
    return image, mask


def test_import_from_package():
    from steadyseg.refine import CascadePSPRefiner as Lazy

    assert Lazy is CascadePSPRefiner


def test_fast_global_step(refiner, sample):
    image, mask = sample
    for L in (64, 128):
        out = refiner.refine(image, mask, fast=True, L=L)
        assert out.shape == (120, 160) and out.dtype == np.float32
        assert 0.0 <= out.min() <= out.max() <= 1.0 and np.isfinite(out).all()
    assert refiner.last_stats == {"patches_planned": 0, "patches_refined": 0}


def test_full_with_local_patches(refiner, sample):
    image, mask = sample[0][:72, :120].copy(), sample[1][:72, :120].copy()
    out = refiner.refine(image, mask, fast=False, L=96)
    assert out.shape == (72, 120) and out.dtype == np.float32 and 0.0 <= out.min() <= out.max() <= 1.0
    assert refiner.last_stats["patches_planned"] == 3
    # Force every patch through the network and check that batching does not change the result.
    one = CascadePSPRefiner(model=refiner.model, patch_batch_size=1, skip_low=0.0, skip_high=1.0)
    three = CascadePSPRefiner(model=refiner.model, patch_batch_size=2, skip_low=0.0, skip_high=1.0)
    a = one.refine(image, mask, fast=False, L=96)
    b = three.refine(image, mask, fast=False, L=96)
    assert one.last_stats == {"patches_planned": 3, "patches_refined": 3}
    assert a.dtype == np.float32 and 0.0 <= a.min() <= a.max() <= 1.0
    np.testing.assert_allclose(a, b, atol=1e-4)
    # Every pixel is covered by a refined patch, so the result is not the binarised global map.
    assert not np.isin(a, [0.0, 1.0]).all()


def test_mask_encodings_agree(refiner, sample):
    image, mask = sample
    ref = refiner.refine(image, mask, fast=True, L=64)
    for m in (mask.astype(np.uint8), mask.astype(np.uint8) * 255):
        np.testing.assert_array_equal(refiner.refine(image, m, fast=True, L=64), ref)


def test_input_validation(refiner, sample):
    image, mask = sample
    with pytest.raises(ValueError, match="uint8"):
        refiner.refine(image.astype(np.float32), mask, fast=True, L=64)
    with pytest.raises(ValueError, match="does not match image shape"):
        refiner.refine(image, mask[:100], fast=True, L=64)
    with pytest.raises(ValueError, match="HxWx3"):
        refiner.refine(image[..., 0], mask, fast=True, L=64)
    with pytest.raises(ValueError, match="bool or uint8"):
        refiner.refine(image, mask.astype(np.float32), fast=True, L=64)
    with pytest.raises(ValueError, match="too small for the local step"):
        refiner.refine(image, mask, fast=False, L=64)
    with pytest.raises(ValueError, match="CUDA"):
        CascadePSPRefiner(model=refiner.model, half=True)


def test_missing_checkpoint_says_where_to_get_it(tmp_path):
    for ckpt in (None, tmp_path / "missing.pth"):
        with pytest.raises(FileNotFoundError) as err:
            CascadePSPRefiner(checkpoint=ckpt)
        msg = str(err.value)
        assert "--checkpoint" in msg and "hkchengrex/CascadePSP" in msg
        assert "7478d4a9c42ab52beb6d7e9683402fe0" in msg and "segmentation-refinement" in msg


@pytest.mark.parametrize("h,w,L", [(120, 160, 96), (1500, 2000, 900), (480, 640, 400), (50, 70, 96)])
def test_plan_patches_cover_image(h, w, L):
    patches = plan_patches(h, w, L)
    cover = np.zeros((h, w), dtype=int)
    starts = set()
    for p in patches:
        assert 0 <= p.y0 < p.y1 <= h and 0 <= p.x0 < p.x1 <= w
        assert (p.y1 - p.y0, p.x1 - p.x0) == (min(L, h), min(L, w))
        starts.add((p.y0, p.x0))
        cover[p.y0:p.y1, p.x0:p.x1] += 1
    assert len(starts) == len(patches) and (cover > 0).all()


def test_plan_patches_hand_computed():
    # step = 96 // 2 - 32 = 16; x starts 0..160 clipped to 64 -> {0,16,32,48,64}; y -> {0,16,24} (shifted 32->24).
    patches = plan_patches(120, 160, 96)
    assert sorted({p.x0 for p in patches}) == [0, 16, 32, 48, 64]
    assert sorted({p.y0 for p in patches}) == [0, 16, 24]
    assert len(patches) == 15
    # 2000 x 1500 at L=900: step 418, x starts {0,418,836,1100}, y {0,418,600} -> 12 patches.
    assert len(plan_patches(1500, 2000, 900)) == 12


def test_repeated_calls_give_identical_maps(refiner, sample):
    """Inference is deterministic: the same input gives the same bits, in both modes (seeded random network)."""
    image, mask = sample[0][:72, :96].copy(), sample[1][:72, :96].copy()
    for fast in (True, False):
        a = refiner.refine(image, mask, fast=fast, L=96)
        b = refiner.refine(image, mask, fast=fast, L=96)
        np.testing.assert_array_equal(a, b)


def test_full_mode_without_patches_is_the_binarised_global_step(refiner, sample):
    """Fast and full mode share the global step. With the crop's longest side equal to ``L`` neither resizes, and
    when the skip rule refines no local patch, full mode returns exactly the global map thresholded at 0.5."""
    image, mask = sample[0][:72, :96].copy(), sample[1][:72, :96].copy()
    fast = refiner.refine(image, mask, fast=True, L=96)
    n_pixels = 72 * 96  # every patch covers the whole crop; no foreground fraction k / n_pixels equals 0.5 / n_pixels
    no_patch = CascadePSPRefiner(model=refiner.model, skip_low=0.5 / n_pixels, skip_high=0.5 / n_pixels)
    full = no_patch.refine(image, mask, fast=False, L=96)
    assert no_patch.last_stats["patches_planned"] >= 1 and no_patch.last_stats["patches_refined"] == 0
    np.testing.assert_array_equal(full, (fast > 0.5).astype(np.float32))
    # With every patch refined, the local step changes the map (the patches are not the global result).
    every = CascadePSPRefiner(model=refiner.model, skip_low=0.0, skip_high=1.0)
    refined = every.refine(image, mask, fast=False, L=96)
    assert every.last_stats["patches_refined"] == every.last_stats["patches_planned"] >= 1
    assert not np.array_equal(refined, full)


def test_padding_follows_the_official_safe_forward():
    """Both sides grow to the next multiple of 8 strictly above them as soon as one side is not a multiple of 8
    (a side that already is one gains 8); image padded with 0, masks with -1; nothing when both are multiples."""
    from steadyseg.refine.cascadepsp.refiner import _pad_like_official

    t = torch.ones(1, 1, 300, 400)
    p = _pad_like_official(t, value=-1.0)
    assert p.shape == (1, 1, 304, 408)
    assert torch.equal(p[..., :300, :400], t) and (p[..., 300:, :] == -1).all() and (p[..., :, 400:] == -1).all()
    assert _pad_like_official(torch.zeros(2, 3, 296, 401), value=0.0).shape == (2, 3, 304, 408)
    same = torch.zeros(1, 3, 296, 400)
    assert _pad_like_official(same, value=0.0) is same


def test_resize_uses_scale_factor_semantics():
    """Sizes are floor(side * s) and bilinear samples at 1 / s steps, as the official resize_max_side."""
    from steadyseg.refine.cascadepsp.refiner import _resize_max_side

    assert _resize_max_side(torch.zeros(1, 1, 480, 640), 224, "area").shape[-2:] == (168, 224)
    assert _resize_max_side(torch.zeros(1, 1, 424, 640), 400, "area").shape[-2:] == (265, 400)  # 265.0
    assert _resize_max_side(torch.zeros(1, 1, 424, 640), 900, "bicubic").shape[-2:] == (596, 900)  # 596.25
    # 4 x 6 -> s = 8/6 -> 5 x 8 (5.33 rounded down). Rows are sampled at y = (i + 0.5) * 0.75 - 0.5 (1 / s), not
    # at (i + 0.5) * 0.8 - 0.5 (4 / 5): rows valued 8 * y give 0, 5, 11, 17, 23 (a size would give 0, 5.6, 12, ...).
    t = (torch.arange(4.0) * 8).view(1, 1, 4, 1).expand(1, 1, 4, 6).contiguous()
    out = _resize_max_side(t, 8, "bilinear")
    assert out.shape == (1, 1, 5, 8)
    torch.testing.assert_close(out[0, 0, :, 0], torch.tensor([0.0, 5.0, 11.0, 17.0, 23.0]))


def test_fast_and_full_in_one_call_equal_separate_calls(refiner, sample):
    image, mask = sample[0][:72, :120].copy(), sample[1][:72, :120].copy()
    every = CascadePSPRefiner(model=refiner.model, skip_low=0.0, skip_high=1.0)
    fast, full = every.refine_fast_and_full(image, mask, L=100)
    assert every.last_stats == {"patches_planned": 3, "patches_refined": 3}
    np.testing.assert_array_equal(fast, every.refine(image, mask, fast=True, L=100))
    np.testing.assert_array_equal(full, every.refine(image, mask, fast=False, L=100))
    with pytest.raises(ValueError, match="too small for the local step"):
        every.refine_fast_and_full(image, mask, L=64)


def test_inplace_inference_path_gives_the_same_bits(refiner, sample, monkeypatch):
    """The network's allocation-saving inference path (in-place BatchNorm, concatenations and sums) and the
    skipped heads change no bit of either mode's map: compare with the plain module forwards (path disabled)."""
    import steadyseg.refine.cascadepsp.network as network

    image, mask = sample[0][:72, :120].copy(), sample[1][:72, :120].copy()
    every = CascadePSPRefiner(model=refiner.model, skip_low=0.0, skip_high=1.0)
    assert every.patch_batch_size == 1  # the official one-patch-at-a-time order (see the class docstring)
    fast, full = every.refine(image, mask, fast=True, L=100), every.refine(image, mask, fast=False, L=100)
    assert every.last_stats["patches_refined"] == 3
    monkeypatch.setattr(network, "_inplace_ok", lambda module, x: False)
    np.testing.assert_array_equal(fast, every.refine(image, mask, fast=True, L=100))
    np.testing.assert_array_equal(full, every.refine(image, mask, fast=False, L=100))
