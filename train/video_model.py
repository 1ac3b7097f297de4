"""The video-model protocol: clips in, per-frame logits out, and an adapter for models with other conventions.

**Protocol.** A video model takes a clip ``(B, T, 3, H, W)`` float RGB in ``[0, 1]`` and returns per-frame class
logits ``(B, T, C, H, W)`` of the same ``T``, ``H``, ``W``. Everything in :mod:`steadyseg.train` that trains or
runs a video model (``steadyseg train video-model``, ``steadyseg predict``, ``steadyseg bench tradeoff``) talks to
this protocol only.

**Adapter.** :class:`VideoModelAdapter` wraps any ``nn.Module`` whose conventions differ, from a few declared
options (:data:`ADAPTER_DEFAULTS`), with no subclassing:

======================  ==============================================================================================
``layout``              the layout the wrapped module takes: ``"BTCHW"`` or ``"BCTHW"`` (channels first, time second,
                        the layout of 3D convolutions and torchvision's video backbones)
``output_layout``       the layout of its logits (``None``: the same as ``layout``)
``output_key``          the key of the logits when the module returns a mapping (``None``: the module returns a
                        tensor, or a mapping with the single key ``"out"``)
``scale``               the input is multiplied by it first (255 for models that take 0 … 255)
``mean``, ``std``       per-channel normalisation after scaling (``None``: none)
``size_multiple``       ``H`` and ``W`` are padded (replicate) up to a multiple of it; the logits are cropped back
``time_multiple``       ``T`` is padded by repeating the last frame up to a multiple of it; extra outputs dropped
``resize_output``       logits whose ``H``, ``W`` differ from the (padded) input are resized bilinearly to it
``num_classes``         the class count ``C`` the logits must have (checked; ``None``: not checked)
======================  ==============================================================================================

**User models.** ``steadyseg train video-model --model module.path:factory`` (or ``path/to/file.py:factory``)
imports the factory with :func:`import_factory` and calls it with ``--model-arg KEY=VALUE`` keyword arguments
(values read as JSON, else strings; and ``num_classes=C`` when the factory takes that parameter and it was not
given). The returned module may carry
its own adapter options as an attribute ``steadyseg_adapter`` (a dict); ``--adapter KEY=VALUE`` overrides them.
``--checkpoint PATH`` loads weights into it with :func:`load_user_weights` (``weights_only=True``; a raw state dict,
or one under ``"state_dict"`` / ``"model"``; a ``"module."`` prefix from DDP is removed; every missing, unexpected
or mis-shaped key is listed in the error).

``MODEL_KINDS["video-model"]`` (:mod:`steadyseg.train.checkpoint`) rebuilds a model from the config written into
``RUN/model.pt`` with :func:`build_video_model_from_config`: ``{"model": "reference" | "module:factory",
"model_args": {...}, "adapter": {...}, ...}`` (the reference model's own keys: :mod:`~steadyseg.train.video_reference`).
A user model is rebuilt by importing its factory again, so the factory must stay importable where the model is
used.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ADAPTER_DEFAULTS", "LAYOUTS", "VideoModelAdapter", "check_clip", "import_factory", "build_user_model",
           "load_user_weights", "build_video_model_from_config"]

LAYOUTS = ("BTCHW", "BCTHW")
ADAPTER_DEFAULTS: dict[str, Any] = {"layout": "BTCHW", "output_layout": None, "output_key": None, "scale": 1.0,
                                    "mean": None, "std": None, "size_multiple": 1, "time_multiple": 1,
                                    "resize_output": True, "num_classes": None}


def check_clip(clip: Tensor, *, what: str = "clip") -> None:
    """Raise ``ValueError`` unless ``clip`` is a ``(B, T, 3, H, W)`` floating tensor."""
    if not isinstance(clip, Tensor) or clip.ndim != 5 or clip.shape[2] != 3 or not torch.is_floating_point(clip):
        shape = tuple(clip.shape) if isinstance(clip, Tensor) else type(clip).__name__
        dtype = clip.dtype if isinstance(clip, Tensor) else ""
        raise ValueError(f"{what}: expected a (B, T, 3, H, W) float tensor in [0, 1], got {shape} {dtype}")


def resolve_adapter(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """:data:`ADAPTER_DEFAULTS` updated with ``options``, checked (unknown keys and bad values raise ValueError)."""
    options = dict(options or {})
    unknown = set(options) - set(ADAPTER_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown adapter options {sorted(unknown)}; known: {sorted(ADAPTER_DEFAULTS)}")
    cfg = {**ADAPTER_DEFAULTS, **options}
    cfg["layout"] = str(cfg["layout"]).upper()
    cfg["output_layout"] = cfg["layout"] if cfg["output_layout"] is None else str(cfg["output_layout"]).upper()
    for key in ("layout", "output_layout"):
        if cfg[key] not in LAYOUTS:
            raise ValueError(f"adapter {key} must be one of {LAYOUTS}, got {cfg[key]!r}")
    for key in ("mean", "std"):
        if cfg[key] is not None:
            vals = [float(v) for v in (cfg[key] if isinstance(cfg[key], (list, tuple)) else [cfg[key]] * 3)]
            if len(vals) != 3:
                raise ValueError(f"adapter {key} needs 3 values (R G B), got {cfg[key]!r}")
            cfg[key] = vals
    if cfg["std"] is not None and min(cfg["std"]) <= 0:
        raise ValueError(f"adapter std must be > 0, got {cfg['std']}")
    for key in ("size_multiple", "time_multiple"):
        cfg[key] = int(cfg[key])
        if cfg[key] < 1:
            raise ValueError(f"adapter {key} must be >= 1, got {cfg[key]}")
    cfg["scale"] = float(cfg["scale"])
    cfg["resize_output"] = bool(cfg["resize_output"])
    cfg["num_classes"] = None if cfg["num_classes"] is None else int(cfg["num_classes"])
    return cfg


class VideoModelAdapter(nn.Module):
    """Wrap a module with other conventions into the video-model protocol (options: the module doc's table).

    ``forward(clip (B, T, 3, H, W) float in [0, 1]) → logits (B, T, C, H, W)``. The wrapped module is
    ``self.model`` (its weights are saved under ``model.``).
    """

    def __init__(self, model: nn.Module, **options: Any):
        super().__init__()
        self.model = model
        self.options = resolve_adapter(options)
        o = self.options
        self.register_buffer("mean", torch.tensor(o["mean"] or [0.0] * 3).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(o["std"] or [1.0] * 3).view(1, 1, 3, 1, 1), persistent=False)

    def forward(self, clip: Tensor) -> Tensor:
        check_clip(clip)
        o = self.options
        b, t, _, h, w = clip.shape
        x = clip * o["scale"] if o["scale"] != 1.0 else clip
        if o["mean"] is not None or o["std"] is not None:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        tm, sm = o["time_multiple"], o["size_multiple"]
        pt, ph, pw = (-t) % tm, (-h) % sm, (-w) % sm
        if pt:
            x = torch.cat([x, x[:, -1:].expand(b, pt, *x.shape[2:])], dim=1)
        if ph or pw:  # replicate padding of the last two dims of a 5-D tensor pads (W, H) with mode "replicate"
            x = F.pad(x.flatten(0, 1), (0, pw, 0, ph), mode="replicate").unflatten(0, (b, t + pt))
        if o["layout"] == "BCTHW":
            x = x.transpose(1, 2)
        y = self.model(x)
        y = self._logits(y)
        if y.ndim != 5:
            raise ValueError(f"{type(self.model).__name__}: expected 5-D logits ({o['output_layout']}), got shape "
                             f"{tuple(y.shape)}")
        if o["output_layout"] == "BCTHW":
            y = y.transpose(1, 2)
        if y.shape[0] != b or y.shape[1] != t + pt:
            raise ValueError(f"{type(self.model).__name__}: logits of shape {tuple(y.shape)} (as BTCHW) do not match "
                             f"the clip's batch {b} and length {t + pt}; check the adapter's output_layout")
        if o["num_classes"] is not None and y.shape[2] != o["num_classes"]:
            raise ValueError(f"{type(self.model).__name__}: {y.shape[2]} output channels, but the model is declared "
                             f"with {o['num_classes']} classes")
        if tuple(y.shape[-2:]) != (h + ph, w + pw):
            if not o["resize_output"]:
                raise ValueError(f"{type(self.model).__name__}: logits of size {tuple(y.shape[-2:])} for an input "
                                 f"of {(h + ph, w + pw)} (resize_output is off)")
            y = F.interpolate(y.flatten(0, 1), size=(h + ph, w + pw), mode="bilinear",
                              align_corners=False).unflatten(0, y.shape[:2])
        return y[:, :t, :, :h, :w]

    def _logits(self, y: Any) -> Tensor:
        key = self.options["output_key"]
        if isinstance(y, Mapping):
            if key is None:
                if set(y) != {"out"}:
                    raise ValueError(f"{type(self.model).__name__} returns a mapping with keys {sorted(y)}: declare "
                                     "which one holds the logits (adapter output_key=...)")
                key = "out"
            if key not in y:
                raise ValueError(f"{type(self.model).__name__}: output_key {key!r} not among its outputs {sorted(y)}")
            y = y[key]
        elif key is not None:
            raise ValueError(f"{type(self.model).__name__} returns {type(y).__name__}, not a mapping, but "
                             f"output_key={key!r} is declared")
        if not isinstance(y, Tensor):
            raise ValueError(f"{type(self.model).__name__}: expected logits as a tensor, got {type(y).__name__}")
        return y


# ----------------------------------------------------------------------------------------------------------------
# User models: factories, weights
# ----------------------------------------------------------------------------------------------------------------
def import_factory(spec: str) -> Callable[..., nn.Module]:
    """The callable named by ``"module.path:name"`` or ``"path/to/file.py:name"``.

    The current working directory is searched for modules as ``python -m`` would (a console script does not add
    it). Raises ``ValueError`` with the spec when it is malformed, the module cannot be imported (the import error
    is quoted) or the name is missing or not callable.
    """
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ValueError(f"--model {spec!r}: expected 'module.path:factory' or 'file.py:factory'")
    mod_name, attr = spec.split(":")
    try:
        if mod_name.endswith(".py") or os.sep in mod_name:
            path = Path(mod_name)
            if not path.is_file():
                raise ValueError(f"--model {spec!r}: {path} not found")
            name = f"steadyseg_user_model_{abs(hash(str(path.resolve())))}"
            module = sys.modules.get(name)
            if module is None:
                loader_spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(loader_spec)
                sys.modules[name] = module
                loader_spec.loader.exec_module(module)
        else:
            cwd = os.getcwd()
            if cwd not in sys.path:
                sys.path.append(cwd)
            module = importlib.import_module(mod_name)
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - any import failure is reported with the spec
        raise ValueError(f"--model {spec!r}: cannot import {mod_name!r} ({type(exc).__name__}: {exc})") from None
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise ValueError(f"--model {spec!r}: {mod_name!r} has no callable {attr!r}")
    return factory


def build_user_model(spec: str, *, model_args: Mapping[str, Any] | None = None, num_classes: int | None = None,
                     adapter: Mapping[str, Any] | None = None) -> VideoModelAdapter:
    """Call the factory named by ``spec`` and wrap its module in a :class:`VideoModelAdapter`.

    ``num_classes`` is passed to the factory when it has a ``num_classes`` parameter (or ``**kwargs``) and
    ``model_args`` does not set it. Adapter options: the module's ``steadyseg_adapter`` attribute, updated by
    ``adapter``; ``num_classes`` is declared on the adapter so wrong outputs are refused.
    """
    factory = import_factory(spec)
    kwargs = dict(model_args or {})
    if num_classes is not None and "num_classes" not in kwargs:
        try:
            params = inspect.signature(factory).parameters
        except (TypeError, ValueError):
            params = {}
        if "num_classes" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
            kwargs["num_classes"] = int(num_classes)
    try:
        module = factory(**kwargs)
    except TypeError as exc:
        raise ValueError(f"--model {spec!r}: the factory does not take the arguments {sorted(kwargs)} ({exc})") \
            from None
    if not isinstance(module, nn.Module):
        raise ValueError(f"--model {spec!r}: the factory returned {type(module).__name__}, not a torch nn.Module")
    options = {**dict(getattr(module, "steadyseg_adapter", None) or {}), **dict(adapter or {})}
    if num_classes is not None:
        options["num_classes"] = int(num_classes)
    return VideoModelAdapter(module, **options)


def load_user_weights(module: nn.Module, path: str | os.PathLike) -> None:
    """Load a checkpoint into ``module`` (strict); ``ValueError`` naming the file and listing every mismatch.

    Accepted: a raw state dict, a dict with the state dict under ``"state_dict"`` or ``"model"``, or a steadyseg
    ``model.pt`` (its ``model.``-prefixed adapter keys are matched too). A ``"module."`` prefix (DDP) is removed.
    """
    from steadyseg.train.checkpoint import torch_load_safe

    rec = torch_load_safe(path, what="model checkpoint")
    sd = rec
    if isinstance(rec, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(rec.get(key), Mapping):
                sd = rec[key]
                break
    if not isinstance(sd, Mapping) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise ValueError(f"{path}: not a state dict of tensors (nor one under 'state_dict' or 'model')")
    sd = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}
    own = module.state_dict()
    if not set(sd) & set(own) and all(k.startswith("model.") for k in sd):
        sd = {k[len("model."):]: v for k, v in sd.items()}
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = sorted(f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in set(sd) & set(own)
                    if sd[k].shape != own[k].shape)
    if missing or unexpected or shapes:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f", … ({len(keys)} in all)" if len(keys) > 8 else "")
        parts = ([f"missing keys: {few(missing)}"] if missing else []) + \
                ([f"unexpected keys: {few(unexpected)}"] if unexpected else []) + \
                ([f"shape mismatches (checkpoint vs model): {few(shapes)}"] if shapes else [])
        raise ValueError(f"{path}: the checkpoint does not fit the model ({type(module).__name__}): " +
                         "; ".join(parts))
    module.load_state_dict(sd, strict=True)


def build_video_model_from_config(config: Mapping[str, Any]) -> nn.Module:
    """Rebuild a video model (weights not loaded) from a ``model.pt`` config: the reference model
    (``config["model"] == "reference"``) or a user factory."""
    spec = config.get("model", "reference")
    if spec == "reference":
        from steadyseg.train.video_reference import build_reference_model

        return build_reference_model(backbone=config["backbone"], num_classes=int(config["num_classes"]),
                                     decoder_channels=int(config["decoder_channels"]),
                                     adapter=config.get("adapter"))
    return build_user_model(spec, model_args=config.get("model_args"), num_classes=int(config["num_classes"]),
                            adapter=config.get("adapter"))
