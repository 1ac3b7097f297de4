"""``RUN/model.pt``: the final weights of any trained model plus what is needed to rebuild it.

Every training command writes ``RUN/model.pt`` as a dict (loadable with ``torch.load(weights_only=True)``)::

    {"format": "steadyseg-model/1", "kind": "teacher", "config": {...}, "state_dict": {...}}

``config`` holds only plain values; for a teacher: ``architecture``, ``num_classes``, ``names`` (class names,
index 0 = background), ``label_set``, ``aux_loss``, ``width_mult``, ``base_size`` (shorter side at inference),
``mean``/``std`` (input normalisation). :data:`MODEL_KINDS` maps ``kind`` to a builder ``config → nn.Module``
(weights not loaded): ``teacher``, ``decoder`` (also the TI baseline) and ``video-model``, each with its
predictor in :data:`steadyseg.train.predict.PREDICTORS`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from steadyseg.train.decoder import build_decoder_from_config

__all__ = ["MODEL_FORMAT", "MODEL_KINDS", "save_model", "read_model", "load_model", "build_teacher_from_config",
           "build_video_model_from_config", "torch_load_safe"]

MODEL_FORMAT = "steadyseg-model/1"


def build_teacher_from_config(config: dict[str, Any]) -> nn.Module:
    """Rebuild a teacher from a ``model.pt`` config (architecture, num_classes, aux_loss, width_mult)."""
    from steadyseg.train.models import build_teacher

    return build_teacher(config["architecture"], num_classes=int(config["num_classes"]),
                         aux_loss=bool(config.get("aux_loss", False)), width_mult=float(config.get("width_mult", 1.0)))


def build_video_model_from_config(config: dict[str, Any]) -> nn.Module:
    """Rebuild a video model (the reference 3D-conv network or a user factory) from a ``model.pt`` config."""
    from steadyseg.train.video_model import build_video_model_from_config as build

    return build(config)


#: model kind → builder(config) → nn.Module (untrained); one line per trainable model kind of the project
MODEL_KINDS: dict[str, Callable[[dict[str, Any]], nn.Module]] = {
    "teacher": build_teacher_from_config,
    "decoder": build_decoder_from_config,
    "video-model": build_video_model_from_config,
}


def save_model(path: str | os.PathLike, *, kind: str, config: dict[str, Any],
               state_dict: dict[str, torch.Tensor]) -> Path:
    """Write a ``model.pt`` atomically (tensors moved to the CPU)."""
    from steadyseg.files import atomic_path

    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {sorted(MODEL_KINDS)}")
    record = {"format": MODEL_FORMAT, "kind": kind, "config": dict(config),
              "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}}
    with atomic_path(path) as tmp:
        torch.save(record, tmp)
    return Path(path)


def torch_load_safe(path: str | os.PathLike, *, what: str, error: type[ValueError] = ValueError) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with errors naming the file: a missing file
    raises ``FileNotFoundError`` ("<path>: <what> not found"), anything unloadable raises ``error``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is reported with the file name
        # torch's own text runs to a paragraph of advice; its first line is what tells the user what went wrong
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if detail.startswith("Weights only load failed"):
            detail = "not a torch file of tensors and plain containers (weights_only=True refuses it)"
        raise error(f"{path}: cannot load as a weights-only torch checkpoint "
                    f"({type(exc).__name__}: {detail})") from None


def read_model(path: str | os.PathLike) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    """``(kind, config, state_dict)`` of a ``model.pt``, with errors that name the file."""
    path = Path(path)
    rec = torch_load_safe(path, what="model checkpoint")
    if not isinstance(rec, dict) or rec.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path}: not a steadyseg model file (expected format {MODEL_FORMAT!r}; a training run "
                         "writes RUN/model.pt — RUN/checkpoints/ hold resumable training states)")
    kind = rec.get("kind")
    if kind not in MODEL_KINDS:
        raise ValueError(f"{path}: model kind {kind!r} is not known here; known: {sorted(MODEL_KINDS)}")
    return kind, dict(rec["config"]), rec["state_dict"]


def load_model(path: str | os.PathLike, *, device: str | torch.device = "cpu"
               ) -> tuple[str, dict[str, Any], nn.Module]:
    """Rebuild and load a ``model.pt``: ``(kind, config, model)``, the model in eval mode on ``device``."""
    kind, config, sd = read_model(path)
    model = MODEL_KINDS[kind](config)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit the {kind} described by its config: {exc}") from None
    return kind, config, model.to(device).eval()
