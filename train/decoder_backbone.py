"""The ``deeplabv3`` frame encoder of the decoder: a frozen DeepLabV3 backbone, its features cached on disk.

:class:`FrozenBackbone` loads the backbone of a DeepLabV3 / LRASPP checkpoint given by path — a steadyseg
``model.pt`` of kind ``teacher`` (``steadyseg train teacher``), or a torchvision ``deeplabv3_resnet50`` checkpoint
(full weights or an ImageNet ResNet-50 backbone, read with :func:`steadyseg.train.models.load_init`) — in eval
mode without gradients, and maps ``(H, W, 3) uint8`` frames (ImageNet normalisation) to its ``"out"`` features
``(C_b, H/s, W/s)`` (s = 8 for ResNet-50, 16 for MobileNetV3). :func:`video_features` computes them once per video
and training size and keeps them in ``<cache>/features/<key>.npy`` (float16), keyed by the frames' content, the
checkpoint's sha256 and the size, so a frozen ResNet-50 is paid once per video on a CPU.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["FrozenBackbone", "video_features"]


class FrozenBackbone:
    """Frozen backbone features of frames.

    Args:
        checkpoint: a teacher ``model.pt`` or a torchvision ``deeplabv3_resnet50`` checkpoint (local file).
        device: torch device.

    Attributes: ``channels`` (C_b), ``sha256`` (of the checkpoint file), ``source`` (the path).
    ``features(frames (T, h, w, 3) uint8)`` → ``(T, C_b, h', w') float32`` (call it under ``inference_mode``).
    """

    def __init__(self, checkpoint: str | os.PathLike, *, device: str | torch.device = "cpu"):
        from steadyseg.files import sha256_file
        from steadyseg.train.checkpoint import MODEL_FORMAT, load_model, torch_load_safe
        from steadyseg.train.data import IMAGENET_MEAN, IMAGENET_STD
        from steadyseg.train.models import build_teacher, load_init

        self.source = Path(checkpoint)
        rec = torch_load_safe(self.source, what="--encoder-checkpoint")
        mean, std = IMAGENET_MEAN, IMAGENET_STD
        if isinstance(rec, dict) and rec.get("format") == MODEL_FORMAT:
            kind, config, model = load_model(self.source)
            if kind != "teacher":
                raise ValueError(f"{self.source}: a {kind} model.pt; the deeplabv3 encoder needs a teacher's")
            mean, std = config.get("mean", mean), config.get("std", std)
        else:
            model = build_teacher("deeplabv3_resnet50", num_classes=21, aux_loss=False)
            load_init(model, self.source)
        self.device = torch.device(device)
        self.backbone: nn.Module = model.backbone.to(self.device).eval()
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.sha256 = sha256_file(self.source)
        with torch.inference_mode():
            self.channels = int(self.features(np.zeros((1, 32, 32, 3), np.uint8)).shape[1])

    def features(self, frames: np.ndarray) -> torch.Tensor:
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected (T, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        return self.backbone((x - self.mean) / self.std)["out"].float()


def video_features(backbone: FrozenBackbone, frames: np.ndarray, *, cache_dir: str | os.PathLike | None = None,
                   batch: int = 4) -> np.ndarray:
    """``(T, C_b, h', w') float16`` backbone features of training-size frames ``(T, h, w, 3) uint8``, cached.

    The cache key is the sha256 of the frames' bytes, the checkpoint's sha256 and the frame size; the file is
    ``<cache_dir>/features/<key>.npy`` (written atomically). ``cache_dir=None`` computes without caching.
    """
    from steadyseg.files import atomic_write_bytes

    path = None
    if cache_dir is not None:
        h = hashlib.sha256(frames.tobytes())
        h.update(f"{frames.shape}|{backbone.sha256}|features-v1".encode())
        path = Path(cache_dir) / "features" / f"{h.hexdigest()}.npy"
        if path.is_file():
            try:
                return np.load(path, allow_pickle=False)
            except (OSError, ValueError):
                path.unlink(missing_ok=True)  # a torn file: recompute
    with torch.inference_mode():
        feats = np.concatenate([backbone.features(frames[i:i + batch]).cpu().numpy().astype(np.float16)
                                for i in range(0, len(frames), batch)])
    if path is not None:
        buf = io.BytesIO()
        np.save(buf, feats)
        atomic_write_bytes(path, buf.getvalue())
    return feats
