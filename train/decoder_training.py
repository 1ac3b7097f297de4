"""Train the multi-input decoder on unlabeled video with the flow-consistency loss (paper §5.1).

Each step draws ``batch_size`` random windows of ``inputs`` (N) consecutive frames per process
(:func:`steadyseg.train.decoder_data.sample_window`) and minimises, per window,

    consistency = mean over all N·(N−1) ordered pairs of steadyseg.losses.consistency_loss (validity masks cached)
    data        = lambda_data · CE(student logits, teacher)   (soft teachers: their probabilities as soft targets;
                  hard teachers: their labels, void ignored — the student's input for them is the labels softened
                  to ``confidence``, and one-hot targets let the data term agree with the consistency term on
                  sharpening, which soft 0.9 targets resist: on the synthetic test, soft targets let the output
                  drift to an all-background mask, labels kept it). ``data_target="vote"``: the target is the
                  teacher's flow vote instead (:func:`steadyseg.train.decoder_data.vote_target`: each frame averaged
                  with its neighbours warped by the training flows, optionally weighted by ``photometric_sigma``;
                  its argmax for hard teachers), a steadier and — on DAVIS — more accurate target than the teacher

averaged over the windows (each window is its own mean, so DDP with P processes equals one process with P times
the batch). ``balance="videos"`` draws every video equally often and multiplies a window's consistency term by its
video's weight (:func:`steadyseg.train.decoder_data.video_balance_weights` of the teachers' flicker, written to
``config.yaml`` as ``video_flicker`` / ``video_weights``): the loss then asks for the same *relative* gain on every
video instead of serving the worst-flickering one (the per-sequence target of the benchmark is relative). Adam with
a constant learning rate. ``objective="ti"`` trains the TI baseline instead (N = 1, :mod:`steadyseg.train.ti`) with
the same loop, outputs and resume.

Outputs under ``out`` (process 0)::

    model.pt              final weights + config (kind "decoder"), what `steadyseg predict` reads
    checkpoints/last.pt   resumable state: model, optimiser, step, elapsed time, RNG states, config
    log.jsonl             one JSON object per step (every loss term, valid fraction, lr) and a final "done" record
    run.json              the final record
    config.yaml           the resolved configuration
    cache/flow/           the flow cache (unless ``cache_dir`` points elsewhere)
    cache/features/       frozen backbone features (encoder "deeplabv3")

Resuming (``resume=True``) restores ``checkpoints/last.pt``; windows depend only on ``(seed, step, index)``, so
``2 + 2`` steps give the weights of 4 steps. ``steps`` and ``minutes`` may change when resuming.
"""

from __future__ import annotations

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

from steadyseg.pairs import PairSpec

__all__ = ["DECODER_DEFAULTS", "decoder_losses", "DecoderLoss", "train_decoder"]

DECODER_DEFAULTS: dict[str, Any] = {
    "inputs": 7,
    "causal": False,          # predict frame t from frames t-N+1..t only (the last output of each window)
    "flow_guided": False,     # the decoder also reads the neighbours' teacher outputs warped by flow
    "base": "teacher",        # what the correction is added to: "teacher", or "vote" (flow-guided: the flow vote)
    "photometric_sigma": None,  # flow-guided: weight each warped neighbour by its colour match (σ), None = 0/1 valid
    "data_target": "teacher",  # the data term's target: "teacher" (the paper) or "vote" (the teacher's flow vote)
    "loss_photometric_sigma": None,  # weight each pixel pair of the consistency loss by its colour match (σ)
    "encoder": "small",       # "small" (from scratch) or "deeplabv3" (frozen backbone of encoder_checkpoint)
    "encoder_checkpoint": None,
    "width": 16,
    "hidden": 16,
    "eps": 1e-4,
    "size": None,             # (h, w) training size; None = the videos' size
    "crop": None,             # (h, w) random crop of the training-size frames; None = whole frames
    "hflip_prob": 0.5,
    "confidence": 0.9,        # label probability of hard teacher masks
    "binary": False,
    "num_classes": None,      # None: from the teachers (soft: their channels; hard: max label + 1, at least 2)
    "lambda_data": 0.5,
    "balance": "windows",     # "windows" (the paper: uniform over all windows) or "videos" (uniform videos, weighted)
    "balance_power": 1.0,     # balance "videos": weights ∝ (1 / teacher flicker) ** power (0: unweighted)
    "objective": "consistency",  # "consistency" (the paper's flow loss) or "ti" (the TI baseline, inputs = 1)
    "alpha": 0.95,            # TI: weight of the transform-invariance term
    "lr": 1e-3,
    "batch_size": 1,          # windows per step per process
    "steps": None,
    "minutes": None,
    "seed": 0,
    "flow": "dis",
    "preset": "medium",
    "cache_dir": None,        # None: out/cache/flow
    "flow_jobs": 1,
    "checkpoint_every": 50,
    "device": None,
    "amp": True,              # bfloat16 autocast of the forward pass on CUDA (losses in float32)
    "resume": False,
    "progress": True,
}
# keys that may differ between a run and its resumption
_RESUME_FREE = {"resume", "progress", "steps", "minutes", "device", "checkpoint_every", "flow_jobs", "cache_dir",
                "amp"}


