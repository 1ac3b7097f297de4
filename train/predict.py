"""Per-frame predictions of any trained model on a video: label PNGs and, optionally, probabilities.

:func:`predict_video` reads a ``RUN/model.pt`` (:mod:`steadyseg.train.checkpoint`), rebuilds the model named by its
``kind`` and hands the video to that kind's predictor (:data:`PREDICTORS`, kind → factory
``(model, config, device, amp) → predictor``). A predictor has ``num_classes``, ``names`` and
``iter_video(frames, batch_size) → iterator of (frame index, (C, H, W) float32 probabilities)``; a per-frame model
(the teacher) runs frames in batches, a video model may read the neighbours it needs from ``frames``.

Teacher inference: each frame's shorter side is resized to the model's ``base_size`` (torchvision's eval preset),
the logits are resized back to the frame size (bilinear) and turned into probabilities (softmax).

Outputs under ``out``::

    <frame stem>.png         palette PNG of the argmax labels (VOC palette; 0 background)
    probs/<frame stem>.npz   with --probs: key "probs", (C, H, W) float16 in [0, 1], summing to 1 per pixel
    predict.json             checkpoint, kind, class names, frame count, timing
    config.yaml              the resolved configuration

With ``foreground=True`` the output is two-class: ``probs = [p_bg, 1 − p_bg]`` and labels ``1`` where
``1 − p_bg > 0.5`` (DAVIS-style binary evaluation; ``open_masks(..., binary=True)`` reads either).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from steadyseg.train.decoder_predict import DecoderPredictor
from steadyseg.train.video_predict import VideoModelPredictor

__all__ = ["FramewisePredictor", "PREDICTORS", "predict_video", "PREDICT_DEFAULTS"]

PREDICT_DEFAULTS: dict[str, Any] = {"probs": False, "foreground": False, "batch_size": 4, "device": None,
                                    "amp": True, "progress": True, "teacher": None, "flow_cache": None}


class FramewisePredictor:
    """Probabilities of a per-frame segmentation model (``forward(x)["out"]`` logits), frame batches at a time.

    Args:
        model: in eval mode on ``device``; takes ``(B, 3, h, w)`` normalised images.
        config: the ``model.pt`` config (``names``, ``num_classes``, ``base_size``, ``mean``, ``std``).
        device: torch device.
        amp: autocast on CUDA.
    """

    def __init__(self, model: nn.Module, config: dict[str, Any], device: torch.device, *, amp: bool = True):
        self.model, self.device = model, torch.device(device)
        self.names = list(config["names"])
        self.num_classes = int(config["num_classes"])
        self.base_size = int(config["base_size"])
        self.mean = torch.tensor(config["mean"], dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(config["std"], dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.amp = amp and self.device.type == "cuda"

    def probs(self, frames: list[np.ndarray]) -> torch.Tensor:
        """``(B, C, H, W) float32`` probabilities of ``B`` frames of one size ``(H, W, 3) uint8`` RGB."""
        from steadyseg.train.data import resize_shorter

        h, w = frames[0].shape[:2]
        small = [resize_shorter(f, None, self.base_size)[0] for f in frames]
        x = torch.from_numpy(np.stack(small)).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        x = (x - self.mean) / self.std
        with torch.autocast(device_type=self.device.type, enabled=self.amp):
            logits = self.model(x)["out"]
        logits = F.interpolate(logits.float(), size=(h, w), mode="bilinear", align_corners=False)
        return logits.softmax(dim=1)

    def iter_video(self, frames, *, batch_size: int = 4) -> Iterator[tuple[int, np.ndarray]]:
        """``(index, (C, H, W) float32)`` for every frame, reading ``batch_size`` frames at a time."""
        for start in range(0, len(frames), batch_size):
            idx = list(range(start, min(start + batch_size, len(frames))))
            with torch.inference_mode():
                p = self.probs([frames[i] for i in idx]).cpu().numpy()
            yield from zip(idx, p)


#: model kind → predictor factory(model, config, device, *, amp); the decoder / video-model stages add theirs
PREDICTORS: dict[str, Callable[..., Any]] = {
    "teacher": FramewisePredictor,
    "decoder": DecoderPredictor,  # also takes teacher= (the teacher's output of the video) and writes its format
    "video-model": VideoModelPredictor,  # overlapping clips, averaged; writes the annotations' format
}
#: kinds whose predictor corrects a teacher's output (``teacher=``, ``--teacher DIR``)
TEACHER_INPUT_KINDS = {"decoder"}


def predict_video(checkpoint: str | os.PathLike, frames: str | os.PathLike, out: str | os.PathLike,
                  **kwargs: Any) -> dict[str, Any]:
    """Predict every frame of a video with a trained model; see the module doc for the outputs.

    Args:
        checkpoint: a ``RUN/model.pt``.
        frames: a folder of frames or a video file (read lazily with :func:`steadyseg.datasets.video.open_video`).
        out: output folder.
        **kwargs: keys of :data:`PREDICT_DEFAULTS`: ``probs`` (write ``probs/*.npz``), ``foreground`` (two-class
            output), ``batch_size``, ``device`` (None → CUDA when available), ``amp``, ``progress``,
            ``teacher`` (kinds in :data:`TEACHER_INPUT_KINDS`: the teacher's output of the video; their masks are
            written in the teacher's format), ``flow_cache`` (flow-guided decoders: where their flows are cached —
            a folder, ``None`` for the persistent default cache of ``steadyseg measure``, ``False`` for none).

    Returns:
        the ``predict.json`` record.
    """
    from steadyseg.datasets.coco_targets import voc_palette
    from steadyseg.datasets.masks import write_label_png
    from steadyseg.datasets.video import open_video
    from steadyseg.files import atomic_dir, atomic_save_npz, atomic_write_json, save_resolved_config
    from steadyseg.train.checkpoint import load_model

    unknown = set(kwargs) - set(PREDICT_DEFAULTS)
    if unknown:
        raise TypeError(f"predict_video: unknown arguments {sorted(unknown)}")
    cfg = {**PREDICT_DEFAULTS, **kwargs}
    if int(cfg["batch_size"]) < 1:
        raise ValueError(f"batch_size must be >= 1, got {cfg['batch_size']}")
    device = torch.device(cfg["device"] or ("cuda" if torch.cuda.is_available() else "cpu"))
    kind, config, model = load_model(checkpoint, device=device)
    if kind not in PREDICTORS:
        raise ValueError(f"{checkpoint}: no predictor for model kind {kind!r}; known: {sorted(PREDICTORS)}")
    if (cfg["teacher"] is not None) != (kind in TEACHER_INPUT_KINDS):
        raise ValueError(f"{checkpoint}: a {kind} model " + ("corrects a teacher's output: give --teacher DIR"
                                                             if kind in TEACHER_INPUT_KINDS else "takes no --teacher"))
    teacher_arg = ({"teacher": cfg["teacher"], "flow_cache": cfg["flow_cache"]} if kind in TEACHER_INPUT_KINDS
                   else {})
    predictor = PREDICTORS[kind](model, config, device, amp=bool(cfg["amp"]), **teacher_arg)
    video = open_video(frames)
    out = Path(out)
    # the folder appears complete or not at all (a bad frame mid-video leaves nothing half-written)
    with atomic_dir(out) as dst:
        palette = voc_palette()
        names = ["background", "foreground"] if cfg["foreground"] else list(predictor.names)
        it = predictor.iter_video(video, batch_size=int(cfg["batch_size"]))
        bar = None
        if cfg["progress"]:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(video), desc=f"predict ({kind})", unit="frame")
        t0 = time.perf_counter()
        for i, p in it:
            if cfg["foreground"]:
                fg = 1.0 - p[0]
                p = np.stack([p[0], fg])
                labels = (fg > 0.5).astype(np.uint8)
            else:
                labels = p.argmax(axis=0).astype(np.uint8)
            stem = video.names[i]
            write_label_png(dst / f"{stem}.png", labels, reading=getattr(predictor, "reading", "palette-ids"),
                            palette=getattr(predictor, "palette", None) or palette)
            if cfg["probs"]:
                atomic_save_npz(dst / "probs" / f"{stem}.npz", probs=np.clip(p, 0.0, 1.0).astype(np.float16))
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        wall = time.perf_counter() - t0
        record = {"checkpoint": str(checkpoint), "kind": kind, "frames": str(video.source), "count": len(video),
                  "size": list(video.size), "names": names, "num_classes": len(names), "probs": bool(cfg["probs"]),
                  "foreground": bool(cfg["foreground"]), "device": str(device), "wall_s": wall,
                  "fps": len(video) / wall if wall > 0 else None}
        atomic_write_json(dst / "predict.json", record)
        save_resolved_config(dst, {"checkpoint": str(checkpoint), "frames": str(frames), **cfg, "device": str(device)})
    return record
