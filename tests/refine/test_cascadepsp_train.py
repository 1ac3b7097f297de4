"""CascadePSP training: perturbation, losses, data sources, a tiny CPU run whose loss goes down, resume, CLI."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import yaml

from steadyseg.refine.cascadepsp.network import CHECKPOINT_FORMAT, build_cascadepsp_net
from steadyseg.refine.cascadepsp.training import (
    CascadePSPLoss,
    RefineTrainDataset,
    cascadepsp_loss,
    coco_samples,
    davis_samples,
    folder_samples,
    mask_iou,
    perturb_mask,
    sobel_magnitude,
    train_cascadepsp,
)


def _disk(h=64, w=80, r=20, cx=40, cy=32) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    cv2.circle(m, (cx, cy), r, 1, -1)
    return m.astype(bool)


@pytest.fixture(scope="module")
def pair_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    (root / "im").mkdir()
    (root / "m").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        m = _disk(48, 64, 14, 28 + 4 * i, 24)
        im = (rng.random((48, 64, 3)) * 60 + 40).astype(np.uint8)
        im[m] = (200, 60 + 50 * i, 40)
        cv2.imwrite(str(root / "im" / f"s{i}.jpg"), im[..., ::-1])
        cv2.imwrite(str(root / "m" / f"s{i}.png"), m.astype(np.uint8) * 255)
    cv2.imwrite(str(root / "im" / "nomask.jpg"), np.zeros((8, 8, 3), np.uint8))
    return root


def test_perturb_mask_reaches_iou_target():
    gt = _disk(128, 160, 40, 80, 64)
    for seed, target in [(0, 0.95), (1, 0.85), (2, 0.8)]:
        rng = np.random.default_rng(seed)
        seg = perturb_mask(gt, iou_target=target, rng=rng)
        iou = mask_iou(gt, seg)
        assert seg.dtype == bool and seg.shape == gt.shape
        assert 0.4 < iou < target, (seed, target, iou)
        again = perturb_mask(gt, iou_target=target, rng=np.random.default_rng(seed))
        np.testing.assert_array_equal(seg, again)


def test_sobel_and_loss_terms():
    const = torch.full((1, 1, 16, 16), 0.3)
    assert torch.allclose(sobel_magnitude(const), torch.full_like(const, 1e-2))
    step = torch.zeros(1, 1, 16, 16)
    step[..., 8:] = 1.0
    assert sobel_magnitude(step)[0, 0, 4, 8] > 0.2
    with pytest.raises(ValueError, match="Bx1xHxW"):
        sobel_magnitude(torch.zeros(1, 2, 8, 8))

    gt = (torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    keys = ("224", "28", "56", "28_2", "28_3", "56_2")
    perfect = {f"out_{k}": (gt * 2 - 1) * 30.0 for k in keys}
    terms = cascadepsp_loss(perfect, gt)
    assert set(terms) == {"ce_28", "ce_56", "ce_28_2", "ce_28_3", "ce_56_2", "l1_224", "l2_224", "l1_56",
                          "l2_56", "l1_56_2", "l2_56_2", "grad", "total"}
    assert terms["total"] < 1e-5
    # Constant 0 logits: CE = ln 2, L1 = 0.5, L2 = 0.25 per term; total = weighted sum + 5 * grad.
    zero = {f"out_{k}": torch.zeros_like(gt) for k in keys}
    t = CascadePSPLoss()(zero, gt)
    assert t["ce_28"].item() == pytest.approx(np.log(2), rel=1e-6)
    assert t["l1_224"].item() == pytest.approx(0.5) and t["l2_56"].item() == pytest.approx(0.25)
    expected = np.log(2) * 4.0 + 0.5 * 1.5 + 0.25 * 1.5 + 5 * t["grad"].item()
    assert t["total"].item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="out_56"):
        cascadepsp_loss({"out_224": gt}, gt)


def test_sources(pair_folder, coco80, davis2016):
    pairs = folder_samples(pair_folder / "im", pair_folder / "m")
    assert [s.name for s in pairs] == ["s0", "s1"]
    assert pairs[0].load_mask().sum() == _disk(48, 64, 14, 28, 24).sum()
    coco = coco_samples(coco80 / "annotations" / "instances_val2017.json", coco80 / "val2017")
    assert len(coco) > 100
    m = coco[0].load_mask()
    im = cv2.imread(coco[0].image)
    assert m.dtype == bool and m.shape == im.shape[:2] and m.sum() >= 1024 * 0.5
    davis = davis_samples(davis2016, sequences=["blackswan"])
    assert len(davis) == 50 and davis[0].load_mask().shape == (480, 854)
    with pytest.raises(FileNotFoundError, match="not a DAVIS folder"):
        davis_samples(pair_folder)


def test_dataset_items(pair_folder):
    ds = RefineTrainDataset(folder_samples(pair_folder / "im", pair_folder / "m"), crop=32, seed=3)
    a, b = ds[5], ds[5]
    assert a["image"].shape == (3, 32, 32) and a["gt"].shape == (1, 32, 32) and a["seg"].shape == (1, 32, 32)
    assert set(torch.unique(a["gt"]).tolist()) <= {0.0, 1.0} and set(torch.unique(a["seg"]).tolist()) <= {-1.0, 1.0}
    for k in a:
        assert torch.equal(a[k], b[k])
    with pytest.raises(ValueError, match="multiple of 8"):
        RefineTrainDataset(ds.samples, crop=30)


def test_tiny_training_loss_goes_down_and_resumes(pair_folder, tmp_path):
    torch.set_num_threads(2)
    samples = folder_samples(pair_folder / "im", pair_folder / "m")
    out = tmp_path / "run"
    n = 10
    hist = train_cascadepsp(samples, out, iterations=n, batch_size=2, crop=32, seed=0, save_every=10**6,
                            milestones=(0.8, 0.9), progress=False)
    total = [h["total"] for h in hist]
    assert len(total) == n and all(np.isfinite(total))
    assert np.mean(total[-3:]) < 0.7 * np.mean(total[:3]), total
    assert {"ce_28", "grad", "l1_224", "lr"} <= set(hist[0])
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["config"]["iterations"] == n and cfg["config"]["milestones"] == [8, 9]
    assert hist[-1]["lr"] == pytest.approx(2.25e-4 * 0.01)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["format"] == CHECKPOINT_FORMAT and state["iteration"] == n
    model = build_cascadepsp_net(out / "checkpoint.pt")  # our format loads with the same builder
    assert torch.equal(model.final_21.weight, state["model"]["final_21.weight"])
    more = train_cascadepsp(samples, out, iterations=n + 1, batch_size=2, crop=32, seed=0, resume=True,
                            milestones=(0.8, 0.9), progress=False)
    assert [h["iteration"] for h in more] == list(range(1, n + 2))
    assert more[:n] == hist
    assert torch.load(out / "checkpoint.pt", weights_only=True)["iteration"] == n + 1


def test_cli_errors_and_parser(tmp_path):
    from steadyseg.cli import main

    assert main(["refine-train", "--out", str(tmp_path / "o")]) == 1
    assert main(["refine-train", "--masks", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert main(["refine-train", "--davis", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 1