def decoder_losses(logits: Tensor, targets: Tensor, flows: dict[tuple[int, int], Tensor],
                   valid: dict[tuple[int, int], Tensor] | None = None, *, lambda_data: float = 0.5,
                   pairs: PairSpec = "all") -> dict[str, Tensor]:
    """Named loss terms of one window.

    Args:
        logits: ``(1, N, C, H, W)`` student logits.
        targets: the data term's targets: ``(1, N, C, H, W)`` float teacher probabilities (soft targets) or
            ``(1, N, H, W)`` int64 teacher labels (255 = void, ignored).
        flows: ``{(p, q): (1, 2, H, W)}`` flow p→q in pixels for every ordered pair used.
        valid: ``{(p, q): (1, 1, H, W)}`` bool ``M[p→q]`` on q's pixels (computed from the flows when ``None``).
        lambda_data: weight of the data term.
        pairs: ordered pairs of the consistency term (:func:`steadyseg.losses.select_pairs`).

    Returns:
        ``{"consistency", "data" (already × lambda_data), "total" (their sum), "valid_fraction" (detached, not a
        loss term)}``, scalar tensors.
    """
    from steadyseg.losses import consistency_loss

    from steadyseg.labels import VOID

    logits = logits.float()  # the loss in float32 also under autocast
    soft = torch.is_floating_point(targets)
    if logits.ndim != 5 or targets.shape != (logits.shape if soft else logits.shape[:2] + logits.shape[3:]):
        raise ValueError(f"expected logits 1×N×C×H×W and targets 1×N×C×H×W (probabilities) or 1×N×H×W (labels) of "
                         f"one size, got {tuple(logits.shape)} and {tuple(targets.shape)}")
    cons = consistency_loss(logits.softmax(dim=2), flows, valid, pairs=pairs)
    if soft:
        data = F.cross_entropy(logits.flatten(0, 1), targets.flatten(0, 1).to(logits.dtype))
    else:
        data = F.cross_entropy(logits.flatten(0, 1), targets.flatten(0, 1), ignore_index=VOID)
        data = torch.nan_to_num(data, nan=0.0)  # every pixel void
    terms = {"consistency": cons["consistency"], "data": float(lambda_data) * data}
    terms["total"] = terms["consistency"] + terms["data"]
    terms["valid_fraction"] = cons["valid_fraction"]
    return terms


class DecoderLoss(nn.Module):
    """:func:`decoder_losses` as a module: ``forward(logits, targets, flows, valid=None)`` → dict of terms."""

    def __init__(self, *, lambda_data: float = 0.5, pairs: PairSpec = "all"):
        super().__init__()
        if lambda_data < 0:
            raise ValueError(f"lambda_data must be >= 0, got {lambda_data}")
        self.lambda_data, self.pairs = float(lambda_data), pairs

    def forward(self, logits: Tensor, targets: Tensor, flows, valid=None) -> dict[str, Tensor]:
        return decoder_losses(logits, targets, flows, valid, lambda_data=self.lambda_data, pairs=self.pairs)


