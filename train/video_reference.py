"""The toolkit's reference 3D-conv video segmentation model, in the style of 3DC-Seg (Mahadevan et al., 2020).

::

    encoder   a torchvision video ResNet (r3d_18 / mc3_18 / r2plus1d_18, weights=None or a local checkpoint):
              stem (64, T, H/2, W/2) → layer1 (64, T, H/2) → layer2 (128, T/2, H/4) → layer3 (256, T/4, H/8)
              → layer4 (512, T/8, H/16)   (time and space sizes rounded up; classifier head dropped)
    decoder   top-down with skip connections, all 3D: a 1×1×1 lateral conv of each stage to D channels; from layer4
              down, upsample (trilinear) to the next stage's (T, H, W), add its lateral, refine with a residual
              block (3×3×3 conv – GroupNorm – ReLU, twice); a 3×3×3 conv to C classes at stride 2; the logits are
              upsampled (trilinear) to the clip's (T, H, W)

:class:`Conv3DSegNet` takes ``(B, 3, T, H, W)`` normalised clips and returns ``(B, C, T, H, W)`` logits;
:func:`build_reference_model` wraps it in a :class:`~steadyseg.train.video_model.VideoModelAdapter` (layout
``BCTHW``, the Kinetics-400 normalisation of torchvision's video models, ``size_multiple`` 16), so it follows the
video-model protocol like any user model. It predicts C classes per frame (C = 2 for foreground / background).

``backbone_checkpoint``: a local torchvision video-ResNet state dict (for instance Kinetics-400 weights saved from
``r3d_18(weights=...)``); its ``fc.*`` classifier keys are ignored, any other mismatch is an error naming the file.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BACKBONES", "KINETICS_MEAN", "KINETICS_STD", "Conv3DSegNet", "build_reference_model",
           "REFERENCE_ADAPTER"]

BACKBONES = ("r3d_18", "mc3_18", "r2plus1d_18")
#: the input normalisation of torchvision's Kinetics-400 video models
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
REFERENCE_ADAPTER: dict[str, Any] = {"layout": "BCTHW", "output_layout": "BCTHW", "mean": list(KINETICS_MEAN),
                                     "std": list(KINETICS_STD), "size_multiple": 16}
_STAGE_CHANNELS = (64, 64, 128, 256, 512)  # stem, layer1 .. layer4 of the three backbones


def _video_resnet(name: str) -> nn.Module:
    import torchvision.models.video as video

    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; expected one of {BACKBONES}")
    return getattr(video, name)(weights=None)


class _Refine(nn.Module):
    """Residual block: x + conv(ReLU(GN(conv(ReLU(GN(x))))))), 3×3×3 convs, D channels."""

    def __init__(self, channels: int):
        super().__init__()
        groups = min(8, channels)
        self.body = nn.Sequential(nn.GroupNorm(groups, channels), nn.ReLU(inplace=False),
                                  nn.Conv3d(channels, channels, 3, padding=1),
                                  nn.GroupNorm(groups, channels), nn.ReLU(inplace=False),
                                  nn.Conv3d(channels, channels, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class Conv3DSegNet(nn.Module):
    """3D-conv encoder–decoder: ``(B, 3, T, H, W)`` normalised clip → ``(B, C, T, H, W)`` logits.

    Args:
        backbone: ``"r3d_18"``, ``"mc3_18"`` or ``"r2plus1d_18"`` (torchvision, ``weights=None``).
        num_classes: C ≥ 2.
        decoder_channels: D, the decoder's width.
        backbone_checkpoint: optional local state dict of the torchvision backbone (``fc.*`` ignored).
    """

    def __init__(self, *, backbone: str = "r3d_18", num_classes: int = 2, decoder_channels: int = 64,
                 backbone_checkpoint: str | os.PathLike | None = None):
        super().__init__()
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if int(decoder_channels) < 8:
            raise ValueError(f"decoder_channels must be >= 8, got {decoder_channels}")
        net = _video_resnet(backbone)
        if backbone_checkpoint is not None:
            _load_backbone(net, backbone_checkpoint)
        self.stem, self.layer1, self.layer2, self.layer3, self.layer4 = (net.stem, net.layer1, net.layer2,
                                                                        net.layer3, net.layer4)
        d = int(decoder_channels)
        self.lateral = nn.ModuleList(nn.Conv3d(c, d, 1) for c in _STAGE_CHANNELS[1:])  # layer1 .. layer4
        self.refine = nn.ModuleList(_Refine(d) for _ in range(3))  # after merging layer3, layer2, layer1
        self.head = nn.Conv3d(d, int(num_classes), 3, padding=1)
        self.num_classes = int(num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"Conv3DSegNet: expected (B, 3, T, H, W), got {tuple(x.shape)}")
        size = x.shape[2:]
        feats = []
        y = self.stem(x)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            y = layer(y)
            feats.append(y)
        z = self.lateral[3](feats[3])
        for k, refine in zip((2, 1, 0), self.refine):
            skip = self.lateral[k](feats[k])
            z = F.interpolate(z, size=skip.shape[2:], mode="trilinear", align_corners=False) + skip
            z = refine(z)
        logits = self.head(z)
        return F.interpolate(logits, size=size, mode="trilinear", align_corners=False)


def _load_backbone(net: nn.Module, path: str | os.PathLike) -> None:
    from steadyseg.train.checkpoint import torch_load_safe

    sd = torch_load_safe(path, what="backbone checkpoint")
    if isinstance(sd, Mapping) and isinstance(sd.get("state_dict"), Mapping):
        sd = sd["state_dict"]
    if not isinstance(sd, Mapping):
        raise ValueError(f"{path}: not a state dict")
    sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    own = {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    missing, unexpected = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    shapes = [k for k in set(sd) & set(own) if sd[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        raise ValueError(f"{path}: not a state dict of this torchvision backbone (missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}, mis-shaped {sorted(shapes)[:5]})")
    net.load_state_dict(sd, strict=False)


def build_reference_model(*, backbone: str = "r3d_18", num_classes: int = 2, decoder_channels: int = 64,
                          backbone_checkpoint: str | os.PathLike | None = None,
                          adapter: Mapping[str, Any] | None = None) -> nn.Module:
    """:class:`Conv3DSegNet` in the video-model protocol: ``(B, T, 3, H, W)`` in [0, 1] → ``(B, T, C, H, W)``."""
    from steadyseg.train.video_model import VideoModelAdapter

    net = Conv3DSegNet(backbone=backbone, num_classes=num_classes, decoder_channels=decoder_channels,
                       backbone_checkpoint=backbone_checkpoint)
    return VideoModelAdapter(net, **{**REFERENCE_ADAPTER, **dict(adapter or {}), "num_classes": int(num_classes)})
