"""Training CascadePSP (official recipe): perturbed input masks, multi-stride losses, Adam with a step schedule.

Pieces, usable on their own:

- :func:`perturb_mask` — the official input-mask corruption: contour simplification, then random rectangles
  dilated/eroded until the IoU with the ground truth falls below a target drawn from U[0.8, 1).
- :class:`RefineSample` sources — :func:`folder_samples` (images DIR + masks DIR matched by file stem),
  :func:`coco_samples` (one sample per non-crowd instance of a COCO instances file, via
  :mod:`steadyseg.datasets.coco`), :func:`davis_samples` (DAVIS ``JPEGImages/480p`` + ``Annotations/480p``).
- :class:`RefineTrainDataset` — index ``i`` → a deterministic (seed, i) random crop + flip + colour jitter +
  grayscale + perturbation, so a resumed run sees the same data as an uninterrupted one.
- :func:`cascadepsp_loss` / :class:`CascadePSPLoss` — a dict of named terms (CE, L1, L2 per stride and the Sobel
  gradient term) plus ``"total"``.
- :func:`train_cascadepsp` — the loop; writes ``checkpoint.pt`` (our format: ``{"format", "model", "optimizer",
  "scheduler", "iteration", "config"}``, loadable by :func:`steadyseg.refine.cascadepsp.network.build_cascadepsp_net`),
  ``config.yaml`` and ``history.json`` into ``out_dir``, all atomically.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from steadyseg.datasets.video import read_image_rgb
from steadyseg.files import atomic_path, atomic_write_json, save_resolved_config
from steadyseg.refine.cascadepsp.network import CHECKPOINT_FORMAT, CascadePSPNet, build_cascadepsp_net
from steadyseg.refine.cascadepsp.refiner import IMAGENET_MEAN, IMAGENET_STD

#: Loss weights of the official recipe, per output (logits ``out_<k>`` / sigmoids ``pred_<k>``).
LOSS_KEYS = ("224", "28", "56", "28_2", "28_3", "56_2")
CE_WEIGHTS = (0.0, 1.0, 0.5, 1.0, 1.0, 0.5)
L1_WEIGHTS = (1.0, 0.0, 0.25, 0.0, 0.0, 0.25)
L2_WEIGHTS = (1.0, 0.0, 0.25, 0.0, 0.0, 0.25)
GRAD_WEIGHT = 5.0

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


# ----------------------------------------------------------------------------------------------------------------
# Mask perturbation


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two ``(H, W)`` boolean masks; 1.0 when both are empty (:func:`steadyseg.accuracy.iou`, no void)."""
    from steadyseg.accuracy import iou

    return iou(a, b, void=None)


def simplify_contours(mask: np.ndarray, rng: np.random.Generator, *, cut_rate: float = 0.1,
                      keep_rate: float = 0.1) -> np.ndarray:
    """Coarsen a mask's outline: per contour (>= 10 vertices) drop a consecutive run of ``cut_rate`` of the
    vertices, keep a random ``keep_rate`` of the rest (in order) and redraw filled. ``(H, W)`` bool → bool."""
    m = mask.astype(np.uint8) * 255
    contours, _ = cv2.findContours(m, cv2.RETR_TREE, cv2.CHAIN_APPROX_NONE)
    out = []
    for c in contours:
        n = c.shape[0]
        if n < 10:
            continue
        n_cut = int(n * cut_rate)
        start = int(rng.integers(0, n - n_cut + 1))
        remaining = np.concatenate([np.arange(0, start), np.arange(start + n_cut, n)])
        n_keep = max(int(len(remaining) * keep_rate), 3)
        idx = np.sort(rng.choice(remaining, size=min(n_keep, len(remaining)), replace=False))
        out.append(c[idx])
    if not out:
        return mask.astype(bool).copy()
    canvas = np.zeros_like(m)
    cv2.drawContours(canvas, out, -1, 255, thickness=-1)
    return canvas > 0


