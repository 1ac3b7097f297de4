"""Mask refiners behind one protocol, and a plain dict registry of their builders.

Every refiner takes one image crop and one binary mask of the same size and returns a soft mask::

    refiner.refine(image, mask, **kw) -> np.ndarray
        image: (H, W, 3) uint8 RGB
        mask:  (H, W) bool (True = object)
        returns (H, W) float32 in [0, 1]; callers threshold at 0.5

``REFINERS`` maps a name to a builder with explicit keyword arguments (``segment-anything``'s
``sam_model_registry`` habit); only the CLI / manifest layer maps configuration onto these arguments::

    from steadyseg.refine.refiners import REFINERS, build_refiner
    refiner = REFINERS["guided"](radius_scale=0.03)
    refiner = build_refiner("cascadepsp", checkpoint="model.pth", l_max=900)

Builders:

- ``"guided"``: :class:`steadyseg.refine.guided_refiner.GuidedRefiner`, weight-free, the default.
- ``"cascadepsp"``: CascadePSP (needs a checkpoint) with a per-crop choice of the working resolution ``L``
  (:func:`choose_L`) instead of the official "upscale everything to 900".
- ``"identity"``: returns the input mask; measures the pipeline's own overhead and checks round trips.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Refiner(Protocol):
    """Anything with ``refine(image (H,W,3) uint8 RGB, mask (H,W) bool, **kw) -> (H,W) float32 in [0, 1]``."""

    def refine(self, image: np.ndarray, mask: np.ndarray, **kw: Any) -> np.ndarray: ...


def check_refiner_inputs(image: np.ndarray, mask: np.ndarray) -> None:
    """Raise ``ValueError`` unless ``image`` is (H, W, 3) uint8 and ``mask`` is (H, W) of the same size."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got "
                         f"{getattr(image, 'shape', None)} {getattr(image, 'dtype', type(image).__name__)}")
    if not isinstance(mask, np.ndarray) or mask.shape != image.shape[:2]:
        raise ValueError(f"expected an (H, W) mask of the image size {image.shape[:2]}, "
                         f"got {getattr(mask, 'shape', None)}")


class IdentityRefiner:
    """Returns the input mask as float32 {0, 1}: the pipeline's overhead baseline and the round-trip check."""

    name = "identity"

    def refine(self, image: np.ndarray, mask: np.ndarray, **kw: Any) -> np.ndarray:
        check_refiner_inputs(image, mask)
        return (np.asarray(mask) > 0).astype(np.float32)


def choose_L(height: int, width: int, *, l_max: int = 900, l_min: int = 224, max_upscale: float = 2.0) -> int:
    """Working resolution ``L`` (longest side given to CascadePSP) for a crop of ``height`` × ``width`` pixels.

    The official refiner resizes every input so that its longest side is ``L = 900``; for a 40-pixel COCO object
    that is a ×22 upscale that costs as much as a full frame and adds nothing the network can see. Policy:
    ``L = clip(round(max_upscale · longest_side), l_min, l_max)`` — big crops
    are downscaled to ``l_max`` like the official code, small ones are upscaled at most ``max_upscale`` times, but
    never below ``l_min`` (the network's training crop is 224). ``max_upscale = inf`` with ``l_min = l_max = 900``
    reproduces the official behaviour.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"crop size must be positive, got {height}x{width}")
    if not (0 < l_min <= l_max):
        raise ValueError(f"need 0 < l_min <= l_max, got l_min={l_min}, l_max={l_max}")
    longest = max(height, width)
    target = longest * max_upscale if math.isfinite(max_upscale) else l_max
    return int(min(max(round(target), l_min), l_max))


class CascadePSPCropRefiner:
    """CascadePSP applied to one crop at a time with a per-crop working resolution (see :func:`choose_L`).

    Wraps ``steadyseg.refine.cascadepsp.refiner.CascadePSPRefiner`` (network loaded once, in ``__init__``).
    ``refine(image, mask, L=None, fast=None)``: ``L``/``fast`` override the policy for one call.
    """

    name = "cascadepsp"

    def __init__(self, *, checkpoint: str | os.PathLike, device: str = "cpu", fast: bool = False,
                 l_max: int = 900, l_min: int = 224, max_upscale: float = 2.0) -> None:
        from steadyseg.refine.cascadepsp.refiner import CascadePSPRefiner

        if checkpoint is None:
            raise ValueError("the cascadepsp refiner needs a checkpoint (--checkpoint PATH); "
                             "use --refiner guided when none is available")
        self.fast = bool(fast)
        self.l_max, self.l_min, self.max_upscale = int(l_max), int(l_min), float(max_upscale)
        choose_L(1, 1, l_max=self.l_max, l_min=self.l_min, max_upscale=self.max_upscale)  # validates the numbers
        self.model = CascadePSPRefiner(checkpoint=checkpoint, device=device)

    def refine(self, image: np.ndarray, mask: np.ndarray, *, L: int | None = None, fast: bool | None = None,
               **kw: Any) -> np.ndarray:
        check_refiner_inputs(image, mask)
        if L is None:
            L = choose_L(image.shape[0], image.shape[1], l_max=self.l_max, l_min=self.l_min,
                         max_upscale=self.max_upscale)
        out = self.model.refine(image, np.asarray(mask, dtype=bool), fast=self.fast if fast is None else fast, L=L)
        out = np.asarray(out, dtype=np.float32)
        if out.max(initial=0.0) > 1.0:  # a uint8-style 0..255 map
            out = out / 255.0
        return np.clip(out, 0.0, 1.0)


def build_identity() -> IdentityRefiner:
    """The identity refiner (no parameters)."""
    return IdentityRefiner()


def build_guided(*, radius_scale: float = 0.02, radius_min: int = 2, radius_max: int = 24, eps: float = 1e-3,
                 band_scale: float = 1.0, iterations: int = 3, presmooth: bool = False) -> Any:
    """The edge-aware guided-filter refiner (see :class:`steadyseg.refine.guided_refiner.GuidedRefiner`)."""
    from steadyseg.refine.guided_refiner import GuidedRefiner

    return GuidedRefiner(radius_scale=radius_scale, radius_min=radius_min, radius_max=radius_max, eps=eps,
                         band_scale=band_scale, iterations=iterations, presmooth=presmooth)


def build_cascadepsp(*, checkpoint: str | os.PathLike, device: str = "cpu", fast: bool = False, l_max: int = 900,
                     l_min: int = 224, max_upscale: float = 2.0) -> CascadePSPCropRefiner:
    """CascadePSP from a local checkpoint (official ``module.``-prefixed state_dict), per-crop ``L`` policy."""
    return CascadePSPCropRefiner(checkpoint=checkpoint, device=device, fast=fast, l_max=l_max, l_min=l_min,
                                 max_upscale=max_upscale)


REFINERS: dict[str, Callable[..., Any]] = {
    "guided": build_guided,
    "cascadepsp": build_cascadepsp,
    "identity": build_identity,
}


def build_refiner(name: str, **kwargs: Any) -> Any:
    """``REFINERS[name](**kwargs)`` with clear errors for an unknown name or an unknown parameter."""
    if name not in REFINERS:
        raise ValueError(f"unknown refiner {name!r}; choose one of {sorted(REFINERS)}")
    import inspect

    allowed = set(inspect.signature(REFINERS[name]).parameters)
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ValueError(f"refiner {name!r} has no parameter(s) {unknown}; it takes {sorted(allowed)}")
    return REFINERS[name](**kwargs)
