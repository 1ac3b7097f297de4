"""Train a semantic-segmentation teacher on a COCO file: torchvision's ``references/segmentation`` recipe.

Recipe (defaults in :data:`TEACHER_DEFAULTS`): DeepLabV3-ResNet50 with its aux head (or DeepLabV3 / LRASPP on
MobileNetV3-Large); train transform = random resize of the shorter side in [0.5, 2]·``base_size``, horizontal
flip 0.5, pad (image 0 / target 255) and random crop ``crop_size``, ImageNet normalisation
(:mod:`steadyseg.train.data`); SGD lr 0.02, momentum 0.9, weight decay 1e-4, the aux head's parameters at 10× lr;
polynomial decay ``lr · (1 − step/total)^0.9`` set every iteration; loss = CE(out) + 0.5 · CE(aux), 255 ignored.

Outputs under ``out`` (written by process 0 only)::

    model.pt              final weights + config (steadyseg.train.checkpoint), what `predict`/`eval` read
    checkpoints/last.pt   resumable state: model, optimiser, AMP scaler, step, schedule length, RNG states
    log.jsonl             one JSON object per step (loss terms, lr) and per evaluation (mIoU, pixel accuracy)
    curves.png            loss (and validation mIoU) curves, written at the end
    config.yaml           the resolved configuration
    cache/targets/        decoded targets, one PNG per image id

Distributed: run under ``torchrun --nproc-per-node N -m steadyseg.cli train teacher ...``; each process takes
every N-th sample of the epoch's permutation (``batch_size`` is per process) and the model is wrapped in
``DistributedDataParallel``. Without torchrun's environment it runs in one process. AMP is used on CUDA only.

Resuming (``resume=True``) restores ``checkpoints/last.pt`` and continues exactly: the data order and every
augmentation depend only on ``(seed, epoch, index)``, and the torch RNG (dropout) is restored, so on the CPU
``2 + 2`` steps give bit-for-bit the weights of 4 steps.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from steadyseg.labels import VOID

__all__ = ["TEACHER_DEFAULTS", "segmentation_losses", "SegmentationLoss", "poly_lr_factor", "train_teacher",
           "param_groups", "recompute_bn_stats"]

TEACHER_DEFAULTS: dict[str, Any] = {
    "labels": "voc21",
    "split": "train",
    "architecture": "deeplabv3_resnet50",
    "aux_loss": None,          # None: the architecture's default (on for DeepLabV3, off for LRASPP)
    "width_mult": 1.0,
    "init": None,
    "epochs": 30.0,
    "minutes": None,
    "stop_at_step": None,
    "base_size": 520,
    "crop_size": 480,
    "min_scale": 0.5,
    "max_scale": 2.0,
    "hflip_prob": 0.5,
    "batch_size": 8,
    "lr": 0.02,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "lr_power": 0.9,
    "aux_weight": 0.5,
    "aux_lr_mult": 10.0,
    "seed": 0,
    "workers": 2,
    "device": None,
    "amp": True,
    "val_annotations": None,
    "val_images": None,
    "eval_every": 1.0,
    "checkpoint_every": None,
    "precise_bn": 0,
    "resume": False,
    "progress": True,
}
#: epoch-end checkpoints are written at most this often (``checkpoint_every`` steps and the end always)
CHECKPOINT_MIN_INTERVAL_S = 60.0
# keys that may differ between a run and its resumption
_RESUME_FREE = {"resume", "progress", "workers", "stop_at_step", "minutes", "device"}


def segmentation_losses(outputs: dict[str, torch.Tensor], target: torch.Tensor, *, aux_weight: float = 0.5,
                        ignore_index: int = VOID) -> dict[str, torch.Tensor]:
    """Named loss terms of torchvision's segmentation ``criterion``; their sum is the training loss.

    Args:
        outputs: ``{"out": (B, C, H, W) logits[, "aux": (B, C, H, W) logits]}``.
        target: ``(B, H, W) int64`` classes, ``ignore_index`` (255) ignored.
        aux_weight: weight of the aux term.

    Returns:
        ``{"out": CE(out), "aux": aux_weight · CE(aux)}`` (``"aux"`` only when present); scalar tensors.
    """
    if "out" not in outputs:
        raise ValueError(f"expected model outputs with key 'out', got {sorted(outputs)}")
    out = outputs["out"]
    if out.ndim != 4 or target.ndim != 3 or out.shape[0] != target.shape[0] or out.shape[2:] != target.shape[1:]:
        raise ValueError(f"expected out BxCxHxW and target BxHxW of one size, got {tuple(out.shape)} and "
                         f"{tuple(target.shape)}")
    terms = {"out": F.cross_entropy(out, target, ignore_index=ignore_index)}
    if outputs.get("aux") is not None:
        terms["aux"] = aux_weight * F.cross_entropy(outputs["aux"], target, ignore_index=ignore_index)
    return terms


class SegmentationLoss(nn.Module):
    """:func:`segmentation_losses` as a module; ``forward`` returns the dict of named terms."""

    def __init__(self, *, aux_weight: float = 0.5, ignore_index: int = VOID):
        super().__init__()
        self.aux_weight, self.ignore_index = float(aux_weight), int(ignore_index)

    def forward(self, outputs: dict[str, torch.Tensor], target: torch.Tensor) -> dict[str, torch.Tensor]:
        return segmentation_losses(outputs, target, aux_weight=self.aux_weight, ignore_index=self.ignore_index)


def poly_lr_factor(step: int, total: int | None, power: float = 0.9) -> float:
    """``(1 − step/total)^power`` (0 past the end); 1 while ``total`` is unknown (a ``minutes`` run's first steps)."""
    if total is None:
        return 1.0
    return max(0.0, 1.0 - step / total) ** power


def param_groups(model: nn.Module, *, lr: float, aux_lr_mult: float = 10.0) -> list[dict[str, Any]]:
    """torchvision's groups: backbone + classifier at ``lr``, the aux classifier at ``aux_lr_mult · lr``."""
    groups = [{"params": [p for p in model.backbone.parameters() if p.requires_grad], "lr": lr, "base_lr": lr},
              {"params": [p for p in model.classifier.parameters() if p.requires_grad], "lr": lr, "base_lr": lr}]
    aux = getattr(model, "aux_classifier", None)
    if aux is not None:
        groups.append({"params": [p for p in aux.parameters() if p.requires_grad], "lr": lr * aux_lr_mult,
                       "base_lr": lr * aux_lr_mult})
    return groups


def recompute_bn_stats(model: nn.Module, batches, *, device: torch.device) -> int:
    """Replace every batch-norm layer's running statistics by their exact average over ``batches``.

    ``batches`` yields ``(B, 3, H, W)`` normalised images; the model runs in train mode without gradients, with
    ``momentum=None`` (cumulative average) on every BN layer, then the momenta are restored and the model is left in
    train mode. Returns the number of batches used. (detectron2 calls this "precise BN".)
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]  # noqa: SLF001
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    n = 0
    with torch.no_grad():
        for x in batches:
            model(x.to(device))
            n += 1
    for bn, m in zip(bns, momenta):
        bn.momentum = m
    return n


def _model_config(cfg: dict[str, Any], label_set, model: nn.Module) -> dict[str, Any]:
    from steadyseg.train.data import IMAGENET_MEAN, IMAGENET_STD
    from steadyseg.train.models import has_aux

    return {"architecture": cfg["architecture"], "num_classes": label_set.num_classes,
            "names": list(label_set.names), "label_set": label_set.name,
            "category_ids": list(label_set.category_ids), "aux_loss": has_aux(model),
            "width_mult": float(cfg["width_mult"]), "base_size": int(cfg["base_size"]),
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}


def _save_plot(path: Path, log_path: Path) -> None:
    from steadyseg.plots import pyplot, save_figure

    plt = pyplot()

    steps, losses, ev_steps, mious = [], [], [], []
    for line in log_path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec.get("type") == "step":
            steps.append(rec["step"])
            losses.append(rec["loss"])
        elif rec.get("type") == "eval" and rec.get("miou") is not None:
            ev_steps.append(rec["step"])
            mious.append(rec["miou"])
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, losses, color="tab:blue", lw=0.8, alpha=0.5, label="loss")
    if len(losses) >= 5:
        k = max(1, len(losses) // 50)
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, color="tab:blue", lw=1.5, label=f"loss (mean of {k})")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    if mious:
        ax2 = ax.twinx()
        ax2.plot(ev_steps, mious, "o-", color="tab:red", label="val mIoU")
        ax2.set_ylabel("validation mIoU")
        ax2.set_ylim(0, 1)
        ax2.legend(loc="center right")
    ax.legend(loc="upper left")
    ax.set_title("teacher training")
    save_figure(fig, path, dpi=100)


def _resolve(kwargs: dict[str, Any]) -> dict[str, Any]:
    unknown = set(kwargs) - set(TEACHER_DEFAULTS)
    if unknown:
        raise TypeError(f"train_teacher: unknown arguments {sorted(unknown)}")
    cfg = {**TEACHER_DEFAULTS, **kwargs}
    if cfg["minutes"] is not None and "epochs" not in kwargs:
        cfg["epochs"] = None  # a time budget alone: the schedule length is measured
    if cfg["epochs"] is None and cfg["minutes"] is None:
        raise ValueError("give epochs or minutes")
    if cfg["epochs"] is not None and cfg["epochs"] <= 0:
        raise ValueError(f"epochs must be > 0, got {cfg['epochs']}")
    if cfg["minutes"] is not None and cfg["minutes"] <= 0:
        raise ValueError(f"minutes must be > 0, got {cfg['minutes']}")
    if cfg["crop_size"] < 8 or cfg["base_size"] < 8:
        raise ValueError(f"base_size and crop_size must be >= 8, got {cfg['base_size']}, {cfg['crop_size']}")
    if cfg["batch_size"] < 2:
        raise ValueError("batch_size must be >= 2 (batch norm needs two samples per process)")
    if (cfg["val_annotations"] is None) != (cfg["val_images"] is None):
        raise ValueError("give both val_annotations and val_images, or neither")
    return cfg


def train_teacher(annotations: str | os.PathLike, images: str | os.PathLike, out: str | os.PathLike,
                  **kwargs: Any) -> dict[str, Any]:
    """Train (or fine-tune, or resume) a teacher; see the module doc for the recipe and the outputs.

    Args:
        annotations, images: the training COCO file and its image folder (targets: :mod:`coco_targets`).
        out: the run folder.
        **kwargs: any key of :data:`TEACHER_DEFAULTS` (unknown keys raise ``TypeError``):
            ``labels`` (voc21 | coco81 | file), ``split`` (train applies torchvision's area filter),
            ``architecture`` (:data:`~steadyseg.train.models.TEACHER_ARCHITECTURES`), ``aux_loss``,
            ``width_mult``, ``init`` (a local full or backbone checkpoint), ``epochs`` (float allowed) and/or
            ``minutes`` (time budget; alone, the schedule length is measured over the first steps),
            ``stop_at_step`` (stop early, checkpoint, and leave the schedule as planned), ``base_size``,
            ``crop_size``, ``min_scale``/``max_scale`` (random resize range, × base), ``hflip_prob``,
            ``batch_size`` (per process), ``lr``, ``momentum``, ``weight_decay``, ``lr_power``, ``aux_weight``,
            ``aux_lr_mult``, ``seed``, ``workers`` (DataLoader processes), ``device``, ``amp`` (CUDA only),
            ``val_annotations``/``val_images`` (evaluated every ``eval_every`` epochs and at the end),
            ``checkpoint_every`` (steps; checkpoints are also written at epoch ends, at most once a minute, and
            at the end),
            ``precise_bn`` (after training, recompute the batch-norm statistics as exact averages over this
            many training batches — torchvision's MobileNetV3 uses BN momentum 0.01, so short runs end with
            stale statistics; 0 = off, the reference recipe), ``resume``, ``progress``.

    Returns:
        the run record (also the last line of ``log.jsonl``): steps, epochs, images/s, final losses, last eval.
    """
    from steadyseg.datasets.coco_targets import CocoSemanticTargets
    from steadyseg.files import atomic_write_json, save_resolved_config
    from steadyseg.train.checkpoint import save_model, torch_load_safe
    from steadyseg.train.data import EpochSampler, SegmentationSamples, collate, steps_for
    from steadyseg.train.distributed import cleanup, init_distributed_mode, unwrap_model, wrap_ddp
    from steadyseg.train.models import build_teacher, load_init
    from steadyseg.train.run_state import checkpoint_path, gather_rng, resume_from, save_run_state, trim_log

    cfg = _resolve(kwargs)
    out = Path(out)
    ckpt_path = checkpoint_path(out)
    resume_state = None
    if cfg["resume"]:
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"{ckpt_path}: nothing to resume (no checkpoint in this run folder)")
        resume_state = torch_load_safe(ckpt_path, what="training checkpoint")
        saved = resume_state["config"]
        diff = sorted(k for k in set(saved) | set(cfg) if k not in _RESUME_FREE and saved.get(k) != cfg.get(k)
                      and k in kwargs)
        if diff:
            raise ValueError(f"{ckpt_path}: --resume with settings that differ from the run's: "
                             + ", ".join(f"{k}={cfg[k]!r} (run: {saved.get(k)!r})" for k in diff))
        data = {"annotations": str(Path(annotations).resolve()), "images": str(Path(images).resolve())}
        moved = [k for k, v in data.items() if resume_state.get("data", data)[k] != v]
        if moved:
            raise ValueError(f"{ckpt_path}: --resume with other {' and '.join(moved)} than the run's "
                             f"({', '.join(resume_state['data'][k] for k in moved)})")
        cfg = {**saved, **{k: cfg[k] for k in _RESUME_FREE}}
    elif ckpt_path.exists():
        raise ValueError(f"{ckpt_path}: the run folder already holds a training state; "
                         "use --resume to continue it or choose another --out")

    dist_info = init_distributed_mode(cfg["device"])
    device = dist_info.device
    main_proc = dist_info.is_main
    use_amp = bool(cfg["amp"]) and device.type == "cuda"
    torch.manual_seed(cfg["seed"] + dist_info.rank)
    random.seed(cfg["seed"])
    np.random.seed(cfg["seed"] % (2**32))

    try:
        train_set = CocoSemanticTargets(annotations, images, labels=cfg["labels"], split=cfg["split"])
        if len(train_set) == 0:
            raise ValueError(f"{annotations}: no training images left after filtering (split {cfg['split']!r})")
        samples = SegmentationSamples(train_set, train=True, base_size=cfg["base_size"], crop_size=cfg["crop_size"],
                                      min_scale=cfg["min_scale"], max_scale=cfg["max_scale"],
                                      hflip_prob=cfg["hflip_prob"], seed=cfg["seed"],
                                      target_cache=out / "cache" / "targets")
        val_samples = None
        if cfg["val_annotations"] is not None:
            val_set = CocoSemanticTargets(cfg["val_annotations"], cfg["val_images"], labels=cfg["labels"],
                                          split="val")
            if val_set.label_set.names != train_set.label_set.names:
                raise ValueError(f"{cfg['val_annotations']}: its {cfg['labels']} classes differ from the training "
                                 "file's")
            val_samples = SegmentationSamples(val_set, train=False, base_size=cfg["base_size"],
                                              crop_size=cfg["crop_size"], target_cache=out / "cache" / "val-targets")

        model = build_teacher(cfg["architecture"], num_classes=train_set.label_set.num_classes,
                              aux_loss=cfg["aux_loss"], width_mult=cfg["width_mult"])
        init_kind = "none"
        if cfg["init"] is not None and resume_state is None:
            init_kind = load_init(model, cfg["init"])
        model.to(device)
        optimizer = torch.optim.SGD(param_groups(model, lr=cfg["lr"], aux_lr_mult=cfg["aux_lr_mult"]),
                                    lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        criterion = SegmentationLoss(aux_weight=cfg["aux_weight"])

        sampler_probe = EpochSampler(len(samples), batch_size=cfg["batch_size"], seed=cfg["seed"],
                                     num_replicas=dist_info.world_size, rank=dist_info.rank)
        per_epoch = sampler_probe.batches_per_epoch
        total_steps = steps_for(cfg["epochs"], per_epoch) if cfg["epochs"] is not None else None
        step, elapsed_before = 0, 0.0
        if resume_state is not None:
            step, elapsed_before = resume_from(resume_state, model, optimizer, dist_info.rank)
            scaler.load_state_dict(resume_state["scaler"])
            total_steps = resume_state["total_steps"]
        model = wrap_ddp(model, dist_info, device)

        sampler = EpochSampler(len(samples), batch_size=cfg["batch_size"], seed=cfg["seed"],
                               num_replicas=dist_info.world_size, rank=dist_info.rank,
                               start_epoch=step // per_epoch, start_batch=step % per_epoch)
        loader = torch.utils.data.DataLoader(
            samples, batch_size=cfg["batch_size"], sampler=sampler, num_workers=int(cfg["workers"]),
            collate_fn=collate, generator=torch.Generator().manual_seed(cfg["seed"]),
            pin_memory=device.type == "cuda", persistent_workers=False)

        log_path = out / "log.jsonl"
        if main_proc:
            out.mkdir(parents=True, exist_ok=True)
            save_resolved_config(out, {**cfg, "annotations": str(annotations), "images": str(images),
                                       "init_kind": init_kind, "world_size": dist_info.world_size,
                                       "device": str(device), "amp_used": use_amp})
            if resume_state is not None:  # drop log lines after the restored step
                trim_log(log_path, step)
        log_file = open(log_path, "a", encoding="utf-8") if main_proc else None  # noqa: SIM115

        def log(rec: dict[str, Any]) -> None:
            if log_file is not None:
                log_file.write(json.dumps(rec) + "\n")
                log_file.flush()

        def checkpoint() -> None:
            rng = gather_rng(dist_info)
            if main_proc:
                state = {"model": unwrap_model(model).state_dict(), "optimizer": optimizer.state_dict(),
                         "scaler": scaler.state_dict(), "step": step, "total_steps": total_steps,
                         "epoch": step // per_epoch, "elapsed_s": elapsed_before + (time.perf_counter() - t_start),
                         "rng": rng, "config": cfg, "data": {"annotations": str(Path(annotations).resolve()),
                                                             "images": str(Path(images).resolve())}}
                save_run_state(out, state)

        def evaluate() -> dict[str, Any] | None:
            if val_samples is None:
                return None
            from steadyseg.train.evaluate import evaluate_samples

            res = evaluate_samples(unwrap_model(model), val_samples, device=device, amp=use_amp, progress=False,
                                   distributed=dist_info.distributed)
            model.train()
            rec = {"type": "eval", "step": step, "epoch": step / per_epoch, "miou": res["miou"],
                   "pixel_accuracy": res["pixel_accuracy"]}
            log(rec)
            return rec

        budget = None if cfg["minutes"] is None else cfg["minutes"] * 60.0 - elapsed_before
        last_step = total_steps if cfg["stop_at_step"] is None else min(
            int(cfg["stop_at_step"]), total_steps if total_steps is not None else int(cfg["stop_at_step"]))
        eval_period = None if cfg["eval_every"] is None else max(1, int(round(cfg["eval_every"] * per_epoch)))
        bar = None
        if cfg["progress"] and main_proc:
            from tqdm.auto import tqdm

            bar = tqdm(total=last_step, initial=step, desc="train teacher", unit="step", dynamic_ncols=True)
        model.train()
        t_start = t_checkpoint = time.perf_counter()
        t_timing = None
        step_at_timing = step
        images_seen = 0
        last_eval = None
        terms_f: dict[str, float] = {}
        stop_reason = "schedule"
        data_iter = iter(loader)
        while last_step is None or step < last_step:
            if budget is not None and time.perf_counter() - t_start >= budget:
                stop_reason = "time budget"
                break
            images_t, targets_t = next(data_iter)
            images_t = images_t.to(device, non_blocking=True)
            targets_t = targets_t.to(device, non_blocking=True)
            factor = poly_lr_factor(step, total_steps, cfg["lr_power"])
            for g in optimizer.param_groups:
                g["lr"] = g["base_lr"] * factor
            with torch.autocast(device_type=device.type, enabled=use_amp):
                outputs = model(images_t)
                terms = criterion(outputs, targets_t)
                loss = sum(terms.values())
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            images_seen += images_t.shape[0]
            terms_f = {k: float(v.detach()) for k, v in terms.items()}
            loss_f = float(loss.detach())
            if not math.isfinite(loss_f):
                raise FloatingPointError(f"training loss became {loss_f} at step {step} (terms {terms_f}); "
                                         "lower lr or check the data")
            log({"type": "step", "step": step, "epoch": step / per_epoch, "lr": optimizer.param_groups[0]["lr"],
                 "loss": loss_f, **{f"loss_{k}": v for k, v in terms_f.items()}})
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_f:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
            # a time budget alone: measure the step time over steps 3..8, then fix the schedule's length
            if total_steps is None:
                if step - step_at_timing == 2:
                    t_timing = time.perf_counter()
                elif step - step_at_timing == 8:
                    per_step = (time.perf_counter() - t_timing) / 6
                    remaining = budget - (time.perf_counter() - t_start)
                    total_steps = step + max(1, int(remaining / per_step))
                    if cfg["stop_at_step"] is None:
                        last_step = total_steps
                    if bar is not None:
                        bar.total = last_step
                        bar.refresh()
            if eval_period and step % eval_period == 0 and step != last_step:
                last_eval = evaluate()
            # epoch ends checkpoint at most once a minute (tiny epochs would spend their time saving); checkpoints
            # never change the training itself
            if (cfg["checkpoint_every"] and step % int(cfg["checkpoint_every"]) == 0) or (
                    step % per_epoch == 0 and time.perf_counter() - t_checkpoint >= CHECKPOINT_MIN_INTERVAL_S):
                checkpoint()
                t_checkpoint = time.perf_counter()
        if bar is not None:
            bar.close()
        if cfg["precise_bn"]:
            recompute_bn_stats(unwrap_model(model), (next(data_iter)[0] for _ in range(int(cfg["precise_bn"]))),
                               device=device)
        del data_iter
        wall = time.perf_counter() - t_start
        checkpoint()
        if val_samples is not None:
            last_eval = evaluate()
        record = {"type": "done", "step": step, "total_steps": total_steps, "epochs": step / per_epoch,
                  "stop_reason": stop_reason if stop_reason != "schedule" or total_steps is None or step >= total_steps
                  else "stop_at_step",
                  "wall_s": wall, "images_per_s": images_seen * dist_info.world_size / wall if wall > 0 else None,
                  "final_loss_terms": terms_f, "eval": last_eval, "init": init_kind,
                  "world_size": dist_info.world_size, "device": str(device), "amp": use_amp}
        if main_proc:
            base = unwrap_model(model)
            save_model(out / "model.pt", kind="teacher", config=_model_config(cfg, train_set.label_set, base),
                       state_dict=base.state_dict())
            log(record)
            log_file.close()
            _save_plot(out / "curves.png", log_path)
            atomic_write_json(out / "run.json", record)
        return record
    finally:
        cleanup(dist_info)
