"""Temporal-consistency scores of other papers, beside the flow measures of :mod:`steadyseg.measures`.

- ``mVC_n`` (VSPW, Miao et al. CVPR 2021): :func:`mean_video_consistency`, needs the ground truth.
- ``TC`` (Liu et al., "Efficient semantic video segmentation with per-frame inference", ECCV 2020):
  :func:`temporal_consistency_tc`, mIoU of each frame with its flow-warped predecessor.

Masks are (H, W) integer label maps (0 = background, ``VOID`` = 255 ignored). Flows follow
:mod:`steadyseg.warp`: ``flows(a, b)`` is the (H, W, 2) float32 flow a→b in pixels (dx, dy).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import numpy as np

from steadyseg.accuracy import iou
from steadyseg.labels import VOID
from steadyseg.warp import DEFAULT_THRESHOLDS, ValidityThresholds, warp_and_valid

__all__ = ["mean_video_consistency", "temporal_consistency_tc"]


def mean_video_consistency(pred_masks: Sequence[Any] | Iterable[Any], gt_masks: Sequence[Any] | Iterable[Any],
                           *, n: int = 8, void: int = VOID) -> float:
    """VSPW video consistency ``mVC_n``.

    For every clip of ``n`` consecutive frames (stride 1), the pixels whose ground-truth label is the same in all
    ``n`` frames (and never void) are taken, and VC is the share of them whose predicted label is also the same in
    all ``n`` frames; ``mVC_n`` is the mean VC over the clips with at least one such pixel. Streams over the
    masks holding ``n`` frames.

    Args:
        pred_masks, gt_masks: equally long sequences of (H, W) integer label maps, read once, in order.
        n: clip length ≥ 2.
        void: the ignored ground-truth label.

    Returns:
        mVC in [0, 1]; NaN when the video is shorter than ``n`` frames.
    """
    if n < 2:
        raise ValueError(f"mean_video_consistency: n must be ≥ 2, got {n}")
    preds: list[np.ndarray] = []
    gts: list[np.ndarray] = []
    scores: list[float] = []
    gt_iter = iter(gt_masks)
    for t, pred in enumerate(pred_masks):
        gt = next(gt_iter, None)
        if gt is None:
            raise ValueError(f"mean_video_consistency: the ground truth ends at frame {t}")
        preds.append(np.asarray(pred))
        gts.append(np.asarray(gt))
        if len(preds) > n:
            preds.pop(0)
            gts.pop(0)
        if len(preds) == n:
            common_gt = gts[0] != void
            common_pred = np.ones_like(common_gt)
            for k in range(1, n):
                common_gt &= gts[k] == gts[0]
                common_pred &= preds[k] == preds[0]
            total = np.count_nonzero(common_gt)
            if total:
                scores.append(np.count_nonzero(common_gt & common_pred) / total)
    return float(np.mean(scores)) if scores else float("nan")


def temporal_consistency_tc(pred_masks: Sequence[Any] | Iterable[Any], flows: Callable[[int, int], np.ndarray],
                            *, use_valid: bool = True, void: int = VOID,
                            thresholds: ValidityThresholds = DEFAULT_THRESHOLDS) -> float:
    """TC (Liu et al.): mean over t ≥ 1 of the mIoU between ``O_t`` and ``O_{t−1}`` warped into frame t.

    ``W(O_{t−1})(x) = O_{t−1}(x + F[t→t−1](x))`` (nearest). The mIoU averages, over the classes present (non-void)
    in either map, the IoU of the two label maps. With ``use_valid`` (default) only the pixels of
    ``M[t−1→t]`` (:func:`steadyseg.warp.valid_mask`, constants ``thresholds``) count, as in the inconsistency
    measure. Each class's IoU is :func:`steadyseg.accuracy.iou` on the kept pixels.

    Args:
        pred_masks: T (H, W) integer label maps, read once, in order.
        flows: ``flows(a, b) -> (H, W, 2) float32`` flow a→b in pixels (dx, dy).
        use_valid: count only the valid pixels ``M[t−1→t]``.
        void: the ignored label (never a class; void pixels of either map are left out).
        thresholds: constants of the validity checks (:class:`steadyseg.warp.ValidityThresholds`).

    Returns:
        TC in [0, 1]; NaN for fewer than two frames.
    """
    prev = None
    scores: list[float] = []
    for t, mask in enumerate(pred_masks):
        cur = np.asarray(mask)
        if prev is not None:
            f_tp = np.asarray(flows(t, t - 1), dtype=np.float32)
            f_pt = np.asarray(flows(t - 1, t), dtype=np.float32) if use_valid else f_tp
            warped, m = warp_and_valid(prev, f_tp, f_pt, mode="nearest", fill=void, thresholds=thresholds)
            keep = (cur != void) & (warped != void)
            if use_valid:
                keep &= m
            classes = np.union1d(np.unique(cur[keep]), np.unique(warped[keep]))
            ious = [iou((cur == c) & keep, (warped == c) & keep, void=None) for c in classes]
            if ious:
                scores.append(float(np.mean(ious)))
        prev = cur
    return float(np.mean(scores)) if scores else float("nan")
