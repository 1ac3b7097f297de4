"""Quality of refined masks against reference masks: IoU, boundary accuracy (mBA), and change statistics.

Conventions follow the evaluation of the CascadePSP paper and code (Cheng et al., CVPR 2020), restated here in
full so that this docstring is the reference:

- IoU of one mask pair is :func:`steadyseg.accuracy.iou` (1.0 when both are empty). IoU over a dataset is ΣI / ΣU
  (pixels summed over all masks); the mean of per-mask IoUs is reported beside it.
- Boundary accuracy of one mask pair: for ``i = 0..4``, radius ``r_i = 1 + int((max(1, (w + h) / 300) − 1) / 5 · i)``
  (``w``, ``h`` = the IMAGE size); the band is the morphological gradient (dilation − erosion) of the reference
  mask with an ellipse of size ``2 r_i + 1``; the accuracy is the fraction of band pixels where the prediction
  equals the reference. mBA is the mean over the radii, then over masks (pairs whose reference is empty have no
  band and are left out of mBA).

Python::

    from steadyseg.refine.coco.evaluation import mask_pair_metrics, evaluate_mask_pairs
    m = mask_pair_metrics(pred, ref)            # {"iou", "intersection", "union", "ba", "ba_per_radius", ...}
    summary = evaluate_mask_pairs([(p1, r1), (p2, r2)])

COCO files: :func:`compare_coco` matches annotations by id between a refined file, a reference file (e.g. exact
masks of synthetic data) and optionally the original file, and reports IoU/mBA of each against the reference plus
the change statistics refined-vs-original.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import cv2
import numpy as np

from steadyseg.accuracy import iou


def boundary_radii(height: int, width: int, *, steps: int = 5) -> list[int]:
    """CascadePSP's band radii for an image of ``height`` × ``width`` pixels (``steps`` radii, the first is 1)."""
    max_radius = max(1.0, (width + height) / 300.0)
    return [1 + int((max_radius - 1.0) / steps * i) for i in range(steps)]


def _check_pair(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.ndim != 2 or pred.shape != ref.shape:
        raise ValueError(f"expected two (H, W) masks of the same shape, got {pred.shape} and {ref.shape}")
    return pred > 0 if pred.dtype != bool else pred, ref > 0 if ref.dtype != bool else ref


def boundary_accuracy(pred: np.ndarray, ref: np.ndarray, *, radii: Sequence[int] | None = None,
                      image_size: tuple[int, int] | None = None) -> tuple[float, list[float]]:
    """Boundary accuracy of ``pred`` against ``ref`` ((H, W) bool); returns (mean over radii, per radius).

    ``radii`` default to :func:`boundary_radii` of ``image_size`` ((H, W), default the mask size). A radius whose
    band is empty (empty or full reference) gives NaN and the mean is NaN.
    """
    pred, ref = _check_pair(pred, ref)
    h, w = image_size if image_size is not None else ref.shape
    radii = list(radii) if radii is not None else boundary_radii(h, w)
    ref_u8 = ref.astype(np.uint8)
    per = []
    for r in radii:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * int(r) + 1, 2 * int(r) + 1))
        band = cv2.morphologyEx(ref_u8, cv2.MORPH_GRADIENT, kernel) > 0
        n = int(band.sum())
        per.append(float((pred[band] == ref[band]).sum() / n) if n else float("nan"))
    return (float(np.mean(per)) if per and not np.isnan(per).any() else float("nan")), per


