"""Evaluate a trained segmentation model on a COCO set: confusion matrix → mIoU, pixel accuracy, per-class IoU.

As torchvision's reference ``evaluate``: every image is resized so its shorter side is the model's ``base_size``
(image bilinear, target nearest), the model's ``out`` logits are taken at that size, and the argmax is compared
with the target; void (255) pixels are not counted. See :mod:`steadyseg.train.metrics` for the numbers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["evaluate_samples", "evaluate_checkpoint"]


def evaluate_samples(model: nn.Module, samples, *, device: str | torch.device = "cpu", amp: bool = False,
                     progress: bool = True, distributed: bool = False) -> dict[str, Any]:
    """Scores of ``model`` on eval-mode :class:`~steadyseg.train.data.SegmentationSamples` (one image at a time).

    With ``distributed`` each process evaluates every ``world_size``-th image and the matrices are summed. The
    model is left in eval mode. Returns :func:`steadyseg.train.metrics.scores` (class names from the set).
    """
    from steadyseg.train.metrics import ConfusionMatrix, scores

    device = torch.device(device)
    names = list(samples.targets.label_set.names)
    cm = ConfusionMatrix(len(names))
    indices = range(len(samples))
    if distributed:
        import torch.distributed as dist

        indices = range(dist.get_rank(), len(samples), dist.get_world_size())
    it = indices
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(indices, desc="eval", unit="img")
    model.eval()
    with torch.inference_mode():
        for i in it:
            image, target = samples[i]
            with torch.autocast(device_type=device.type, enabled=amp and device.type == "cuda"):
                logits = model(image.unsqueeze(0).to(device))["out"]
            cm.update(target.to(device), logits.argmax(1)[0])
    if distributed:
        if cm.mat is None:
            cm.mat = torch.zeros((len(names), len(names)), dtype=torch.int64, device=device)
        cm.reduce_from_all_processes()
    return scores(cm.matrix(), names)


def evaluate_checkpoint(checkpoint: str | os.PathLike, annotations: str | os.PathLike, images: str | os.PathLike,
                        *, labels: str | None = None, split: str = "val", base_size: int | None = None,
                        device: str | None = None, progress: bool = True,
                        out: str | os.PathLike | None = None) -> dict[str, Any]:
    """Evaluate a ``model.pt`` on a COCO file.

    Args:
        checkpoint: a ``RUN/model.pt`` of a segmentation model (kind ``teacher``).
        annotations, images: the COCO file and its image folder.
        labels: label set of the targets; ``None`` → the one the model was trained with. Its class names must be
            the model's.
        split: ``val`` (every image) or ``train`` (torchvision's area filter).
        base_size: shorter side for evaluation; ``None`` → the model's.
        device: ``None`` → CUDA when available.
        out: when given, the result is also written there as JSON (atomically).

    Returns:
        ``pixel_accuracy``, ``miou``, ``mean_class_accuracy``, ``per_class``, ``pixels``, ``confusion``, plus
        ``images``, ``checkpoint``, ``annotations``, ``label_set``, ``base_size``.
    """
    from steadyseg.datasets.coco_targets import CocoSemanticTargets
    from steadyseg.train.checkpoint import load_model
    from steadyseg.train.data import SegmentationSamples

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    kind, config, model = load_model(checkpoint, device=dev)
    if "names" not in config or "base_size" not in config:
        raise ValueError(f"{checkpoint}: a {kind} model without class names / base size cannot be evaluated on COCO")
    label_set = labels or config.get("label_set", "file")
    ds = CocoSemanticTargets(annotations, images, labels=label_set, split=split)
    if list(ds.label_set.names) != list(config["names"]):
        raise ValueError(f"{annotations}: its {label_set} classes {list(ds.label_set.names)[:5]}… differ from the "
                         f"model's {list(config['names'])[:5]}… ({checkpoint})")
    size = int(base_size or config["base_size"])
    samples = SegmentationSamples(ds, train=False, base_size=size, crop_size=size)
    result = evaluate_samples(model, samples, device=dev, progress=progress)
    result.update({"images": len(ds), "checkpoint": str(checkpoint), "annotations": str(annotations),
                   "label_set": ds.label_set.name, "base_size": size, "split": split})
    if out is not None:
        from steadyseg.files import atomic_write_json

        atomic_write_json(Path(out), result)
    return result
