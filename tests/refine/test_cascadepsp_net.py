"""CascadePSPNet: official layout (keys, shapes, parameter count), golden seeded forward, checkpoint loading."""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import pytest
import torch

from steadyseg.refine.cascadepsp.network import (
    OFFICIAL_NUM_KEYS,
    OFFICIAL_NUM_PARAMETERS,
    CascadePSPCheckpointError,
    CascadePSPNet,
    build_cascadepsp_net,
    check_state_dict,
    count_parameters,
    normalize_state_dict,
    to_official_state_dict,
)

# sha256 of the official checkpoint's key list, keys without their "module." prefix, in checkpoint order, one line
# per entry: f"{key} {tuple(shape)}" (e.g. "feats.conv1.weight (64, 6, 7, 7)"), lines joined by "\n" with no
# trailing newline; it was computed from the official release (hkchengrex/CascadePSP v1.0 "model").
OFFICIAL_KEYS_SHA256 = "556bfc25eddf7e834fb6add86d238babf8edfdabf7799b28e92105fbe34b718f"

# Golden forward: torch.manual_seed(0) init, input from Generator seed 1, eval mode; (mean, std, value at [5, 7]).
GOLDEN = {
    "out_28": (-0.517696, 0.465223, -1.481106),
    "out_28_2": (-0.447590, 0.386848, -1.205272),
    "out_56": (-0.376578, 0.175606, -0.668361),
    "out_28_3": (-0.454114, 0.380220, -1.202049),
    "out_56_2": (-0.364274, 0.173196, -0.651413),
    "out_224": (0.140353, 0.123444, 0.040550),
}


@pytest.fixture(scope="module")
def model() -> CascadePSPNet:
    torch.manual_seed(0)
    return build_cascadepsp_net().eval()


@pytest.fixture(scope="module")
def official_file(model, tmp_path_factory):
    """A random-init checkpoint in the official layout (torch.save of a module.-prefixed state_dict)."""
    path = tmp_path_factory.mktemp("cpsp_net") / "model"
    torch.save(to_official_state_dict(model), path)
    return path


def test_layout_matches_official_checkpoint(model):
    sd = model.state_dict()
    assert len(sd) == OFFICIAL_NUM_KEYS == 426
    assert count_parameters(model) == OFFICIAL_NUM_PARAMETERS == 67_683_433
    listing = "\n".join(f"{k} {tuple(v.shape)}" for k, v in sd.items())
    assert hashlib.sha256(listing.encode()).hexdigest() == OFFICIAL_KEYS_SHA256
    # a few structural facts by name
    assert tuple(sd["feats.conv1.weight"].shape) == (64, 6, 7, 7)
    assert tuple(sd["psp.bottleneck.weight"].shape) == (1024, 10240, 1, 1)
    assert "psp.stages.0.1.bias" not in sd
    assert tuple(sd["final_11.weight"].shape) == (32, 35, 1, 1)
    assert model.feats.layer3[1].conv2.dilation == (2, 2) and model.feats.layer3[0].conv2.dilation == (1, 1)
    assert model.feats.layer4[2].conv2.dilation == (4, 4) and model.feats.layer2[0].conv2.stride == (2, 2)


def test_golden_forward_and_shapes(model):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, 64, 64, generator=g)
    seg = (torch.rand(1, 1, 64, 64, generator=g) > 0.5).float() * 2 - 1
    with torch.inference_mode():
        out = model(x, seg)
    assert set(out) == {f"{p}_{k}" for p in ("out", "pred") for k in ("28", "28_2", "56", "28_3", "56_2", "224")}
    for k, v in out.items():
        assert v.shape == (1, 1, 64, 64) and v.dtype == torch.float32, k
    for k, (mean, std, val) in GOLDEN.items():
        v = out[k].double()
        got = (v.mean().item(), v.std().item(), v[0, 0, 5, 7].item())
        assert got == pytest.approx((mean, std, val), abs=1e-4), k
        assert torch.allclose(out["pred_" + k[4:]], torch.sigmoid(out[k]))


def test_feature_shapes_and_skipped_passes(model):
    x = torch.zeros(2, 3, 48, 40)
    seg = -torch.ones(2, 1, 48, 40)
    with torch.inference_mode():
        f, f1, f2 = model.feats(torch.cat([x, seg, seg, seg], 1))
        assert f.shape == (2, 2048, 6, 5) and f1.shape == (2, 64, 24, 20) and f2.shape == (2, 256, 12, 10)
        out = model(x, seg, inter_s8=seg.clone())
    assert set(out) == {"out_28_2", "out_56", "out_28_3", "out_56_2", "out_224",
                        "pred_28_2", "pred_56", "pred_28_3", "pred_56_2", "pred_224"}
    with torch.inference_mode():
        out = model(x, seg, inter_s8=seg.clone(), inter_s4=seg.clone())
    assert set(out) == {"out_28_3", "out_56_2", "out_224", "pred_28_3", "pred_56_2", "pred_224"}


def test_forward_input_checks(model):
    with pytest.raises(ValueError, match="multiples of 8"):
        model(torch.zeros(1, 3, 60, 64), torch.zeros(1, 1, 60, 64))
    with pytest.raises(ValueError, match="seg"):
        model(torch.zeros(1, 3, 64, 64), torch.zeros(1, 2, 64, 64))
    with pytest.raises(ValueError, match="Bx3xHxW"):
        model(torch.zeros(1, 4, 64, 64), torch.zeros(1, 1, 64, 64))


