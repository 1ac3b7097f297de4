"""Video inference of a trained multi-input decoder: sliding windows, full-resolution output.

:class:`DecoderPredictor` is the ``"decoder"`` entry of :data:`steadyseg.train.predict.PREDICTORS` (``steadyseg
predict --checkpoint RUN/model.pt --frames DIR --teacher DIR --out DIR``).

- Every window of N consecutive frames (stride 1: windows starting at 0 … T − N) is decoded once; a frame's
  correction is the **mean of the corrections of every window that contains it** (N windows in the middle of the
  video, fewer at its ends). Each frame is encoded once (the encoders are per frame) and only the joint decoder runs
  per window, so the cost per frame is one encoding + one window decoding.
- The model runs at its training size (``config["size"]``, the video's size when trained at full size): frames and
  teacher probabilities are resized to it (``cv2.INTER_AREA``). The mean correction, at stride 4 of that size, is
  upsampled bilinearly to the video's full resolution and added to the **full-resolution** teacher logits
  ``log(clip(p, eps))``; a softmax gives the output probabilities. The teacher's full-resolution output stays the
  base, so an untrained decoder reproduces the teacher exactly at any size.
- Videos shorter than N frames: window indices are clamped to the last frame (it is repeated).
- Frames are yielded in order as soon as the last window containing them is decoded (at most N frames held).
- Causal models (``config["causal"]``, ``steadyseg train decoder --causal``): frame t is the **last** output of the
  window ``t−N+1 … t`` (the first frame repeated before the video starts), so no future frame is read;
  :class:`DecoderStream` gives frame t as soon as frame t arrives (``step`` / ``reset``), and the offline predictor
  of a causal model runs the same stream.
- Flow-guided models (``config["flow_guided"]``): each frame's guide (its neighbours' teacher probabilities warped
  into it, :func:`~steadyseg.train.decoder.neighbour_guide`) is built with the training flow backend/preset,
  computed at full size and resized like the training flows. Causal flow-guided models build it from the previous
  frames only, so they stream too (``DecoderStream.step(frame, probs, guide)``). A model with base ``"vote"``
  adds its correction to the vote of the frame and its warped neighbours
  (:func:`~steadyseg.train.decoder.neighbour_vote`) made at full size from full-size flows, the same way the
  teacher base stays at full size.

Masks are written in the teacher's format (``reading``/``palette`` attributes: DAVIS-2016 {0, 255}, palette PNGs
with the teacher's palette, label PNGs; palette PNGs for a soft teacher).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DecoderPredictor", "DecoderStream"]


class _Runner:
    """Shared inference steps: encode one frame at the model size, finish one frame at full resolution."""

    def __init__(self, model: nn.Module, *, size: tuple[int, int] | None, device: torch.device, amp: bool,
                 backbone=None):
        self.model, self.size, self.device = model, size, torch.device(device)
        self.amp = amp and self.device.type == "cuda"
        self.backbone = backbone
        if (backbone is None) != (getattr(model, "encoder", "small") == "small"):
            raise ValueError("a 'deeplabv3' decoder needs its frozen backbone (and only it)")

    def encode(self, frame: np.ndarray, probs: np.ndarray, guide: torch.Tensor | None = None) -> torch.Tensor:
        """``(2·width, h', w')`` features of one ``(H, W, 3) uint8`` frame and its ``(C, H, W)`` teacher probs
        (and, flow-guided, its ``(G, h, w)`` guide at the model size)."""
        from steadyseg.train.decoder_data import frame_tensor, resize_image, resize_probs

        size = self.size or tuple(frame.shape[:2])
        small = np.ascontiguousarray(resize_image(frame, size))
        f = self.backbone.features(small[None])[0] if self.backbone is not None else frame_tensor(small)
        p = torch.from_numpy(np.ascontiguousarray(resize_probs(probs, size), dtype=np.float32))
        with torch.autocast(device_type=self.device.type, enabled=self.amp):
            g = None if guide is None else guide[None, None].to(self.device)
            return self.model.encode(f[None, None].to(self.device), p[None, None].to(self.device), g)[0, 0]

    def decode(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """``(N, C, h', w')`` float corrections of a window of N encoded frames."""
        with torch.autocast(device_type=self.device.type, enabled=self.amp):
            return self.model.decode(torch.stack(feats)[None]).float()[0]

    def finish(self, correction: torch.Tensor, probs: np.ndarray,
               full_guide: torch.Tensor | None = None) -> np.ndarray:
        """Upsample a ``(C, h', w')`` correction to the teacher's ``(H, W)`` and add it to the logits of the model's
        base (the teacher's ``(C, H, W)`` probs, or their vote with the ``(G, H, W)`` full-size guide) → probs."""
        from steadyseg.train.decoder import teacher_logits

        corr = F.interpolate(correction[None], size=probs.shape[1:], mode="bilinear", align_corners=False)[0]
        p = torch.from_numpy(probs).to(self.device)
        if getattr(self.model, "base", "teacher") == "vote":
            if full_guide is None:
                raise ValueError("a decoder with base 'vote' needs the full-size guide of each frame")
            p = self.model.base_probs(p, full_guide.to(self.device))
        return (teacher_logits(p, eps=self.model.eps) + corr).softmax(dim=0).cpu().numpy()


class DecoderStream:
    """Causal, streaming inference: ``step(frame, teacher_probs)`` → the corrected probabilities of that frame.

    Frame t is the last output of the window of the N most recent frames (before N frames have arrived, the first
    frame fills the window's start). Call under ``torch.inference_mode()``; ``reset()`` starts a new video.

    Args:
        model: a :class:`~steadyseg.train.decoder.MultiInputDecoder` in eval mode on ``device``.
        size: the model's input ``(h, w)`` (``None``: each frame's own size).
        device, amp: torch device; autocast on CUDA.
        backbone: the :class:`~steadyseg.train.decoder_backbone.FrozenBackbone` of a ``"deeplabv3"`` decoder.

    ``step(frame (H, W, 3) uint8 RGB, teacher_probs (C, H, W) float32, guide=None)`` → ``(C, H, W) float32``
    probabilities; ``guide`` ``(G, h, w)`` at the model size is required for a flow-guided model (built from the
    previous frames, :func:`~steadyseg.train.decoder.guide_offsets` with ``causal=True``), and ``full_guide``
    ``(G, H, W)``, the same at the teacher's size, for a model with base ``"vote"``.
    """

    def __init__(self, model: nn.Module, *, size: tuple[int, int] | None = None,
                 device: torch.device | str = "cpu", amp: bool = True, backbone=None):
        self._run = _Runner(model, size=size, device=torch.device(device), amp=amp, backbone=backbone)
        self.inputs = int(model.inputs)
        self.reset()

    def reset(self) -> None:
        self._feats: list[torch.Tensor] = []

    def step(self, frame: np.ndarray, teacher_probs: np.ndarray, guide: torch.Tensor | None = None,
             full_guide: torch.Tensor | None = None) -> np.ndarray:
        self._feats.append(self._run.encode(frame, teacher_probs, guide))
        self._feats = self._feats[-self.inputs:]
        window = [self._feats[0]] * (self.inputs - len(self._feats)) + self._feats
        return self._run.finish(self._run.decode(window)[-1], teacher_probs, full_guide)


class DecoderPredictor:
    """Probabilities of a decoder over a video given its teacher's output.

    Args:
        model: a :class:`~steadyseg.train.decoder.MultiInputDecoder` in eval mode on ``device``.
        config: its ``model.pt`` config (``num_classes``, ``inputs``, ``size``, ``confidence``, ``binary``,
            ``eps``, ``names``, ``causal``).
        device: torch device.
        amp: autocast on CUDA.
        teacher: the teacher's output for the video (a folder/file :func:`open_masks` reads); required.

    Raises:
        ValueError: no teacher given, or the teacher's class count differs from the model's (naming the folder).
    """

    def __init__(self, model: nn.Module, config: dict[str, Any], device: torch.device, *, amp: bool = True,
                 teacher: str | os.PathLike | None = None, flow_cache: str | os.PathLike | bool | None = None):
        from steadyseg.datasets.masks import open_masks
        from steadyseg.train.decoder_data import teacher_format

        if teacher is None:
            raise ValueError("a decoder model corrects a teacher's output: give the teacher's masks or "
                             "probabilities of the video (--teacher DIR)")
        self.model, self.device = model, torch.device(device)
        self.config = config
        self.flow_cache = flow_cache
        self.num_classes = int(config["num_classes"])
        self.names = list(config["names"])
        self.inputs = int(config["inputs"])
        self.causal = bool(config.get("causal", False))
        self.flow_guided = bool(config.get("flow_guided", False))
        self.backbone = None
        if config.get("encoder", "small") == "deeplabv3":
            from steadyseg.train.decoder_backbone import FrozenBackbone

            self.backbone = FrozenBackbone(config["encoder_checkpoint"], device=self.device)
            if self.backbone.sha256 != config.get("encoder_sha256"):
                raise ValueError(f"{config['encoder_checkpoint']}: not the backbone checkpoint this decoder was "
                                 "trained with (sha256 differs)")
        self.size = None if config.get("size") is None else (int(config["size"][0]), int(config["size"][1]))
        self.amp = amp and self.device.type == "cuda"
        self.masks = open_masks(teacher, binary=bool(config.get("binary", False)))
        fmt = teacher_format(self.masks)
        self.reading, self.palette = fmt["reading"], fmt["palette"]
        if self.reading == "davis2016-binary" and self.num_classes != 2:
            raise ValueError(f"{self.masks.source}: a binary DAVIS teacher but the model has {self.num_classes} "
                             "classes")

    def _teacher(self, i: int) -> np.ndarray:
        from steadyseg.train.decoder_data import read_teacher_probs

        return read_teacher_probs(self.masks, i, num_classes=self.num_classes,
                                  confidence=float(self.config["confidence"]))

    def _guides(self, frames, size: tuple[int, int]):
        """``guide(t)`` → ``(guide at the model size, guide at full size or None)`` of frame ``t``: the flow-guided
        input, and, for a model with base ``"vote"``, the full-size guide its vote is made of. Flows are computed
        with the training flow (``config["flow"]``/``["preset"]``) at full size, resized like the training flows,
        kept while needed. The full-size flows go through a flow cache: ``flow_cache`` (a folder), the persistent
        default cache (``None``, as ``steadyseg measure``), or none (``False``). With ``config["photometric_sigma"]``
        each validity mask is weighted by the neighbour's photometric weight, at each size from that size's frames."""
        from steadyseg.datasets.flow import FlowProvider, default_flow_cache_dir
        from steadyseg.train.decoder import guide_offsets, neighbour_guide, photometric_weight
        from steadyseg.train.decoder_data import frame_tensor, resize_flow, resize_image, resize_probs
        from steadyseg.warp import valid_mask_torch

        cache = (default_flow_cache_dir() if self.flow_cache is None or self.flow_cache is True
                 else None if self.flow_cache is False else self.flow_cache)
        provider = FlowProvider(frames, backend=self.config.get("flow", "dis"),
                                preset=self.config.get("preset", "medium"), cache_dir=cache, memory_items=0)
        offsets = guide_offsets(self.inputs, causal=self.causal)
        k = max(abs(d) for d in offsets)  # flows and probabilities older than t − k are no longer needed
        full = getattr(self.model, "base", "teacher") == "vote"
        full_size = tuple(frames.size)
        sigma = self.config.get("photometric_sigma")
        flows: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor | None]] = {}
        probs: dict[int, tuple[torch.Tensor, np.ndarray]] = {}
        images: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}  # frame i at the model size (and full)

        def image(i: int) -> tuple[torch.Tensor, torch.Tensor | None]:
            if i not in images:
                img = frames[i]
                images[i] = (frame_tensor(resize_image(img, size)), frame_tensor(img) if full else None)
            return images[i]

        def weight(valid: torch.Tensor, t: int, n: int, flow_tn: torch.Tensor, at: int) -> torch.Tensor:
            """``valid`` (``M[n→t]``) times the photometric weight at the model size (``at`` 0) or full size (1)."""
            if sigma is None:
                return valid
            return valid * photometric_weight(image(t)[at], image(n)[at], flow_tn, sigma=float(sigma))

        def flow(a: int, b: int) -> tuple[torch.Tensor, torch.Tensor | None]:
            """F[a→b] at the model size, and at full size when the vote needs it."""
            if (a, b) not in flows:
                f = provider(a, b)
                flows[(a, b)] = (torch.from_numpy(resize_flow(f, size)).permute(2, 0, 1),
                                 torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1) if full else None)
            return flows[(a, b)]

        def guide(t: int) -> tuple[torch.Tensor, torch.Tensor | None]:
            for key in [key for key in flows if min(key) < t - k]:
                del flows[key]
            for store in (probs, images):
                for key in [key for key in store if key < t - k]:
                    del store[key]
            small, big = [], []
            for d in offsets:
                n = t + d
                if not 0 <= n < len(frames):
                    small.append(None)
                    big.append(None)
                    continue
                if n not in probs:
                    p = self._teacher(n)
                    probs[n] = (torch.from_numpy(np.ascontiguousarray(resize_probs(p, size), dtype=np.float32)), p)
                (f_tn, f_tn_full), (f_nt, f_nt_full) = flow(t, n), flow(n, t)
                valid = valid_mask_torch(f_tn[None], f_nt[None])[0, 0]  # M[n→t] on t's pixels
                small.append((probs[n][0], f_tn, weight(valid, t, n, f_tn, 0)))
                if full:
                    valid_full = valid_mask_torch(f_tn_full[None], f_nt_full[None])[0, 0]
                    big.append((torch.from_numpy(np.ascontiguousarray(probs[n][1], dtype=np.float32)), f_tn_full,
                                weight(valid_full, t, n, f_tn_full, 1)))
            return (neighbour_guide(small, num_classes=self.num_classes, size=size),
                    neighbour_guide(big, num_classes=self.num_classes, size=full_size) if full else None)

        return guide

    def iter_video(self, frames, *, batch_size: int = 1) -> Iterator[tuple[int, np.ndarray]]:
        """``(index, (C, H, W) float32 probabilities)`` for every frame, in order (``batch_size`` is unused)."""
        from steadyseg.datasets.masks import check_matching

        check_matching(frames, self.masks)
        with torch.inference_mode():
            if self.causal:
                stream = DecoderStream(self.model, size=self.size, device=self.device, amp=self.amp,
                                       backbone=self.backbone)
                guide = self._guides(frames, self.size or tuple(frames.size)) if self.flow_guided else None
                for i in range(len(frames)):  # guide(i) reads frames i − 2K … i only
                    g, g_full = (None, None) if guide is None else guide(i)
                    yield i, stream.step(frames[i], self._teacher(i), g, g_full)
                return
            yield from self._offline(frames)

    def _offline(self, frames) -> Iterator[tuple[int, np.ndarray]]:
        run = _Runner(self.model, size=self.size, device=self.device, amp=self.amp, backbone=self.backbone)
        t_total, n = len(frames), self.inputs
        guide = self._guides(frames, self.size or tuple(frames.size)) if self.flow_guided else None
        feats: dict[int, torch.Tensor] = {}
        full_guides: dict[int, torch.Tensor | None] = {}
        teacher: dict[int, np.ndarray] = {}
        sums: dict[int, torch.Tensor] = {}
        counts: dict[int, int] = {}
        last_start = max(t_total - n, 0)
        next_out = 0
        for s in range(last_start + 1):
            idx = [min(s + j, t_total - 1) for j in range(n)]
            for i in sorted(set(idx)):
                if i not in feats:
                    teacher[i] = self._teacher(i)
                    g, full_guides[i] = (None, None) if guide is None else guide(i)
                    feats[i] = run.encode(frames[i], teacher[i], g)
            delta = run.decode([feats[i] for i in idx])
            for j, i in enumerate(idx):
                if j and i == idx[j - 1]:  # a repeated (clamped) frame counts once per window
                    continue
                sums[i] = sums[i] + delta[j] if i in sums else delta[j].clone()
                counts[i] = counts.get(i, 0) + 1
            done = t_total if s == last_start else s + 1  # frames < done get no further window
            while next_out < done:
                i = next_out
                yield i, run.finish(sums.pop(i) / counts.pop(i), teacher.pop(i), full_guides.pop(i))
                feats.pop(i)  # windows from s + 1 on start after frame i
                next_out += 1
