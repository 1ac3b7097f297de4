"""Warping, occlusion and motion-boundary masks: closed-form cases and numpy/torch agreement."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from steadyseg.warp import (DEFAULT_THRESHOLDS, ValidityThresholds, backward_warp, backward_warp_torch,
                            forward_backward_valid, motion_boundary, out_of_frame, valid_mask, warp_and_valid)


def _const_flow(h, w, dx, dy):
    f = np.zeros((h, w, 2), np.float32)
    f[..., 0] = dx
    f[..., 1] = dy
    return f


def _t(flow):  # (H, W, 2) -> (1, 2, H, W)
    return torch.from_numpy(np.ascontiguousarray(flow)).permute(2, 0, 1)[None]


def test_zero_flow_is_identity():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, (13, 17)).astype(np.uint8)
    probs = rng.random((13, 17, 3)).astype(np.float32)
    z = _const_flow(13, 17, 0, 0)
    assert np.array_equal(backward_warp(labels, z), labels)
    np.testing.assert_allclose(backward_warp(probs, z, mode="bilinear"), probs, atol=1e-6)
    tp = torch.from_numpy(probs).permute(2, 0, 1)[None]
    torch.testing.assert_close(backward_warp_torch(tp, _t(z)), tp)
    assert not out_of_frame(z).any()
    assert valid_mask(z, z).all()


@pytest.mark.parametrize("dx,dy", [(2, 0), (0, -3), (1, 1), (-4, 2)])
def test_integer_shift_equals_roll(dx, dy):
    rng = np.random.default_rng(1)
    src = rng.integers(0, 9, (20, 24)).astype(np.int32)
    f = _const_flow(20, 24, dx, dy)
    out = backward_warp(src, f, mode="nearest", fill=255)
    # W(src)(y, x) = src(y + dy, x + dx)  ==  np.roll by (-dy, -dx) away from the wrapped border
    rolled = np.roll(src, (-dy, -dx), axis=(0, 1))
    inside = ~out_of_frame(f)
    assert np.array_equal(out[inside], rolled[inside])
    assert (out[~inside] == 255).all()
    assert inside.sum() == (20 - abs(dy)) * (24 - abs(dx))
    # the torch version agrees, bilinear too (integer shift: no interpolation)
    ft = _t(f)
    srct = torch.from_numpy(src.astype(np.float32))[None, None]
    for mode in ("nearest", "bilinear"):
        wt = backward_warp_torch(srct, ft, mode=mode)[0, 0].numpy()
        # (grid_sample's coordinate normalisation costs a few ulps in bilinear weights)
        np.testing.assert_allclose(wt[inside], rolled[inside].astype(np.float32), atol=1e-4)
        assert np.abs(wt[~inside]).max() < 1e-4


def test_bilinear_half_pixel():
    src = np.array([[0.0, 2.0, 4.0, 6.0]] * 3, np.float32)
    f = _const_flow(3, 4, 0.5, 0)
    out = backward_warp(src, f, mode="bilinear")
    np.testing.assert_allclose(out[:, :3], [[1.0, 3.0, 5.0]] * 3, atol=1e-6)
    wt = backward_warp_torch(torch.from_numpy(src)[None, None], _t(f), mode="bilinear")[0, 0].numpy()
    np.testing.assert_allclose(wt[:, :3], [[1.0, 3.0, 5.0]] * 3, atol=1e-6)


def test_out_of_frame_boundaries():
    f = _const_flow(5, 6, 1.0, 0)
    oof = out_of_frame(f)
    assert oof[:, -1].all() and not oof[:, :-1].any()   # x = 5 + 1 = 6 > W-1
    f = _const_flow(5, 6, 0, -0.25)
    assert out_of_frame(f)[0].all() and not out_of_frame(f)[1:].any()


def test_forward_backward_flags_synthetic_occluder():
    """A 10×10 occluder moves right by 4 px over a static background (frame p → frame q)."""
    h, w = 40, 40
    occ_p = np.zeros((h, w), bool)
    occ_p[15:25, 10:20] = True
    occ_q = np.roll(occ_p, 4, axis=1)
    f_pq = np.zeros((h, w, 2), np.float32)
    f_pq[occ_p, 0] = 4.0           # occluder pixels of p move by +4
    f_qp = np.zeros((h, w, 2), np.float32)
    f_qp[occ_q, 0] = -4.0          # occluder pixels of q come from 4 px to the left
    fb = forward_backward_valid(f_qp, f_pq)
    # background of q that was under the occluder in p (columns 10..13 of its rows) is disoccluded: flow q→p is 0
    # there but flow p→q at the same place is +4 → |0 + 4|² = 16 ≥ 0.01·16 + 0.5 → invalid
    disoccluded = occ_p & ~occ_q
    assert not fb[disoccluded].any()
    assert disoccluded.sum() == 10 * 4
    # everything else is consistent (occluder: -4 + 4 = 0; static background: 0 + 0)
    assert fb[~disoccluded].all()
    # the motion boundary test flags the occluder's left/right edges of the flow q→p
    mb = motion_boundary(f_qp)
    assert mb[20, 13] and mb[20, 14] and mb[20, 23] and mb[20, 24]
    assert not mb[20, 18] and not mb[5, 5]
    m = valid_mask(f_qp, f_pq)
    assert not m[disoccluded].any() and not m[mb].any()
    assert m.sum() == (~disoccluded & ~mb & ~out_of_frame(f_qp)).sum()


def test_fb_threshold_closed_form():
    # constant flows a (q→p) and b (p→q): |a+b|² < 0.01(|a|²+|b|²) + 0.5
    h, w = 8, 8
    a = _const_flow(h, w, 0.0, 0.0)
    assert forward_backward_valid(a, _const_flow(h, w, 0.7, 0)).all()     # 0.49 < 0.0049 + 0.5
    assert not forward_backward_valid(a, _const_flow(h, w, 0.72, 0)).any()  # 0.5184 ≥ 0.505
    # motion boundary: a flow ramp u = g·x has |∇u|² = g² (central differences) in the interior
    ramp = np.zeros((h, w, 2), np.float32)
    ramp[..., 0] = 0.05 * np.arange(w)   # g² = 0.0025 > 0.01|F|² + 0.002 where |F|² < 0.05 → u < 0.2236
    mb = motion_boundary(ramp)
    assert mb[4, 1] and mb[4, 4] and not mb[4, 5]   # u = 0.05, 0.2 flagged; 0.25 is not


def test_validity_thresholds_are_one_value_used_by_numpy_and_torch():
    assert DEFAULT_THRESHOLDS == ValidityThresholds(fb_alpha=0.01, fb_beta=0.5, mb_alpha=0.01, mb_beta=0.002)
    with pytest.raises(AttributeError):
        DEFAULT_THRESHOLDS.fb_beta = 1.0  # frozen
    with pytest.raises(ValueError, match="fb_beta"):
        ValidityThresholds(fb_beta=-1.0)
    h, w = 8, 8
    a, b = _const_flow(h, w, 0.0, 0.0), _const_flow(h, w, 0.72, 0)
    loose = ValidityThresholds(fb_beta=0.6)  # 0.5184 < 0.005184 + 0.6
    assert not forward_backward_valid(a, b).any() and forward_backward_valid(a, b, thresholds=loose).all()
    assert forward_backward_valid(_t(a), _t(b), thresholds=loose).all()
    ramp = np.zeros((h, w, 2), np.float32)
    ramp[..., 0] = 0.05 * np.arange(w)
    flat = ValidityThresholds(mb_beta=0.003)  # g² = 0.0025 < 0.003: no motion boundary anywhere
    assert motion_boundary(ramp).any() and not motion_boundary(ramp, thresholds=flat).any()
    assert not motion_boundary(_t(ramp), thresholds=flat).any()
    assert np.array_equal(valid_mask(a, b, thresholds=loose), valid_mask(_t(a), _t(b), thresholds=loose)[0, 0].numpy())
    with pytest.raises(TypeError, match="ValidityThresholds"):
        valid_mask(a, b, thresholds={"fb_beta": 0.6})


def test_numpy_and_torch_agree_on_random_flow():
    rng = np.random.default_rng(3)
    h, w = 24, 32
    y, x = np.mgrid[0:h, 0:w]
    f1 = np.stack([1.3 + 0.6 * np.sin(x / 5.0), -0.7 + 0.4 * np.cos(y / 4.0)], -1).astype(np.float32)
    f2 = (-f1 + rng.normal(0, 0.3, f1.shape)).astype(np.float32)
    lab = rng.integers(0, 4, (h, w)).astype(np.uint8)
    w_np, m_np = warp_and_valid(lab, f1, f2)
    w_t = backward_warp_torch(torch.from_numpy(lab.astype(np.float32))[None, None], _t(f1), mode="nearest")
    assert np.array_equal(w_np, w_t[0, 0].numpy().astype(np.uint8))
    m_t = valid_mask(_t(f1), _t(f2))
    assert m_t.shape == (1, 1, h, w) and m_t.dtype == torch.bool
    # numpy bilinear uses cv2's 1/32-px fixed-point weights; masks agree except at threshold ties
    assert (m_np != m_t[0, 0].numpy()).mean() < 0.01
    for fn in (out_of_frame, motion_boundary):
        assert np.array_equal(fn(f1), fn(_t(f1))[0, 0].numpy())
    probs = rng.random((h, w, 3)).astype(np.float32)
    b_np = backward_warp(probs, f1, mode="bilinear")
    b_t = backward_warp_torch(torch.from_numpy(probs).permute(2, 0, 1)[None], _t(f1))[0].permute(1, 2, 0).numpy()
    inside = ~out_of_frame(f1)
    assert np.abs(b_np - b_t)[inside].max() < 1.0 / 32 + 1e-4


def test_batched_torch_shapes_and_errors():
    f = torch.zeros(3, 2, 9, 11)
    src = torch.rand(3, 5, 9, 11)
    assert backward_warp(src, f).shape == (3, 5, 9, 11)
    assert valid_mask(f, f).shape == (3, 1, 9, 11)
    with pytest.raises(ValueError, match="B×2×H×W"):
        backward_warp_torch(src, torch.zeros(3, 3, 9, 11))
    with pytest.raises(ValueError, match="H×W×2"):
        backward_warp(np.zeros((4, 4)), np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="mode"):
        backward_warp(np.zeros((4, 4)), np.zeros((4, 4, 2)), mode="cubic")
    many = np.random.default_rng(0).random((6, 7, 9)).astype(np.float32)  # > 4 channels path
    assert np.array_equal(backward_warp(many, np.zeros((6, 7, 2), np.float32), mode="nearest"), many)


def test_workspace_reuse_gives_the_same_results():
    from steadyseg.warp import WarpWorkspace

    rng = np.random.default_rng(5)
    h, w = 30, 36
    ws = WarpWorkspace(h, w)
    for _ in range(3):  # successive calls overwrite the buffers; each result must match a fresh computation
        f1 = rng.normal(0, 2, (h, w, 2)).astype(np.float32)
        f2 = rng.normal(0, 2, (h, w, 2)).astype(np.float32)
        lab = rng.integers(0, 5, (h, w)).astype(np.uint8)
        w_ref, m_ref = warp_and_valid(lab, f1, f2)
        w_ws, m_ws = warp_and_valid(lab, f1, f2, workspace=ws)
        assert np.array_equal(w_ref, w_ws) and np.array_equal(m_ref, m_ws)
        assert np.array_equal(m_ref, valid_mask(f1, f2)) and np.array_equal(w_ref, backward_warp(lab, f1))
        assert np.array_equal(m_ref, ~out_of_frame(f1) & forward_backward_valid(f1, f2) & ~motion_boundary(f1))


def _reference_direction_counts(src_p, lab_q, f_qp, f_pq, void=255):
    """Plain multi-pass numpy/cv2 version of ``direction_counts`` (separate x/y maps, bool masks)."""
    h, w = lab_q.shape
    mx = f_qp[..., 0] + np.arange(w, dtype=np.float32)[None, :]
    my = f_qp[..., 1] + np.arange(h, dtype=np.float32)[:, None]
    warped = cv2.remap(src_p, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=void)
    inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    back = cv2.remap(f_pq, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mag = f_qp[..., 0] * f_qp[..., 0] + f_qp[..., 1] * f_qp[..., 1]
    rhs = (back[..., 0] * back[..., 0] + back[..., 1] * back[..., 1]) + mag
    rhs = rhs * np.float32(0.01) + np.float32(0.5)
    s = back + f_qp
    fb = s[..., 0] * s[..., 0] + s[..., 1] * s[..., 1] < rhs
    k = np.array([[-0.5, 0.0, 0.5]], np.float32)
    gx = cv2.filter2D(f_qp, cv2.CV_32F, k, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.filter2D(f_qp, cv2.CV_32F, k.T.copy(), borderType=cv2.BORDER_REPLICATE)
    grad = (gx[..., 0] * gx[..., 0] + gx[..., 1] * gx[..., 1]) + (gy[..., 0] * gy[..., 0] + gy[..., 1] * gy[..., 1])
    mb = grad > mag * np.float32(0.01) + np.float32(0.002)
    m = inside & fb & ~mb & (lab_q != void) & (warped != void)
    return int(np.count_nonzero(m & (warped != lab_q))), int(np.count_nonzero(m))


@pytest.mark.parametrize("dtype,h,w", [(np.uint8, 48, 64), (np.uint16, 48, 64), (np.uint8, 150, 40)])
def test_direction_counts_equals_plain_reference(dtype, h, w):
    """The banded uint8-mask path makes exactly the decisions of the plain formulas (no pixel may differ);
    150 rows = several bands of BAND_ROWS (64) plus a short one, so the y-gradient halo rows are exercised."""
    from steadyseg.warp import BAND_ROWS, WarpWorkspace, direction_counts

    assert h < BAND_ROWS or h > 2 * BAND_ROWS
    rng = np.random.default_rng(11)
    ws = WarpWorkspace(h, w)
    for trial in range(6):
        # smooth flows with occasional integer displacements (targets exactly on the frame edge) and jumps
        base = cv2.GaussianBlur(rng.normal(0, 6, (h, w, 2)).astype(np.float32), (0, 0), 3)
        f_qp = np.round(base) if trial % 2 else base
        f_qp[:, w // 2:] += np.float32(trial)  # a motion boundary down the middle
        f_pq = -f_qp + rng.normal(0, 0.4, (h, w, 2)).astype(np.float32)
        f_qp, f_pq = f_qp.astype(np.float32), f_pq.astype(np.float32)
        hi = 300 if dtype == np.uint16 else 4
        lab_p = rng.integers(0, hi, (h, w)).astype(dtype)
        lab_q = rng.integers(0, hi, (h, w)).astype(dtype)
        lab_p[rng.random((h, w)) < 0.05] = 255
        lab_q[rng.random((h, w)) < 0.05] = 255
        ref = _reference_direction_counts(lab_p, lab_q, f_qp, f_pq)
        assert ref[1] > 0
        assert direction_counts(lab_p, lab_q, f_qp, f_pq, workspace=ws) == ref
        assert direction_counts(lab_p, lab_q, f_qp, f_pq) == ref  # without a workspace
        # and the public bool helpers agree with the same reference pieces
        w_ref, m_ref = warp_and_valid(lab_p, f_qp, f_pq, fill=255)
        m_ref = m_ref & (lab_q != 255) & (w_ref != 255)
        assert int(np.count_nonzero(m_ref)) == ref[1]
    with pytest.raises(ValueError, match="uint8/uint16"):
        direction_counts(lab_p.astype(np.int32), lab_q, f_qp, f_pq)
