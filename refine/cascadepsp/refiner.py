"""CascadePSP inference: the global step and the local (patch) step of the paper, on one image at a time.

Conventions
-----------
- ``image``: ``(H, W, 3)`` ``uint8`` RGB in [0, 255]. ``mask``: ``(H, W)`` ``bool`` or ``uint8`` (``uint8`` masks
  may be {0, 1} or {0, 255}; a pixel is foreground when ``mask > 0`` for ``bool``/{0, 1} masks and ``mask > 127``
  for masks whose maximum exceeds 1, which matches the official ``mask > 127`` on {0, 255} input).
- Output: ``(H, W)`` ``float32`` soft foreground map in [0, 1]; threshold at 0.5 for a binary mask (the official
  package returns the same map scaled to ``uint8`` 0-255).

Global step: the image and the mask are resized by the factor ``s = L / max(H, W)`` (bicubic image / bilinear
mask when upscaling, 'area' when downscaling) with torch's ``scale_factor`` semantics, as in the official
``resize_max_side``: the short side becomes ``floor(s * side)`` and bilinear/bicubic sample at ``1 / s`` steps.
The network input is padded like the official ``safe_forward`` (image with 0 after normalisation, masks with -1;
when a side is not a multiple of 8, BOTH sides grow to the next multiple of 8 strictly above them) and all three
passes run; ``pred_224`` and ``pred_56_2`` are kept. ``fast=True`` returns ``pred_224`` resized back to ``(H, W)``
('area' after upscaling, bilinear with ``align_corners=True`` after downscaling).

Local step (at full resolution): the global ``pred_224`` (resized bilinearly, ``align_corners=False``) binarised
at 0.5 to ±1 is the input mask and the global ``pred_56_2`` (same resize, mapped to [-1, 1]) stands in for the
stride-8 estimate; ``L x L`` patches at stride ``L // 2 - 32`` (see :func:`plan_patches`) are refined (passes 2
and 3) in bounded batches, patches whose foreground fraction is > 0.9 or < 0.1 are skipped, 16 px are trimmed from
every patch edge that is not on the image border and overlaps are averaged (patches added in the official order).
Pixels that no patch covers keep the binarised global result (0 or 1).

Parity: with the same weights, :meth:`CascadePSPRefiner.refine` computes what the official
``Refiner.refine`` computes (same resampling calls, sizes, padding, patch grid, skip rule and averaging order);
``(refine(...) * 255).astype(np.uint8)`` is the official ``uint8`` output. Bit equality additionally needs the
same CPU kernels (torch build, instruction set), see ``tests/refine/test_cascadepsp_golden.py``.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from steadyseg.refine.cascadepsp.network import MISSING_CHECKPOINT_HELP, CascadePSPNet, build_cascadepsp_net

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Local-step constants of the official implementation.
PATCH_PADDING = 16
SKIP_HIGH = 0.9
SKIP_LOW = 0.1
#: Network outputs the global step keeps (``pred_224``: the result / local input mask; ``pred_56_2``: the local
#: step's stride-8 stand-in). The local step keeps ``pred_224`` only.
GLOBAL_OUTPUTS = ("pred_224", "pred_56_2")


@dataclass(frozen=True)
class Patch:
    """One local-step patch: rows ``y0:y1``, columns ``x0:x1`` of the full-resolution image."""

    y0: int
    y1: int
    x0: int
    x1: int


def plan_patches(height: int, width: int, L: int) -> list[Patch]:
    """All candidate local-step patches (before the foreground-fraction skip), in the official order.

    Grid of starts ``i * step`` with ``step = L // 2 - 2 * 16`` over ``range(width // step + 1)`` (outer) x
    ``range(height // step + 1)`` (inner); a patch past the border is shifted back inside; patches larger than the
    image are clipped to it; duplicate starts are dropped. Every patch has size ``min(L, H) x min(L, W)``.
    """
    step = L // 2 - 2 * PATCH_PADDING
    if step <= 0:
        raise ValueError(f"L={L} is too small for the local step (needs L // 2 > {2 * PATCH_PADDING})")
    seen: set[tuple[int, int]] = set()
    patches = []
    for xi in range(width // step + 1):
        for yi in range(height // step + 1):
            y0, x0 = yi * step, xi * step
            y0 = max(0, min(y0, height - L))
            x0 = max(0, min(x0, width - L))
            if (y0, x0) in seen:
                continue
            seen.add((y0, x0))
            patches.append(Patch(y0, min(height, y0 + L), x0, min(width, x0 + L)))
    return patches


def _pad_like_official(t: torch.Tensor, *, value: float) -> torch.Tensor:
    """Pad ``(B, C, h, w)`` at the bottom/right with ``value`` as the official ``safe_forward`` does.

    When ``h`` or ``w`` is not a multiple of 8, BOTH sides become ``(n // 8 + 1) * 8``: a side that already is a
    multiple of 8 still gains 8 rows/columns (e.g. 300 x 400 -> 304 x 408). The padding changes the network's
    output inside the image (pyramid pooling sees it), so it is reproduced as is. Untouched when both are
    multiples of 8.
    """
    h, w = t.shape[-2:]
    if h % 8 == 0 and w % 8 == 0:
        return t
    return F.pad(t, (0, (w // 8 + 1) * 8 - w, 0, (h // 8 + 1) * 8 - h), mode="constant", value=value)


def _resize_max_side(t: torch.Tensor, side: int, mode: str) -> torch.Tensor:
    """Resize ``(B, C, h, w)`` by the factor ``s = side / max(h, w)`` exactly as the official ``resize_max_side``.

    Torch's ``scale_factor`` semantics: the output is ``floor(h * s) x floor(w * s)`` (so the longest side is
    ``side`` and the other is rounded DOWN), and 'bilinear' / 'bicubic' (``align_corners=False``) map output to
    input coordinates with ``1 / s``, not with the ratio of the sizes. 'area' is adaptive average pooling to that
    size.
    """
    h, w = t.shape[-2:]
    scale = side / max(h, w)
    if mode == "area":
        return F.interpolate(t, scale_factor=scale, mode="area")
    return F.interpolate(t, scale_factor=scale, mode=mode, align_corners=False)


def _validate(image: np.ndarray, mask: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be an HxWx3 numpy array (RGB), got "
                         f"{getattr(image, 'shape', type(image).__name__)}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 RGB in [0, 255], got dtype {image.dtype}")
    if not isinstance(mask, np.ndarray) or mask.ndim != 2:
        raise ValueError(f"mask must be an HxW numpy array, got {getattr(mask, 'shape', type(mask).__name__)}")
    if mask.dtype not in (np.bool_, np.uint8):
        raise ValueError(f"mask must be bool or uint8, got dtype {mask.dtype}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {image.shape[:2]}")
    if min(mask.shape) < 1:
        raise ValueError(f"empty image of shape {image.shape}")


def binarize_mask(mask: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool/uint8 mask → bool foreground: ``mask > 0`` for bool or {0, 1}, ``mask > 127`` otherwise."""
    if mask.dtype == np.bool_:
        return mask
    return mask > (127 if mask.max(initial=0) > 1 else 0)


class CascadePSPRefiner:
    """Refine a binary mask of an image with CascadePSP (model loaded once; call :meth:`refine` repeatedly).

    Whole-image inference of the paper at a fixed working resolution ``L`` (per call). The refiner of the
    ``REFINERS`` registry, which picks ``L`` for each crop, is
    :class:`steadyseg.refine.refiners.AdaptiveCascadePSPRefiner` (it wraps this class).

    Args:
        checkpoint: path of the weights (official ``module.``-prefixed file, or one written by
            ``steadyseg refine-train``). ``None`` or a missing file raises an error saying where to get it.
        device: torch device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        half: run the network under float16 autocast (CUDA only; ignored with a ValueError on CPU).
        patch_batch_size: how many local-step patches go through the network at once (>= 1, default 1 as the
            official code). Memory grows linearly with it; patches of only one image are ever held. Batching
            saved no measurable time on a 2-core CPU and can change the last bits: torch picks a different convolution
            kernel for some small maps when the batch is > 1 (e.g. the 1x1 pyramid-pooling convs with 2+ threads),
            so only the default is bit-identical to the official code at every thread count.
        model: an already built :class:`CascadePSPNet` to use instead of ``checkpoint`` (tests, training loops).
        skip_low, skip_high: a local patch is refined only when the foreground fraction of the binarised global
            result inside it lies in ``[skip_low, skip_high]`` (official 0.1 and 0.9).

    After each :meth:`refine`, ``last_stats`` holds ``{"patches_planned": int, "patches_refined": int}``.

    ``torch.set_num_threads`` is left to the caller.
    """

    def __init__(self, checkpoint: str | os.PathLike | None = None, *, device: str | torch.device = "cpu",
                 half: bool = False, patch_batch_size: int = 1, model: CascadePSPNet | None = None,
                 skip_low: float = SKIP_LOW, skip_high: float = SKIP_HIGH) -> None:
        self.device = torch.device(device)
        if half and self.device.type != "cuda":
            raise ValueError(f"half precision needs a CUDA device, got device={device!r}")
        if patch_batch_size < 1:
            raise ValueError(f"patch_batch_size must be >= 1, got {patch_batch_size}")
        if model is None:
            if checkpoint is None or not os.path.isfile(checkpoint):
                where = "no checkpoint given" if checkpoint is None else f"{checkpoint}: file not found"
                raise FileNotFoundError(f"{where}. {MISSING_CHECKPOINT_HELP}")
            model = build_cascadepsp_net(checkpoint)
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.model = model.to(self.device).eval()
        self.half = half
        self.patch_batch_size = int(patch_batch_size)
        if not 0.0 <= skip_low <= skip_high <= 1.0:
            raise ValueError(f"need 0 <= skip_low <= skip_high <= 1, got {skip_low}, {skip_high}")
        self.skip_low, self.skip_high = float(skip_low), float(skip_high)
        self.last_stats: dict[str, int] = {}
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    # -- helpers -------------------------------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.half:
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def _forward(self, im: torch.Tensor, seg: torch.Tensor, inter_s8: torch.Tensor | None = None, *,
                 outputs: tuple[str, ...] = GLOBAL_OUTPUTS) -> dict[str, torch.Tensor]:
        """Pad (see :func:`_pad_like_official`), run the network, crop back to ``(h, w)``.

        Returns the float32 ``(B, 1, h, w)`` sigmoids in [0, 1] named in ``outputs`` (``pred_224``,
        ``pred_56_2``); the network skips the heads of the others (same values, less work)."""
        h, w = im.shape[-2:]
        im_p = _pad_like_official(im, value=0.0)
        seg_p = _pad_like_official(seg, value=-1.0)
        s8_p = None if inter_s8 is None else _pad_like_official(inter_s8, value=-1.0)
        with self._autocast():
            out = self.model(im_p, seg_p, inter_s8=s8_p, outputs=outputs)
        return {k: out[k][..., :h, :w].float() for k in outputs}

    def _to_tensors(self, image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        im = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).to(self.device).permute(2, 0, 1)[None].float() / 255.0
        im = (im - self._mean) / self._std
        seg = torch.from_numpy(binarize_mask(mask).astype(np.float32)).to(self.device)[None, None] * 2.0 - 1.0
        return im, seg

    def _global(self, im: torch.Tensor, seg: torch.Tensor, L: int, *, outputs: tuple[str, ...] = GLOBAL_OUTPUTS
                ) -> dict[str, torch.Tensor]:
        """The global step's network outputs ``(1, 1, h', w')`` at the resized size (see the module docstring):
        ``pred_224`` and, when in ``outputs``, ``pred_56_2`` (needed by the local step only)."""
        h, w = im.shape[-2:]
        if max(h, w) > L:
            im_s, seg_s = _resize_max_side(im, L, "area"), _resize_max_side(seg, L, "area")
        elif max(h, w) < L:
            im_s, seg_s = _resize_max_side(im, L, "bicubic"), _resize_max_side(seg, L, "bilinear")
        else:
            im_s, seg_s = im, seg
        return self._forward(im_s, seg_s, outputs=outputs)

    @staticmethod
    def _batches(items: list[Patch], n: int) -> Iterator[list[Patch]]:
        for i in range(0, len(items), n):
            yield items[i:i + n]

    # -- public --------------------------------------------------------------------------------------------------
    def refine(self, image: np.ndarray, mask: np.ndarray, *, fast: bool = False, L: int = 900) -> np.ndarray:
        """Refine ``mask`` of ``image``; returns an ``(H, W)`` float32 soft map in [0, 1].

        ``image``: ``(H, W, 3)`` uint8 RGB. ``mask``: ``(H, W)`` bool/uint8 (see module docstring).
        ``fast=True`` runs only the global step. ``L``: working resolution of the global step and patch size of
        the local step (default 900, as in the official package). Runs under ``torch.inference_mode()``.
        ``(result * 255).astype(np.uint8)`` is what the official ``Refiner.refine`` returns.
        """
        self._check_call(image, mask, L, local=not fast)
        with torch.inference_mode():
            im, seg = self._to_tensors(image, mask)
            glob = self._global(im, seg, L, outputs=("pred_224",) if fast else GLOBAL_OUTPUTS)
            if fast:
                self.last_stats = {"patches_planned": 0, "patches_refined": 0}
                return self._to_numpy(self._global_to_input_size(glob, im.shape[-2:], L))
            return self._to_numpy(self._local(im, glob, L))

    def refine_fast_and_full(self, image: np.ndarray, mask: np.ndarray, *, L: int = 900
                             ) -> tuple[np.ndarray, np.ndarray]:
        """``(refine(..., fast=True), refine(..., fast=False))`` for the same ``L``, sharing one global step.

        Both maps are bit-identical to the two separate calls (the global step is deterministic and is the first
        step of both modes); this saves one global step (at ``L = 900`` most of the full mode's time when few
        patches are refined). ``last_stats`` describes the full mode.
        """
        self._check_call(image, mask, L, local=True)
        with torch.inference_mode():
            im, seg = self._to_tensors(image, mask)
            glob = self._global(im, seg, L)
            fast = self._to_numpy(self._global_to_input_size(glob, im.shape[-2:], L))
            full = self._to_numpy(self._local(im, glob, L))
        return fast, full

    @staticmethod
    def _check_call(image: np.ndarray, mask: np.ndarray, L: int, *, local: bool) -> None:
        _validate(image, mask)
        if L < 8:
            raise ValueError(f"L must be >= 8, got {L}")
        if local and L // 2 - 2 * PATCH_PADDING <= 0:
            raise ValueError(f"L={L} is too small for the local step (needs L >= {4 * PATCH_PADDING + 2}); "
                             "use a larger L or fast=True")

    @staticmethod
    def _global_to_input_size(glob: dict[str, torch.Tensor], size: tuple[int, int], L: int) -> torch.Tensor:
        """The fast-mode result: global ``pred_224`` ``(1, 1, h', w')`` back to ``size`` = ``(H, W)``, as the
        official ``process_im_single_pass``: 'area' when the global step upscaled (``max(H, W) < L``), bilinear
        with ``align_corners=True`` when it downscaled, unchanged when ``max(H, W) == L``."""
        pred = glob["pred_224"]
        if max(size) < L:
            return F.interpolate(pred, size=tuple(size), mode="area")
        if max(size) > L:
            return F.interpolate(pred, size=tuple(size), mode="bilinear", align_corners=True)
        return pred

    @staticmethod
    def _to_numpy(pred: torch.Tensor) -> np.ndarray:
        """``(1, 1, H, W)`` map in [0, 1] → ``(H, W)`` float32 numpy array (clamped to [0, 1], a new array)."""
        return pred[0, 0].clamp(0.0, 1.0).cpu().numpy().astype(np.float32, copy=False)

    def _local(self, im: torch.Tensor, glob: dict[str, torch.Tensor], L: int) -> torch.Tensor:
        h, w = im.shape[-2:]
        r224 = (F.interpolate(glob["pred_224"], size=(h, w), mode="bilinear", align_corners=False) > 0.5).float()
        r224 = r224 * 2.0 - 1.0
        r56 = F.interpolate(glob["pred_56_2"], size=(h, w), mode="bilinear", align_corners=False) * 2.0 - 1.0
        combined = torch.zeros_like(r224)
        weight = torch.zeros_like(r224)
        kept = []
        planned = plan_patches(h, w, L)
        for p in planned:
            frac = float((r224[..., p.y0:p.y1, p.x0:p.x1] > 0).float().mean())
            if self.skip_low <= frac <= self.skip_high:
                kept.append(p)
        self.last_stats = {"patches_planned": len(planned), "patches_refined": len(kept)}
        pad = PATCH_PADDING
        for batch in self._batches(kept, self.patch_batch_size):
            ims = torch.cat([im[..., p.y0:p.y1, p.x0:p.x1] for p in batch])
            segs = torch.cat([r224[..., p.y0:p.y1, p.x0:p.x1] for p in batch])
            s8 = torch.cat([r56[..., p.y0:p.y1, p.x0:p.x1] for p in batch])
            pred = self._forward(ims, segs, inter_s8=s8, outputs=("pred_224",))["pred_224"]
            for i, p in enumerate(batch):
                # Trim 16 px from edges that are not on the image border.
                ty0 = pad if p.y0 != 0 else 0
                tx0 = pad if p.x0 != 0 else 0
                ty1 = pad if p.y1 != h else 0
                tx1 = pad if p.x1 != w else 0
                ph, pw = p.y1 - p.y0, p.x1 - p.x0
                combined[..., p.y0 + ty0:p.y1 - ty1, p.x0 + tx0:p.x1 - tx1] += \
                    pred[i:i + 1, :, ty0:ph - ty1, tx0:pw - tx1]
                weight[..., p.y0 + ty0:p.y1 - ty1, p.x0 + tx0:p.x1 - tx1] += 1.0
            del pred, ims, segs, s8
        fallback = r224 * 0.5 + 0.5
        return torch.where(weight > 0, combined / weight.clamp_min(1.0), fallback)

    def __repr__(self) -> str:
        return (f"CascadePSPRefiner(checkpoint={self.checkpoint!r}, device='{self.device}', half={self.half}, "
                f"patch_batch_size={self.patch_batch_size})")