def perturb_mask(mask: np.ndarray, *, iou_target: float, rng: np.random.Generator, max_rounds: int = 250
                 ) -> np.ndarray:
    """Corrupt a ground-truth mask until its IoU with the original drops below ``iou_target``.

    ``mask``: ``(H, W)`` bool. Contours are first simplified (:func:`simplify_contours`, kept only if the IoU stays
    >= ``iou_target``), then rounds of four random rectangles are dilated or eroded (square kernels 3-9; a quarter
    of the time the rectangle's centre pixel is flipped first, to create holes and islands) until the IoU falls
    below the target or ``max_rounds`` is reached. Returns a new ``(H, W)`` bool mask.
    """
    gt = mask.astype(bool)
    h, w = gt.shape
    seg = simplify_contours(gt, rng)
    if mask_iou(gt, seg) < iou_target:
        seg = gt.copy()
    if h <= 2 or w <= 2:
        return seg
    seg = seg.astype(np.uint8)
    for _ in range(max_rounds):
        for _ in range(4):
            x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
            x1, y1 = int(rng.integers(x0 + 1, w + 1)), int(rng.integers(y0 + 1, h + 1))
            if rng.random() < 0.25:
                seg[(y0 + y1) // 2, (x0 + x1) // 2] = int(rng.integers(0, 2))
            k = int(rng.integers(3, 10))
            kernel = np.ones((k, k), np.uint8)
            region = np.ascontiguousarray(seg[y0:y1, x0:x1])
            op = cv2.dilate if rng.random() < 0.5 else cv2.erode
            seg[y0:y1, x0:x1] = op(region, kernel)
        if mask_iou(gt, seg) < iou_target:
            break
    return seg.astype(bool)


# ----------------------------------------------------------------------------------------------------------------
# Sources


@dataclass(frozen=True)
class RefineSample:
    """One training pair: an image file and a way to get its ``(H, W)`` bool mask."""

    image: str
    load_mask: Callable[[], np.ndarray]
    name: str


def _read_mask(path: str) -> np.ndarray:
    m = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if m is None:
        raise FileNotFoundError(f"{path}: cannot read mask")
    if m.ndim == 3:
        m = m.max(axis=2)
    return m > (127 if m.max(initial=0) > 1 else 0)


class _MaskFile:
    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self) -> np.ndarray:
        return _read_mask(self.path)


class _CocoMask:
    def __init__(self, ann: dict, height: int, width: int) -> None:
        self.ann, self.height, self.width = ann, height, width

    def __call__(self) -> np.ndarray:
        from steadyseg.datasets.coco import annotation_to_mask

        return annotation_to_mask(self.ann, self.height, self.width)


def folder_samples(images: str | os.PathLike, masks: str | os.PathLike) -> list[RefineSample]:
    """Pairs ``images/<stem>.<ext>`` ↔ ``masks/<stem>.<ext>`` (masks: any non-zero / > 127 pixel is foreground)."""
    images, masks = Path(images), Path(masks)
    for d in (images, masks):
        if not d.is_dir():
            raise FileNotFoundError(f"{d}: folder not found")
    mask_by_stem = {p.stem: p for p in sorted(masks.iterdir()) if p.suffix.lower() in IMAGE_EXTS}
    out = [RefineSample(str(p), _MaskFile(str(mask_by_stem[p.stem])), p.stem)
           for p in sorted(images.iterdir()) if p.suffix.lower() in IMAGE_EXTS and p.stem in mask_by_stem]
    if not out:
        raise ValueError(f"{images} / {masks}: no image with a mask of the same file stem")
    return out


def coco_samples(instances: str | os.PathLike, images: str | os.PathLike, *, min_area: float = 1024.0
                 ) -> list[RefineSample]:
    """One sample per non-crowd instance with ``area >= min_area`` whose image exists under ``images``."""
    from steadyseg.datasets.coco import load_coco_json

    data = load_coco_json(instances)
    images = Path(images)
    by_id = {im["id"]: im for im in data["images"]}
    out = []
    for ann in data["annotations"]:
        if ann.get("iscrowd", 0) or ann.get("area", 0) < min_area or ann["image_id"] not in by_id:
            continue
        info = by_id[ann["image_id"]]
        path = images / info["file_name"]
        if not path.is_file():
            continue
        out.append(RefineSample(str(path), _CocoMask(ann, int(info["height"]), int(info["width"])),
                                f"{info['file_name']}#{ann['id']}"))
    if not out:
        raise ValueError(f"{instances}: no usable instance (non-crowd, area >= {min_area}, image under {images})")
    return out