def test_gradients_flow(model):
    """forward is not decorated with no_grad: a loss on pred_224 reaches the first conv."""
    m = build_cascadepsp_net().train()
    x = torch.randn(2, 3, 16, 16)
    seg = torch.ones(2, 1, 16, 16)
    m(x, seg)["out_224"].mean().backward()
    assert m.feats.conv1.weight.grad is not None and m.feats.conv1.weight.grad.abs().sum() > 0


def _eval_batchnorm_stats(model: CascadePSPNet) -> CascadePSPNet:
    """A copy of ``model`` whose BatchNorm running statistics and affine terms are not the init values (1 / 0), so
    that an in-place BatchNorm that skipped or repeated the normalisation would change the output."""
    m = build_cascadepsp_net().eval()
    m.load_state_dict(model.state_dict())
    g = torch.Generator().manual_seed(3)
    for bn in (mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d)):
        n = bn.num_features
        bn.running_mean.copy_(0.1 * torch.randn(n, generator=g))
        bn.running_var.copy_(0.5 + torch.rand(n, generator=g))
        bn.weight.data.copy_(1 + 0.1 * torch.randn(n, generator=g))
        bn.bias.data.copy_(0.01 * torch.randn(n, generator=g))
    return m


@pytest.mark.parametrize("threads", [1, 2])
def test_inference_path_is_bit_identical_to_the_module_forwards(model, threads):
    """Without autograd in eval mode the network runs in-place BatchNorm / concatenations / sums; the outputs must
    be bit-identical to the plain module forwards (taken with autograd on), for every pass and key, batched."""
    m = _eval_batchnorm_stats(model)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 56, 72, generator=g)
    seg = (torch.rand(2, 1, 56, 72, generator=g) > 0.5).float() * 2 - 1
    s8 = torch.rand(2, 1, 56, 72, generator=g) * 2 - 1
    x_in, seg_in, s8_in = x.clone(), seg.clone(), s8.clone()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for inter_s8 in (None, s8):
            with torch.enable_grad():
                plain = m(x, seg, inter_s8=inter_s8)
            assert any(v.requires_grad for v in plain.values())  # the plain path really ran (autograd on)
            with torch.inference_mode():
                fast = m(x, seg, inter_s8=inter_s8)
                picked = m(x, seg, inter_s8=inter_s8, outputs=("pred_224", "pred_56_2"))
            assert set(fast) == set(plain)
            for k in plain:
                assert torch.equal(fast[k], plain[k].detach()), k
            assert set(picked) == {"pred_224", "pred_56_2"}
            for k in picked:
                assert torch.equal(picked[k], plain[k].detach()), k
        # the in-place path leaves its inputs alone
        assert torch.equal(x, x_in) and torch.equal(seg, seg_in) and torch.equal(s8, s8_in)
    finally:
        torch.set_num_threads(before)


def test_outputs_selection(model):
    x = torch.zeros(1, 3, 32, 40)
    seg = -torch.ones(1, 1, 32, 40)
    with torch.inference_mode():
        out = model(x, seg, inter_s8=seg.clone(), outputs=["pred_224"])
        assert set(out) == {"pred_224"}
        assert set(model(x, seg, outputs={"out_28", "pred_56_2"})) == {"out_28", "pred_56_2"}
    with pytest.raises(ValueError, match="outputs must be"):
        model(x, seg, outputs=("pred_999",))
    with pytest.raises(ValueError, match="outputs must be"):
        model(x, seg, outputs=())


def test_official_checkpoint_loads_strictly(model, official_file):
    raw = torch.load(official_file, weights_only=True)
    assert len(raw) == 426 and all(k.startswith("module.") for k in raw)
    loaded = build_cascadepsp_net(official_file)
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k


def test_our_format_and_plain_state_dict(model, tmp_path):
    sd = model.state_dict()
    ours = normalize_state_dict({"model": sd, "config": {"lr": 1e-4}, "format": "steadyseg-cascadepsp-v1"})
    assert list(ours) == list(sd)
    plain = normalize_state_dict(OrderedDict(sd))
    assert list(plain) == list(sd)
    check_state_dict(model, ours)


def test_wrong_or_missing_key_named_in_error(model, official_file, tmp_path):
    raw = torch.load(official_file, weights_only=True)
    raw["module.final_21.weight_typo"] = raw.pop("module.final_21.weight")
    bad = tmp_path / "bad.pth"
    torch.save(raw, bad)
    with pytest.raises(CascadePSPCheckpointError) as err:
        build_cascadepsp_net(bad)
    msg = str(err.value)
    assert str(bad) in msg and "missing keys: final_21.weight" in msg and "final_21.weight_typo" in msg

    sd = OrderedDict(model.state_dict())
    sd["final_11.weight"] = torch.zeros(32, 36, 1, 1)
    with pytest.raises(CascadePSPCheckpointError, match=r"final_11.weight: checkpoint \(32, 36, 1, 1\)"):
        check_state_dict(model, sd)


def test_prefix_stripped_only_when_on_every_key(model):
    sd = model.state_dict()
    mixed = OrderedDict((("module." + k) if i % 2 else k, v) for i, (k, v) in enumerate(sd.items()))
    norm = normalize_state_dict(mixed)
    assert any(k.startswith("module.") for k in norm)
    with pytest.raises(CascadePSPCheckpointError, match="unexpected keys: module.feats.bn1.weight"):
        check_state_dict(model, norm)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="--checkpoint"):
        build_cascadepsp_net(tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CascadePSPCheckpointError, match="junk.pth"):
        build_cascadepsp_net(junk)
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CascadePSPCheckpointError, match="not a CascadePSP checkpoint"):
        build_cascadepsp_net(tmp_path / "list.pth")
