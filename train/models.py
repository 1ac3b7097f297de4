"""Teacher networks: torchvision's segmentation models, built without downloads, plus checkpoint initialisation.

Every builder returns a torchvision segmentation model whose ``forward(x)`` takes ``(B, 3, H, W) float32``
ImageNet-normalised images and returns ``{"out": (B, C, H, W) logits[, "aux": (B, C, H, W) logits]}`` at the
input size. Models are built with ``weights=None, weights_backbone=None``: nothing is ever downloaded; pretrained
weights come only from a local file through :func:`load_init`.

Registry (:data:`TEACHER_ARCHITECTURES`, name → builder)::

    deeplabv3_resnet50            the paper's teacher (aux head on by default)
    deeplabv3_mobilenet_v3_large  aux head on by default
    lraspp_mobilenet_v3_large     no aux head

The MobileNetV3 builders take ``width_mult`` (1.0 = torchvision's model, same state-dict keys and shapes); a
smaller width gives a model that trains in seconds on a CPU, for tests.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch
from torch import nn

__all__ = ["TEACHER_ARCHITECTURES", "build_teacher", "build_deeplabv3_resnet50", "build_deeplabv3_mobilenet_v3_large",
           "build_lraspp_mobilenet_v3_large", "load_init", "CheckpointMismatchError", "has_aux"]


class CheckpointMismatchError(ValueError):
    """A checkpoint whose keys or shapes do not fit the model; the message names the file and the keys."""


def build_deeplabv3_resnet50(*, num_classes: int, aux_loss: bool = True) -> nn.Module:
    """torchvision's ``deeplabv3_resnet50`` (output stride 8, ASPP head; FCN aux head on layer3 when ``aux_loss``)."""
    from torchvision.models.segmentation import deeplabv3_resnet50

    return deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=aux_loss)


def _mobilenet_features(width_mult: float) -> nn.Module:
    from torchvision.models import mobilenet_v3_large

    return mobilenet_v3_large(weights=None, dilated=True, width_mult=width_mult)


def build_deeplabv3_mobilenet_v3_large(*, num_classes: int, aux_loss: bool = True,
                                       width_mult: float = 1.0) -> nn.Module:
    """torchvision's ``deeplabv3_mobilenet_v3_large`` (dilated backbone, output stride 16), any ``width_mult``."""
    if width_mult == 1.0:
        from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

        return deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes,
                                            aux_loss=aux_loss)
    from torchvision.models.segmentation.deeplabv3 import _deeplabv3_mobilenetv3

    return _deeplabv3_mobilenetv3(_mobilenet_features(width_mult), num_classes, aux_loss)


def build_lraspp_mobilenet_v3_large(*, num_classes: int, aux_loss: bool = False,
                                    width_mult: float = 1.0) -> nn.Module:
    """torchvision's ``lraspp_mobilenet_v3_large`` (Lite R-ASPP head, no aux head), any ``width_mult``."""
    if aux_loss:
        raise ValueError("lraspp_mobilenet_v3_large has no auxiliary head; use aux_loss=False")
    if width_mult == 1.0:
        from torchvision.models.segmentation import lraspp_mobilenet_v3_large

        return lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes)
    from torchvision.models.segmentation.lraspp import _lraspp_mobilenetv3

    return _lraspp_mobilenetv3(_mobilenet_features(width_mult), num_classes)


#: name → builder(*, num_classes, aux_loss[, width_mult]) → nn.Module
TEACHER_ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "deeplabv3_resnet50": build_deeplabv3_resnet50,
    "deeplabv3_mobilenet_v3_large": build_deeplabv3_mobilenet_v3_large,
    "lraspp_mobilenet_v3_large": build_lraspp_mobilenet_v3_large,
}

#: default of ``aux_loss`` per architecture (torchvision's reference trains the DeepLabV3 models with --aux-loss)
DEFAULT_AUX = {"deeplabv3_resnet50": True, "deeplabv3_mobilenet_v3_large": True, "lraspp_mobilenet_v3_large": False}