def _ti_terms(model: nn.Module, criterion: nn.Module, frames: Tensor, probs: Tensor, targets: list[Tensor], *,
              seed: int, step: int, first_index: int) -> list[dict[str, Tensor]]:
    """TI terms of each single-frame window: ``T`` and the noise drawn from ``(seed, step, index, 1)``; ``x`` and
    ``T(x)`` go through the model in one forward pass (one DDP forward per backward)."""
    from steadyseg.train.ti import apply_transform, random_transform

    b, _, _, h, w = frames.shape
    rngs = [np.random.default_rng([seed, step, first_index + k, 1]) for k in range(b)]
    draws = [random_transform(r, height=h, width=w) for r in rngs]
    theta = torch.from_numpy(np.stack([d["theta"] for d in draws])).to(frames.device)
    noise = torch.from_numpy(np.stack([r.standard_normal((3, h, w), dtype=np.float32) * d["noise"]
                                       for r, d in zip(rngs, draws)])).to(frames.device)
    frames_t = (apply_transform(frames[:, 0], theta)[0] + noise).clamp(0.0, 1.0)
    probs_t = apply_transform(probs[:, 0], theta)[0]
    both = model(torch.cat([frames, frames_t[:, None]]), torch.cat([probs, probs_t[:, None]]))[:, 0]
    logits, logits_t = both[:b], both[b:]
    return [criterion(logits[k:k + 1], logits_t[k:k + 1], theta[k:k + 1],
                      targets[k][:, 0]) for k in range(b)]


def _resolve(kwargs: dict[str, Any]) -> dict[str, Any]:
    unknown = set(kwargs) - set(DECODER_DEFAULTS)
    if unknown:
        raise TypeError(f"train_decoder: unknown arguments {sorted(unknown)}")
    cfg = {**DECODER_DEFAULTS, **kwargs}
    if cfg["steps"] is None and cfg["minutes"] is None:
        raise ValueError("give steps or minutes (or both: whichever comes first stops the run)")
    if cfg["steps"] is not None and int(cfg["steps"]) < 0:
        raise ValueError(f"steps must be >= 0, got {cfg['steps']}")
    if cfg["minutes"] is not None and cfg["minutes"] <= 0:
        raise ValueError(f"minutes must be > 0, got {cfg['minutes']}")
    if int(cfg["inputs"]) < 1:
        raise ValueError(f"inputs must be >= 1, got {cfg['inputs']}")
    if int(cfg["batch_size"]) < 1:
        raise ValueError(f"batch_size must be >= 1, got {cfg['batch_size']}")
    from steadyseg.train.decoder import DECODER_BASES
    from steadyseg.train.decoder_data import DATA_TARGETS

    if cfg["base"] not in DECODER_BASES:
        raise ValueError(f"base must be one of {DECODER_BASES}, got {cfg['base']!r}")
    if cfg["base"] == "vote" and not cfg["flow_guided"]:
        raise ValueError("base 'vote' is the flow vote of the guide: it needs flow_guided (--flow-guided)")
    if cfg["data_target"] not in DATA_TARGETS:
        raise ValueError(f"data_target must be 'teacher' or 'vote', got {cfg['data_target']!r}")
    if cfg["data_target"] == "vote" and (int(cfg["inputs"]) < 3 or cfg["objective"] != "consistency"):
        raise ValueError("data_target 'vote' (the flow vote of the frame and its neighbours) needs inputs >= 3 and "
                         "the consistency objective")
    if cfg["photometric_sigma"] is not None:
        if not cfg["flow_guided"] and cfg["data_target"] != "vote":
            raise ValueError("photometric_sigma weights the warped neighbours of the guide or of the vote target: "
                             "it needs flow_guided (--flow-guided) or data_target 'vote' (--data-target vote)")
        if not float(cfg["photometric_sigma"]) > 0:
            raise ValueError(f"photometric_sigma must be > 0, got {cfg['photometric_sigma']}")
        cfg["photometric_sigma"] = float(cfg["photometric_sigma"])
    if cfg["loss_photometric_sigma"] is not None:
        if not float(cfg["loss_photometric_sigma"]) > 0:
            raise ValueError(f"loss_photometric_sigma must be > 0, got {cfg['loss_photometric_sigma']}")
        if cfg["objective"] != "consistency" or cfg["encoder"] != "small":
            raise ValueError("loss_photometric_sigma weights the consistency loss by frame colours: it needs the "
                             "consistency objective and the 'small' encoder (the frames themselves)")
        cfg["loss_photometric_sigma"] = float(cfg["loss_photometric_sigma"])
    if cfg["balance"] not in ("windows", "videos"):
        raise ValueError(f"balance must be 'windows' or 'videos', got {cfg['balance']!r}")
    if not 0.0 <= float(cfg["balance_power"]) <= 1.0:
        raise ValueError(f"balance_power must be in [0, 1], got {cfg['balance_power']}")
    if cfg["objective"] not in ("consistency", "ti"):
        raise ValueError(f"objective must be 'consistency' or 'ti', got {cfg['objective']!r}")
    if cfg["objective"] == "ti" and (int(cfg["inputs"]) != 1 or cfg["flow_guided"] or cfg["causal"]):
        raise ValueError("the TI baseline is the decoder with inputs=1 (no flow guide, not causal)")
    if cfg["encoder"] == "deeplabv3":
        if cfg["encoder_checkpoint"] is None:
            raise ValueError("encoder 'deeplabv3' needs encoder_checkpoint (--encoder-checkpoint PATH)")
        if "hflip_prob" not in kwargs:
            cfg["hflip_prob"] = 0.0  # cached backbone features cannot be flipped
        if cfg["crop"] is not None or cfg["hflip_prob"] > 0:
            raise ValueError("encoder 'deeplabv3' reads cached backbone features: no crop, hflip_prob 0")
        cfg["encoder_checkpoint"] = str(cfg["encoder_checkpoint"])
    elif cfg["encoder_checkpoint"] is not None:
        raise ValueError("encoder_checkpoint applies to encoder 'deeplabv3' only")
    for key in ("size", "crop"):
        if cfg[key] is not None:
            if len(cfg[key]) != 2 or min(int(v) for v in cfg[key]) < 8:
                raise ValueError(f"{key} must be two integers (H W) >= 8, got {cfg[key]}")
            cfg[key] = [int(v) for v in cfg[key]]
    return cfg


