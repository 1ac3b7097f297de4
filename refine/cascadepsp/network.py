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
from typing import Any, Collection, Mapping

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


# ----------------------------------------------------------------------------------------------------------------
# Inference without gradients: the same ATen kernels on the same values, fewer fresh buffers.
#
# A CPU forward at L = 900 allocates tens of GB of short-lived activations; every buffer above glibc's mmap
# threshold is a fresh mapping whose pages fault in (kernel time ~10 % of the forward). In eval mode without
# autograd the forwards below write BatchNorm outputs over their inputs (``aten::native_batch_norm.out`` with
# ``out=input``: the same elementwise kernel, so the values are bit-identical to ``bn(x)``), build the
# concatenations of the pyramid pooling and of the upsampling blocks in place (bilinear upsampling written into a
# slice of the concatenated buffer with ``upsample_bilinear2d.out``) and add residuals in place. Training and
# anything under autograd take the plain module forwards.


def _inplace_ok(module: nn.Module, x: torch.Tensor) -> bool:
    """True when ``module`` may use the in-place inference path: eval mode, autograd off, a CPU float32 input and
    no autocast (CUDA's caching allocator makes fresh buffers cheap, and autocast's dtype rules for ``cat`` are
    kept by the plain path)."""
    return (not module.training and not torch.is_grad_enabled() and x.device.type == "cpu"
            and x.dtype == torch.float32 and not torch.is_autocast_enabled("cpu"))


