"""consistency_loss / ConsistencyLoss: closed forms, gradcheck, agreement with the measure's warp and mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steadyseg.losses import ConsistencyLoss, consistency_loss, select_pairs


def _pan_flows(b, t, h, w, dx=1.0, dtype=torch.float32):
    """F[p→q] = ((q − p)·dx, 0) everywhere, as a B×T×T×2×H×W tensor."""
    f = torch.zeros(b, t, t, 2, h, w, dtype=dtype)
    for p in range(t):
        for q in range(t):
            f[:, p, q, 0] = (q - p) * dx
    return f


def _onehot(labels: np.ndarray, c: int, dtype=torch.float32):
    return torch.nn.functional.one_hot(torch.from_numpy(labels).long(), c).permute(0, 3, 1, 2).to(dtype)


def test_consistent_one_hot_clip_is_zero():
    t, h, w = 3, 16, 20
    lab = np.zeros((t, h, w), np.int64)
    for i in range(t):
        lab[i, 4:10, 3 + i:9 + i] = 1          # moves +1 px per frame, as the pan flow says
    probs = _onehot(lab, 2)[None]            # (1, T, 2, H, W)
    out = consistency_loss(probs, _pan_flows(1, t, h, w))
    assert set(out) == {"consistency", "valid_fraction"}
    assert out["consistency"].item() == pytest.approx(0.0, abs=1e-6)
    # valid: out-of-frame columns only; |p−q| = 1 → 19 of 20 columns, = 2 → 18 of 20
    assert out["valid_fraction"].item() == pytest.approx((4 * 19 + 2 * 18) / (6 * 20))


def test_jittered_square_closed_form():
    # frame 1 is one pixel too far right; adjacent pairs only. d = 1 − Σ P_q W(P_p) = 1 on differing pixels.
    # each direction: 2 columns × 6 rows = 12 differing of 16·19 valid pixels
    t, h, w = 2, 16, 20
    lab = np.zeros((t, h, w), np.int64)
    lab[0, 4:10, 3:9] = 1
    lab[1, 4:10, 5:11] = 1
    loss = ConsistencyLoss(pairs="adjacent")(_onehot(lab, 2)[None], _pan_flows(1, t, h, w))
    assert loss["consistency"].item() == pytest.approx(12 / (16 * 19))


def test_uniform_probabilities_closed_form():
    # uniform over C classes: d = 1 − C·(1/C)² = 1 − 1/C on every valid pixel
    b, t, c, h, w = 2, 3, 4, 8, 9
    probs = torch.full((b, t, c, h, w), 1.0 / c)
    out = consistency_loss(probs, _pan_flows(b, t, h, w, dx=0.0))
    assert out["consistency"].item() == pytest.approx(1 - 1 / c)
    assert out["valid_fraction"].item() == pytest.approx(1.0)


def test_dict_flows_and_explicit_valid_match_tensor():
    torch.manual_seed(0)
    b, t, c, h, w = 2, 3, 3, 10, 12
    probs = torch.softmax(torch.randn(b, t, c, h, w), dim=2)
    flows = _pan_flows(b, t, h, w, dx=0.7) + 0.1 * torch.randn(b, t, t, 2, h, w)
    a = consistency_loss(probs, flows)
    as_dict = {(p, q): flows[:, p, q] for p in range(t) for q in range(t) if p != q}
    bb = consistency_loss(probs, as_dict)
    torch.testing.assert_close(a["consistency"], bb["consistency"])
    ones = torch.ones(b, t, t, 1, h, w, dtype=torch.bool)
    c_all = consistency_loss(probs, flows, ones)
    assert c_all["valid_fraction"].item() == 1.0
    assert c_all["consistency"].item() != pytest.approx(a["consistency"].item())


def test_agrees_with_measure_on_hard_labels():
    """On one-hot inputs with integer flow the loss of a pair equals the measure's e(p→q)."""
    from steadyseg.measures import direction_inconsistency

    rng = np.random.default_rng(0)
    h, w = 18, 22
    lab = rng.integers(0, 3, (2, h, w))
    flows = _pan_flows(1, 2, h, w, dx=2.0)
    loss = consistency_loss(_onehot(lab, 3)[None], flows, pairs=[(0, 1)], check_motion_boundary=True)
    e, n = direction_inconsistency(lab[0].astype(np.uint8), lab[1].astype(np.uint8),
                                   flow_q_to_p=flows[0, 1, 0].permute(1, 2, 0).numpy(),
                                   flow_p_to_q=flows[0, 0, 1].permute(1, 2, 0).numpy())
    assert loss["consistency"].item() == pytest.approx(e)
    assert n == h * (w - 2)


def test_gradcheck_float64():
    torch.manual_seed(1)
    b, t, c, h, w = 1, 2, 2, 5, 6
    logits = torch.randn(b, t, c, h, w, dtype=torch.float64, requires_grad=True)
    flows = _pan_flows(b, t, h, w, dx=0.3, dtype=torch.float64) + 0.05 * torch.randn(b, t, t, 2, h, w,
                                                                                    dtype=torch.float64)

    from steadyseg.warp import valid_mask_torch

    valid = torch.zeros(b, t, t, 1, h, w, dtype=torch.bool)
    for p, q in [(0, 1), (1, 0)]:
        valid[:, p, q] = valid_mask_torch(flows[:, q, p], flows[:, p, q])
    assert 0 < valid.sum() < valid.numel()

    def fn(x):  # the valid mask is a constant: computing it once keeps gradcheck fast
        return consistency_loss(torch.softmax(x, dim=2), flows, valid)["consistency"]

    assert torch.autograd.gradcheck(fn, (logits,), eps=1e-6, atol=1e-5)
    fn(logits).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_shape_checks_and_pairs():
    loss = ConsistencyLoss()
    with pytest.raises(ValueError, match="expected B×T×C×H×W"):
        loss(torch.zeros(2, 3, 4, 5), torch.zeros(2, 3, 3, 2, 4, 5))
    with pytest.raises(ValueError, match="B×T×T×2×H×W"):
        loss(torch.zeros(1, 3, 2, 4, 5), torch.zeros(1, 3, 3, 2, 4, 6))
    with pytest.raises(ValueError, match="no flow for the pair"):
        loss(torch.zeros(1, 2, 2, 4, 5), {(0, 1): torch.zeros(1, 2, 4, 5)})
    with pytest.raises(ValueError, match="pairs"):
        ConsistencyLoss(pairs="every")
    assert len(select_pairs(5, "all")) == 20 and len(select_pairs(5, "adjacent")) == 8
    assert len(select_pairs(5, 2)) == 14 and len(select_pairs(5, "center")) == 8
    assert "pairs='all'" in repr(loss)