def davis_samples(root: str | os.PathLike, *, resolution: str = "480p", sequences: Sequence[str] | None = None
                  ) -> list[RefineSample]:
    """Frames of a DAVIS folder (``JPEGImages/<res>/<seq>/*.jpg`` with ``Annotations/<res>/<seq>/*.png``)."""
    root = Path(root)
    jdir, adir = root / "JPEGImages" / resolution, root / "Annotations" / resolution
    if not jdir.is_dir() or not adir.is_dir():
        raise FileNotFoundError(f"{root}: not a DAVIS folder (expected JPEGImages/{resolution} and "
                                f"Annotations/{resolution})")
    seqs = sorted(p.name for p in jdir.iterdir() if p.is_dir()) if sequences is None else list(sequences)
    out = []
    for seq in seqs:
        for im in sorted((jdir / seq).glob("*.jpg")):
            ann = adir / seq / (im.stem + ".png")
            if ann.is_file():
                out.append(RefineSample(str(im), _MaskFile(str(ann)), f"{seq}/{im.stem}"))
    if not out:
        raise ValueError(f"{root}: no annotated frame found")
    return out


# ----------------------------------------------------------------------------------------------------------------
# Dataset


def _color_jitter(im: np.ndarray, rng: np.random.Generator, *, brightness: float = 0.2, contrast: float = 0.05,
                  saturation: float = 0.05, grayscale_p: float = 0.1) -> np.ndarray:
    """torchvision-like ColorJitter(b, c, s, 0) + RandomGrayscale on float RGB in [0, 1] (``(H, W, 3)``)."""
    gray_w = np.array([0.299, 0.587, 0.114], np.float32)
    ops = rng.permutation(3)
    factors = [rng.uniform(1 - brightness, 1 + brightness), rng.uniform(1 - contrast, 1 + contrast),
               rng.uniform(1 - saturation, 1 + saturation)]
    for op in ops:
        f = np.float32(factors[op])
        if op == 0:
            im = im * f
        elif op == 1:
            im = (im - (im @ gray_w).mean()) * f + (im @ gray_w).mean()
        else:
            g = (im @ gray_w)[..., None]
            im = (im - g) * f + g
        im = np.clip(im, 0.0, 1.0)
    if rng.random() < grayscale_p:
        im = np.repeat((im @ gray_w)[..., None], 3, axis=2)
    return im.astype(np.float32)


class RefineTrainDataset(torch.utils.data.Dataset):
    """Index ``i`` (any integer) → one augmented training triple, deterministic in ``(seed, i)``.

    Returns a dict: ``image`` ``(3, C, C)`` float32 ImageNet-normalised; ``gt`` ``(1, C, C)`` float32 in {0, 1};
    ``seg`` ``(1, C, C)`` float32 in {-1, +1} (the perturbed mask, IoU target ~ U[``iou_low``, ``iou_high``)).
    The crop (side ``crop``) is taken after scaling the shorter image side to at least ``crop``; half of the time
    it is centred on a random foreground pixel so that small objects are seen. ``len()`` is ``len(samples)``,
    but indices wrap around, so a sampler may run over ``range(iterations * batch_size)``.
    """

    def __init__(self, samples: Sequence[RefineSample], *, crop: int = 224, seed: int = 0, iou_low: float = 0.8,
                 iou_high: float = 1.0) -> None:
        if not samples:
            raise ValueError("no training samples")
        if crop < 16 or crop % 8:
            raise ValueError(f"crop must be a multiple of 8 and >= 16, got {crop}")
        self.samples, self.crop, self.seed = list(samples), int(crop), int(seed)
        self.iou_low, self.iou_high = float(iou_low), float(iou_high)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, int(index)])
        s = self.samples[int(rng.integers(0, len(self.samples)))]
        im = read_image_rgb(s.image)
        m = s.load_mask()
        if m.shape != im.shape[:2]:
            raise ValueError(f"{s.name}: mask shape {m.shape} differs from image shape {im.shape[:2]}")
        c = self.crop
        h, w = m.shape
        if min(h, w) < c:
            scale = c / min(h, w)
            nh, nw = max(c, round(h * scale)), max(c, round(w * scale))
            im = cv2.resize(im, (nw, nh), interpolation=cv2.INTER_LINEAR)
            m = cv2.resize(m.astype(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST) > 0
            h, w = nh, nw
        ys, xs = np.nonzero(m)
        if len(ys) and rng.random() < 0.5:
            j = int(rng.integers(0, len(ys)))
            y0 = int(np.clip(ys[j] - c // 2 + rng.integers(-c // 4, c // 4 + 1), 0, h - c))
            x0 = int(np.clip(xs[j] - c // 2 + rng.integers(-c // 4, c // 4 + 1), 0, w - c))
        else:
            y0, x0 = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
        im = im[y0:y0 + c, x0:x0 + c]
        m = m[y0:y0 + c, x0:x0 + c]
        if rng.random() < 0.5:
            im, m = im[:, ::-1], m[:, ::-1]
        im = _color_jitter(im.astype(np.float32) / 255.0, rng)
        seg = perturb_mask(np.ascontiguousarray(m), iou_target=float(rng.uniform(self.iou_low, self.iou_high)),
                           rng=rng)
        im = (im - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1))),
            "gt": torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32))[None],
            "seg": torch.from_numpy(seg.astype(np.float32) * 2.0 - 1.0)[None],
        }


