"""Accuracy measures with DAVIS conventions: IoU (``J``), boundary F, recall.

Masks are (H, W) integer label maps (0 = background, 255 = void) or bool masks. DAVIS conventions:
``J`` = IoU (region similarity), ``F`` = boundary F-measure with a tolerance of ``ceil(0.008 · diagonal)`` pixels,
``J_recall`` = fraction of frames with ``J > 0.5``; object scores are averaged over frames, then over objects.
All frames are evaluated (the DAVIS semi-supervised benchmark drops the first and last frame; we do not, since
the methods evaluated here get no first-frame mask). :func:`iou` is the one IoU of the project for masks and
label maps. The temporal-consistency scores of other papers (VSPW mVC, TC) are in
:mod:`steadyseg.consistency_scores`.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import cv2
import numpy as np

from steadyseg.labels import VOID


__all__ = ["iou", "boundary_f", "davis_scores", "mask_boundary"]


def _fg(mask: Any, *, void: int | None, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Foreground bool map and the void map (None when there is none) of a bool or label mask."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"{where}: expected an (H, W) mask, got shape {m.shape}")
    if m.dtype == np.bool_:
        return m, None
    if void is not None and np.issubdtype(m.dtype, np.integer):
        v = m == void
        return (m != 0) & ~v, (v if v.any() else None)
    return m != 0, None


def _fg_pair(pred: Any, gt: Any, *, void: int | None, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Foreground maps of a prediction and its ground truth, with the GT's void pixels removed from both."""
    p, _ = _fg(pred, void=void, where=f"{where}: pred")
    g, gv = _fg(gt, void=void, where=f"{where}: gt")
    if p.shape != g.shape:
        raise ValueError(f"{where}: shapes differ: pred {p.shape}, gt {g.shape}")
    if gv is not None:
        p = p & ~gv
    return p, g


def iou(pred: Any, gt: Any, *, void: int | None = VOID) -> float:
    """Intersection over union of two binary masks (DAVIS ``J``).

    Args:
        pred, gt: (H, W) bool, or integer label maps where nonzero non-void pixels are foreground.
        void: label ignored in ``gt`` (those pixels are excluded from both masks); None → no void.

    Returns:
        IoU in [0, 1]; 1.0 when both masks are empty.
    """
    p, g = _fg_pair(pred, gt, void=void, where="iou")
    union = np.count_nonzero(p | g)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(p & g)) / union