def _num_classes(teachers: Sequence[str | os.PathLike], binary: bool) -> int:
    """The class count of the teachers: the largest of soft → channels, hard → max label + 1 (at least 2).

    A soft teacher with fewer channels is then refused by :func:`~steadyseg.train.decoder_data.read_teacher_probs`
    (the error names its folder)."""
    from steadyseg.datasets.masks import open_masks
    from steadyseg.labels import VOID

    counts = []
    for t in teachers:
        m = open_masks(t, binary=binary)
        if m.reading == "soft-probs":
            counts.append(int(m.probs(0).shape[0]))
        else:
            counts.append(max(2, max(int(lab[lab != VOID].max(initial=0)) for lab in m) + 1))
    return max(counts)


def _model_config(cfg: dict[str, Any], num_classes: int, formats: list[dict[str, Any]], backbone) -> dict[str, Any]:
    return {"num_classes": num_classes, "inputs": int(cfg["inputs"]), "encoder": cfg["encoder"],
            "width": int(cfg["width"]), "hidden": int(cfg["hidden"]), "eps": float(cfg["eps"]),
            "size": cfg["size"], "confidence": float(cfg["confidence"]), "binary": bool(cfg["binary"]),
            "causal": bool(cfg["causal"]), "flow_guided": bool(cfg["flow_guided"]), "base": cfg["base"],
            "photometric_sigma": cfg["photometric_sigma"] if cfg["flow_guided"] else None,  # the guide's weights
            "flow": cfg["flow"], "preset": cfg["preset"],
            "feature_channels": None if backbone is None else backbone.channels,
            "encoder_checkpoint": cfg["encoder_checkpoint"],
            "encoder_sha256": None if backbone is None else backbone.sha256,
            "names": ["background"] + [f"object {k}" for k in range(1, num_classes)],
            "teacher_reading": formats[0]["reading"]}