# ----------------------------------------------------------------------------------------------------------------
# Losses


def sobel_magnitude(x: torch.Tensor, *, eps: float = 1e-4) -> torch.Tensor:
    """Gradient magnitude ``sqrt(gx² + gy² + eps)`` of ``(B, 1, H, W)`` after a 3x3 average pool (replicate
    padding; Sobel kernels divided by 4). Returns ``(B, 1, H, W)``."""
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"expected Bx1xHxW, got {tuple(x.shape)}")
    x = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel_size=3, stride=1)
    kx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]], dtype=x.dtype, device=x.device) / 4
    x = F.pad(x, (1, 1, 1, 1), mode="replicate")
    gx = F.conv2d(x, kx.view(1, 1, 3, 3))
    gy = F.conv2d(x, kx.t().contiguous().view(1, 1, 3, 3))
    return torch.sqrt(gx * gx + gy * gy + eps)


def cascadepsp_loss(outputs: dict[str, torch.Tensor], gt: torch.Tensor) -> dict[str, torch.Tensor]:
    """The official multi-stride loss. ``outputs``: :class:`CascadePSPNet` output (all six ``out_*``/``pred_*``,
    ``(B, 1, H, W)``); ``gt``: ``(B, 1, H, W)`` float in {0, 1}.

    Returns named scalar terms ``ce_<k>``, ``l1_<k>``, ``l2_<k>`` for ``k`` in :data:`LOSS_KEYS` (only those with a
    non-zero weight), ``grad`` (L1 between Sobel magnitudes of ``gt`` and ``pred_224``) and ``total`` =
    Σ weight · term.
    """
    missing = [f"out_{k}" for k in LOSS_KEYS if f"out_{k}" not in outputs]
    if missing:
        raise ValueError(f"outputs lack {missing} (run the network with all three passes)")
    if gt.ndim != 4 or gt.shape[1] != 1 or gt.shape != outputs["out_224"].shape:
        raise ValueError(f"expected gt of shape {tuple(outputs['out_224'].shape)}, got {tuple(gt.shape)}")
    gt = gt.to(outputs["out_224"].dtype)
    terms: dict[str, torch.Tensor] = {}
    total = gt.new_zeros(())
    for k, wce, wl1, wl2 in zip(LOSS_KEYS, CE_WEIGHTS, L1_WEIGHTS, L2_WEIGHTS):
        logits = outputs[f"out_{k}"]
        pred = outputs.get(f"pred_{k}", torch.sigmoid(logits))
        if wce:
            terms[f"ce_{k}"] = F.binary_cross_entropy_with_logits(logits, gt)
            total = total + wce * terms[f"ce_{k}"]
        if wl1:
            terms[f"l1_{k}"] = F.l1_loss(pred, gt)
            total = total + wl1 * terms[f"l1_{k}"]
        if wl2:
            terms[f"l2_{k}"] = F.mse_loss(pred, gt)
            total = total + wl2 * terms[f"l2_{k}"]
    pred_224 = outputs.get("pred_224", torch.sigmoid(outputs["out_224"]))
    terms["grad"] = F.l1_loss(sobel_magnitude(pred_224), sobel_magnitude(gt))
    terms["total"] = total + GRAD_WEIGHT * terms["grad"]
    return terms


class CascadePSPLoss(nn.Module):
    """``nn.Module`` form of :func:`cascadepsp_loss` (returns the same dict)."""

    def forward(self, outputs: dict[str, torch.Tensor], gt: torch.Tensor) -> dict[str, torch.Tensor]:
        return cascadepsp_loss(outputs, gt)


# ----------------------------------------------------------------------------------------------------------------
# Training loop


