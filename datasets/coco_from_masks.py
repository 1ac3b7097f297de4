"""A COCO instances set from mask videos or image sets (e.g. DAVIS), with polygons as coarse as hand-drawn ones.

Every ``every``-th frame of each (frames, masks) pair becomes a COCO image; every object id in its mask (labels
1 … 254; 0 background, 255 void ignored) becomes one annotation whose ``segmentation`` is the object's outer
contours (``cv2.findContours``, external only, so holes are filled as in most COCO polygons) simplified with
``cv2.approxPolyDP(epsilon=polygon_tolerance)``, in COCO coordinates (pixel ``(row, col)`` covers
``[col, col + 1) × [row, row + 1)``); the contours follow the pixel edges to within 1/8 pixel. A tolerance of
a few pixels gives outlines like COCO's: the "original" variant that ``refine-coco`` then refines.

Layout under ``out``::

    images/<folder>_<frame stem>.<ext>   the frame files, copied byte for byte (PNG-encoded from a video file)
    instances.json                      images, annotations, categories (one "object", or one per id)
    config.yaml                         the resolved configuration

``area`` and ``bbox`` are those of the rasterised polygons (pycocotools, through :mod:`steadyseg.datasets.coco`).
Each image also records its ``source`` (frames folder and frame name).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from steadyseg.labels import VOID

__all__ = ["mask_to_polygons", "coco_from_masks", "COCO_FROM_MASKS_DEFAULTS"]

# Contours are traced on the mask upsampled this many times (nearest), so the polygon runs 1/(2k) pixel inside the
# true pixel edges instead of through the boundary pixels' centres (which loses half a pixel all around).
_TRACE_UPSAMPLE = 4

COCO_FROM_MASKS_DEFAULTS: dict[str, Any] = {"every": 1, "polygon_tolerance": 2.0, "per_id": False,
                                            "min_area": 1.0, "progress": True}


def mask_to_polygons(mask: np.ndarray, *, tolerance: float = 2.0) -> list[list[float]]:
    """Outer contours of a ``(H, W)`` bool mask as COCO polygons ``[x0, y0, x1, y1, …]`` (COCO coordinates).

    The contours follow the pixel edges to within 1/8 pixel (traced on a 4× nearest-upsampled mask), so with
    ``tolerance=0`` the polygons rasterise back to the mask; each contour is simplified with
    ``cv2.approxPolyDP(epsilon=tolerance)`` (pixels); contours left with fewer than 3 vertices are dropped.
    Returns ``[]`` for an empty mask.
    """
    if mask.ndim != 2:
        raise ValueError(f"expected an (H, W) mask, got shape {mask.shape}")
    if tolerance < 0:
        raise ValueError(f"polygon tolerance must be >= 0, got {tolerance}")
    k = _TRACE_UPSAMPLE
    big = np.repeat(np.repeat(mask.astype(np.uint8), k, axis=0), k, axis=1)
    contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    polys = []
    for c in contours:
        if tolerance > 0:
            c = cv2.approxPolyDP(c, float(tolerance) * k, True)
        pts = (c.reshape(-1, 2).astype(np.float64) + 0.5) / k
        if len(pts) >= 3:
            polys.append([round(float(v), 2) for v in pts.reshape(-1)])
    return polys


def _folder_name(frames_path: Path) -> str:
    return frames_path.stem if frames_path.is_file() else frames_path.name


def coco_from_masks(pairs: Sequence[tuple[str | os.PathLike, str | os.PathLike]], out: str | os.PathLike,
                    **kwargs: Any) -> dict[str, Any]:
    """Build a COCO instances set from (frames, masks) pairs; see the module doc for the layout.

    Args:
        pairs: ``[(frames folder or video file, masks folder), ...]``; each pair must match frame for frame
            (:func:`steadyseg.datasets.masks.check_matching`). Folder names (stems for video files) must differ.
        out: output folder.
        **kwargs: keys of :data:`COCO_FROM_MASKS_DEFAULTS`: ``every`` (take frames 0, K, 2K, …),
            ``polygon_tolerance`` (pixels, ``approxPolyDP`` epsilon), ``per_id`` (one category per object id,
            named ``"object <id>"``; else one category ``"object"``), ``min_area`` (annotations whose polygons
            rasterise to fewer pixels are dropped), ``progress``.

    Returns:
        a summary ``{"images", "annotations", "categories", "dropped_small", "instances"}``.
    """
    from steadyseg.datasets.coco import rle_area, rle_bbox, segmentation_to_rle
    from steadyseg.datasets.masks import check_matching, open_masks
    from steadyseg.datasets.video import open_video
    from steadyseg.files import atomic_path, atomic_write_json, save_resolved_config

    unknown = set(kwargs) - set(COCO_FROM_MASKS_DEFAULTS)
    if unknown:
        raise TypeError(f"coco_from_masks: unknown arguments {sorted(unknown)}")
    cfg = {**COCO_FROM_MASKS_DEFAULTS, **kwargs}
    every = int(cfg["every"])
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    if not pairs:
        raise ValueError("coco_from_masks: give at least one (frames, masks) pair")
    out = Path(out)
    img_dir = out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    names = [_folder_name(Path(f)) for f, _ in pairs]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"two frame folders are both named {dup!r}; image file names would collide")
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    ids_seen: set[int] = set()
    dropped = 0
    todo = []
    for (frames_path, masks_path), folder in zip(pairs, names):
        frames = open_video(frames_path)
        masks = open_masks(masks_path)
        check_matching(frames, masks)
        todo += [(folder, frames, masks, t) for t in range(0, len(frames), every)]
    it = todo
    if cfg["progress"]:
        from tqdm.auto import tqdm

        it = tqdm(todo, desc="coco-from-masks", unit="frame")
    for folder, frames, masks, t in it:
        h, w = frames.size
        src = frames.frame_path(t)
        stem = frames.names[t]
        if src is not None:
            file_name = f"{folder}_{stem}{src.suffix.lower()}"
            with atomic_path(img_dir / file_name) as tmp:
                shutil.copyfile(src, tmp)
        else:
            file_name = f"{folder}_{stem}.png"
            ok, buf = cv2.imencode(".png", cv2.cvtColor(frames[t], cv2.COLOR_RGB2BGR))
            if not ok:
                raise ValueError(f"{frames.source}: cannot encode frame {t} as PNG")
            with atomic_path(img_dir / file_name) as tmp:
                tmp.write_bytes(buf.tobytes())
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": file_name, "height": h, "width": w,
                       "source": {"frames": str(frames.source), "frame": stem}})
        labels = masks[t]
        if masks.reading == "davis2016-binary":
            labels = np.where(labels == 1, 1, 0)
        for obj in [int(v) for v in np.unique(labels) if v != 0 and v != VOID]:
            polys = mask_to_polygons(labels == obj, tolerance=float(cfg["polygon_tolerance"]))
            if not polys:
                dropped += 1
                continue
            rle = segmentation_to_rle(polys, h, w, ann_id=len(annotations) + 1)
            area = rle_area(rle)
            if area < float(cfg["min_area"]):
                dropped += 1
                continue
            cat = obj if cfg["per_id"] else 1
            ids_seen.add(cat)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat,
                                "segmentation": polys, "area": float(area), "bbox": rle_bbox(rle), "iscrowd": 0})
    if cfg["per_id"]:
        categories = [{"id": k, "name": f"object {k}", "supercategory": "object"} for k in sorted(ids_seen)]
    else:
        categories = [{"id": 1, "name": "object", "supercategory": "object"}]
    data = {"info": {"description": "steadyseg coco-from-masks", "sources": [[str(f), str(m)] for f, m in pairs],
                     "every": every, "polygon_tolerance": float(cfg["polygon_tolerance"])},
            "images": images, "annotations": annotations, "categories": categories}
    atomic_write_json(out / "instances.json", data)
    save_resolved_config(out, {"pairs": [[str(f), str(m)] for f, m in pairs], **cfg})
    return {"images": len(images), "annotations": len(annotations), "categories": len(categories),
            "dropped_small": dropped, "instances": str(out / "instances.json")}