def train_decoder(videos: Sequence[tuple[str | os.PathLike, str | os.PathLike]], out: str | os.PathLike, *,
                  flows: Sequence[Callable[[int, int], np.ndarray]] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Train (or resume) a multi-input decoder on unlabeled videos; see the module doc for the loss and outputs.

    Args:
        videos: ``(frames folder, teacher folder)`` pairs, matched in order; each teacher holds one mask (PNG) or
            probability array (``.npy``/``.npz``) per frame of its video, of the same size.
        out: the run folder.
        flows: optional exact flows, one ``flows(p, q) → (H, W, 2)`` per video at full size, instead of optical
            flow (synthetic videos, tests).
        **kwargs: any key of :data:`DECODER_DEFAULTS` (unknown keys raise ``TypeError``): the model (``inputs``,
            ``causal`` — the same training, but prediction then uses only the last output of the window ending at
            each frame, :class:`~steadyseg.train.decoder_predict.DecoderStream` —, ``flow_guided`` (each frame's
            mask encoder also reads its neighbours' teacher outputs warped by the flow; prediction then computes
            the same flow; ``base="vote"``: the correction is added to the flow vote of the frame and its
            warped neighbours instead of the teacher), ``encoder`` (``"small"``, or ``"deeplabv3"`` with
            ``encoder_checkpoint``: a frozen backbone whose features are cached under ``out/cache/features``; no
            crop or flip then), ``width``, ``hidden``, ``eps``), the data (``size``, ``crop``, ``hflip_prob``,
            ``confidence``, ``binary``, ``num_classes``), the loss (``lambda_data``, ``balance``,
            ``balance_power``), the optimiser (``lr``, ``batch_size`` windows per step and process), the budget
            (``steps`` and/or ``minutes``: the first reached stops), ``seed``, the flow (``flow`` backend,
            ``preset``, ``cache_dir``, ``flow_jobs``), ``checkpoint_every`` (steps), ``device``, ``amp`` (bfloat16
            autocast on CUDA), ``resume``, ``progress``.

    Returns:
        the run record (also ``run.json`` and the last line of ``log.jsonl``).
    """
    from steadyseg.datasets.masks import open_masks
    from steadyseg.train.decoder import build_decoder_from_config
    from steadyseg.train.decoder_data import (load_decoder_video, sample_window, teacher_flicker, teacher_format,
                                              video_balance_weights)
    from steadyseg.train.distributed import cleanup, init_distributed_mode, wrap_ddp
    from steadyseg.train.loop import Checkpointer, RunFiles, progress_bar, reduce_terms, step_record
    from steadyseg.train.run_state import open_run_state, resume_from
    from steadyseg.train.ti import TILoss

    videos = [(str(f), str(t)) for f, t in videos]
    if not videos:
        raise ValueError("train_decoder: give at least one (frames, teacher) pair")
    if flows is not None and len(flows) != len(videos):
        raise ValueError(f"train_decoder: {len(flows)} flow functions for {len(videos)} videos")
    cfg = _resolve(kwargs)
    cfg, resume_state = open_run_state(out, cfg, kwargs, resume=bool(cfg["resume"]), free=_RESUME_FREE,
                                       identity={"videos": videos})
    out = Path(out)

    dist_info = init_distributed_mode(cfg["device"])
    device, main_proc = dist_info.device, dist_info.is_main
    torch.manual_seed(cfg["seed"] + dist_info.rank)
    random.seed(cfg["seed"])
    np.random.seed(cfg["seed"] % (2**32))
    try:
        num_classes = int(cfg["num_classes"]) if cfg["num_classes"] is not None else _num_classes(
            [t for _, t in videos], cfg["binary"])
        cfg["num_classes"] = num_classes
        cache_dir = cfg["cache_dir"] if cfg["cache_dir"] is not None else out / "cache" / "flow"
        backbone = None
        if cfg["encoder"] == "deeplabv3":
            from steadyseg.train.decoder_backbone import FrozenBackbone

            backbone = FrozenBackbone(cfg["encoder_checkpoint"], device=device)
        data = [load_decoder_video(f, t, inputs=int(cfg["inputs"]), num_classes=num_classes,
                                   size=cfg["size"], confidence=cfg["confidence"], binary=cfg["binary"],
                                   flows=None if flows is None else flows[k], flow_backend=cfg["flow"],
                                   flow_preset=cfg["preset"], cache_dir=cache_dir if flows is None else None,
                                   n_jobs=int(cfg["flow_jobs"]), progress=bool(cfg["progress"]) and main_proc,
                                   backbone=backbone, feature_cache=out / "cache")
                for k, (f, t) in enumerate(videos)]
        formats = [teacher_format(open_masks(t, binary=cfg["binary"])) for _, t in videos]
        balance = {}
        if cfg["balance"] == "videos" and cfg["objective"] == "consistency":
            flicker = [teacher_flicker(v, inputs=int(cfg["inputs"])) for v in data]
            balance = {"video_flicker": flicker,
                       "video_weights": video_balance_weights(flicker, power=float(cfg["balance_power"]))}
        model_config = _model_config(cfg, num_classes, formats, backbone)
        model = build_decoder_from_config(model_config).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=float(cfg["lr"]))
        criterion = TILoss(alpha=cfg["alpha"]) if cfg["objective"] == "ti" else DecoderLoss(
            lambda_data=cfg["lambda_data"])
        step, elapsed_before = 0, 0.0
        if resume_state is not None:
            step, elapsed_before = resume_from(resume_state, model, optimizer, dist_info.rank)
        model = wrap_ddp(model, dist_info, device)

        files = RunFiles.open(out, main=main_proc, resume_step=None if resume_state is None else step,
                              config_record={**cfg, "videos": [list(v) for v in videos],
                                             "exact_flows": flows is not None, "world_size": dist_info.world_size,
                                             "device": str(device), "model": model_config, **balance})
        last_step = None if cfg["steps"] is None else int(cfg["steps"])
        bar = progress_bar(bool(cfg["progress"]) and main_proc, total=last_step, initial=step, desc="train decoder")
        local = int(cfg["batch_size"])
        crop = None if cfg["crop"] is None else tuple(cfg["crop"])
        amp = bool(cfg["amp"]) and device.type == "cuda"
        model.train()
        saver = Checkpointer(out, dist_info, model, optimizer, config=cfg, videos=videos,
                             elapsed_before=elapsed_before)
        t_start = saver.started
        terms_f: dict[str, float] = {}
        stop_reason = "steps"
        while last_step is None or step < last_step:
            if saver.over_budget(cfg["minutes"]):
                stop_reason = "time budget"
                break
            windows = [sample_window(data, inputs=int(cfg["inputs"]), seed=int(cfg["seed"]), step=step,
                                     index=dist_info.rank * local + k, crop=crop, hflip_prob=cfg["hflip_prob"],
                                     flow_guided=bool(cfg["flow_guided"]), causal=bool(cfg["causal"]),
                                     balance=cfg["balance"], photometric_sigma=cfg["photometric_sigma"],
                                     loss_photometric_sigma=cfg["loss_photometric_sigma"],
                                     data_target=cfg["data_target"])
                       for k in range(local)]
            frames = torch.stack([w.frames for w in windows]).to(device)
            probs = torch.stack([w.probs for w in windows]).to(device)
            guide = torch.stack([w.guide for w in windows]).to(device) if cfg["flow_guided"] else None
            targets = [w.targets[None].to(device) if w.targets is not None
                       else probs[k:k + 1] if w.labels is None else w.labels[None].to(device)
                       for k, w in enumerate(windows)]
            if cfg["objective"] == "ti":
                per_window = _ti_terms(model, criterion, frames, probs, targets, seed=int(cfg["seed"]),
                                       step=step, first_index=dist_info.rank * local)
            else:
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                    logits = model(frames, probs, guide)
                per_window = [criterion(logits[k:k + 1], targets[k], {pq: f.to(device) for pq, f in w.flows.items()},
                                        {pq: m.to(device) for pq, m in w.valid.items()})
                              for k, w in enumerate(windows)]
                if balance:
                    for t, w in zip(per_window, windows):
                        t["consistency"] = t["consistency"] * balance["video_weights"][w.video]
                        t["total"] = t["consistency"] + t["data"]
            terms = {name: torch.stack([t[name] for t in per_window]).mean() for name in per_window[0]}
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            optimizer.step()
            step += 1
            terms_f = reduce_terms(terms, dist_info, step=step)  # the mean over every process's windows
            files.log(step_record(step, optimizer, terms_f, windows=[[w.video, w.start] for w in windows]))
            if bar is not None:
                bar.update(1)
                bar.set_postfix({k[:5]: f"{v:.4f}" for k, v in terms_f.items() if k not in ("total", "valid_fraction")})
            if cfg["checkpoint_every"] and step % int(cfg["checkpoint_every"]) == 0:
                saver.save(step)
        if bar is not None:
            bar.close()
        wall = time.perf_counter() - t_start
        saver.save(step)
        record = {"type": "done", "step": step, "stop_reason": stop_reason, "wall_s": wall,
                  "windows_per_s": (step - (int(resume_state["step"]) if resume_state else 0)) * local
                  * dist_info.world_size / wall if wall > 0 else None,
                  "final_loss_terms": terms_f, "world_size": dist_info.world_size, "device": str(device),
                  "num_classes": num_classes}
        files.finish(kind="decoder", model_config=model_config, model=model, record=record)
        return record
    finally:
        cleanup(dist_info)
