"""The paper's multi-input multi-output decoder (§5.1, Fig. 2): N frames + a teacher's output → N corrected outputs.

For a window of ``N`` consecutive frames and the teacher's per-frame probabilities::

    frame encoder  E_f  (shared weights over the N frames)   (3, H, W)  → (F, H/4, W/4)
    mask encoder   E_m  (shared weights over the N frames)   (C, H, W)  → (F, H/4, W/4)
    joint decoder  D    concat over the N frames: N·2F channels → N·K hidden → N·C outputs (channels grow with N)
    residual       student logits_t = log(clip(p_t, eps)) + upsample(D(...)_t)

The last layer of ``D`` is zero-initialised, so an untrained student returns exactly the teacher's logits (and,
after a softmax, exactly the teacher's probabilities). The correction is computed at the input size, upsampled
bilinearly and added to the teacher logits of any (e.g. full) resolution: :meth:`MultiInputDecoder.correction`
and :func:`teacher_logits` are public for that.

Encoder ``"small"``: four 3×3 conv + ReLU layers (two of stride 2), trained from scratch — a light CPU encoder.
Encoder ``"deeplabv3"``: the frames are replaced by the features of a frozen DeepLabV3 backbone
(:mod:`steadyseg.train.decoder_backbone`, computed once per frame and cached), reduced by a 1×1 and a 3×3 conv to
``width`` channels and resampled bilinearly onto the mask encoder's stride-4 grid.
Hard teacher masks become probabilities with :func:`soften_onehot` (a fixed confidence, e.g. 0.9).

Flow-guided variant (``flow_guided=True``, beyond the paper, which uses flow only in the loss): the mask encoder
of frame t also reads a *guide* (:func:`neighbour_guide`): the teacher probabilities of its ``2K`` neighbours
``t−K … t+K`` (``K = (N − 1) // 2``) warped into frame t by optical flow, each with its validity mask ``M[n→t]``
(0 where the neighbour is outside the video) — ``2K·(C + 1)`` extra channels per frame. The guide of a frame
does not depend on the window, so a sliding-window predictor still encodes each frame once. A causal model reads
the ``2K`` *previous* frames ``t−2K … t−1`` instead (:func:`guide_offsets` with ``causal``): the same channels,
and no future frame. With ``base="vote"`` a flow-guided decoder corrects the *vote* of the frame and its warped
neighbours (:func:`neighbour_vote`, at the teacher's resolution) instead of the teacher itself: an untrained one
then returns exactly that non-learned vote, and training starts from it. With a photometric σ
(``photometric_sigma`` in the run's config) each neighbour's 0/1 validity becomes a soft weight
``M[n→t] · exp(−‖I_t − W(I_n)‖² / 2σ²)`` (:func:`photometric_weight`): a warped neighbour whose colour does not
match the frame (a flow that missed a thin or fast part) counts less, in the guide and in the vote.

``MODEL_KINDS["decoder"]`` (:mod:`steadyseg.train.checkpoint`) rebuilds the model from the config written into
``RUN/model.pt`` (:func:`build_decoder_from_config`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DECODER_ENCODERS", "MultiInputDecoder", "build_decoder", "build_decoder_from_config", "teacher_logits",
           "soften_onehot", "neighbour_guide", "neighbour_vote", "guide_offsets", "photometric_weight",
           "MODEL_CONFIG_KEYS", "DECODER_BASES"]

DECODER_ENCODERS = ("small", "deeplabv3")
#: what the correction is added to: the teacher's probabilities, or (flow-guided only) the neighbour vote
DECODER_BASES = ("teacher", "vote")
#: the keys of a decoder's ``model.pt`` config that rebuild the network
MODEL_CONFIG_KEYS = ("num_classes", "inputs", "encoder", "width", "hidden", "eps", "flow_guided",
                     "feature_channels", "base")
_FRAME_MEAN, _FRAME_STD = 0.5, 0.25


def teacher_logits(probs: Tensor, *, eps: float = 1e-4) -> Tensor:
    """Teacher logits ``log(clip(p, eps, 1))`` of per-class probabilities (any shape ``(..., C, H, W)``, float).

    ``softmax(teacher_logits(p)) == p`` wherever every class has ``p ≥ eps`` and the pixel sums to 1.
    """
    if not torch.is_floating_point(probs):
        raise ValueError(f"teacher_logits: expected float probabilities, got {probs.dtype}")
    return probs.clamp(min=float(eps), max=1.0).log()


def soften_onehot(onehot, *, confidence: float = 0.9):
    """Probabilities from a one-hot of hard labels: ``confidence`` on the label, the rest shared by the others.

    Args:
        onehot: ``(..., C, H, W)`` float numpy array or tensor of 0/1 (a void pixel is an all-zero column, as
            :meth:`steadyseg.datasets.masks.MaskStack.probs` returns it).
        confidence: in ``(1/C, 1]``.

    Returns:
        same type/shape/dtype: ``confidence`` at the label, ``(1 − confidence)/(C − 1)`` elsewhere, uniform ``1/C``
        on void pixels; every pixel sums to 1.
    """
    c = onehot.shape[-3]
    if c < 2:
        raise ValueError(f"soften_onehot: needs at least 2 classes, got {c}")
    if not 1.0 / c < confidence <= 1.0:
        raise ValueError(f"soften_onehot: confidence must be in (1/C, 1] = ({1.0 / c:.3g}, 1], got {confidence}")
    rest = (1.0 - confidence) / (c - 1)
    out = onehot * (confidence - rest) + rest
    void = onehot.sum(axis=-3, keepdims=True) == 0 if isinstance(onehot, np.ndarray) else \
        onehot.sum(dim=-3, keepdim=True) == 0
    return out * ~void + void * (1.0 / c)


def guide_offsets(inputs: int, *, causal: bool = False) -> list[int]:
    """Neighbour offsets of the flow-guided variant: ``−K … −1, 1 … K`` with ``K = (inputs − 1) // 2``; for a
    causal model the ``2K`` previous frames ``−2K … −1`` (the same count, so the same model, and no future frame;
    ``2K ≤ inputs − 1``, within the training pairs)."""
    k = (int(inputs) - 1) // 2
    if causal:
        return list(range(-2 * k, 0))
    return [d for d in range(-k, k + 1) if d != 0]


def photometric_weight(frame_t: Tensor, frame_n: Tensor, flow_tn: Tensor, *, sigma: float) -> Tensor:
    """How well a neighbour's colour, warped into frame t, matches frame t: ``exp(−‖I_t(x) − W(I_n)(x)‖² / 2σ²)``.

    Args:
        frame_t, frame_n: ``(3, h, w)`` float RGB in [0, 1].
        flow_tn: ``(2, h, w)`` flow F[t→n] in pixels (``W(I_n)(x) = I_n(x + F[t→n](x))``, bilinear; outside the
            frame the warp reads 0 — such pixels are invalid in ``M[n→t]`` anyway).
        sigma: > 0, the colour distance (Euclidean over the three channels, in [0, 1] units) at which the weight
            is ``exp(−1/2) ≈ 0.61``; e.g. 0.1 ≈ 25 grey levels.

    Returns:
        ``(h, w)`` float in (0, 1]: 1 where the colours agree exactly.
    """
    from steadyseg.warp import backward_warp_torch

    if not sigma > 0:
        raise ValueError(f"photometric_weight: sigma must be > 0, got {sigma}")
    if frame_t.shape != frame_n.shape or frame_t.ndim != 3 or frame_t.shape[0] != 3 \
            or flow_tn.shape != (2, *frame_t.shape[1:]):
        raise ValueError(f"photometric_weight: expected frames (3, h, w) and a flow (2, h, w) of the same size, got "
                         f"{tuple(frame_t.shape)}, {tuple(frame_n.shape)} and {tuple(flow_tn.shape)}")
    warped = backward_warp_torch(frame_n[None].float(), flow_tn[None].float())[0]
    dist_sq = (warped - frame_t.float()).square().sum(dim=0)
    return torch.exp(dist_sq / (-2.0 * float(sigma) ** 2))


def neighbour_guide(neighbours: list[tuple[Tensor, Tensor, Tensor] | None], *, num_classes: int,
                    size: tuple[int, int] | None = None) -> Tensor:
    """The guide of one frame t: its neighbours' probabilities warped into t, with their validity masks.

    Args:
        neighbours: one entry per offset of :func:`guide_offsets`, in order: ``(probs_n (C, h, w), flow F[t→n]
            (2, h, w) in pixels, valid (h, w) on t's pixels)``, or ``None`` for a neighbour outside the video.
            ``valid`` is the validity ``M[n→t]`` (bool), or a soft weight in [0, 1] (float, e.g.
            ``M[n→t] ·`` :func:`photometric_weight`).
        num_classes: C.
        size: ``(h, w)``, needed only when every neighbour is missing (the first frame of a causal model, whose
            guide is then all zeros: nothing warped, nothing valid).

    Returns:
        ``(2K·(C + 1), h, w)`` float: for each neighbour ``valid · W(probs_n)`` (C channels, bilinear backward warp
        ``W(P_n)(x) = P_n(x + F[t→n](x))``) followed by ``valid`` as float (1 channel); zeros for ``None``.
    """
    from steadyseg.warp import backward_warp_torch

    ref = next((n for n in neighbours if n is not None), None)
    if ref is None:
        if size is None:
            raise ValueError("neighbour_guide: every neighbour is missing: give size=(h, w) for an all-zero guide")
        return torch.zeros((len(neighbours) * (num_classes + 1), int(size[0]), int(size[1])))
    h, w = ref[0].shape[-2:]
    if size is not None and (h, w) != tuple(size):
        raise ValueError(f"neighbour_guide: neighbours of size {(h, w)}, expected {tuple(size)}")
    parts = []
    for n in neighbours:
        if n is None:
            parts.append(ref[0].new_zeros((num_classes + 1, h, w)))
            continue
        probs, flow, valid = n
        if probs.shape != (num_classes, h, w) or flow.shape != (2, h, w) or valid.shape != (h, w):
            raise ValueError(f"neighbour_guide: expected probs ({num_classes}, {h}, {w}), flow (2, {h}, {w}) and "
                             f"valid ({h}, {w}), got {tuple(probs.shape)}, {tuple(flow.shape)}, {tuple(valid.shape)}")
        m = valid.to(probs.dtype)[None]
        parts.append(torch.cat([backward_warp_torch(probs[None], flow[None].to(probs.dtype))[0] * m, m]))
    return torch.cat(parts)


def neighbour_vote(probs: Tensor, guide: Tensor, *, num_classes: int) -> Tensor:
    """The non-learned flow vote of a frame: the mean of its own probabilities and those of every valid warped
    neighbour, pixel by pixel (a weighted mean when the guide holds soft weights, see :func:`neighbour_guide`).

    Args:
        probs: ``(..., C, H, W)`` float probabilities of the frame (the teacher's).
        guide: ``(..., 2K·(C + 1), H, W)`` its :func:`neighbour_guide` (each neighbour: ``valid · W(P_n)``, then
            ``valid``).
        num_classes: C.

    Returns:
        ``(..., C, H, W)``: ``(P_t + Σ_n valid_n·W(P_n)) / (1 + Σ_n valid_n)`` — sums to 1 where ``probs`` does;
        where no neighbour is valid (e.g. the first frame of a causal model), ``P_t`` itself.
    """
    c = int(num_classes)
    if probs.shape[-3] != c or guide.shape[-3] % (c + 1) or guide.shape[:-3] != probs.shape[:-3] \
            or guide.shape[-2:] != probs.shape[-2:]:
        raise ValueError(f"neighbour_vote: expected probs (..., {c}, H, W) and a guide (..., k·{c + 1}, H, W) of the "
                         f"same size, got {tuple(probs.shape)} and {tuple(guide.shape)}")
    parts = guide.unflatten(-3, (guide.shape[-3] // (c + 1), c + 1))  # (..., 2K, C + 1, H, W)
    total = probs + parts[..., :c, :, :].sum(dim=-4)
    return total / (1.0 + parts[..., c:, :, :].sum(dim=-4))


def _conv(cin: int, cout: int, *, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation),
                         nn.ReLU(inplace=True))


def _small_encoder(cin: int, width: int) -> nn.Sequential:
    """(B, cin, H, W) → (B, width, ⌈H/4⌉, ⌈W/4⌉): 3×3 convs, strides 2, 1, 2, 1."""
    half = max(1, width // 2)
    return nn.Sequential(_conv(cin, half, stride=2), _conv(half, half), _conv(half, width, stride=2),
                         _conv(width, width))


class MultiInputDecoder(nn.Module):
    """N frames + the teacher's N probability maps → N corrected per-frame logits.

    Args:
        num_classes: C ≥ 2.
        inputs: N ≥ 1, frames per window (the joint decoder's channels are N·2·width in, N·hidden, N·C out).
        encoder: one of :data:`DECODER_ENCODERS` (``"small"``: from scratch, stride 4; ``"deeplabv3"``: takes
            frozen backbone features ``(B, N, feature_channels, h', w')`` in place of the frames).
        width: feature channels of each encoder per frame.
        hidden: hidden channels of the joint decoder per frame.
        eps: probability clip of :func:`teacher_logits`.
        flow_guided: the mask encoder also reads each frame's :func:`neighbour_guide` (``guide_channels``).
        feature_channels: C_b of the backbone features (``"deeplabv3"`` only).
        base: ``"teacher"`` (the paper: the correction is added to the teacher's logits) or ``"vote"`` (flow-guided
            only: added to the logits of :func:`neighbour_vote`, computed from ``probs`` and ``guide``).

    ``forward(frames (B, N, 3, H, W) float in [0, 1], probs (B, N, C, H, W) float in [0, 1], guide=None)`` →
    ``(B, N, C, H, W)`` float logits = ``teacher_logits(base probs) + correction`` upsampled to ``(H, W)``;
    ``guide`` ``(B, N, guide_channels, H, W)`` is required exactly when ``flow_guided``.
    """

    def __init__(self, *, num_classes: int, inputs: int = 7, encoder: str = "small", width: int = 16,
                 hidden: int = 16, eps: float = 1e-4, flow_guided: bool = False,
                 feature_channels: int | None = None, base: str = "teacher"):
        super().__init__()
        if base not in DECODER_BASES:
            raise ValueError(f"unknown decoder base {base!r}; expected one of {DECODER_BASES}")
        if base == "vote" and not flow_guided:
            raise ValueError("base 'vote' needs a flow-guided decoder (the vote is made of the guide)")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if inputs < 1:
            raise ValueError(f"inputs must be >= 1, got {inputs}")
        if encoder not in DECODER_ENCODERS:
            raise ValueError(f"unknown decoder encoder {encoder!r}; expected one of {DECODER_ENCODERS}")
        if width < 1 or hidden < 1:
            raise ValueError(f"width and hidden must be >= 1, got {width}, {hidden}")
        if not 0.0 < eps < 1.0 / num_classes:
            raise ValueError(f"eps must be in (0, 1/C), got {eps}")
        self.num_classes, self.inputs, self.eps = int(num_classes), int(inputs), float(eps)
        self.flow_guided, self.base = bool(flow_guided), base
        self.guide_channels = len(guide_offsets(inputs)) * (num_classes + 1) if flow_guided else 0
        if flow_guided and self.guide_channels == 0:
            raise ValueError("flow_guided needs inputs >= 3 (at least one neighbour on each side)")
        if (encoder == "deeplabv3") != (feature_channels is not None):
            raise ValueError("feature_channels is required with encoder='deeplabv3' and only then")
        self.encoder = encoder
        self.frame_channels = 3 if encoder == "small" else int(feature_channels)
        if encoder == "small":
            self.frame_encoder = _small_encoder(3, width)
        else:
            self.frame_encoder = nn.Sequential(nn.Conv2d(self.frame_channels, width, 1), nn.ReLU(inplace=True),
                                               _conv(width, width))
        self.mask_encoder = _small_encoder(num_classes + self.guide_channels, width)
        n, k = self.inputs, hidden
        self.joint = nn.Sequential(_conv(n * 2 * width, n * k), _conv(n * k, n * k, dilation=2),
                                   _conv(n * k, n * k, dilation=4))
        self.head = nn.Conv2d(n * k, n * num_classes, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def _check_guide(self, probs: Tensor, guide: Tensor | None) -> None:
        if not self.flow_guided:
            if guide is not None:
                raise ValueError("this decoder is not flow-guided: give no guide")
            return
        want = probs.shape[:2] + (self.guide_channels,) + probs.shape[3:]
        if guide is None or guide.shape != want:
            raise ValueError(f"a flow-guided decoder needs guide {tuple(want)} (neighbour_guide per frame), got "
                             f"{None if guide is None else tuple(guide.shape)}")

    def _check(self, frames: Tensor, probs: Tensor, *, inputs: int | None = None) -> None:
        n = "T" if inputs is None else inputs
        if frames.ndim != 5 or (inputs is not None and frames.shape[1] != inputs) \
                or frames.shape[2] != self.frame_channels:
            what = "frames" if self.encoder == "small" else "backbone features"
            raise ValueError(f"expected {what} B×{n}×{self.frame_channels}×H×W, got {tuple(frames.shape)}")
        if probs.ndim != 5 or probs.shape[:2] != frames.shape[:2] or probs.shape[2] != self.num_classes:
            raise ValueError(f"expected teacher probs B×{n}×{self.num_classes}×H×W matching frames "
                             f"{tuple(frames.shape)}, got {tuple(probs.shape)}")
        if self.encoder == "small" and probs.shape[3:] != frames.shape[3:]:
            raise ValueError(f"frames {tuple(frames.shape)} and teacher probs {tuple(probs.shape)} differ in size")
        if not (torch.is_floating_point(frames) and torch.is_floating_point(probs)):
            raise ValueError(f"expected float frames and probs, got {frames.dtype}, {probs.dtype}")

    def encode(self, frames: Tensor, probs: Tensor, guide: Tensor | None = None) -> Tensor:
        """Per-frame features (shared weights, frames independent): ``(B, T, 2·width, ⌈H/4⌉, ⌈W/4⌉)``.

        ``frames (B, T, 3, H, W)`` float in [0, 1], ``probs (B, T, C, H, W)`` and, when flow-guided, ``guide
        (B, T, guide_channels, H, W)``; T may differ from N here (a sliding-window predictor encodes each frame
        once and decodes windows of N encoded frames).
        """
        self._check(frames, probs)
        self._check_guide(probs, guide)
        b, t = frames.shape[:2]
        x = frames.flatten(0, 1)
        f = self.frame_encoder((x - _FRAME_MEAN) / _FRAME_STD if self.encoder == "small" else x)
        m = self.mask_encoder((probs if guide is None else torch.cat([probs, guide], dim=2)).flatten(0, 1))
        if f.shape[-2:] != m.shape[-2:]:  # backbone features (stride 8/16) onto the stride-4 grid
            f = F.interpolate(f, size=m.shape[-2:], mode="bilinear", align_corners=False)
        feats = torch.cat([f, m], dim=1)
        return feats.view(b, t, *feats.shape[1:])

    def decode(self, feats: Tensor) -> Tensor:
        """The joint decoder on N encoded frames ``(B, N, 2·width, h, w)`` → correction ``(B, N, C, h, w)``."""
        if feats.ndim != 5 or feats.shape[1] != self.inputs:
            raise ValueError(f"expected B×{self.inputs}×F×h×w features, got {tuple(feats.shape)}")
        b, n = feats.shape[:2]
        out = self.head(self.joint(feats.flatten(1, 2)))  # the N frames side by side in channels
        return out.view(b, n, self.num_classes, *out.shape[2:])

    def correction(self, frames: Tensor, probs: Tensor, guide: Tensor | None = None) -> Tensor:
        """The decoder's additive logit correction at stride 4: ``(B, N, C, ⌈H/4⌉, ⌈W/4⌉)`` float."""
        self._check(frames, probs, inputs=self.inputs)
        return self.decode(self.encode(frames, probs, guide))

    def base_probs(self, probs: Tensor, guide: Tensor | None) -> Tensor:
        """What the correction is added to: ``probs`` (base ``"teacher"``) or their :func:`neighbour_vote`."""
        return probs if self.base == "teacher" else neighbour_vote(probs, guide, num_classes=self.num_classes)

    def forward(self, frames: Tensor, probs: Tensor, guide: Tensor | None = None) -> Tensor:
        delta = self.correction(frames, probs, guide)
        b, n, c = delta.shape[:3]
        up = F.interpolate(delta.flatten(0, 1), size=probs.shape[3:], mode="bilinear", align_corners=False)
        return teacher_logits(self.base_probs(probs, guide), eps=self.eps) + up.view(b, n, c, *probs.shape[3:])

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, inputs={self.inputs}, eps={self.eps}, "
                f"flow_guided={self.flow_guided}, base={self.base}")


def build_decoder(*, num_classes: int, inputs: int = 7, encoder: str = "small", width: int = 16, hidden: int = 16,
                  eps: float = 1e-4, flow_guided: bool = False,
                  feature_channels: int | None = None, base: str = "teacher") -> MultiInputDecoder:
    """A :class:`MultiInputDecoder` (untrained: it returns the logits of its base, the teacher's or the vote's)."""
    return MultiInputDecoder(num_classes=num_classes, inputs=inputs, encoder=encoder, width=width, hidden=hidden,
                             eps=eps, flow_guided=flow_guided, feature_channels=feature_channels, base=base)


def build_decoder_from_config(config: dict[str, Any]) -> MultiInputDecoder:
    """Rebuild a decoder from a ``model.pt`` config (keys :data:`MODEL_CONFIG_KEYS`)."""
    optional = ("flow_guided", "feature_channels", "base")  # absent from older configs: their defaults
    missing = [k for k in MODEL_CONFIG_KEYS if k not in config and k not in optional]
    if missing:
        raise ValueError(f"decoder config lacks {missing}")
    return build_decoder(num_classes=int(config["num_classes"]), inputs=int(config["inputs"]),
                         encoder=str(config["encoder"]), width=int(config["width"]), hidden=int(config["hidden"]),
                         eps=float(config["eps"]), flow_guided=bool(config.get("flow_guided", False)),
                         feature_channels=config.get("feature_channels"), base=str(config.get("base", "teacher")))
