"""Training data of the multi-input decoder: videos + teacher outputs + flows at the training size, random windows.

A :class:`DecoderVideo` holds one video at the training size in memory — frames ``(T, h, w, 3) uint8`` and the
teacher's probabilities ``(T, C, h, w) float16`` — and a :class:`PairFlows` store that gives, for every ordered
pair ``(p, q)`` with ``1 ≤ |p − q| ≤ N − 1``, the flow ``F[p→q]`` at the training size and the validity mask
``M[q→p]`` on the pixels of ``p`` (:func:`steadyseg.warp.valid_mask_torch`), each computed once.

Resizing (``size=(h, w)`` smaller than the video): frames, probabilities and flows are resampled on the same pixel
grid (``cv2.INTER_AREA``, pixel centres at ``(i + 0.5)·H/h − 0.5``), and flow vectors are scaled by ``w/W`` (dx)
and ``h/H`` (dy), so a resized flow maps resized frame ``p`` onto resized frame ``q``. The validity masks are
computed from the resized flows.

Flows come from :class:`steadyseg.datasets.flow.FlowProvider` (computed once into its disk cache, in parallel),
or from any callable ``flows(p, q) → (H, W, 2)`` given instead (e.g. the exact flow of a synthetic video). Resized
flows go to a second :class:`~steadyseg.datasets.flow.FlowCache` under ``cache_dir/resized`` (keyed by the
full-resolution flow's key and the size) when a cache is used, else they are kept in memory.

:func:`sample_window` draws one training window: a uniformly random window of N consecutive frames among every
window of every video (``balance="windows"``, the paper's sampling: a long video is drawn more often) or a uniformly
random video and then one of its windows (``balance="videos"``), optionally a random crop and a horizontal flip
(flow dx negated, validity flipped, and pixels whose correspondence leaves the crop marked invalid). Every random
choice is a function of ``(seed, step, index)`` only, so training resumes exactly and a DDP run sees the same
samples as one process.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

__all__ = ["DecoderVideo", "PairFlows", "load_decoder_video", "resize_flow", "resize_image", "resize_probs",
           "sample_window", "video_guide", "vote_target", "frame_tensor", "Window", "teacher_format",
           "read_teacher_probs", "teacher_flicker", "video_balance_weights", "DATA_TARGETS"]

FlowFn = Callable[[int, int], np.ndarray]
#: what the decoder's data term is fitted to: the teacher (the paper) or its flow vote (:func:`vote_target`)
DATA_TARGETS = ("teacher", "vote")


def resize_flow(flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An ``(H, W, 2)`` float32 flow (dx, dy pixels) resampled to ``size = (h, w)`` with vectors scaled by w/W, h/H."""
    h, w = int(size[0]), int(size[1])
    fh, fw = flow.shape[:2]
    if (fh, fw) == (h, w):
        return np.ascontiguousarray(flow, dtype=np.float32)
    out = cv2.resize(flow, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    out[..., 0] *= w / fw
    out[..., 1] *= h / fh
    return out


def resize_image(img: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """An ``(H, W, 3) uint8`` frame resampled to ``size = (h, w)`` (``cv2.INTER_AREA``); ``None`` keeps it."""
    if size is None or img.shape[:2] == tuple(size):
        return img
    return cv2.resize(img, (int(size[1]), int(size[0])), interpolation=cv2.INTER_AREA)


def frame_tensor(img: np.ndarray) -> torch.Tensor:
    """An ``(H, W, 3) uint8`` RGB frame → ``(3, H, W) float32`` in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)


def resize_probs(p: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """``(C, H, W)`` float probabilities → ``(C, h, w)`` float32 (``cv2.INTER_AREA``), renormalised to sum 1 per
    pixel; ``None`` keeps them."""
    if size is None or p.shape[1:] == tuple(size):
        return p
    chans = [cv2.resize(np.ascontiguousarray(c, dtype=np.float32), (int(size[1]), int(size[0])),
                        interpolation=cv2.INTER_AREA) for c in p]
    out = np.stack(chans)
    return out / np.maximum(out.sum(axis=0, keepdims=True), 1e-12)


def teacher_format(masks) -> dict[str, Any]:
    """How to write masks like the teacher's: ``{"reading", "palette"}`` for :func:`write_label_png`.

    Soft teachers (``.npy``/``.npz``) are written as palette PNGs (palette ``None``: the caller's default).
    """
    reading = masks.reading
    if reading == "soft-probs":
        return {"reading": "palette-ids", "palette": None}
    palette = None
    if reading == "palette-ids":
        from PIL import Image

        with Image.open(masks.mask_path(0)) as im:
            palette = im.getpalette()
    return {"reading": reading, "palette": palette}


def read_teacher_probs(masks, i: int, *, num_classes: int, confidence: float) -> np.ndarray:
    """``(C, H, W) float32`` teacher probabilities of frame ``i``: stored ones, or hard labels softened.

    Raises ``ValueError`` naming the teacher folder when the teacher's class count differs from ``num_classes``.
    """
    from steadyseg.labels import VOID
    from steadyseg.train.decoder import soften_onehot

    if masks.reading == "soft-probs":
        p = masks.probs(i)
        if p.shape[0] != num_classes:
            raise ValueError(f"{masks.source}: the teacher has {p.shape[0]} classes but {num_classes} are expected "
                             f"(frame {masks.names[i]})")
        return p
    labels = masks[i]
    top = int(labels[labels != VOID].max(initial=0))
    if top >= num_classes:
        raise ValueError(f"{masks.source}: teacher label {top} in frame {masks.names[i]} does not fit "
                         f"{num_classes} classes (labels 0..{num_classes - 1} expected)")
    onehot = (labels[None] == np.arange(num_classes, dtype=labels.dtype)[:, None, None]).astype(np.float32)
    return soften_onehot(onehot, confidence=confidence).astype(np.float32, copy=False)  # void: no class matches


class PairFlows:
    """Flows and validity masks of one video at the training size, for every pair with ``1 ≤ |p − q| ≤ window``.

    ``get(p, q)`` → ``(F[p→q] (h, w, 2) float32, M[q→p] (h, w) bool)``: the flow from ``p`` to ``q`` and the valid
    mask on the pixels of ``p`` for warping ``q``'s data into ``p`` (both on the pixel grid of frame ``p``).

    Args:
        flows: ``flows(p, q) → (H, W, 2) float32`` at the video's full size (a FlowProvider or an exact flow).
        num_frames: T.
        size: training ``(h, w)``.
        window: largest ``|p − q|`` needed (N − 1).
        cache: optional :class:`~steadyseg.datasets.flow.FlowCache` for the resized flows (else in memory);
            needs ``key(p, q)`` on ``flows`` (a FlowProvider).
        progress: a progress bar while the masks are computed.
    """

    def __init__(self, flows: FlowFn, *, num_frames: int, size: tuple[int, int], window: int, cache=None,
                 progress: bool = False):
        from steadyseg.warp import valid_mask_torch

        self.size = (int(size[0]), int(size[1]))
        self.window = int(window)
        self._cache = cache
        self._keys: dict[tuple[int, int], str] = {}
        self._memory: dict[tuple[int, int], np.ndarray] = {}
        self._valid: dict[tuple[int, int], np.ndarray] = {}  # packed bits of M[q→p] on frame p's pixels
        pairs = [(p, q) for p in range(num_frames) for q in range(p + 1, min(num_frames, p + self.window + 1))]
        bar = None
        if progress and pairs:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(pairs), desc="flows at training size", unit="pair")
        tag = f"resized:{self.size[0]}x{self.size[1]}:area"
        for p, q in pairs:
            got = {}
            for a, b in ((p, q), (q, p)):
                flow = None
                if cache is not None:
                    key = hashlib.sha256(f"{flows.key(a, b)}|{tag}".encode()).hexdigest()
                    self._keys[(a, b)] = key
                    flow = cache.get(key, shape=self.size)
                if flow is None:
                    flow = resize_flow(np.asarray(flows(a, b), dtype=np.float32), self.size)
                    if cache is not None:
                        cache.put(self._keys[(a, b)], flow)
                    else:
                        self._memory[(a, b)] = flow
                got[(a, b)] = torch.from_numpy(flow).permute(2, 0, 1)[None]
            # M[q→p] on p's pixels uses F[p→q] (p's pixels into q) and F[q→p]
            m_qp = valid_mask_torch(got[(p, q)], got[(q, p)])[0, 0].numpy()
            m_pq = valid_mask_torch(got[(q, p)], got[(p, q)])[0, 0].numpy()
            self._valid[(p, q)] = np.packbits(m_qp)
            self._valid[(q, p)] = np.packbits(m_pq)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()

    def get(self, p: int, q: int) -> tuple[np.ndarray, np.ndarray]:
        if (p, q) not in self._valid:
            raise KeyError(f"no flow for the pair ({p}, {q}) (window {self.window})")
        if self._cache is not None:
            flow = self._cache.get(self._keys[(p, q)], shape=self.size)
            if flow is None:
                raise FileNotFoundError(f"{self._cache.root}: resized flow of the pair ({p}, {q}) disappeared from "
                                        "the cache during training")
        else:
            flow = self._memory[(p, q)]
        h, w = self.size
        valid = np.unpackbits(self._valid[(p, q)], count=h * w).reshape(h, w).astype(bool)
        return flow, valid


@dataclass
class DecoderVideo:
    """One training video at the training size: ``frames (T, h, w, 3) uint8``, ``probs (T, C, h, w) float16``
    (the teacher's, summing to 1; hard teachers softened), ``labels (T, h, w) uint8`` (hard teachers only: their
    labels, nearest-neighbour resized, 255 = void; ``None`` for soft teachers), the ``pairs`` store and its
    source folders."""

    frames: np.ndarray
    probs: np.ndarray
    labels: np.ndarray | None
    pairs: PairFlows
    frames_source: str
    teacher_source: str
    features: np.ndarray | None = None  # (T, C_b, h', w') float16 frozen-backbone features (encoder "deeplabv3")
    #: flow-guided training: each frame's guide, computed on first use and kept (float16, (G, h, w)); a guide does
    #: not depend on the window, so a frame's warps are paid once per run instead of once per window
    guides: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    #: ``data_target="vote"``: each frame's vote target, computed on first use and kept (see :func:`vote_target`)
    vote_targets: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return int(self.frames.shape[0])


def load_decoder_video(frames: str | os.PathLike, teacher: str | os.PathLike, *, inputs: int, num_classes: int,
                       size: tuple[int, int] | None = None, confidence: float = 0.9, binary: bool = False,
                       flows: FlowFn | None = None, flow_backend: str = "dis", flow_preset: str = "medium",
                       cache_dir: str | os.PathLike | None = None, n_jobs: int = 1,
                       progress: bool = False, backbone=None,
                       feature_cache: str | os.PathLike | None = None,
                       pair_window: int | None = None) -> DecoderVideo:
    """Open a video and its teacher output, check they match, and prepare everything at the training size.

    Args:
        frames: folder of frames (or a video file).
        teacher: the teacher's per-frame output for those frames (any :func:`open_masks` input).
        inputs: N, frames per window (flows are prepared for ``|p − q| ≤ N − 1``).
        num_classes: C.
        size: training ``(h, w)``; ``None`` = the video's size.
        confidence: probability of the label for hard teacher masks (:func:`soften_onehot`).
        binary: collapse object ids 1..254 of the teacher to 1 (and soft teachers to background/foreground).
        flows: ``flows(p, q) → (H, W, 2)`` at full size instead of computing optical flow.
        flow_backend, flow_preset: :class:`~steadyseg.datasets.flow.FlowProvider`'s ``backend`` / ``preset``.
        cache_dir: flow cache folder (full-resolution flows, and resized ones under ``resized/``); ``None`` with
            computed flows keeps everything in memory.
        n_jobs: parallel flow workers.
        progress: progress bars.
        backbone: a :class:`~steadyseg.train.decoder_backbone.FrozenBackbone` (encoder ``"deeplabv3"``): its
            features of the training-size frames are computed (cached under ``feature_cache/features``).
        feature_cache: folder of the feature cache (``None``: not cached).
        pair_window: largest ``|p − q|`` whose flows are prepared (``None``: ``inputs − 1``, every pair of a
            window; ``0``: no flow at all).

    Raises:
        ValueError: frame and teacher counts or sizes differ (naming both folders), fewer than ``inputs`` frames,
            a teacher class count that differs from ``num_classes``.
    """
    from steadyseg.datasets.flow import FlowCache, FlowProvider
    from steadyseg.pairs import window_pairs
    from steadyseg.datasets.masks import check_matching, open_masks
    from steadyseg.datasets.video import open_video

    video = open_video(frames)
    masks = open_masks(teacher, binary=binary)
    check_matching(video, masks)
    t = len(video)
    if t < inputs:
        raise ValueError(f"{video.source}: {t} frames, fewer than the window of {inputs} inputs")
    size = tuple(video.size) if size is None else (int(size[0]), int(size[1]))
    imgs = np.stack([resize_image(video[i], size) for i in range(t)])
    probs = np.stack([resize_probs(read_teacher_probs(masks, i, num_classes=num_classes, confidence=confidence),
                                    size) for i in range(t)]).astype(np.float16)
    labels = None
    if masks.reading != "soft-probs":
        labels = np.stack([cv2.resize(masks[i].astype(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
                           for i in range(t)])
    window = max(inputs - 1, 0) if pair_window is None else min(int(pair_window), max(inputs - 1, 0))
    cache = None
    if flows is None:
        provider = FlowProvider(video, backend=flow_backend, preset=flow_preset, cache_dir=cache_dir,
                                n_jobs=n_jobs)
        if cache_dir is not None and window > 0:
            provider.precompute(window_pairs(t, window), progress=progress)
            cache = FlowCache(Path(cache_dir) / "resized")
        flows = provider
    pairs = PairFlows(flows, num_frames=t, size=size, window=window, cache=cache, progress=progress)
    features = None
    if backbone is not None:
        from steadyseg.train.decoder_backbone import video_features

        features = video_features(backbone, imgs, cache_dir=feature_cache)
    return DecoderVideo(frames=imgs, probs=probs, labels=labels, pairs=pairs, frames_source=str(video.source),
                        teacher_source=str(masks.source), features=features)


@dataclass
class Window:
    """One training sample: ``frames (N, 3, h, w) float32`` in [0, 1] (or the backbone features
    ``(N, C_b, h', w')`` of a ``"deeplabv3"`` video), ``probs (N, C, h, w) float32``,
    ``labels (N, h, w) int64`` (hard teachers, 255 = void; else ``None``), ``flows {(p, q): (1, 2, h, w)}``
    (F[p→q]) and ``valid {(p, q): (1, 1, h, w) bool}`` (M[p→q] on q's pixels; float weights in [0, 1] with
    ``loss_photometric_sigma``, see :func:`sample_window`), for every ordered pair of the
    window, ``guide (N, G, h, w)`` (flow-guided windows: each frame's
    :func:`~steadyseg.train.decoder.neighbour_guide`; else ``None``), ``targets`` (the data term's targets when they
    are not the teacher's, ``data_target="vote"``: ``(N, h, w) int64`` labels for a hard teacher, ``(N, C, h, w)
    float32`` for a soft one; else ``None``); ``video``/``start`` name it."""

    frames: torch.Tensor
    probs: torch.Tensor
    labels: torch.Tensor | None
    guide: torch.Tensor | None
    flows: dict[tuple[int, int], torch.Tensor]
    valid: dict[tuple[int, int], torch.Tensor]
    video: int
    start: int
    targets: torch.Tensor | None = None


def _window_index(videos: Sequence[DecoderVideo], inputs: int) -> np.ndarray:
    """Cumulative window counts per video (for a uniform draw over every window of every video)."""
    return np.cumsum([len(v) - inputs + 1 for v in videos])


def video_guide(video: DecoderVideo, t: int, *, inputs: int, causal: bool = False,
                photometric_sigma: float | None = None, keep: bool = True) -> torch.Tensor:
    """The :func:`~steadyseg.train.decoder.neighbour_guide` of frame ``t`` of a training video (training size),
    ``(G, h, w)`` float32, from the neighbours of :func:`~steadyseg.train.decoder.guide_offsets` (``causal``: the
    previous frames only; ``photometric_sigma``: each validity mask times the neighbour's
    :func:`~steadyseg.train.decoder.photometric_weight`); with ``keep``, kept in ``video.guides`` (float16) after the
    first call (one run uses one kind) — and rounded to float16 in either case, so every call agrees."""
    from steadyseg.train.decoder import guide_offsets, neighbour_guide, photometric_weight

    if keep and t in video.guides:
        return torch.from_numpy(video.guides[t].astype(np.float32))
    neighbours = []
    frame_t = None if photometric_sigma is None else frame_tensor(video.frames[t])
    for d in guide_offsets(inputs, causal=causal):
        n = t + d
        if not 0 <= n < len(video):
            neighbours.append(None)
            continue
        flow, valid = video.pairs.get(t, n)  # F[t→n] and M[n→t] on t's pixels
        flow, weight = torch.from_numpy(flow).permute(2, 0, 1), torch.from_numpy(valid)
        if photometric_sigma is not None:
            weight = weight * photometric_weight(frame_t, frame_tensor(video.frames[n]), flow, sigma=photometric_sigma)
        neighbours.append((torch.from_numpy(video.probs[n].astype(np.float32)), flow, weight))
    guide = neighbour_guide(neighbours, num_classes=int(video.probs.shape[1]), size=video.probs.shape[2:])
    half = guide.numpy().astype(np.float16)
    if keep:
        video.guides[t] = half
    return torch.from_numpy(half.astype(np.float32))  # the float16 value, kept or not, so every call agrees


def vote_target(video: DecoderVideo, t: int, *, inputs: int, photometric_sigma: float | None = None,
                keep_guide: bool = False) -> np.ndarray:
    """The data-term target of frame ``t`` with ``data_target="vote"``: the
    :func:`~steadyseg.train.decoder.neighbour_vote` of the teacher over the frame and its neighbours on both sides
    (:func:`guide_offsets` of ``inputs``, offline even for a causal model: a training target may look ahead,
    the model never does), warped by the training flows and weighted by ``photometric_sigma`` as in
    :func:`video_guide`.

    Returns (and keeps in ``video.vote_targets``): for a hard teacher, ``(h, w) uint8`` labels — the vote's argmax,
    255 (void) where the teacher's label is void; for a soft teacher, the vote itself, ``(C, h, w) float16``.
    ``keep_guide``: read and keep the guide in ``video.guides`` (when the model's own guides are the same kind: a
    flow-guided offline model with the same ``photometric_sigma``).
    """
    from steadyseg.labels import VOID
    from steadyseg.train.decoder import neighbour_vote

    if t not in video.vote_targets:
        guide = video_guide(video, t, inputs=inputs, photometric_sigma=photometric_sigma, keep=keep_guide)
        c = int(video.probs.shape[1])
        vote = neighbour_vote(torch.from_numpy(video.probs[t].astype(np.float32)), guide, num_classes=c)
        if video.labels is None:
            video.vote_targets[t] = vote.numpy().astype(np.float16)
        else:
            labels = vote.argmax(dim=0).numpy().astype(np.uint8)
            labels[video.labels[t] == VOID] = VOID
            video.vote_targets[t] = labels
    return video.vote_targets[t]


def _window_pairs(video: DecoderVideo, idx: Sequence[int], *, reach: int,
                  rows: tuple[slice, slice] = (slice(None), slice(None))):
    """``flows {(p, q): (1, 2, h, w)}`` (F[p→q]) and ``valid {(q, p): (1, 1, h, w) bool}`` (M[q→p] on p's pixels)
    of the window of frames ``idx`` (p, q: positions in it, ``1 ≤ |p − q| ≤ reach``), cut to ``rows`` = (y, x)
    slices."""
    flows, valid = {}, {}
    for p, fp in enumerate(idx):
        for q, fq in enumerate(idx):
            if p == q or abs(p - q) > reach:
                continue
            f_pq, m_qp = video.pairs.get(fp, fq)  # F[p→q] and M[q→p], both on p's pixels
            flows[(p, q)] = torch.from_numpy(np.ascontiguousarray(f_pq[rows[0], rows[1]])).permute(2, 0, 1)[None]
            valid[(q, p)] = torch.from_numpy(np.ascontiguousarray(m_qp[rows[0], rows[1]]))[None, None]
    return flows, valid


def sample_window(videos: Sequence[DecoderVideo], *, inputs: int, seed: int, step: int, index: int,
                  crop: tuple[int, int] | None = None, hflip_prob: float = 0.5, flow_guided: bool = False,
                  pair_window: int | None = None, causal: bool = False, balance: str = "windows",
                  photometric_sigma: float | None = None, loss_photometric_sigma: float | None = None,
                  data_target: str = "teacher") -> Window:
    """Draw window ``index`` of training step ``step``; every choice depends only on ``(seed, step, index)``.

    ``balance="windows"`` draws uniformly among every window of every video; ``"videos"`` draws a video uniformly,
    then one of its windows uniformly (every video is seen equally often, whatever its length).

    ``flows``/``valid`` hold the ordered pairs with ``|p − q| ≤ pair_window`` (``None``: every pair of the window;
    the videos must have been loaded with at least that ``pair_window``).

    With ``flow_guided`` the window also carries each frame's guide (computed on the whole training-size frame,
    then cropped and flipped with the frame; ``causal``: built from previous frames only; ``photometric_sigma``: see
    :func:`video_guide`).

    With ``loss_photometric_sigma`` each ``valid[(p, q)]`` becomes a float weight: ``M[p→q]`` times the
    :func:`~steadyseg.train.decoder.photometric_weight` of frame p warped into frame q (the window's own, cropped and
    flipped frames), so the consistency loss trusts a correspondence as far as its colours agree.

    With ``data_target="vote"`` the window also carries ``targets``: each frame's :func:`vote_target` (the teacher's
    flow vote, ``photometric_sigma`` weights), cropped and flipped with the frame.
    """
    from steadyseg.warp import out_of_frame_torch

    if data_target not in DATA_TARGETS:
        raise ValueError(f"data_target must be 'teacher' or 'vote', got {data_target!r}")
    rng = np.random.default_rng([int(seed), int(step), int(index)])
    if balance == "windows":
        cum = _window_index(videos, inputs)
        k = int(rng.integers(int(cum[-1])))
        vi = int(np.searchsorted(cum, k, side="right"))
        start = k - (int(cum[vi - 1]) if vi else 0)
    elif balance == "videos":
        vi = int(rng.integers(len(videos)))
        start = int(rng.integers(len(videos[vi]) - inputs + 1))
    else:
        raise ValueError(f"balance must be 'windows' or 'videos', got {balance!r}")
    video = videos[vi]
    h, w = video.frames.shape[1:3]
    ch, cw = (h, w) if crop is None else (min(int(crop[0]), h), min(int(crop[1]), w))
    y0 = int(rng.integers(h - ch + 1))
    x0 = int(rng.integers(w - cw + 1))
    flip = bool(rng.random() < hflip_prob)
    sl = (slice(y0, y0 + ch), slice(x0, x0 + cw))
    idx = range(start, start + inputs)
    if video.features is not None:  # backbone features replace the frames; they cannot be cropped or flipped
        if crop is not None or flip:
            raise ValueError("windows of backbone features (encoder 'deeplabv3') take no crop and no flip")
        frames = torch.from_numpy(video.features[start:start + inputs].astype(np.float32))
    else:
        frames = torch.from_numpy(np.ascontiguousarray(video.frames[start:start + inputs, sl[0], sl[1]]))
        frames = frames.permute(0, 3, 1, 2).float().div_(255.0)
    probs = torch.from_numpy(video.probs[start:start + inputs, :, sl[0], sl[1]].astype(np.float32))
    labels = None
    if video.labels is not None:
        labels = torch.from_numpy(video.labels[start:start + inputs, sl[0], sl[1]].astype(np.int64))
    guide = None
    if flow_guided:
        guide = torch.stack([video_guide(video, t, inputs=inputs, causal=causal,
                                         photometric_sigma=photometric_sigma)[:, sl[0], sl[1]] for t in idx])
    targets = None
    if data_target == "vote":
        votes = np.stack([vote_target(video, t, inputs=inputs, photometric_sigma=photometric_sigma,
                                      keep_guide=flow_guided and not causal) for t in idx])
        votes = votes[..., sl[0], sl[1]]
        targets = torch.from_numpy(votes.astype(np.int64 if video.labels is not None else np.float32))
    flows, valid = _window_pairs(video, idx, reach=inputs - 1 if pair_window is None else int(pair_window), rows=sl)
    if flip:
        frames, probs = frames.flip(-1), probs.flip(-1)
        labels = None if labels is None else labels.flip(-1)
        guide = None if guide is None else guide.flip(-1)
        targets = None if targets is None else targets.flip(-1)
        flows = {k: torch.cat([-v[:, :1], v[:, 1:]], dim=1).flip(-1) for k, v in flows.items()}
        valid = {k: v.flip(-1) for k, v in valid.items()}
    if crop is not None:  # a correspondence that leaves the crop is not valid in it
        valid = {(p, q): m & ~out_of_frame_torch(flows[(q, p)]) for (p, q), m in valid.items()}
    if loss_photometric_sigma is not None:
        from steadyseg.train.decoder import photometric_weight

        if video.features is not None:
            raise ValueError("loss_photometric_sigma compares frame colours: not available with backbone features "
                             "(encoder 'deeplabv3')")
        valid = {(p, q): m * photometric_weight(frames[q], frames[p], flows[(q, p)][0],
                                                sigma=loss_photometric_sigma)[None, None]
                 for (p, q), m in valid.items()}
    return Window(frames=frames, probs=probs, labels=labels, guide=guide, flows=flows, valid=valid, video=vi,
                  start=start, targets=targets)


def teacher_flicker(video: DecoderVideo, *, inputs: int) -> float:
    """How much the teacher of one training video flickers: the consistency loss
    (:func:`steadyseg.losses.consistency_loss`, every ordered pair, the cached validity masks) of its hard labels
    (the argmax of its probabilities, one-hot) over the non-overlapping windows of ``inputs`` frames (starts 0, N,
    2N, … and the last window), averaged — the share of valid pixels whose label a neighbour's warped label
    contradicts, in [0, 1]. ``inputs`` = 1 (no pair) gives 0.
    """
    from steadyseg.losses import consistency_loss

    n = int(inputs)
    if n < 2:
        return 0.0
    t = len(video)
    starts = sorted(set(range(0, t - n + 1, n)) | {t - n})
    losses = []
    for s in starts:
        probs = torch.from_numpy(video.probs[s:s + n].astype(np.float32))
        onehot = torch.nn.functional.one_hot(probs.argmax(dim=1), probs.shape[1]).permute(0, 3, 1, 2).float()
        flows, valid = _window_pairs(video, range(s, s + n), reach=n - 1)
        losses.append(float(consistency_loss(onehot[None], flows, valid)["consistency"]))
    return float(np.mean(losses))


def video_balance_weights(flicker: Sequence[float], *, power: float = 1.0, max_ratio: float = 10.0) -> list[float]:
    """Per-video weights of the consistency term that make every video's *relative* improvement count alike.

    ``w_v ∝ (1 / flicker_v) ** power``, scaled so that ``mean_v(w_v · flicker_v) = mean(flicker)``, then clipped
    to ``[1 / max_ratio, max_ratio]``. ``power`` 1 gives ``w_v = mean(flicker) / flicker_v``: a window of a video
    whose teacher flickers little weighs more, so one model does not serve the worst-flickering video and leave the
    stable ones as they are; ``power`` 0.5 goes half way (in log scale) from uniform weights to that, 0 gives all
    ones. With uniform video sampling the consistency term starts at the size it had without weights (before
    clipping), so ``lambda_data`` keeps its meaning. Videos with zero flicker get weight ``max_ratio``; all-zero
    flicker gives all ones.

    >>> video_balance_weights([0.01, 0.03])
    [2.0, 0.6666666666666667]
    """
    f = np.asarray(flicker, dtype=np.float64)
    if f.size == 0 or np.any(f < 0) or not np.all(np.isfinite(f)):
        raise ValueError(f"flicker values must be finite and >= 0, got {list(flicker)}")
    if max_ratio < 1:
        raise ValueError(f"max_ratio must be >= 1, got {max_ratio}")
    if not 0.0 <= power <= 1.0:
        raise ValueError(f"power must be in [0, 1], got {power}")
    mean = float(f.mean())
    if mean == 0.0:
        return [1.0] * f.size
    pos = f > 0
    raw = np.ones_like(f)
    raw[pos] = (mean / f[pos]) ** float(power)
    raw[pos] *= mean / float(np.mean(np.where(pos, raw * f, 0.0)))
    w = np.where(pos, raw, max_ratio)
    return [float(v) for v in np.clip(w, 1.0 / max_ratio, max_ratio)]
