"""The TI baseline (Eilertsen et al., the paper's Table 1 "TI"): transform invariance instead of the flow loss.

The same decoder with N = 1 (one frame + its teacher output → corrected logits) trained on single frames with

    total = (1 − α) · CE(f(x), teacher) + α · ‖f(T(x)) − T(f(x))‖²

where ``f`` is the student's softmax and ``T`` a small random geometric transform (shift ±2 px, rotation ±1°, zoom
±3 %, shear ±1°, one per sample) applied to the frame and the teacher output; the frame also gets Gaussian noise
with σ ~ U(0.01, 0.05) (frames in [0, 1]) in ``f(T(x))``. The squared difference is summed over classes and
averaged over the pixels that ``T`` maps from inside the frame. α = 0.95 (the paper's and Eilertsen's setting).

:func:`random_transform` draws ``T`` from a numpy generator (so training resumes exactly), :func:`apply_transform`
applies it (``grid_sample``, bilinear); :func:`ti_losses` / :class:`TILoss` are the loss. The training loop is
:func:`steadyseg.train.decoder_training.train_decoder` with ``objective="ti"``, ``inputs=1``
(``steadyseg train ti``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["TI_TRANSFORM", "random_transform", "apply_transform", "ti_losses", "TILoss"]

#: Eilertsen et al.'s transform ranges: shift (px), rotation (deg), zoom (fraction), shear (deg), noise σ range
TI_TRANSFORM = {"shift_px": 2.0, "rotation_deg": 1.0, "zoom": 0.03, "shear_deg": 1.0, "noise": (0.01, 0.05)}


def random_transform(rng: np.random.Generator, *, height: int, width: int) -> dict[str, object]:
    """One random ``T``: ``{"theta": (2, 3) float32 affine of F.affine_grid (align_corners=False), "noise": σ}``.

    The affine maps output pixel coordinates to input coordinates in torch's normalised [−1, 1] frame: a zoom
    ``s``, rotation ``r``, shear ``h`` about the centre and a shift ``(dx, dy)`` in pixels.
    """
    r = math.radians(rng.uniform(-TI_TRANSFORM["rotation_deg"], TI_TRANSFORM["rotation_deg"]))
    h = math.radians(rng.uniform(-TI_TRANSFORM["shear_deg"], TI_TRANSFORM["shear_deg"]))
    s = 1.0 + rng.uniform(-TI_TRANSFORM["zoom"], TI_TRANSFORM["zoom"])
    dx, dy = rng.uniform(-TI_TRANSFORM["shift_px"], TI_TRANSFORM["shift_px"], size=2)
    lo, hi = TI_TRANSFORM["noise"]
    sigma = float(rng.uniform(lo, hi))
    # pixel-space linear part (rotation · shear) / zoom, expressed in the normalised frame (x scaled by 2/W, y by 2/H)
    a = np.array([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]]) @ np.array([[1.0, math.tan(h)],
                                                                                        [0.0, 1.0]]) / s
    sx, sy = 2.0 / width, 2.0 / height
    lin = np.diag([sx, sy]) @ a @ np.diag([1 / sx, 1 / sy])
    theta = np.concatenate([lin, [[dx * sx], [dy * sy]]], axis=1).astype(np.float32)
    return {"theta": theta, "noise": sigma}


def apply_transform(x: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
    """``T(x)`` of ``(B, C, H, W)`` float maps with ``(B, 2, 3)`` affines → ``(T(x), inside (B, 1, H, W) bool)``.

    Bilinear sampling, zeros outside; ``inside`` marks the output pixels whose source lies fully inside the input.
    """
    if x.ndim != 4 or theta.shape != (x.shape[0], 2, 3):
        raise ValueError(f"expected x B×C×H×W and theta B×2×3, got {tuple(x.shape)} and {tuple(theta.shape)}")
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    ones = F.grid_sample(torch.ones_like(x[:, :1]), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out, ones > 0.999


def ti_losses(logits: Tensor, logits_transformed: Tensor, theta: Tensor, targets: Tensor, *,
              alpha: float = 0.95) -> dict[str, Tensor]:
    """Named loss terms of the TI baseline for a batch of single frames.

    Args:
        logits: ``(B, C, H, W)`` student logits of the inputs ``x``.
        logits_transformed: ``(B, C, H, W)`` student logits of ``T(x)`` (noise added to the frame).
        theta: ``(B, 2, 3)`` the affines of ``T`` (:func:`random_transform`).
        targets: teacher probabilities ``(B, C, H, W)`` (soft targets) or labels ``(B, H, W)`` int64 (255 void).
        alpha: weight of the invariance term; the data term gets ``1 − alpha``.

    Returns:
        ``{"transform_invariance": α·‖f(T(x)) − T(f(x))‖², "data": (1 − α)·CE, "total": their sum}``.
    """
    from steadyseg.labels import VOID

    if logits.ndim != 4 or logits_transformed.shape != logits.shape:
        raise ValueError(f"expected two B×C×H×W logits of one shape, got {tuple(logits.shape)} and "
                         f"{tuple(logits_transformed.shape)}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    warped, inside = apply_transform(logits.softmax(dim=1), theta)
    sq = ((logits_transformed.softmax(dim=1) - warped) ** 2).sum(dim=1, keepdim=True)
    m = inside.to(sq.dtype)
    invariance = (sq * m).sum() / m.sum().clamp_min(1.0)
    if torch.is_floating_point(targets):
        data = F.cross_entropy(logits, targets.to(logits.dtype))
    else:
        data = torch.nan_to_num(F.cross_entropy(logits, targets, ignore_index=VOID), nan=0.0)
    terms = {"transform_invariance": float(alpha) * invariance, "data": (1.0 - float(alpha)) * data}
    terms["total"] = terms["transform_invariance"] + terms["data"]
    return terms


class TILoss(nn.Module):
    """:func:`ti_losses` as a module: ``forward(logits, logits_transformed, theta, targets)`` → dict of terms."""

    def __init__(self, *, alpha: float = 0.95):
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.alpha = float(alpha)

    def forward(self, logits: Tensor, logits_transformed: Tensor, theta: Tensor, targets: Tensor
                ) -> dict[str, Tensor]:
        return ti_losses(logits, logits_transformed, theta, targets, alpha=self.alpha)