def build_teacher(architecture: str, *, num_classes: int, aux_loss: bool | None = None,
                  width_mult: float = 1.0) -> nn.Module:
    """Build a registered architecture (``aux_loss=None`` → the architecture's default)."""
    if architecture not in TEACHER_ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; expected one of {sorted(TEACHER_ARCHITECTURES)}")
    if num_classes < 1 or num_classes > 255:
        raise ValueError(f"num_classes must be in 1..255 (255 is void), got {num_classes}")
    aux = DEFAULT_AUX[architecture] if aux_loss is None else bool(aux_loss)
    kwargs = {"num_classes": num_classes, "aux_loss": aux}
    if architecture != "deeplabv3_resnet50":
        kwargs["width_mult"] = float(width_mult)
    elif width_mult != 1.0:
        raise ValueError("width_mult applies to the MobileNetV3 architectures only")
    return TEACHER_ARCHITECTURES[architecture](**kwargs)


def has_aux(model: nn.Module) -> bool:
    return getattr(model, "aux_classifier", None) is not None


def _unwrap_state_dict(obj, path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside a checkpoint: a plain state dict, ``{"model": sd}`` (torchvision's references) or
    ``{"state_dict": sd}`` (steadyseg's ``model.pt``)."""
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    if isinstance(obj, dict):
        for key in ("model", "state_dict"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                return inner
    raise CheckpointMismatchError(f"{path}: not a state dict (expected a mapping of tensors, or one under 'model' or "
                                  "'state_dict')")


def _few(keys, n: int = 6) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f", … ({len(keys)} in all)" if len(keys) > n else "")


def _backbone_mapping(model: nn.Module, sd: dict[str, torch.Tensor]) -> dict[str, str] | None:
    """Map an image-classification checkpoint's keys onto ``model.backbone`` (``None`` when they do not fit).

    Accepted: keys already named ``backbone.*``; a torchvision ResNet state dict (``conv1.*``, ``layer1.*`` …,
    ``fc.*`` ignored); a torchvision MobileNetV3 state dict (``features.N.*`` → ``backbone.N.*``, ``classifier.*``
    ignored).
    """
    targets = {k for k in model.state_dict() if k.startswith("backbone.")}
    mapping: dict[str, str] = {}
    for k in sd:
        if k.startswith("backbone."):
            mapping[k] = k
        elif k.startswith("features."):
            mapping[k] = "backbone." + k[len("features."):]
        elif k.split(".")[0] in ("fc", "classifier", "avgpool"):
            continue  # the classification head of an ImageNet checkpoint
        else:
            mapping[k] = "backbone." + k
    mapped = set(mapping.values())
    # a ResNet checkpoint also holds layer4 etc.; IntermediateLayerGetter drops nothing we need, so the mapped keys
    # must cover the backbone exactly
    return mapping if mapped == targets else None


def load_init(model: nn.Module, path: str | os.PathLike) -> str:
    """Initialise ``model`` from a local checkpoint; returns ``"full"`` or ``"backbone"``.

    * full: the checkpoint has exactly the model's keys (e.g. torchvision's ``deeplabv3_resnet50`` weights, or a
      steadyseg ``model.pt``) → ``load_state_dict(strict=True)``;
    * backbone: the keys cover exactly the backbone (an ImageNet ResNet50/MobileNetV3 state dict or
      ``backbone.*`` keys) → the backbone is loaded, the heads keep their initialisation.

    Loaded with ``torch.load(weights_only=True)``. Raises ``FileNotFoundError`` for a missing file and
    :class:`CheckpointMismatchError` naming the file and the missing/unexpected keys or mismatched shapes.
    """
    from steadyseg.train.checkpoint import torch_load_safe

    path = Path(path)
    obj = torch_load_safe(path, what="--init checkpoint", error=CheckpointMismatchError)
    sd = _unwrap_state_dict(obj, path)
    own = model.state_dict()
    if set(sd) == set(own):
        kind, loaded = "full", sd
    else:
        mapping = _backbone_mapping(model, sd)
        if mapping is None:
            missing = set(own) - set(sd)
            unexpected = set(sd) - set(own)
            raise CheckpointMismatchError(
                f"{path}: keys do not match the model, neither as a full checkpoint nor as a backbone; "
                f"missing: {_few(missing) or '-'}; unexpected: {_few(unexpected) or '-'}")
        kind, loaded = "backbone", {dst: sd[src] for src, dst in mapping.items()}
    bad = [f"{k} {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in loaded.items()
           if tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise CheckpointMismatchError(f"{path}: shape mismatch ({kind} checkpoint): {'; '.join(bad[:4])}"
                                      + (f" … ({len(bad)} in all)" if len(bad) > 4 else ""))
    if kind == "full":
        model.load_state_dict(loaded, strict=True)
    else:
        model.load_state_dict({**own, **loaded}, strict=True)
    return kind
