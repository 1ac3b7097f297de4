"""GuidedRefiner, the refiner registry and the CascadePSP per-crop L policy."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from steadyseg.refine.guided_refiner import GuidedRefiner, guided_refine
from steadyseg.refine.refiners import (REFINERS, AdaptiveCascadePSPRefiner, IdentityRefiner, Refiner, build_refiner,
                                       choose_L)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / np.logical_or(a, b).sum())


def _scene(seed: int = 0, h: int = 120, w: int = 160):
    """A textured two-colour scene: an ellipse object on a noisy background; returns image, true mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    true = ((xx - 80) / 38.0) ** 2 + ((yy - 60) / 26.0) ** 2 <= 1.0
    image = np.empty((h, w, 3), np.float32)
    image[:] = (60, 110, 170)
    image[true] = (200, 150, 60)
    image += rng.normal(0, 10, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), true


def test_guided_refiner_fixes_a_misaligned_mask():
    image, true = _scene()
    wrong = np.roll(true, (2, -2), axis=(0, 1))  # the annotation is 2 px off in x and y
    out = GuidedRefiner().refine(image, wrong)
    assert out.shape == true.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    before, after = _iou(wrong, true), _iou(out > 0.5, true)
    assert before < 0.9
    assert after > before + 0.05 and after > 0.95, (before, after)


def test_only_the_band_around_the_boundary_changes():
    image, true = _scene(seed=1)
    wrong = np.roll(true, 4, axis=1)
    radius, band = 5, 5
    out = guided_refine(image, wrong, radius=radius, band=band, eps=1e-3, iterations=2)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    u8 = wrong.astype(np.uint8)
    in_band = (cv2.dilate(u8, kernel) > 0) & ~(cv2.erode(u8, kernel) > 0)
    np.testing.assert_array_equal(out[~in_band], wrong[~in_band].astype(np.float32))
    assert (np.abs(out[in_band] - wrong[in_band]) > 0.01).any()


def test_radius_scales_with_the_crop_and_is_clipped():
    r = GuidedRefiner(radius_scale=0.02, radius_min=2, radius_max=24)
    assert r.radius_for(50, 50) == 2  # 1 -> clipped up
    assert r.radius_for(300, 500) == 8
    assert r.radius_for(4000, 4000) == 24


def test_trivial_masks_and_bad_inputs():
    image, _ = _scene()
    ref = GuidedRefiner()
    empty = np.zeros(image.shape[:2], bool)
    np.testing.assert_array_equal(ref.refine(image, empty), empty.astype(np.float32))
    np.testing.assert_array_equal(ref.refine(image, ~empty), np.ones(image.shape[:2], np.float32))
    with pytest.raises(ValueError, match="uint8 RGB"):
        ref.refine(image.astype(np.float32), empty)
    with pytest.raises(ValueError, match="mask of the image size"):
        ref.refine(image, empty[:-1])
    with pytest.raises(ValueError, match="radius_scale"):
        GuidedRefiner(radius_scale=0)


def test_registry_builders_and_protocol():
    assert set(REFINERS) == {"guided", "cascadepsp", "identity"}
    image, true = _scene()
    ident = build_refiner("identity")
    assert isinstance(ident, IdentityRefiner) and isinstance(ident, Refiner)
    np.testing.assert_array_equal(ident.refine(image, true), true.astype(np.float32))
    assert isinstance(build_refiner("guided", eps=1e-2), Refiner)
    with pytest.raises(ValueError, match="unknown refiner 'nope'"):
        build_refiner("nope")
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['radius'\]"):
        build_refiner("guided", radius=3)


def test_choose_L_policy():
    assert choose_L(40, 30, l_max=900, l_min=224, max_upscale=2.0) == 224  # never below the training crop
    assert choose_L(200, 300, l_max=900, l_min=224, max_upscale=2.0) == 600  # at most 2x upscale
    assert choose_L(480, 854, l_max=900, l_min=224, max_upscale=2.0) == 900  # big crops: official L
    assert choose_L(30, 30, l_max=900, l_min=900, max_upscale=float("inf")) == 900  # the official policy
    assert choose_L(101, 50, l_max=900, l_min=100, max_upscale=1.0) == 101
    with pytest.raises(ValueError):
        choose_L(0, 10)


def test_adaptive_cascadepsp_refiner_chooses_L_per_crop(monkeypatch, tmp_path):
    """The wrapper's plumbing (L policy, output conversion) with a recording stand-in for the network; the real
    network runs end to end in tests/refine/test_coco_refine.py::test_refine_coco_with_cascadepsp."""
    import steadyseg.refine.cascadepsp.refiner as cpr

    calls = []

    class Recorder:
        def __init__(self, checkpoint, device="cpu"):
            self.checkpoint = checkpoint

        def refine(self, image, mask, *, fast=False, L=900):
            calls.append((image.shape[:2], fast, L))
            return mask.astype(np.uint8) * 255  # an official-style 0..255 map

    monkeypatch.setattr(cpr, "CascadePSPRefiner", Recorder)
    refiner = build_refiner("cascadepsp", checkpoint=tmp_path / "w.pth", l_max=900, l_min=224, max_upscale=2.0)
    assert isinstance(refiner, AdaptiveCascadePSPRefiner)
    image, true = _scene(h=150, w=300)
    out = refiner.refine(image, true)
    np.testing.assert_array_equal(out, true.astype(np.float32))
    refiner.refine(image[:40, :30], true[:40, :30])
    refiner.refine(image, true, L=900, fast=True)
    assert calls == [((150, 300), False, 600), ((40, 30), False, 224), ((150, 300), True, 900)]
    with pytest.raises(ValueError, match="checkpoint"):
        AdaptiveCascadePSPRefiner(checkpoint=None)


def test_refine_takes_no_stray_keywords():
    """A misspelled keyword is an error, not silently dropped (``Refiner.refine(image, mask)`` has no ``**kw``)."""
    image, true = _scene()
    for refiner in (GuidedRefiner(), IdentityRefiner()):
        with pytest.raises(TypeError):
            refiner.refine(image, true, raduis=3)


def test_refine_on_crop_crops_thresholds_and_pastes():
    from steadyseg.refine.refiners import crop_box, refine_on_crop

    image, true = _scene()
    res = refine_on_crop(IdentityRefiner(), image, true)
    rows, cols = np.flatnonzero(true.any(1)), np.flatnonzero(true.any(0))
    assert res.box == crop_box((cols[0], rows[0], cols[-1] + 1, rows[-1] + 1), *true.shape)
    np.testing.assert_array_equal(res.paste(*true.shape), true)
    # A mask given inside a region at ``origin`` gives the same crop as the full-image mask.
    x0, y0 = 20, 10
    inner = refine_on_crop(IdentityRefiner(), image, true[y0:, x0:], origin=(x0, y0))
    assert inner.box == res.box and np.array_equal(inner.refined, res.refined)
    assert refine_on_crop(IdentityRefiner(), image, np.zeros_like(true)) is None

    class Broken:
        def refine(self, image, mask):
            return np.full(mask.shape, np.nan, np.float32)

    with pytest.raises(ValueError, match=r"mask 7: refiner 'broken' returned non-finite"):
        refine_on_crop(Broken(), image, true, where="mask 7", refiner_name="broken")