def _bn_(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """Eval-mode ``bn(x)`` written over ``x`` (contiguous float ``(B, C, h, w)``); bit-identical to ``bn(x)``."""
    if not x.is_contiguous():
        return bn(x)
    stats = x.new_empty(0)
    torch.ops.aten.native_batch_norm.out(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, False, 0.0,
                                         bn.eps, out=x, save_mean=stats, save_invstd=stats.clone())
    return x


def _upsample_into(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Bilinear (``align_corners=False``) resize of ``x`` ``(B, C, h, w)`` to ``out``'s size, written into
    ``out`` ``(B, C, H, W)``; the same kernel and coordinates as ``F.interpolate(x, size=(H, W))``."""
    torch._C._nn.upsample_bilinear2d(x, list(out.shape[-2:]), False, None, None, out=out)
    return out


def _bottleneck_inference(block: Bottleneck, x: torch.Tensor) -> torch.Tensor:
    """torchvision ``Bottleneck.forward`` with in-place BatchNorm and residual add (same values)."""
    out = _bn_(block.bn1, block.conv1(x)).relu_()
    out = _bn_(block.bn2, block.conv2(out)).relu_()
    out = _bn_(block.bn3, block.conv3(out))
    if block.downsample is not None:
        conv, bn = block.downsample
        x = _bn_(bn, conv(x))
    out += x
    return out.relu_()


def _preact_double_conv_inference(seq: nn.Sequential, x: torch.Tensor, *, overwrite: bool) -> torch.Tensor:
    """``seq(x)`` for :func:`_preact_double_conv` (BN, ReLU, conv, BN, ReLU, conv); the first BatchNorm
    overwrites ``x`` when ``overwrite`` (else it allocates, and ``x`` is left as it was)."""
    bn_a, _, conv_a, bn_b, _, conv_b = seq
    x = _bn_(bn_a, x) if overwrite else bn_a(x)
    x = conv_a(x.relu_())
    return conv_b(_bn_(bn_b, x).relu_())


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
        if not _inplace_ok(self, x):
            f_2 = self.layer1(x)
            return self.layer4(self.layer3(self.layer2(f_2))), f_1, f_2
        for block in self.layer1:
            x = _bottleneck_inference(block, x)
        f_2 = x
        for layer in (self.layer2, self.layer3, self.layer4):
            for block in layer:
                x = _bottleneck_inference(block, x)
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
        if not _inplace_ok(self, feats):
            priors = [F.interpolate(stage(feats), size=(h, w), mode="bilinear", align_corners=False)
                      for stage in self.stages]
            return self.relu(self.bottleneck(torch.cat(priors + [feats], dim=1)))
        b, c = feats.shape[:2]
        cat = feats.new_empty(b, c * (len(self.stages) + 1), h, w)
        for i, stage in enumerate(self.stages):
            _upsample_into(stage(feats), cat[:, i * c:(i + 1) * c])
        cat[:, len(self.stages) * c:].copy_(feats)
        return self.bottleneck(cat).relu_()


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
        if _inplace_ok(self, x) and skip.dtype == x.dtype:
            return self._forward_inference(x, skip)
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        p = self.conv(torch.cat([x, skip], dim=1)) + self.shortcut(x)
        return p + self.conv2(p)

    def _forward_inference(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """The same values as the plain forward; the upsampled ``x`` is written straight into the concatenation,
        which the first BatchNorm then overwrites (the shortcut reads ``x`` first), sums are in place."""
        b, cx = x.shape[:2]
        cat = x.new_empty(b, cx + skip.shape[1], *skip.shape[-2:])
        x = _upsample_into(x, cat[:, :cx])
        cat[:, cx:].copy_(skip)
        shortcut = self.shortcut(x)
        p = _preact_double_conv_inference(self.conv, cat, overwrite=True)
        del cat, x
        p += shortcut
        del shortcut
        return _preact_double_conv_inference(self.conv2, p, overwrite=False).add_(p)


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

    ``outputs``: optional collection of the keys wanted (e.g. ``{"pred_224", "pred_56_2"}``); only those are
    returned, and the pass-3 heads (``final_28``, ``final_56``) whose outputs nobody asked for are not run, nor
    are unused upsamplings and sigmoids. Every returned tensor is bit-identical to the same key of the full
    forward (the skipped work does not feed the kept outputs). ``None`` (default): everything that ran.
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
                inter_s4: torch.Tensor | None = None, *, outputs: Collection[str] | None = None
                ) -> dict[str, torch.Tensor]:
        self._check(x, seg, inter_s8, inter_s4)
        wanted = _wanted_outputs(outputs)
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
            del f
            out["out_28_2"] = _upsample(self.final_28(p), size)
            out["out_56"] = _upsample(self.final_56(self.up_1(p, f_2)), size)
            del p, f_2
            inter_s8 = torch.tanh(out["out_28_2"])
            inter_s4 = torch.tanh(out["out_56"])

        # Pass 3: full-resolution output (the s8 / s4 heads only when asked for).
        f, f_1, f_2 = self.feats(torch.cat([x, seg, inter_s8, inter_s4], dim=1))
        del inter_s8, inter_s4
        p = self.psp(f)
        del f
        if wanted is None or wanted & {"out_28_3", "pred_28_3"}:
            out["out_28_3"] = _upsample(self.final_28(p), size)
        p = self.up_1(p, f_2)
        del f_2
        if wanted is None or wanted & {"out_56_2", "pred_56_2"}:
            out["out_56_2"] = _upsample(self.final_56(p), size)
        p = self.up_3(self.up_2(p, f_1), x)
        del f_1
        p = F.relu(self.final_11(torch.cat([p, x], dim=1)))
        out["out_224"] = self.final_21(p)

        for key in [k for k in out if k.startswith("out_")]:
            if wanted is None or "pred_" + key[4:] in wanted:
                out["pred_" + key[4:]] = torch.sigmoid(out[key])
        return out if wanted is None else {k: v for k, v in out.items() if k in wanted}


def _wanted_outputs(outputs: Collection[str] | None) -> frozenset[str] | None:
    """``outputs`` as a set, checked against the keys :meth:`CascadePSPNet.forward` can return."""
    if outputs is None:
        return None
    wanted = frozenset(outputs)
    known = {p + k[4:] for k in OUTPUT_KEYS for p in ("out_", "pred_")}
    if not wanted or wanted - known:
        raise ValueError(f"outputs must be a non-empty subset of {sorted(known)}, got {sorted(wanted)}")
    return wanted


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