def mask_boundary(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool boundary map of a binary mask, the DAVIS convention (``seg2bmap`` of the official evaluation).

    A pixel is a boundary pixel when it differs from its right, lower or lower-right neighbour; outside the image
    counts as background for those neighbours. The boundary therefore lies half a pixel towards the origin from
    the true edge: on the last foreground pixel of a left/top edge, on the first background pixel before a
    right/bottom edge. Exceptions at the image border, as in the official code: the last row compares only with the
    right neighbour, the last column only with the lower one, and the bottom-right pixel is never a boundary pixel.
    So an object that fills the image has no boundary, and a one-pixel object at ``(y, x)`` away from the border has
    the four boundary pixels ``(y−1..y, x−1..x)``.
    """
    m = np.asarray(mask, dtype=bool)
    east = np.zeros_like(m)
    south = np.zeros_like(m)
    south_east = np.zeros_like(m)
    east[:, :-1] = m[:, 1:]
    south[:-1, :] = m[1:, :]
    south_east[:-1, :-1] = m[1:, 1:]
    b = (m ^ east) | (m ^ south) | (m ^ south_east)
    b[-1, :] = m[-1, :] ^ east[-1, :]
    b[:, -1] = m[:, -1] ^ south[:, -1]
    b[-1, -1] = False
    return b


def _tolerance(bound_th: float, shape: tuple[int, int]) -> int:
    return int(bound_th) if bound_th >= 1 else int(math.ceil(bound_th * math.hypot(*shape)))


def _disk(radius: int) -> np.ndarray:
    """(2r+1, 2r+1) uint8 disk: the offsets with ``dy² + dx² ≤ r²`` (``skimage.morphology.disk``'s definition)."""
    d = np.arange(-radius, radius + 1)
    return ((d[:, None] ** 2 + d[None, :] ** 2) <= radius * radius).astype(np.uint8)


def boundary_f(pred: Any, gt: Any, *, bound_th: float = 0.008, void: int | None = VOID) -> float:
    """DAVIS boundary F-measure of two binary masks, with the official evaluation's conventions.

    Boundaries: :func:`mask_boundary` (the official ``seg2bmap``). A boundary pixel of one mask matches when a
    boundary pixel of the other lies within the tolerance: the disk of offsets with ``dy² + dx² ≤ r²``,
    ``r = ceil(bound_th · diagonal)`` pixels (``bound_th ≥ 1`` is taken as a radius in pixels); 8 px at 854×480.
    Precision = matched share of the predicted boundary, recall = matched share of the true boundary,
    ``F = 2PR / (P + R)``. Void pixels of ``gt`` are removed from both masks before the boundaries are taken.

    Returns:
        F in [0, 1]; 1.0 when both boundaries are empty, 0.0 when only one is.
    """
    p, g = _fg_pair(pred, gt, void=void, where="boundary_f")
    bp = mask_boundary(p)
    bg = mask_boundary(g)
    n_p, n_g = int(bp.sum()), int(bg.sum())
    if n_p == 0 and n_g == 0:
        return 1.0
    if n_p == 0 or n_g == 0:
        return 0.0
    r = _tolerance(bound_th, p.shape)
    if r > 0:
        disk = _disk(r)
        dp = cv2.dilate(bp.astype(np.uint8), disk).astype(bool)
        dg = cv2.dilate(bg.astype(np.uint8), disk).astype(bool)
    else:
        dp, dg = bp, bg
    precision = np.count_nonzero(bp & dg) / n_p
    recall = np.count_nonzero(bg & dp) / n_g
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def davis_scores(pred_masks: Iterable[Any], gt_masks: Iterable[Any], *, binary: bool,
                 bound_th: float = 0.008, void: int = VOID, progress: bool = False) -> dict[str, Any]:
    """DAVIS region (J) and boundary (F) scores of a mask video.

    Args:
        pred_masks, gt_masks: equally long sequences of (H, W) masks, read once, in order.
        binary: True → one object: every nonzero non-void pixel is foreground (use it for DAVIS-2016-style
            masks); False → one object per nonzero non-void label id found in the ground truth (DAVIS 2017).
        bound_th: boundary tolerance (fraction of the diagonal, or pixels when ≥ 1).

    Returns:
        dict with ``objects`` ({id: {"J": [per frame], "F": [...], "J_mean", "F_mean", "J_recall", "F_recall"}}),
        ``J_mean``, ``F_mean``, ``JF_mean``, ``J_recall``, ``F_recall`` (means over objects), ``iou`` (per-frame
        IoU averaged over the objects) and ``mean_iou`` (mean of that), ``frames`` (T).
    """
    per_obj_j: dict[int, list[float]] = {}
    per_obj_f: dict[int, list[float]] = {}
    n_frames = 0
    pred_ids: list[set[int]] = []  # labels present in each predicted frame (multi-object mode)
    gt_iter = iter(gt_masks)
    it: Iterable[Any] = pred_masks
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(pred_masks, desc="accuracy", unit="frame")
    for t, pred in enumerate(it):
        try:
            gt = next(gt_iter)
        except StopIteration:
            raise ValueError(f"davis_scores: the ground truth has {t} frames, the predictions more") from None
        p = np.asarray(pred)
        g = np.asarray(gt)
        if p.shape != g.shape:
            raise ValueError(f"davis_scores: frame {t}: prediction shape {p.shape} vs ground truth {g.shape}")
        gvoid = (g == void) if np.issubdtype(g.dtype, np.integer) else None
        if binary:
            objs = {1: ((p != 0) & (p != void)) if np.issubdtype(p.dtype, np.integer) else p.astype(bool)}
            gts = {1: ((g != 0) & ~gvoid) if gvoid is not None else g.astype(bool)}
        else:
            ids = [int(i) for i in np.unique(g) if i != 0 and i != void]
            for i in per_obj_j:
                if i not in ids:
                    ids.append(i)
            pred_ids.append({int(i) for i in np.unique(p)})
            objs = {i: p == i for i in ids}
            gts = {i: g == i for i in ids}
        for i in objs:
            if i not in per_obj_j:
                # an object first seen in the ground truth at frame t: earlier frames score 1 when the prediction
                # is empty for it too, else 0 (IoU and F with an empty ground truth)
                early = [0.0 if i in ids_s else 1.0 for ids_s in pred_ids[:t]]
                per_obj_j[i] = list(early)
                per_obj_f[i] = list(early)
            pi, gi = objs[i], gts[i]
            if gvoid is not None:
                pi = pi & ~gvoid
            per_obj_j[i].append(iou(pi, gi, void=None))
            per_obj_f[i].append(boundary_f(pi, gi, bound_th=bound_th, void=None))
        n_frames = t + 1
    if next(gt_iter, None) is not None:
        raise ValueError(f"davis_scores: the ground truth has more frames than the {n_frames} predictions")
    if n_frames == 0:
        raise ValueError("davis_scores: no frames given")
    objects = {}
    for i in sorted(per_obj_j):
        j = np.asarray(per_obj_j[i])
        f = np.asarray(per_obj_f[i])
        objects[i] = {"J": j.tolist(), "F": f.tolist(), "J_mean": float(j.mean()), "F_mean": float(f.mean()),
                      "J_recall": float((j > 0.5).mean()), "F_recall": float((f > 0.5).mean())}
    if not objects:
        raise ValueError("davis_scores: the ground truth has no object in any frame")
    per_frame_iou = np.mean([objects[i]["J"] for i in objects], axis=0)
    jm = float(np.mean([o["J_mean"] for o in objects.values()]))
    fm = float(np.mean([o["F_mean"] for o in objects.values()]))
    return {
        "objects": objects, "J_mean": jm, "F_mean": fm, "JF_mean": (jm + fm) / 2,
        "J_recall": float(np.mean([o["J_recall"] for o in objects.values()])),
        "F_recall": float(np.mean([o["F_recall"] for o in objects.values()])),
        "iou": per_frame_iou.tolist(), "mean_iou": float(per_frame_iou.mean()), "frames": n_frames,
    }
