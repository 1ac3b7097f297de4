"""Mask refiners behind one protocol, a plain dict registry of their builders, and the crop they work on.

Every refiner takes one image crop and one binary mask of the same size and returns a soft mask::

    refiner.refine(image, mask) -> np.ndarray
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
- ``"cascadepsp"``: :class:`AdaptiveCascadePSPRefiner`, CascadePSP (needs a checkpoint) with a per-crop choice
  of the working resolution ``L`` (:func:`choose_L`) instead of the official "upscale everything to 900".
- ``"identity"``: returns the input mask; measures the pipeline's own overhead and checks round trips.

Two CascadePSP classes, two jobs: :class:`steadyseg.refine.cascadepsp.refiner.CascadePSPRefiner` is the
whole-image inference of the paper (global + local step at a fixed ``L``, any (H, W) input);
:class:`AdaptiveCascadePSPRefiner` is the registry's refiner, which wraps it, picks ``L`` for each crop and
follows the protocol above.

:func:`refine_on_crop` cuts the crop around a mask (:func:`crop_box`), runs a refiner on it, checks the output and
thresholds it: ``refine-coco`` and ``benchmarks/eval_refiners_davis.py`` both call it.
"""

from __future__ import annotations

import inspect
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Refiner(Protocol):
    """Anything with ``refine(image (H,W,3) uint8 RGB, mask (H,W) bool) -> (H,W) float32 in [0, 1]``."""

    def refine(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray: ...


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

    def refine(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``(H, W)`` float32 in {0, 1}: ``mask > 0`` (``image`` (H, W, 3) uint8 is only checked)."""
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


class AdaptiveCascadePSPRefiner:
    """The registry's ``"cascadepsp"`` refiner: CascadePSP on one crop, working resolution chosen per crop.

    Wraps :class:`steadyseg.refine.cascadepsp.refiner.CascadePSPRefiner` (whole-image inference at a fixed ``L``;
    network loaded once, in ``__init__``) and picks ``L`` for each crop with :func:`choose_L`.
    ``refine(image (H,W,3) uint8 RGB, mask (H,W) bool, *, L=None, fast=None) -> (H,W) float32 in [0, 1]``:
    ``L``/``fast`` override the policy for one call.

    Args:
        checkpoint: CascadePSP weights (official ``module.``-prefixed state_dict or ``steadyseg refine-train``'s).
        device: torch device string.
        fast: global step only (no local patches).
        l_max, l_min, max_upscale: the :func:`choose_L` policy.
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

    def refine(self, image: np.ndarray, mask: np.ndarray, *, L: int | None = None,
               fast: bool | None = None) -> np.ndarray:
        """Refine one crop; ``(H, W)`` float32 in [0, 1] (see the class docstring)."""
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


def build_cascadepsp_refiner(*, checkpoint: str | os.PathLike, device: str = "cpu", fast: bool = False,
                             l_max: int = 900, l_min: int = 224, max_upscale: float = 2.0
                             ) -> AdaptiveCascadePSPRefiner:
    """CascadePSP from a local checkpoint (official ``module.``-prefixed state_dict), per-crop ``L`` policy.

    The crop refiner of the registry; the network alone is
    :func:`steadyseg.refine.cascadepsp.network.build_cascadepsp_net`.
    """
    return AdaptiveCascadePSPRefiner(checkpoint=checkpoint, device=device, fast=fast, l_max=l_max, l_min=l_min,
                                     max_upscale=max_upscale)


REFINERS: dict[str, Callable[..., Any]] = {
    "guided": build_guided,
    "cascadepsp": build_cascadepsp_refiner,
    "identity": build_identity,
}


def build_refiner(name: str, **kwargs: Any) -> Any:
    """``REFINERS[name](**kwargs)`` with clear errors for an unknown name or an unknown parameter."""
    if name not in REFINERS:
        raise ValueError(f"unknown refiner {name!r}; choose one of {sorted(REFINERS)}")
    allowed = set(inspect.signature(REFINERS[name]).parameters)
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ValueError(f"refiner {name!r} has no parameter(s) {unknown}; it takes {sorted(allowed)}")
    return REFINERS[name](**kwargs)


# ----------------------------------------------------------------------------------------------------------------
# The crop a refiner works on
# ----------------------------------------------------------------------------------------------------------------
def crop_box(mask_box: tuple[int, int, int, int], height: int, width: int, *, context: float = 0.25,
             context_min: int = 8) -> tuple[int, int, int, int]:
    """Crop ``(x0, y0, x1, y1)`` (exclusive ends, inside the image) around a box ``(x0, y0, x1, y1)``.

    The box grows on every side by ``max(context_min, context · max(box_w, box_h))`` pixels (rounded up), then is
    clipped to the ``height`` × ``width`` image.
    """
    x0, y0, x1, y1 = mask_box
    pad = int(math.ceil(max(float(context_min), float(context) * max(x1 - x0, y1 - y0))))
    return max(0, x0 - pad), max(0, y0 - pad), min(width, x1 + pad), min(height, y1 + pad)


@dataclass(frozen=True)
class CropRefinement:
    """The result of :func:`refine_on_crop`.

    Attributes:
        box: ``(x0, y0, x1, y1)`` of the crop in image pixels (exclusive ends).
        mask: ``(y1 - y0, x1 - x0)`` bool, the input mask inside the crop.
        refined: same shape, bool, the refiner's soft output ``> threshold``.
    """

    box: tuple[int, int, int, int]
    mask: np.ndarray
    refined: np.ndarray

    def paste(self, height: int, width: int) -> np.ndarray:
        """The refined mask pasted into an all-False ``(height, width)`` bool image."""
        x0, y0, x1, y1 = self.box
        out = np.zeros((height, width), dtype=bool)
        out[y0:y1, x0:x1] = self.refined
        return out


def refine_on_crop(refiner: Refiner, image: np.ndarray, mask: np.ndarray, *, origin: tuple[int, int] = (0, 0),
                   context: float = 0.25, context_min: int = 8, threshold: float = 0.5, where: str = "mask",
                   refiner_name: str | None = None) -> CropRefinement | None:
    """Refine ``mask`` on the crop around it (:func:`crop_box` of its pixel box) and threshold the result.

    Args:
        refiner: any :class:`Refiner`.
        image: ``(H, W, 3)`` uint8 RGB, the whole image.
        mask: ``(h, w)`` bool, the mask inside a region of the image whose top-left pixel is ``origin``
            (``(x, y)``); the region must contain the crop (the whole image, ``origin=(0, 0)``, always does).
        context, context_min: crop padding (see :func:`crop_box`).
        threshold: the refined mask is ``soft > threshold``.
        where, refiner_name: named in error messages (e.g. ``"annotation 12 (image 3)"``, ``"guided"``).

    Returns:
        a :class:`CropRefinement`, or ``None`` when ``mask`` is empty.

    Raises:
        ValueError: naming ``where`` and the refiner, when the refiner raises or returns a map of the wrong shape or
            with non-finite values.
    """
    name = refiner_name if refiner_name is not None else getattr(refiner, "name", type(refiner).__name__)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    height, width = image.shape[:2]
    ox, oy = origin
    x0, y0, x1, y1 = crop_box((ox + int(cols[0]), oy + int(rows[0]), ox + int(cols[-1]) + 1, oy + int(rows[-1]) + 1),
                              height, width, context=context, context_min=context_min)
    mask_crop = mask[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
    try:
        soft = refiner.refine(np.ascontiguousarray(image[y0:y1, x0:x1]), np.ascontiguousarray(mask_crop))
    except Exception as exc:  # a refiner bug or a bad crop must not stop the caller's other masks
        raise ValueError(f"{where}: refiner {name!r} failed: {type(exc).__name__}: {exc}") from exc
    soft = np.asarray(soft)
    if soft.shape != mask_crop.shape:
        raise ValueError(f"{where}: refiner {name!r} returned shape {soft.shape}, expected {mask_crop.shape}")
    if not np.isfinite(soft).all():
        raise ValueError(f"{where}: refiner {name!r} returned non-finite values")
    return CropRefinement(box=(x0, y0, x1, y1), mask=mask_crop, refined=soft > threshold)
