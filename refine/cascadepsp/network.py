"""The CascadePSP refinement network (Cheng et al., CVPR 2020), checkpoint-compatible with the official release.

The module names and parameter shapes follow the official ``RefinementModule`` exactly, so the released
checkpoint (a ``torch.save`` of an ``nn.DataParallel`` state_dict, every key prefixed ``module.``; 426 entries,
67,683,433 parameters) loads with ``strict=True``:

- ``feats``: ResNet-50 (torchvision ``Bottleneck``, blocks [3, 4, 6, 3], stride on the 3x3 conv) whose ``conv1``
  takes 6 channels (normalised RGB + three mask channels); layer3 / layer4 have stride 1 and dilation 2 / 4 on
  blocks >= 1 (output stride 8). It returns ``(layer4, raw conv1 output before bn1, layer1)``.
- ``psp``: pyramid pooling (sizes 1, 2, 3, 6; 1x1 convs without bias), concatenation with the features (10240
  channels), ``bottleneck`` 1x1 conv to 1024 channels, ReLU.
- ``up_1``, ``up_2``, ``up_3``: pre-activation residual upsampling blocks with skips from layer1 (s4), the raw
  conv1 output (s2) and the RGB image (s1).
- heads ``final_28`` (s8), ``final_56`` (s4), ``final_11`` + ``final_21`` (s1).

:class:`CascadePSPNet` runs three cascaded passes with shared weights. Inference helpers (resizing, padding,
the global/local steps) live in :mod:`steadyseg.refine.cascadepsp.refiner`; training in
:mod:`steadyseg.refine.cascadepsp.training`.

Checkpoint formats accepted by :func:`load_cascadepsp_state_dict`:

- the official file: a plain state_dict whose keys ALL start with ``module.``;
- ours: ``{"model": state_dict, "config": {...}, ...}`` written by ``steadyseg refine-train``;
- a plain state_dict without a prefix.

A prefix is removed only when every key carries it; keys and shapes are then checked with a message that lists
the missing / unexpected / mis-shaped keys.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import Bottleneck

#: Where the official weights come from (the ``segmentation-refinement`` pip package downloads this file).
OFFICIAL_CHECKPOINT_URL = "https://github.com/hkchengrex/CascadePSP/releases/download/v1.0/model"
OFFICIAL_CHECKPOINT_MD5 = "7478d4a9c42ab52beb6d7e9683402fe0"
#: Facts about the official checkpoint, checked by the tests.
OFFICIAL_NUM_KEYS = 426
OFFICIAL_NUM_PARAMETERS = 67_683_433
#: Marker stored in checkpoints written by steadyseg.
CHECKPOINT_FORMAT = "steadyseg-cascadepsp-v1"

OUTPUT_KEYS = ("out_28", "out_28_2", "out_56", "out_224", "out_28_3", "out_56_2")

MISSING_CHECKPOINT_HELP = (
    "CascadePSP needs its trained weights: download the official checkpoint (the `segmentation-refinement` "
    f"package's release asset: github hkchengrex/CascadePSP, release v1.0, file `model`, {OFFICIAL_CHECKPOINT_URL}, "
    f"MD5 {OFFICIAL_CHECKPOINT_MD5}, ~259 MB) or train one with `steadyseg refine-train`, and pass its path with "
    "--checkpoint (Python: CascadePSPRefiner(checkpoint=PATH))."
)


class CascadePSPCheckpointError(ValueError):
    """A checkpoint file that cannot be loaded into :class:`CascadePSPNet`; the message names file and keys."""


class ResNet50Features(nn.Module):
    """ResNet-50 trunk with a 6-channel stem and output stride 8 (dilated layer3/layer4), no classifier.

    Input ``(B, 6, H, W)`` float. Returns ``(f, f_1, f_2)``:
    ``f`` layer4 output ``(B, 2048, H/8, W/8)``; ``f_1`` raw ``conv1`` output before ``bn1`` ``(B, 64, H/2, W/2)``;
    ``f_2`` layer1 output ``(B, 256, H/4, W/4)`` (sizes rounded up as by the strided convs).
    """

    def __init__(self, *, in_channels: int = 6, layers: tuple[int, int, int, int] = (3, 4, 6, 3)) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0], stride=1, dilation=1)
        self.layer2 = self._make_layer(128, layers[1], stride=2, dilation=1)
        self.layer3 = self._make_layer(256, layers[2], stride=1, dilation=2)
        self.layer4 = self._make_layer(512, layers[3], stride=1, dilation=4)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, blocks: int, *, stride: int, dilation: int) -> nn.Sequential:
        out_ch = planes * Bottleneck.expansion
        downsample = None
        if stride != 1 or self.inplanes != out_ch:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, out_ch, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_ch),
            )
        # Block 0 carries the stride (on its 3x3 conv) and is never dilated; later blocks are dilated.
        mods = [Bottleneck(self.inplanes, planes, stride=stride, downsample=downsample)]
        self.inplanes = out_ch
        mods += [Bottleneck(self.inplanes, planes, dilation=dilation) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != self.conv1.in_channels:
            raise ValueError(f"expected Bx{self.conv1.in_channels}xHxW, got {tuple(x.shape)}")
        f_1 = self.conv1(x)
        x = self.maxpool(self.relu(self.bn1(f_1)))
        f_2 = self.layer1(x)
        x = self.layer2(f_2)
        x = self.layer3(x)
        x = self.layer4(x)
        return x, f_1, f_2


class PSPModule(nn.Module):
    """Pyramid pooling: ``(B, C, h, w)`` → ``(B, out_features, h, w)`` (ReLU output, >= 0).

    Each stage is ``AdaptiveAvgPool2d(s)`` then a 1x1 conv without bias, upsampled bilinearly
    (``align_corners=False``) back to ``(h, w)``; the stages and then the input are concatenated and reduced by a
    1x1 conv with bias (``bottleneck``).
    """

    def __init__(self, *, features: int = 2048, out_features: int = 1024, sizes: tuple[int, ...] = (1, 2, 3, 6)):
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d((s, s)), nn.Conv2d(features, features, kernel_size=1, bias=False))
            for s in sizes
        )
        self.bottleneck = nn.Conv2d(features * (len(sizes) + 1), out_features, kernel_size=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        h, w = feats.shape[-2:]
        priors = [F.interpolate(stage(feats), size=(h, w), mode="bilinear", align_corners=False)
                  for stage in self.stages]
        return self.relu(self.bottleneck(torch.cat(priors + [feats], dim=1)))


def _preact_double_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.BatchNorm2d(in_ch), nn.ReLU(inplace=True), nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True), nn.Conv2d(out_ch, out_ch, kernel_size=3, padding=1),
    )


class PSPUpsample(nn.Module):
    """Residual upsampling block: ``x (B, x_ch, h, w)`` and ``skip (B, in_ch - x_ch, 2h, 2w)`` → ``(B, out_ch, 2h, 2w)``.

    ``x`` is upsampled bilinearly to the skip's size; ``p = conv(cat(x, skip)) + shortcut(x)``;
    output ``p + conv2(p)``. Both conv branches are pre-activation (BN, ReLU, conv3x3, BN, ReLU, conv3x3).
    """

    def __init__(self, *, x_channels: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = _preact_double_conv(in_channels, out_channels)
        self.conv2 = _preact_double_conv(out_channels, out_channels)
        self.shortcut = nn.Conv2d(x_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        p = self.conv(torch.cat([x, skip], dim=1)) + self.shortcut(x)
        return p + self.conv2(p)


def _upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class CascadePSPNet(nn.Module):
    """The CascadePSP refinement network (official module layout ``RefinementModule``).

    ``forward(x, seg, inter_s8=None, inter_s4=None)``:

    - ``x``: ``(B, 3, H, W)`` float, ImageNet-normalised RGB; ``H`` and ``W`` multiples of 8 (the refiner pads the
      image with 0 and masks with -1).
    - ``seg``: ``(B, 1, H, W)`` float in [-1, 1] (input mask mapped to {-1, +1}).
    - ``inter_s8`` / ``inter_s4``: optional ``(B, 1, H, W)`` maps in [-1, 1] standing in for ``tanh`` of earlier
      stride-8 / stride-4 predictions; given ``inter_s8`` the first pass is skipped, given both the second too
      (then ``inter_s8`` feeds pass 3's stride-8 channel).

    Returns a dict of ``(B, 1, H, W)`` float tensors at input resolution: logits ``out_*`` and sigmoids ``pred_*``
    for the keys that ran, among ``28`` (pass 1, s8), ``28_2``, ``56`` (pass 2, s8 and s4), ``224``, ``28_3``,
    ``56_2`` (pass 3, s1, s8, s4). Gradients flow (no ``no_grad`` here: use ``torch.inference_mode()`` at the call
    site).
    """

    def __init__(self) -> None:
        super().__init__()
        self.feats = ResNet50Features(in_channels=6)
        self.psp = PSPModule(features=2048, out_features=1024, sizes=(1, 2, 3, 6))
        self.up_1 = PSPUpsample(x_channels=1024, in_channels=1024 + 256, out_channels=512)
        self.up_2 = PSPUpsample(x_channels=512, in_channels=512 + 64, out_channels=256)
        self.up_3 = PSPUpsample(x_channels=256, in_channels=256 + 3, out_channels=32)
        self.final_28 = nn.Sequential(nn.Conv2d(1024, 32, kernel_size=1), nn.ReLU(inplace=True),
                                      nn.Conv2d(32, 1, kernel_size=1))
        self.final_56 = nn.Sequential(nn.Conv2d(512, 32, kernel_size=1), nn.ReLU(inplace=True),
                                      nn.Conv2d(32, 1, kernel_size=1))
        self.final_11 = nn.Conv2d(32 + 3, 32, kernel_size=1)
        self.final_21 = nn.Conv2d(32, 1, kernel_size=1)

    @staticmethod
    def _check(x: torch.Tensor, seg: torch.Tensor, inter_s8, inter_s4) -> None:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected image Bx3xHxW, got {tuple(x.shape)}")
        b, _, h, w = x.shape
        if h % 8 or w % 8:
            raise ValueError(f"image height and width must be multiples of 8 (pad first), got {h}x{w}")
        for name, t in (("seg", seg), ("inter_s8", inter_s8), ("inter_s4", inter_s4)):
            if t is not None and tuple(t.shape) != (b, 1, h, w):
                raise ValueError(f"expected {name} of shape {(b, 1, h, w)}, got {tuple(t.shape)}")
        if inter_s4 is not None and inter_s8 is None:
            raise ValueError("inter_s4 given without inter_s8")

    def forward(self, x: torch.Tensor, seg: torch.Tensor, inter_s8: torch.Tensor | None = None,
                inter_s4: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        self._check(x, seg, inter_s8, inter_s4)
        size = tuple(x.shape[-2:])
        out: dict[str, torch.Tensor] = {}

        # Pass 1: stride-8 estimate from the input mask alone.
        if inter_s8 is None:
            f, _, _ = self.feats(torch.cat([x, seg, seg, seg], dim=1))
            out["out_28"] = _upsample(self.final_28(self.psp(f)), size)
            inter_s8 = torch.tanh(out["out_28"])

        # Pass 2: stride-8 and stride-4 estimates.
        if inter_s4 is None:
            f, _, f_2 = self.feats(torch.cat([x, seg, inter_s8, inter_s8], dim=1))
            p = self.psp(f)
            out["out_28_2"] = _upsample(self.final_28(p), size)
            out["out_56"] = _upsample(self.final_56(self.up_1(p, f_2)), size)
            inter_s8 = torch.tanh(out["out_28_2"])
            inter_s4 = torch.tanh(out["out_56"])

        # Pass 3: full-resolution output.
        f, f_1, f_2 = self.feats(torch.cat([x, seg, inter_s8, inter_s4], dim=1))
        p = self.psp(f)
        out["out_28_3"] = _upsample(self.final_28(p), size)
        p = self.up_1(p, f_2)
        out["out_56_2"] = _upsample(self.final_56(p), size)
        p = self.up_3(self.up_2(p, f_1), x)
        p = F.relu(self.final_11(torch.cat([p, x], dim=1)))
        out["out_224"] = self.final_21(p)

        for key in [k for k in out if k.startswith("out_")]:
            out["pred_" + key[4:]] = torch.sigmoid(out[key])
        return out


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints


def _common_prefix_on_every_key(keys: list[str], prefix: str) -> bool:
    return bool(keys) and all(k.startswith(prefix) for k in keys)


def normalize_state_dict(obj: Any, *, source: str = "<state_dict>") -> "OrderedDict[str, torch.Tensor]":
    """Extract a :class:`CascadePSPNet` state_dict from a loaded checkpoint object.

    Accepts our format (a dict with a ``"model"`` state_dict), the official format (every key prefixed with
    ``module.``) and a plain state_dict. The ``module.`` prefix is removed only when EVERY key carries it.
    Raises :class:`CascadePSPCheckpointError` naming ``source`` when the object is not a state_dict.
    """
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not obj:
        raise CascadePSPCheckpointError(f"{source}: not a CascadePSP checkpoint (expected a state_dict or a dict "
                                        f"with a 'model' state_dict, got {type(obj).__name__})")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise CascadePSPCheckpointError(f"{source}: entries that are not tensors: {bad[:5]}")
    keys = list(obj.keys())
    prefix = "module."
    if _common_prefix_on_every_key(keys, prefix):
        return OrderedDict((k[len(prefix):], v) for k, v in obj.items())
    return OrderedDict(obj.items())


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str = "<state_dict>"
                     ) -> None:
    """Compare keys and shapes with ``model``; raise :class:`CascadePSPCheckpointError` listing every mismatch."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        def show(items: list[str]) -> str:
            return ", ".join(items[:20]) + (f", ... ({len(items)} in all)" if len(items) > 20 else "")

        parts = []
        if missing:
            parts.append(f"missing keys: {show(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {show(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches: {show(shapes)}")
        raise CascadePSPCheckpointError(f"{source}: does not match the CascadePSP network ({len(state_dict)} keys "
                                        f"in the file, {len(expected)} expected); " + "; ".join(parts))


def load_cascadepsp_state_dict(path: str | os.PathLike) -> "OrderedDict[str, torch.Tensor]":
    """Read a CascadePSP checkpoint file (official, ours or plain) as an unprefixed state_dict on the CPU.

    Uses ``torch.load(weights_only=True)``. Raises ``FileNotFoundError`` (with where to get the weights) when the
    file is missing and :class:`CascadePSPCheckpointError` when it cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: CascadePSP checkpoint not found. {MISSING_CHECKPOINT_HELP}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt files
        raise CascadePSPCheckpointError(f"{path}: cannot read the checkpoint ({type(exc).__name__}: {exc})") from exc
    return normalize_state_dict(obj, source=str(path))


def build_cascadepsp_net(checkpoint: str | os.PathLike | None = None, *, zero_init_residual: bool = False
                     ) -> CascadePSPNet:
    """Build :class:`CascadePSPNet`; with ``checkpoint``, load it strictly (keys and shapes checked first).

    Without a checkpoint the weights are randomly initialised (torch's default init, Kaiming for the ResNet), for
    training or tests; ``zero_init_residual=True`` zeroes the last BN scale of every ResNet bottleneck (Goyal et
    al. 2017), which keeps from-scratch training stable (without it the loss rises for the first ~10 Adam steps).
    The model is returned in train mode either way (call ``.eval()`` for inference).
    """
    model = CascadePSPNet()
    if zero_init_residual:
        for m in model.feats.modules():
            if isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)
    if checkpoint is not None:
        state = load_cascadepsp_state_dict(checkpoint)
        check_state_dict(model, state, source=str(checkpoint))
        model.load_state_dict(state, strict=True)
    return model


def to_official_state_dict(model_or_state: nn.Module | Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """The state_dict in the official layout (every key prefixed with ``module.``), e.g. to share with the
    original code base."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    return OrderedDict(("module." + k, v) for k, v in state.items())


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (67,683,433 for the official network)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