def _save_checkpoint(path: Path, *, model: nn.Module, optimizer, scheduler, iteration: int,
                     config: dict[str, Any]) -> None:
    state = {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "iteration": int(iteration),
        "config": config,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def train_cascadepsp(samples: Sequence[RefineSample], out_dir: str | os.PathLike, *, iterations: int = 45_000,
                     batch_size: int = 12, lr: float = 2.25e-4, weight_decay: float = 1e-4, crop: int = 224,
                     milestones: Sequence[float] = (0.5, 37.5 / 45.0), gamma: float = 0.1,
                     init: str | os.PathLike | None = None, resume: bool = False, device: str = "cpu",
                     seed: int = 0, num_workers: int = 0, save_every: int = 1000, log_every: int = 10,
                     config: dict[str, Any] | None = None, progress: bool = True) -> list[dict[str, float]]:
    """Train :class:`CascadePSPNet` on ``samples``; returns the loss history (one dict of floats per iteration).

    Official recipe by default: Adam (``lr`` 2.25e-4, ``weight_decay`` 1e-4), batch 12, 224 crops, 45k iterations,
    lr × ``gamma`` at the fractions ``milestones`` of ``iterations`` (22.5k and 37.5k of 45k). ``init``: start from a
    checkpoint (official or ours); without it the network starts from random weights with zero-initialised
    residual BN scales. ``resume``: continue from ``out_dir/checkpoint.pt`` (model, optimizer,
    scheduler, iteration; the data order is a pure function of ``seed`` and the sample index, so it continues the
    same stream). Writes ``out_dir/checkpoint.pt`` every ``save_every`` iterations and at the end, plus
    ``config.yaml`` and ``history.json``.
    """
    if iterations < 1 or batch_size < 1:
        raise ValueError(f"iterations and batch_size must be >= 1, got {iterations}, {batch_size}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.pt"
    torch.manual_seed(seed)
    dev = torch.device(device)
    resolved = {
        "iterations": iterations, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay, "crop": crop,
        "milestones": [int(round(f * iterations)) for f in milestones], "gamma": gamma,
        "init": None if init is None else str(init), "device": str(dev), "seed": seed, "num_samples": len(samples),
        "save_every": save_every, **(config or {}),
    }
    # From scratch: zero-init residual BN scales (stable start); with --init the checkpoint overrides them anyway.
    model = build_cascadepsp_net(init, zero_init_residual=init is None).to(dev).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=resolved["milestones"], gamma=gamma)
    start = 0
    history: list[dict[str, float]] = []
    if resume:
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"{ckpt_path}: nothing to resume (no checkpoint in the output folder)")
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{ckpt_path}: not a steadyseg training checkpoint (format {state.get('format')!r})")
        model.load_state_dict(state["model"], strict=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = int(state["iteration"])
        hist_path = out_dir / "history.json"
        if hist_path.is_file():
            import json

            history = json.loads(hist_path.read_text())[:start]
    save_resolved_config(out_dir, resolved)
    if start >= iterations:
        return history

    dataset = RefineTrainDataset(samples, crop=crop, seed=seed)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=range(start * batch_size, iterations * batch_size),
        num_workers=num_workers, collate_fn=_collate, drop_last=False)
    criterion = CascadePSPLoss()
    it = start
    t0 = time.time()
    bar = tqdm(loader, total=iterations - start, initial=0, desc="refine-train", disable=not progress)
    for batch in bar:
        im, gt, seg = batch["image"].to(dev), batch["gt"].to(dev), batch["seg"].to(dev)
        out = model(im, seg)
        terms = criterion(out, gt)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        optimizer.step()
        scheduler.step()
        it += 1
        rec = {k: float(v.detach()) for k, v in terms.items()}
        if not math.isfinite(rec["total"]):
            raise FloatingPointError(f"non-finite loss at iteration {it}: {rec}")
        rec.update(iteration=it, lr=optimizer.param_groups[0]["lr"], seconds=time.time() - t0)
        history.append(rec)
        if it % log_every == 0 or it == iterations:
            bar.set_postfix(total=f"{rec['total']:.4f}", grad=f"{rec['grad']:.4f}")
        if it % save_every == 0 or it == iterations:
            _save_checkpoint(ckpt_path, model=model, optimizer=optimizer, scheduler=scheduler, iteration=it,
                             config=resolved)
            atomic_write_json(out_dir / "history.json", history)
    return history


def load_trained_model(path: str | os.PathLike) -> CascadePSPNet:
    """Convenience: a trained checkpoint (ours or official) → an eval-mode :class:`CascadePSPNet`."""
    return build_cascadepsp_net(path).eval()
