"""One COCO annotation through a refiner: decode, crop, refine, guard, re-encode (the per-annotation step of
``refine-coco``; :mod:`steadyseg.refine.coco.driver` runs it over a whole file).

Every refined annotation carries (the curation stage reads this, keep it exact)::

    "refine": {"iou_with_original": float, "area_ratio": float, "guard": null | "vanished" | "shrunk",
               "kept_original": bool, "refiner": str}
    crowd:   "refine": {"skipped": "crowd", "refiner": str}       (annotation otherwise unchanged)
    failure: "refine": {"error": "annotation 123 (image 456): ..."} (written by the caller)

Floats written into annotations are rounded to :data:`ROUND` decimals (stable, readable JSON).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from steadyseg.accuracy import iou
from steadyseg.datasets import coco as coco_io
from steadyseg.refine.refiners import Refiner, crop_box, refine_on_crop

#: What happens when a refined mask vanishes or shrinks: keep the original mask (flagged) or only flag it.
GUARD_POLICIES = ("keep-original", "flag-only")
#: Decimals of the floats written into annotations.
ROUND = 6


def decode_region(ann: dict[str, Any], height: int, width: int, *, context: float, context_min: int, where: str
                  ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The annotation's mask inside a region that contains its crop: ``(mask (h, w) bool, (x0, y0, x1, y1))``.

    For polygons the region is the crop (:func:`~steadyseg.refine.refiners.crop_box`) around the polygons' pixel
    box, so decoding cost does not grow with the image; RLEs are decoded over the whole ``height`` × ``width`` image.
    """
    segm = ann["segmentation"]
    if isinstance(segm, list):
        box = coco_io.polygon_pixel_box(segm, height, width, where=where)
        region = crop_box(box, height, width, context=context, context_min=context_min)
        return coco_io.annotation_mask_in_box(ann, height, width, region), region
    return coco_io.annotation_to_mask(ann, height, width), (0, 0, width, height)


def refine_annotation(refiner: Refiner, image: np.ndarray, ann: dict[str, Any], *, refiner_name: str,
                      context: float = 0.25, context_min: int = 8, threshold: float = 0.5,
                      guard: str = "keep-original", min_area_ratio: float = 0.5) -> dict[str, Any]:
    """Refine one annotation of ``image`` ((H, W, 3) uint8 RGB); returns the new annotation dict.

    The mask is refined on the crop around it (:func:`~steadyseg.refine.refiners.refine_on_crop`), thresholded at
    ``threshold``, pasted back and re-encoded as compressed RLE; ``area`` and ``bbox`` are recomputed and the input
    box is kept as ``"original_bbox"``. Guard: a refined mask that is empty ("vanished") or smaller than
    ``min_area_ratio`` of the original ("shrunk") is flagged and, with ``guard="keep-original"``, replaced by the
    original mask.

    Raises ``CocoFormatError`` (bad segmentation / box) or ``ValueError`` (refiner output) with a message naming
    the annotation; the caller records it. Crowd annotations are returned unchanged with ``refine.skipped``.
    """
    where = f"annotation {ann.get('id')} (image {ann.get('image_id')})"
    if ann.get("iscrowd"):
        return {**ann, "refine": {"skipped": "crowd", "refiner": refiner_name}}
    height, width = image.shape[:2]
    coco_io.check_bbox(ann, height, width, where=where)
    if "segmentation" not in ann:
        raise coco_io.CocoFormatError(f"{where}: no 'segmentation'")
    region, (rx0, ry0, _, _) = decode_region(ann, height, width, context=context, context_min=context_min,
                                             where=where)
    crop = refine_on_crop(refiner, image, region, origin=(rx0, ry0), context=context, context_min=context_min,
                          threshold=threshold, where=where, refiner_name=refiner_name)
    if crop is None:
        raise coco_io.CocoFormatError(f"{where}: segmentation is empty inside the image ({width}x{height})")
    mask_crop, refined = crop.mask, crop.refined
    x0, y0, _, _ = crop.box
    area_orig = int(mask_crop.sum())
    area_new = int(refined.sum())
    ratio = area_new / area_orig
    flag = "vanished" if area_new == 0 else ("shrunk" if ratio < min_area_ratio else None)
    kept = flag is not None and guard == "keep-original"
    final = mask_crop if kept else refined
    out = dict(ann)
    out["segmentation"] = coco_io.crop_to_rle(final, height, width, x0, y0)
    out["area"] = float(final.sum())
    frows, fcols = np.flatnonzero(final.any(axis=1)), np.flatnonzero(final.any(axis=0))
    out["bbox"] = ([float(x0 + fcols[0]), float(y0 + frows[0]), float(fcols[-1] - fcols[0] + 1),
                    float(frows[-1] - frows[0] + 1)] if frows.size else [0.0, 0.0, 0.0, 0.0])
    out["original_bbox"] = ann.get("bbox")
    out["refine"] = {"iou_with_original": round(float(iou(refined, mask_crop, void=None)), ROUND),
                     "area_ratio": round(float(ratio), ROUND), "guard": flag, "kept_original": bool(kept),
                     "refiner": refiner_name}
    return out
