"""Semantic-segmentation accuracy from a confusion matrix (torchvision's ``ConfusionMatrix`` semantics).

Rows are the true class, columns the predicted class; target pixels outside ``0 … C-1`` (255 = void) are ignored.
From the matrix ``M`` (``(C, C) int64``): pixel accuracy ``trace(M) / sum(M)``, class accuracy
``M[c, c] / sum_j M[c, j]``, class IoU ``M[c, c] / (sum_j M[c, j] + sum_i M[i, c] − M[c, c])``.
torchvision prints the plain mean of the class IoUs, which is NaN as soon as one class never occurs in either the
targets or the predictions; :func:`scores` reports that class as ``None`` and averages over the classes that occur.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

__all__ = ["ConfusionMatrix", "scores"]


class ConfusionMatrix:
    """Accumulates a ``(C, C) int64`` confusion matrix over batches (on the tensors' device).

    ``update(target, pred)``: integer tensors of equal shape, any number of dimensions; target values outside
    ``[0, C)`` (void) are skipped. ``reduce_from_all_processes()`` sums the matrix over a distributed group.
    """

    def __init__(self, num_classes: int):
        self.num_classes = int(num_classes)
        self.mat: torch.Tensor | None = None

    def update(self, target: torch.Tensor, pred: torch.Tensor) -> None:
        if target.shape != pred.shape:
            raise ValueError(f"ConfusionMatrix.update: target shape {tuple(target.shape)} vs pred {tuple(pred.shape)}")
        n = self.num_classes
        if self.mat is None:
            self.mat = torch.zeros((n, n), dtype=torch.int64, device=target.device)
        a, b = target.reshape(-1).long(), pred.reshape(-1).long()
        k = (a >= 0) & (a < n)
        inds = n * a[k] + b[k]
        self.mat += torch.bincount(inds, minlength=n * n).reshape(n, n)

    def reduce_from_all_processes(self) -> None:
        import torch.distributed as dist

        if self.mat is not None and dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.mat)

    def matrix(self) -> np.ndarray:
        n = self.num_classes
        return np.zeros((n, n), np.int64) if self.mat is None else self.mat.cpu().numpy()


def scores(matrix: np.ndarray, names: Sequence[str] | None = None) -> dict[str, Any]:
    """Accuracy numbers of a confusion matrix (rows = truth, columns = prediction).

    Returns:
        ``pixel_accuracy``, ``miou`` (mean IoU over the classes present in the targets or the predictions; NaN
        when none), ``mean_class_accuracy`` (over classes present in the targets), ``per_class`` (``{name:
        {"iou", "accuracy", "pixels"}}``, ``None`` where undefined), ``pixels`` (counted pixels), ``confusion``
        (the matrix as nested lists).
    """
    m = np.asarray(matrix, dtype=np.int64)
    n = m.shape[0]
    names = list(names) if names is not None else [str(c) for c in range(n)]
    diag = np.diag(m).astype(np.float64)
    rows, cols = m.sum(1).astype(np.float64), m.sum(0).astype(np.float64)
    union = rows + cols - diag
    total = float(m.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, diag / union, np.nan)
        acc = np.where(rows > 0, diag / rows, np.nan)
    per_class = {names[c]: {"iou": None if np.isnan(iou[c]) else float(iou[c]),
                            "accuracy": None if np.isnan(acc[c]) else float(acc[c]), "pixels": int(rows[c])}
                 for c in range(n)}
    present = ~np.isnan(iou)
    return {
        "pixel_accuracy": float(diag.sum() / total) if total else float("nan"),
        "miou": float(iou[present].mean()) if present.any() else float("nan"),
        "mean_class_accuracy": float(np.nanmean(acc)) if (rows > 0).any() else float("nan"),
        "per_class": per_class, "pixels": int(total), "confusion": m.tolist(),
    }
