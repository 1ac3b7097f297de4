"""Video inference of a trained video model: overlapping clips, averaged, at full resolution.

:class:`VideoModelPredictor` is the ``"video-model"`` entry of :data:`steadyseg.train.predict.PREDICTORS`
(``steadyseg predict --checkpoint RUN/model.pt --frames DIR --out DIR``; a video model takes no ``--teacher``).

- Clips of the model's length T (``config["clip_length"]``) start every ``stride`` frames (default ``T // 2``, so
  clips overlap by half); the last clip ends at the last frame. A frame's probabilities are the **mean of the
  softmax outputs of every clip that contains it**, so every frame gets a prediction and clip borders do not jump.
- The model runs at its training size (``config["size"]``; the video's size when trained at full size): frames are
  resized to it (``cv2.INTER_AREA``) and the logits are resized back to the frame size (bilinear) before the softmax.
- A video shorter than T is padded by repeating its last frame.
- Frames are yielded in order as soon as the last clip containing them has run (at most about 2T frames held).

Masks are written like the training annotations (``reading``/``palette``): ``{0, 255}`` PNGs for binary models
(DAVIS-2016 style), the annotations' palette or label-PNG format otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VideoModelPredictor", "clip_starts"]


def clip_starts(num_frames: int, clip_length: int, stride: int) -> list[int]:
    """First frames of the clips that cover ``0 … num_frames − 1``: ``0, stride, 2·stride, …`` and a last clip
    ending at the last frame (one clip at 0 when the video is not longer than a clip)."""
    if clip_length < 1 or stride < 1:
        raise ValueError(f"clip_length and stride must be >= 1, got {clip_length}, {stride}")
    last = max(num_frames - clip_length, 0)
    starts = list(range(0, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return starts


class VideoModelPredictor:
    """Probabilities of every frame of a video from a model of the video-model protocol.

    Args:
        model: in eval mode on ``device`` (``(B, T, 3, H, W)`` in [0, 1] → ``(B, T, C, H, W)`` logits).
        config: the ``model.pt`` config (``clip_length``, ``size``, ``num_classes``, ``names``, ``mask_reading``,
            ``mask_palette``).
        device: torch device.
        amp: bfloat16 autocast on CUDA.
        stride: frames between clip starts (``None``: ``T // 2``, at least 1).
    """

    def __init__(self, model: nn.Module, config: dict[str, Any], device: torch.device, *, amp: bool = True,
                 stride: int | None = None):
        self.model, self.device = model, torch.device(device)
        self.clip_length = int(config["clip_length"])
        self.stride = int(stride) if stride is not None else max(1, self.clip_length // 2)
        self.size = None if config.get("size") is None else tuple(int(v) for v in config["size"])
        self.num_classes = int(config["num_classes"])
        self.names = list(config["names"])
        self.reading = config.get("mask_reading", "palette-ids")
        self.palette = config.get("mask_palette")
        self.amp = amp and self.device.type == "cuda"

    def _clip_probs(self, frames: list[np.ndarray]) -> np.ndarray:
        """``(T, C, H, W) float32`` softmax of one clip of ``(H, W, 3) uint8`` frames, at the frames' size."""
        from steadyseg.train.decoder_data import resize_image

        h, w = frames[0].shape[:2]
        small = np.stack([resize_image(f, self.size) for f in frames])
        x = torch.from_numpy(small).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)[None]
        with torch.inference_mode(), torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                                                    enabled=self.amp):
            logits = self.model(x)[0].float()
            if tuple(logits.shape[-2:]) != (h, w):
                logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
            return logits.softmax(dim=1).cpu().numpy()

    def iter_video(self, frames, *, batch_size: int = 1) -> Iterator[tuple[int, np.ndarray]]:
        """``(index, (C, H, W) float32)`` for every frame in order (``batch_size`` is unused: one clip at a time)."""
        n = len(frames)
        if n == 0:
            return
        t = self.clip_length
        sums: dict[int, np.ndarray] = {}
        counts: dict[int, int] = {}
        cache: dict[int, np.ndarray] = {}
        next_out = 0
        starts = clip_starts(n, t, self.stride)
        for j, start in enumerate(starts):
            idx = [min(start + k, n - 1) for k in range(t)]  # short videos: the last frame repeated
            for i in idx:
                if i not in cache:
                    cache[i] = frames[i]
            probs = self._clip_probs([cache[i] for i in idx])
            for k, i in enumerate(idx):
                if k > 0 and idx[k - 1] == i:  # a repeated padding frame counts once
                    continue
                sums[i] = probs[k] if i not in sums else sums[i] + probs[k]
                counts[i] = counts.get(i, 0) + 1
            done_below = starts[j + 1] if j + 1 < len(starts) else n  # later clips start at or after this
            while next_out < done_below:
                yield next_out, (sums.pop(next_out) / counts.pop(next_out)).astype(np.float32)
                cache.pop(next_out, None)
                next_out += 1
