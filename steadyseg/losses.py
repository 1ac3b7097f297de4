"""The differentiable flow-consistency loss of the paper, on batches of clips (torch, CPU or GPU).

For every ordered pair ``(p, q)`` of frames of a clip, the probabilities of frame ``p`` are warped into frame ``q``
with the same warp and valid mask as the measure (:mod:`steadyseg.warp`, bilinear)::

    W(P_p)(x) = P_p(x + F[q→p](x))            (grid_sample, align_corners=True, zeros outside)
    d_pq(x)   = 1 − Σ_c P_q(c, x) · W(P_p)(c, x)
    L_pq      = Σ_{b,x} M[p→q] · d_pq / Σ_{b,x} M[p→q]      (0 when no pixel of the batch is valid)
    L         = mean over the selected ordered pairs of L_pq

``M[p→q]`` is computed from the flows (:func:`steadyseg.warp.valid_mask_torch`: inside the frame,
forward–backward consistent, not on a motion boundary) unless given. Gradients flow into both ``P_q`` and
``P_p`` (and into the flows when they require grad); the valid mask carries no gradient.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

from steadyseg.pairs import PairSpec, select_pairs
from steadyseg.warp import DEFAULT_THRESHOLDS, ValidityThresholds, backward_warp_torch, valid_mask_torch

__all__ = ["consistency_loss", "ConsistencyLoss", "select_pairs"]

FlowsArg = Tensor | Mapping[tuple[int, int], Tensor]


def _flow(flows: FlowsArg, p: int, q: int) -> Tensor:
    if isinstance(flows, Tensor):
        return flows[:, p, q]
    try:
        return flows[(p, q)]
    except KeyError:
        raise ValueError(f"flows dict has no flow for the pair ({p}, {q}) (flow {p}→{q} is needed)") from None


def _check(probs: Tensor, flows: FlowsArg, valid) -> None:
    if not isinstance(probs, Tensor) or probs.ndim != 5:
        raise ValueError(f"expected probs B×T×C×H×W, got {tuple(getattr(probs, 'shape', ()))}")
    b, t, _, h, w = probs.shape
    if isinstance(flows, Tensor):
        if flows.shape != (b, t, t, 2, h, w):
            raise ValueError(f"expected flows B×T×T×2×H×W = {(b, t, t, 2, h, w)}, got {tuple(flows.shape)}")
    elif isinstance(flows, Mapping):
        for (p, q), f in flows.items():
            if f.shape != (b, 2, h, w):
                raise ValueError(f"expected flow ({p}, {q}) B×2×H×W = {(b, 2, h, w)}, got {tuple(f.shape)}")
    else:
        raise ValueError(f"flows must be a B×T×T×2×H×W tensor or a dict {{(p, q): B×2×H×W}}, got {type(flows)}")
    if isinstance(valid, Tensor) and valid.shape != (b, t, t, 1, h, w):
        raise ValueError(f"expected valid B×T×T×1×H×W = {(b, t, t, 1, h, w)}, got {tuple(valid.shape)}")


def consistency_loss(probs: Tensor, flows: FlowsArg, valid: Tensor | Mapping[tuple[int, int], Tensor] | None = None,
                     *, pairs: PairSpec = "all", check_motion_boundary: bool = True,
                     thresholds: ValidityThresholds = DEFAULT_THRESHOLDS) -> dict[str, Tensor]:
    """Flow-consistency loss of a batch of clips.

    Args:
        probs: (B, T, C, H, W) float per-class probabilities (each pixel sums to 1; e.g. a softmax output).
        flows: (B, T, T, 2, H, W) with ``flows[:, p, q]`` the flow p→q (dx, dy) in pixels, or a dict
            ``{(p, q): (B, 2, H, W)}``; every pair needs both ``(p, q)`` and ``(q, p)``.
        valid: optional ``M[p→q]`` on the pixels of q: (B, T, T, 1, H, W) bool/float with ``valid[:, p, q]`` for
            the ordered pair (p warped into q), or a dict ``{(p, q): (B, 1, H, W)}``; default: computed from the
            flows with :func:`steadyseg.warp.valid_mask_torch`.
        pairs: which ordered pairs (see :func:`steadyseg.pairs.select_pairs`); default all ``T·(T−1)``.
        check_motion_boundary: used when the valid mask is computed here.
        thresholds: constants of the validity checks (:class:`steadyseg.warp.ValidityThresholds`), used when the
            valid mask is computed here.

    Returns:
        ``{"consistency": scalar loss (differentiable), "valid_fraction": scalar share of valid pixels (detached)}``.
    """
    _check(probs, flows, valid)
    b, t, c, h, w = probs.shape
    selected = select_pairs(t, pairs)
    if not selected:
        zero = probs.sum() * 0.0
        return {"consistency": zero, "valid_fraction": zero.detach()}
    losses = []
    n_valid = probs.new_zeros(())
    for p, q in selected:
        f_qp = _flow(flows, q, p).to(probs.dtype)
        if valid is None:
            m = valid_mask_torch(f_qp, _flow(flows, p, q).to(probs.dtype), check_motion_boundary=check_motion_boundary,
                                 thresholds=thresholds)
        elif isinstance(valid, Tensor):
            m = valid[:, p, q]
        else:
            m = valid[(p, q)]
        m = m.to(probs.dtype).detach()
        warped = backward_warp_torch(probs[:, p], f_qp, mode="bilinear")
        d = 1.0 - (probs[:, q] * warped).sum(dim=1, keepdim=True)
        denom = m.sum()
        losses.append((m * d).sum() / denom.clamp_min(1.0))
        n_valid = n_valid + denom.detach()
    loss = torch.stack(losses).mean()
    return {"consistency": loss, "valid_fraction": n_valid / (len(selected) * b * h * w)}


class ConsistencyLoss(nn.Module):
    """``nn.Module`` wrapper of :func:`consistency_loss`.

    Args:
        pairs: which ordered pairs of the clip (``"all"``, ``"adjacent"``, ``"center"``, an int window, a list).
        check_motion_boundary: exclude motion boundaries from the computed valid mask.
        thresholds: constants of the validity checks of the computed valid mask
            (:class:`steadyseg.warp.ValidityThresholds`).

    ``forward(probs (B,T,C,H,W), flows (B,T,T,2,H,W) or {(p,q): (B,2,H,W)}, valid=None)`` → dict of named terms.
    """

    def __init__(self, *, pairs: PairSpec = "all", check_motion_boundary: bool = True,
                 thresholds: ValidityThresholds = DEFAULT_THRESHOLDS):
        super().__init__()
        if not isinstance(pairs, list):
            select_pairs(2, pairs)  # validate the spelling early
        self.pairs = pairs
        self.check_motion_boundary = bool(check_motion_boundary)
        self.thresholds = thresholds

    def forward(self, probs: Tensor, flows: FlowsArg, valid=None) -> dict[str, Tensor]:
        if not isinstance(probs, Tensor) or probs.ndim != 5:
            raise ValueError(f"expected B×T×C×H×W, got {tuple(getattr(probs, 'shape', ()))}")
        return consistency_loss(probs, flows, valid, pairs=self.pairs,
                                check_motion_boundary=self.check_motion_boundary, thresholds=self.thresholds)

    def extra_repr(self) -> str:
        return f"pairs={self.pairs!r}, check_motion_boundary={self.check_motion_boundary}"
