"""Train a video model on annotated video, and fine-tune it with the consistency loss (paper §5.5, Fig. 10).

Each step draws ``batch_size`` random clips of ``clip_length`` (T) consecutive frames per process
(:func:`steadyseg.train.decoder_data.sample_window`: a uniform draw over every clip of every video, the same
random crop and horizontal flip for every frame of a clip, flows transformed with it) and minimises, per clip,

    data        = CE(logits, annotation)  (void 255 ignored)  + soft_iou_weight · (1 − soft IoU of the foreground
                  classes)
    consistency = consistency_weight · mean over the ordered pairs with 1 ≤ |p − q| ≤ pair_window of
                  steadyseg.losses.consistency_loss (the pair window of the measure, K = 3 by default)

averaged over the clips (DDP with P processes equals one process with P times the batch). With
``consistency_weight = 0`` no flow is computed and the run is plain supervised training (bit-identical to a run
that never heard of the consistency loss). Adam (default) or SGD with momentum, constant learning rate.

An **epoch** is ``clips_per_epoch`` clips (default: the annotated frames of all videos divided by T, so every frame
is seen about once per epoch). The budget is ``epochs`` and/or ``minutes`` (the first reached stops).

Outputs under ``out`` (process 0)::

    model.pt              final weights + config (kind "video-model"), what `steadyseg predict` reads
    epoch-000.pt          the starting model (random init, or --init / --checkpoint weights)
    epoch-NNN.pt          the model after each epoch, for the accuracy–consistency curve (`steadyseg bench tradeoff`)
    checkpoints/last.pt   resumable state: model, optimiser, step, elapsed time, RNG states, config
    log.jsonl             one JSON object per step (every loss term, lr, epoch, the clips) and a final "done" record
    run.json              the final record
    config.yaml           the resolved configuration
    cache/flow/           the flow cache (consistency fine-tuning; unless ``cache_dir`` points elsewhere)

Resuming (``resume=True``) restores ``checkpoints/last.pt``; clips depend only on ``(seed, step, index)``, so a
resumed run gives the weights of an uninterrupted one. ``epochs`` and ``minutes`` may change when resuming.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["VIDEO_MODEL_DEFAULTS", "video_model_losses", "VideoModelLoss", "train_video_model", "epoch_path"]

VIDEO_MODEL_DEFAULTS: dict[str, Any] = {
    # the model: the reference 3D-conv network, or a user factory "module:factory" / "file.py:factory"
    "model": "reference",
    "model_args": None,       # keyword arguments of a user factory
    "adapter": None,          # adapter options (steadyseg.train.video_model.ADAPTER_DEFAULTS) overriding the model's
    "backbone": "r3d_18",     # reference model: r3d_18 / mc3_18 / r2plus1d_18
    "backbone_checkpoint": None,  # reference model: local torchvision backbone weights
    "decoder_channels": 64,   # reference model: decoder width
    "checkpoint": None,       # weights for the model (any state dict; strict, mismatches listed)
    "init": None,             # a RUN/model.pt of kind video-model to start from (consistency fine-tuning)
    # data
    "clip_length": 8,
    "size": None,             # (h, w) training size; None = the videos' size
    "crop": None,             # (h, w) random crop of the training-size clips
    "hflip_prob": 0.5,
    "binary": False,          # every object id is foreground (DAVIS-2016 / salient-object style)
    "num_classes": None,      # None: from the annotations (max label + 1, at least 2) or the --init model
    # loss
    "consistency_weight": 0.0,
    "pair_window": 3,
    "soft_iou_weight": 0.0,
    # optimiser and budget
    "optimizer": "adam",
    "lr": None,               # None: 1e-3 (training from scratch) or 1e-4 (init / checkpoint given)
    "momentum": 0.9,
    "weight_decay": 0.0,
    "batch_size": 1,          # clips per step per process
    "clips_per_epoch": None,
    "epochs": None,
    "minutes": None,
    "seed": 0,
    # flow (consistency term)
    "flow": "dis",
    "preset": "medium",
    "cache_dir": None,
    "flow_jobs": 1,
    # runtime
    "device": None,
    "amp": True,              # bfloat16 autocast on CUDA
    "resume": False,
    "progress": True,
}
_RESUME_FREE = {"resume", "progress", "epochs", "minutes", "device", "flow_jobs", "cache_dir", "amp"}


def epoch_path(out: str | os.PathLike, epoch: int) -> Path:
    """``out/epoch-NNN.pt``: the model after ``epoch`` epochs (0: the starting model)."""
    return Path(out) / f"epoch-{int(epoch):03d}.pt"


def video_model_losses(logits: Tensor, labels: Tensor, flows: dict[tuple[int, int], Tensor] | None = None,
                       valid: dict[tuple[int, int], Tensor] | None = None, *, consistency_weight: float = 0.0,
                       soft_iou_weight: float = 0.0, pair_window: int = 3) -> dict[str, Tensor]:
    """Named loss terms of one clip.

    Args:
        logits: ``(1, T, C, H, W)`` float logits.
        labels: ``(1, T, H, W)`` int64 annotation (255 = void, ignored).
        flows: ``{(p, q): (1, 2, H, W)}`` flow p→q in pixels for the pairs with ``|p − q| ≤ pair_window``
            (needed when ``consistency_weight > 0``).
        valid: ``{(p, q): (1, 1, H, W)}`` bool ``M[p→q]`` on q's pixels (computed from the flows when ``None``).
        consistency_weight: W.
        soft_iou_weight: weight of ``1 − soft IoU`` (mean over the foreground classes 1 … C−1).
        pair_window: K of the consistency term's pairs.

    Returns:
        ``{"data", "soft_iou", "consistency" (each already weighted; absent when its weight is 0), "total",
        "valid_fraction" (consistency only, detached)}``, scalar tensors.
    """
    from steadyseg.labels import VOID
    from steadyseg.losses import consistency_loss

    if logits.ndim != 5 or labels.shape != logits.shape[:2] + logits.shape[3:]:
        raise ValueError(f"expected logits 1×T×C×H×W and labels 1×T×H×W of one size, got {tuple(logits.shape)} "
                         f"and {tuple(labels.shape)}")
    logits = logits.float()
    terms: dict[str, Tensor] = {}
    data = F.cross_entropy(logits.flatten(0, 1), labels.flatten(0, 1), ignore_index=VOID)
    terms["data"] = torch.nan_to_num(data, nan=0.0)  # every pixel void
    probs = logits.softmax(dim=2)
    if soft_iou_weight > 0:
        keep = (labels != VOID).unsqueeze(2).to(probs.dtype)
        onehot = F.one_hot(labels.clamp(max=logits.shape[2] - 1), logits.shape[2]).permute(0, 1, 4, 2, 3)
        onehot = onehot.to(probs.dtype) * keep
        p = probs * keep
        inter = (p * onehot).sum(dim=(0, 1, 3, 4))[1:]
        union = (p + onehot - p * onehot).sum(dim=(0, 1, 3, 4))[1:]
        terms["soft_iou"] = float(soft_iou_weight) * (1.0 - (inter / union.clamp(min=1e-6))).mean()
    if consistency_weight > 0:
        if not flows:
            raise ValueError("consistency_weight > 0 needs the clip's flows")
        cons = consistency_loss(probs, flows, valid, pairs=int(pair_window))
        terms["consistency"] = float(consistency_weight) * cons["consistency"]
        valid_fraction = cons["valid_fraction"]
    terms["total"] = sum(terms.values())
    if consistency_weight > 0:
        terms["valid_fraction"] = valid_fraction
    return terms


class VideoModelLoss(nn.Module):
    """:func:`video_model_losses` as a module: ``forward(logits, labels, flows=None, valid=None)``."""

    def __init__(self, *, consistency_weight: float = 0.0, soft_iou_weight: float = 0.0, pair_window: int = 3):
        super().__init__()
        if consistency_weight < 0 or soft_iou_weight < 0:
            raise ValueError(f"loss weights must be >= 0, got consistency {consistency_weight}, "
                             f"soft IoU {soft_iou_weight}")
        if int(pair_window) < 1:
            raise ValueError(f"pair_window must be >= 1, got {pair_window}")
        self.consistency_weight, self.soft_iou_weight = float(consistency_weight), float(soft_iou_weight)
        self.pair_window = int(pair_window)

    def forward(self, logits: Tensor, labels: Tensor, flows=None, valid=None) -> dict[str, Tensor]:
        return video_model_losses(logits, labels, flows, valid, consistency_weight=self.consistency_weight,
                                  soft_iou_weight=self.soft_iou_weight, pair_window=self.pair_window)


def _resolve(kwargs: dict[str, Any]) -> dict[str, Any]:
    unknown = set(kwargs) - set(VIDEO_MODEL_DEFAULTS)
    if unknown:
        raise TypeError(f"train_video_model: unknown arguments {sorted(unknown)}")
    cfg = {**VIDEO_MODEL_DEFAULTS, **kwargs}
    if cfg["epochs"] is None and cfg["minutes"] is None:
        raise ValueError("give epochs or minutes (or both: whichever comes first stops the run)")
    if cfg["epochs"] is not None and float(cfg["epochs"]) < 0:
        raise ValueError(f"epochs must be >= 0, got {cfg['epochs']}")
    if cfg["minutes"] is not None and cfg["minutes"] <= 0:
        raise ValueError(f"minutes must be > 0, got {cfg['minutes']}")
    for key, low in (("clip_length", 1), ("batch_size", 1), ("pair_window", 1)):
        if int(cfg[key]) < low:
            raise ValueError(f"{key} must be >= {low}, got {cfg[key]}")
    if cfg["clips_per_epoch"] is not None and int(cfg["clips_per_epoch"]) < 1:
        raise ValueError(f"clips_per_epoch must be >= 1, got {cfg['clips_per_epoch']}")
    if cfg["consistency_weight"] < 0 or cfg["soft_iou_weight"] < 0:
        raise ValueError("consistency_weight and soft_iou_weight must be >= 0")
    if cfg["optimizer"] not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {cfg['optimizer']!r}")
    if cfg["init"] is not None:
        clash = [k for k in ("model", "model_args", "backbone", "backbone_checkpoint", "decoder_channels",
                             "checkpoint", "adapter") if k in kwargs and kwargs[k] != VIDEO_MODEL_DEFAULTS[k]]
        if clash:
            raise ValueError(f"init {cfg['init']}: the model comes from it; do not also give {clash}")
        cfg["init"] = str(cfg["init"])
    if cfg["lr"] is None:
        cfg["lr"] = 1e-4 if (cfg["init"] is not None or cfg["checkpoint"] is not None) else 1e-3
    for key in ("size", "crop"):
        if cfg[key] is not None:
            if len(cfg[key]) != 2 or min(int(v) for v in cfg[key]) < 8:
                raise ValueError(f"{key} must be two integers (H W) >= 8, got {cfg[key]}")
            cfg[key] = [int(v) for v in cfg[key]]
    for key in ("checkpoint", "backbone_checkpoint"):
        cfg[key] = None if cfg[key] is None else str(cfg[key])
    return cfg


def _annotation_classes(masks_dirs: Sequence[str], binary: bool) -> int:
    from steadyseg.datasets.masks import open_masks
    from steadyseg.labels import VOID

    top = 1
    for folder in masks_dirs:
        m = open_masks(folder, binary=binary)
        if m.reading == "soft-probs":
            raise ValueError(f"{m.source}: annotations must be label masks (PNGs), not probabilities")
        top = max(top, max(int(lab[lab != VOID].max(initial=0)) for lab in m))
    return top + 1


def _build_model(cfg: dict[str, Any], num_classes: int) -> tuple[nn.Module, dict[str, Any]]:
    """The model to train and its ``model.pt`` config (without the data keys)."""
    from steadyseg.train.checkpoint import read_model
    from steadyseg.train.video_model import build_user_model, build_video_model_from_config, load_user_weights

    if cfg["init"] is not None:
        kind, config, sd = read_model(cfg["init"])
        if kind != "video-model":
            raise ValueError(f"{cfg['init']}: a {kind} model, not a video model (steadyseg train video-model)")
        if int(config["num_classes"]) < num_classes:
            raise ValueError(f"{cfg['init']}: the model has {config['num_classes']} classes but the annotations "
                             f"have {num_classes}")
        model = build_video_model_from_config(config)
        model.load_state_dict(sd, strict=True)
        keep = ("model", "model_args", "adapter", "backbone", "decoder_channels", "num_classes")
        return model, {k: config[k] for k in keep if k in config}
    if cfg["model"] == "reference":
        from steadyseg.train.video_reference import build_reference_model

        model = build_reference_model(backbone=cfg["backbone"], num_classes=num_classes,
                                      decoder_channels=int(cfg["decoder_channels"]),
                                      backbone_checkpoint=cfg["backbone_checkpoint"], adapter=cfg["adapter"])
        config = {"model": "reference", "backbone": cfg["backbone"], "decoder_channels": int(cfg["decoder_channels"])}
    else:
        model = build_user_model(cfg["model"], model_args=cfg["model_args"], num_classes=num_classes,
                                 adapter=cfg["adapter"])
        config = {"model": cfg["model"], "model_args": dict(cfg["model_args"] or {})}
    if cfg["checkpoint"] is not None:
        load_user_weights(model.model, cfg["checkpoint"])
    config.update({"adapter": dict(model.options), "num_classes": num_classes})
    return model, config


def train_video_model(videos: Sequence[tuple[str | os.PathLike, str | os.PathLike]], out: str | os.PathLike, *,
                      flows: Sequence[Callable[[int, int], np.ndarray]] | None = None, **kwargs: Any
                      ) -> dict[str, Any]:
    """Train (or resume, or fine-tune) a video model on annotated videos; see the module doc.

    Args:
        videos: ``(frames folder, annotation folder)`` pairs, matched in order; each annotation folder holds one
            label mask per frame (any format :func:`~steadyseg.datasets.masks.open_masks` reads), of the same size.
        out: the run folder.
        flows: optional exact flows, one ``flows(p, q) → (H, W, 2)`` per video at full size, instead of optical
            flow (synthetic videos, tests).
        **kwargs: any key of :data:`VIDEO_MODEL_DEFAULTS` (unknown keys raise ``TypeError``).

    Returns:
        the run record (also ``run.json`` and the last line of ``log.jsonl``).

    Raises:
        ValueError: a video shorter than the clip length, frame/annotation mismatches (both folders named),
            a factory that cannot be imported, a checkpoint that does not fit (mismatches listed).
    """
    from steadyseg.datasets.masks import open_masks
    from steadyseg.datasets.video import open_video
    from steadyseg.train.checkpoint import save_model
    from steadyseg.train.decoder_data import load_decoder_video, sample_window, teacher_format
    from steadyseg.train.distributed import cleanup, init_distributed_mode, unwrap_model, wrap_ddp
    from steadyseg.train.loop import Checkpointer, RunFiles, progress_bar, reduce_terms, step_record
    from steadyseg.train.run_state import open_run_state, resume_from

    videos = [(str(f), str(m)) for f, m in videos]
    if not videos:
        raise ValueError("train_video_model: give at least one (frames, masks) pair")
    if flows is not None and len(flows) != len(videos):
        raise ValueError(f"train_video_model: {len(flows)} flow functions for {len(videos)} videos")
    cfg = _resolve(kwargs)
    t_len = int(cfg["clip_length"])
    for f, _ in videos:  # before any flow is computed
        n = len(open_video(f))
        if n < t_len:
            raise ValueError(f"{f}: {n} frames, fewer than the clip length {t_len} (lower --clip-length)")
    cfg, resume_state = open_run_state(out, cfg, kwargs, resume=bool(cfg["resume"]), free=_RESUME_FREE,
                                       identity={"videos": videos})
    out = Path(out)
    dist_info = init_distributed_mode(cfg["device"])
    device, main_proc = dist_info.device, dist_info.is_main
    torch.manual_seed(cfg["seed"])  # the same initial weights in every process
    random.seed(cfg["seed"])
    np.random.seed(cfg["seed"] % (2**32))
    try:
        num_classes = int(cfg["num_classes"]) if cfg["num_classes"] is not None else _annotation_classes(
            [m for _, m in videos], cfg["binary"])
        model, model_config = _build_model(cfg, num_classes)
        num_classes = int(model_config["num_classes"])
        cfg["num_classes"] = num_classes
        consistency = float(cfg["consistency_weight"]) > 0
        pair_window = min(int(cfg["pair_window"]), t_len - 1) if consistency else 0
        cache_dir = cfg["cache_dir"] if cfg["cache_dir"] is not None else out / "cache" / "flow"
        data = [load_decoder_video(f, m, inputs=t_len, num_classes=num_classes, size=cfg["size"], confidence=1.0,
                                   binary=cfg["binary"], flows=None if flows is None else flows[k],
                                   flow_backend=cfg["flow"], flow_preset=cfg["preset"],
                                   cache_dir=cache_dir if flows is None and consistency else None,
                                   n_jobs=int(cfg["flow_jobs"]), progress=bool(cfg["progress"]) and main_proc,
                                   pair_window=pair_window)
                for k, (f, m) in enumerate(videos)]
        for v in data:
            if v.labels is None:
                raise ValueError(f"{v.teacher_source}: annotations must be label masks (PNGs), not probabilities")
        fmt = ({"reading": "davis2016-binary", "palette": None} if cfg["binary"]
               else teacher_format(open_masks(videos[0][1])))
        model_config.update({"size": cfg["size"], "clip_length": t_len, "binary": bool(cfg["binary"]),
                             "names": ["background"] + [f"object {k}" for k in range(1, num_classes)],
                             "mask_reading": fmt["reading"], "mask_palette": fmt["palette"]})
        model = model.to(device)
        params = [p for p in model.parameters() if p.requires_grad]
        if cfg["optimizer"] == "adam":
            optimizer = torch.optim.Adam(params, lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]))
        else:
            optimizer = torch.optim.SGD(params, lr=float(cfg["lr"]), momentum=float(cfg["momentum"]),
                                        weight_decay=float(cfg["weight_decay"]))
        criterion = VideoModelLoss(consistency_weight=cfg["consistency_weight"],
                                   soft_iou_weight=cfg["soft_iou_weight"], pair_window=max(pair_window, 1))
        local = int(cfg["batch_size"])
        clips_per_epoch = int(cfg["clips_per_epoch"] or max(1, sum(len(v) for v in data) // t_len))
        steps_per_epoch = max(1, math.ceil(clips_per_epoch / (local * dist_info.world_size)))
        step, elapsed_before = 0, 0.0
        if resume_state is not None:
            step, elapsed_before = resume_from(resume_state, model, optimizer, dist_info.rank)
        elif main_proc:
            save_model(epoch_path(out, 0), kind="video-model", config=model_config, state_dict=model.state_dict())
        model = wrap_ddp(model, dist_info, device)
        files = RunFiles.open(out, main=main_proc, resume_step=None if resume_state is None else step,
                              config_record={**cfg, "videos": [list(v) for v in videos],
                                             "exact_flows": flows is not None, "world_size": dist_info.world_size,
                                             "device": str(device), "clips_per_epoch": clips_per_epoch,
                                             "steps_per_epoch": steps_per_epoch, "model_config": model_config})
        last_step = None if cfg["epochs"] is None else int(round(float(cfg["epochs"]) * steps_per_epoch))
        bar = progress_bar(bool(cfg["progress"]) and main_proc, total=last_step, initial=step,
                           desc="train video-model")
        crop = None if cfg["crop"] is None else tuple(cfg["crop"])
        amp = bool(cfg["amp"]) and device.type == "cuda"
        model.train()
        saver = Checkpointer(out, dist_info, model, optimizer, config=cfg, videos=videos,
                             elapsed_before=elapsed_before)
        t_start = saver.started
        terms_f: dict[str, float] = {}
        stop_reason = "epochs"
        while last_step is None or step < last_step:
            if saver.over_budget(cfg["minutes"]):
                stop_reason = "time budget"
                break
            clips = [sample_window(data, inputs=t_len, seed=int(cfg["seed"]), step=step,
                                   index=dist_info.rank * local + k, crop=crop, hflip_prob=cfg["hflip_prob"],
                                   pair_window=pair_window)
                     for k in range(local)]
            frames = torch.stack([c.frames for c in clips]).to(device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(frames)
            per_clip = [criterion(logits[k:k + 1], c.labels[None].to(device),
                                  {pq: f.to(device) for pq, f in c.flows.items()} if consistency else None,
                                  {pq: m.to(device) for pq, m in c.valid.items()} if consistency else None)
                        for k, c in enumerate(clips)]
            terms = {name: torch.stack([t[name] for t in per_clip]).mean() for name in per_clip[0]}
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            optimizer.step()
            step += 1
            terms_f = reduce_terms(terms, dist_info, step=step)
            files.log(step_record(step, optimizer, terms_f, epoch=step / steps_per_epoch,
                                  clips=[[c.video, c.start] for c in clips]))
            if bar is not None:
                bar.update(1)
                bar.set_postfix({"epoch": f"{step / steps_per_epoch:.2f}",
                                 **{k[:5]: f"{v:.4f}" for k, v in terms_f.items() if k != "valid_fraction"}})
            if step % steps_per_epoch == 0:
                if main_proc:
                    save_model(epoch_path(out, step // steps_per_epoch), kind="video-model", config=model_config,
                               state_dict=unwrap_model(model).state_dict())
                saver.save(step)
        if bar is not None:
            bar.close()
        wall = time.perf_counter() - t_start
        saver.save(step)
        done_steps = step - (int(resume_state["step"]) if resume_state else 0)
        record = {"type": "done", "step": step, "epoch": step / steps_per_epoch, "stop_reason": stop_reason,
                  "wall_s": wall, "clips_per_s": done_steps * local * dist_info.world_size / wall if wall > 0 else None,
                  "steps_per_epoch": steps_per_epoch, "final_loss_terms": terms_f,
                  "world_size": dist_info.world_size, "device": str(device), "num_classes": num_classes}
        files.finish(kind="video-model", model_config=model_config, model=model, record=record)
        return record
    finally:
        cleanup(dist_info)