def mask_pair_metrics(pred: np.ndarray, ref: np.ndarray, *, radii: Sequence[int] | None = None,
                      image_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """IoU and boundary accuracy of one (H, W) bool prediction against one (H, W) bool reference.

    Returns ``{"iou", "intersection", "union", "ba", "ba_per_radius", "radii", "area_pred", "area_ref"}``;
    IoU is 1.0 when both masks are empty.
    """
    pred, ref = _check_pair(pred, ref)
    h, w = image_size if image_size is not None else ref.shape
    radii = list(radii) if radii is not None else boundary_radii(h, w)
    inter = int(np.logical_and(pred, ref).sum())
    union = int(np.logical_or(pred, ref).sum())
    ba, per = boundary_accuracy(pred, ref, radii=radii)
    return {"iou": float(iou(pred, ref, void=None)), "intersection": inter, "union": union, "ba": ba,
            "ba_per_radius": per, "radii": radii, "area_pred": int(pred.sum()), "area_ref": int(ref.sum())}


def summarize_metrics(metrics: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Dataset summary of :func:`mask_pair_metrics` results: ΣI/ΣU, mean IoU, mBA (over pairs with a band)."""
    metrics = list(metrics)
    inter = sum(m["intersection"] for m in metrics)
    union = sum(m["union"] for m in metrics)
    bas = [m["ba"] for m in metrics if not np.isnan(m["ba"])]
    return {"count": len(metrics), "iou": inter / union if union else float("nan"),
            "mean_iou": float(np.mean([m["iou"] for m in metrics])) if metrics else float("nan"),
            "mba": float(np.mean(bas)) if bas else float("nan"), "mba_count": len(bas)}


def evaluate_mask_pairs(pairs: Iterable[tuple[np.ndarray, np.ndarray]], *,
                        image_sizes: Iterable[tuple[int, int]] | None = None) -> dict[str, Any]:
    """Summary over ``(pred, ref)`` pairs of (H, W) bool masks; see :func:`summarize_metrics`."""
    sizes = iter(image_sizes) if image_sizes is not None else None
    return summarize_metrics(mask_pair_metrics(p, r, image_size=next(sizes) if sizes else None) for p, r in pairs)


def _index(data: dict[str, Any], path: Path) -> tuple[dict[Any, dict], dict[Any, dict]]:
    images = {im["id"]: im for im in data["images"]}
    anns = {}
    for a in data["annotations"]:
        if a.get("id") in anns:
            raise ValueError(f"{path}: duplicate annotation id {a.get('id')}")
        anns[a.get("id")] = a
    return images, anns


def compare_coco(refined: str | os.PathLike, reference: str | os.PathLike | None = None, *,
                 original: str | os.PathLike | None = None, include_crowd: bool = False,
                 progress: bool = True) -> dict[str, Any]:
    """Compare COCO files annotation by annotation (matched by ``id``).

    Args:
        refined: the refined instances JSON (e.g. ``refine-coco``'s output).
        reference: reference masks (ground truth, e.g. exact synthetic masks); gives IoU/mBA of ``refined`` and
            (when given) of ``original`` against it.
        original: the input of the refinement; gives change statistics refined-vs-original (IoU, area ratio,
            box shift) and, with a reference, the before/after quality.
        include_crowd: also score crowd annotations (off: COCO excludes them from mask quality).

    Returns a dict with ``"counts"``, ``"refined_vs_reference"``, ``"original_vs_reference"``,
    ``"change"`` (refined vs original) and ``"missing"`` (ids absent from a file); absent parts are None.
    """
    from tqdm import tqdm

    from steadyseg.datasets import coco as coco_io

    if reference is None and original is None:
        raise ValueError("compare_coco needs a reference file, an original file, or both")
    paths = {"refined": Path(refined), "reference": reference and Path(reference),
             "original": original and Path(original)}
    loaded = {k: (coco_io.load_coco_json(p), p) for k, p in paths.items() if p is not None}
    idx = {k: _index(d, p) for k, (d, p) in loaded.items()}
    images, ref_anns = idx["refined"]
    ids = [i for i, a in ref_anns.items() if include_crowd or not a.get("iscrowd")]
    missing = {k: [i for i in ids if i not in idx[k][1]] for k in idx if k != "refined"}
    common = [i for i in ids if all(i in idx[k][1] for k in idx)]
    per: dict[str, list[dict[str, Any]]] = {"refined_vs_reference": [], "original_vs_reference": [], "change": []}
    change_rows = []
    for ann_id in tqdm(common, desc="refine-eval", unit="ann", disable=not progress):
        ann = ref_anns[ann_id]
        img = images.get(ann["image_id"])
        if img is None:
            raise ValueError(f"{paths['refined']}: annotation {ann_id} has unknown image id {ann['image_id']}")
        h, w = int(img["height"]), int(img["width"])
        masks = {k: coco_io.annotation_to_mask(idx[k][1][ann_id], h, w) for k in idx}
        if "reference" in masks:
            per["refined_vs_reference"].append(mask_pair_metrics(masks["refined"], masks["reference"]))
            if "original" in masks:
                per["original_vs_reference"].append(mask_pair_metrics(masks["original"], masks["reference"]))
        if "original" in masks:
            m = mask_pair_metrics(masks["refined"], masks["original"])
            per["change"].append(m)
            ob = idx["original"][1][ann_id].get("bbox") or [0, 0, 0, 0]
            rb = ann.get("bbox") or [0, 0, 0, 0]
            change_rows.append({"id": ann_id, "iou": m["iou"],
                                "area_ratio": m["area_pred"] / m["area_ref"] if m["area_ref"] else float("nan"),
                                "bbox_shift": float(np.abs(np.subtract(rb, ob)).max())})
    out: dict[str, Any] = {"files": {k: str(p) for k, p in paths.items() if p is not None},
                           "counts": {"refined": len(ref_anns), "scored": len(common),
                                      "crowd_excluded": 0 if include_crowd else len(ref_anns) - len(ids)},
                           "missing": missing, "refined_vs_reference": None, "original_vs_reference": None,
                           "change": None}
    for key in ("refined_vs_reference", "original_vs_reference"):
        if per[key]:
            out[key] = summarize_metrics(per[key])
    if change_rows:
        ious = np.array([r["iou"] for r in change_rows])
        ratios = np.array([r["area_ratio"] for r in change_rows])
        out["change"] = {
            "mean_iou_with_original": float(ious.mean()),
            "median_iou_with_original": float(np.median(ious)),
            "changed": int((ious < 1.0).sum()),
            "iou_below_0.5": int((ious < 0.5).sum()),
            "mean_area_ratio": float(np.nanmean(ratios)) if np.isfinite(ratios).any() else float("nan"),
            "vanished": int(sum(1 for m in per["change"] if m["area_pred"] == 0 and m["area_ref"] > 0)),
            "max_bbox_shift": float(max(r["bbox_shift"] for r in change_rows)),
            "per_annotation": change_rows,
        }
    return out
