"""Build (or update) a persistent FiftyOne dataset that puts original and refined COCO instance masks side by side.

One sample per COCO image; two label fields of instance ``Detections`` with masks:

- ``ground_truth``: the original annotations (never modified by any steadyseg step), attributes ``coco_id``,
  ``category_id``, ``iscrowd``, ``area`` (COCO's), ``coco_bbox`` (COCO ``[x, y, w, h]`` pixels), ``mask_area``
  (pixels of the stored mask), ``removed`` (absent from the refined file) and ``vanished`` (the refined mask is
  empty, or the refinement guard reported it vanished);
- ``refined``: the refined annotations with the same ``coco_id``/``category_id``/``iscrowd``, ``area``,
  ``coco_bbox``, ``mask_area`` and the change metrics of :mod:`steadyseg.curation.metrics` (``iou``,
  ``area_ratio``, ``boundary_f``, ``centroid_shift``), ``original_area`` (pixels), ``guard`` (None, "vanished" or
  "shrunk"), ``kept_original`` (the guard put the original back), ``status`` ("refined", "skipped", "error") and
  ``refiner``.

Masks are stored the FiftyOne way: the ``bool`` crop of the full-image mask inside ``bounding_box``, with the
box on integer pixel edges (``[x0/W, y0/H, w/W, h/H]``), so :func:`detection_to_full_mask` gives back the exact
full-image mask. Per-sample summaries: ``n_original``, ``n_refined``, ``n_removed``, ``n_vanished``, ``n_changed``
(IoU below ``change_threshold``), ``n_guard``, ``min_iou``, ``mean_iou``, ``min_boundary_f``,
``max_centroid_shift``.

Ingest is parallel: worker processes (joblib/loky) decode and compare the masks of their own batches of images (each
mask is decoded from its RLE runs inside the metric window only, never as a full-image array); the main process
declares the schema first and inserts. The default "raw" writer inserts FiftyOne-layout documents into
FiftyOne's private sample collection; it is used only when :func:`raw_writer_problem` finds the installed FiftyOne
inside the tested version range (:data:`RAW_WRITER_TESTED_FIFTYONE`) and a probe document written both ways has the
same keys; otherwise the build warns and falls back to the public ``Dataset.add_samples`` writer.
Rebuilding an existing dataset keeps the review (label tags on ``ground_truth``/``refined``, matched by
``coco_id``; sample tags matched by image id).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import random
import re
import struct
import time
import warnings
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from steadyseg.curation.env import require_fiftyone
from steadyseg.curation.metrics import (davis_tolerance, empty_pair_metrics, mask_bbox, metric_window,
                                        window_change_metrics)
from steadyseg.errors import InputError

GT_FIELD = "ground_truth"
REFINED_FIELD = "refined"
DEFAULT_CHANGE_THRESHOLD = 0.9
INFO_KEY = "steadyseg"

# FiftyOne versions on which the raw writer's documents were checked against FiftyOne's own serialisation
# (tests/curation/test_build_views_export.py): [min, max) of (major, minor). pyproject.toml bounds fiftyone the same.
RAW_WRITER_TESTED_FIFTYONE = ((1, 22), (1, 23))
# document keys that differ by construction between the two writers (ids, random key, insert times)
_VOLATILE_KEYS = frozenset({"_id", "_rand", "_dataset_id", "created_at", "last_modified_at"})

# Embedded attributes declared up front (so parallel writers never change the schema concurrently).
_COMMON_ATTRS = {"coco_id": "int", "category_id": "int", "iscrowd": "bool", "area": "float",
                 "coco_bbox": "list", "mask_area": "int"}
GT_ATTRS = {**_COMMON_ATTRS, "removed": "bool", "vanished": "bool"}
REFINED_ATTRS = {**_COMMON_ATTRS, "iou": "float", "area_ratio": "float", "boundary_f": "float",
                 "centroid_shift": "float", "original_area": "int", "guard": "str", "kept_original": "bool",
                 "status": "str", "refiner": "str", "error": "str"}
SAMPLE_FIELDS = {"coco_image_id": "int", "coco_image": "dict", "n_original": "int", "n_refined": "int",
                 "n_removed": "int", "n_vanished": "int", "n_changed": "int", "n_guard": "int",
                 "min_iou": "float", "mean_iou": "float", "min_boundary_f": "float", "max_centroid_shift": "float"}


# ----------------------------------------------------------------------------------------------------- masks

def crop_mask(mask: np.ndarray, box: tuple[int, int, int, int] | None = None) -> tuple[list[float], np.ndarray] | None:
    """Full ``(H, W)`` bool mask → (FiftyOne relative box ``[x, y, w, h]`` on pixel edges, bool crop); None if empty.

    ``box`` is the mask's tight ``(y0, y1, x0, x1)`` when already known (:func:`~steadyseg.curation.metrics.mask_bbox`).
    """
    h, w = mask.shape
    box = mask_bbox(mask) if box is None else box
    if box is None:
        return None
    y0, y1, x0, x1 = box
    return relative_box(box, h, w), np.ascontiguousarray(mask[y0:y1, x0:x1], dtype=bool)


def relative_box(box: tuple[int, int, int, int], height: int, width: int) -> list[float]:
    """Pixel box ``(y0, y1, x0, x1)`` (end exclusive) → FiftyOne's relative ``[x, y, w, h]`` on pixel edges."""
    y0, y1, x0, x1 = box
    return [x0 / width, y0 / height, (x1 - x0) / width, (y1 - y0) / height]


def _sub_crop(crop: np.ndarray, window: tuple[int, int, int, int],
              box: tuple[int, int, int, int] | None) -> np.ndarray | None:
    """The part of a window crop inside ``box`` (both ``(y0, y1, x0, x1)`` in image pixels), C-contiguous bool."""
    if box is None:
        return None
    oy, ox = window[0], window[2]
    return np.ascontiguousarray(crop[box[0] - oy: box[1] - oy, box[2] - ox: box[3] - ox])


def box_to_pixels(bounding_box: list[float], height: int, width: int) -> tuple[int, int, int, int]:
    """Relative ``[x, y, w, h]`` written by :func:`crop_mask` → integer ``(x0, y0, x1, y1)`` pixel edges."""
    x, y, bw, bh = bounding_box
    x0, y0 = int(round(x * width)), int(round(y * height))
    x1, y1 = int(round((x + bw) * width)), int(round((y + bh) * height))
    return x0, y0, x1, y1


def detection_to_full_mask(bounding_box: list[float] | None, mask: np.ndarray | None, height: int,
                           width: int) -> np.ndarray:
    """Rebuild the ``(H, W)`` bool full-image mask of a stored detection (all False when it has no mask)."""
    full = np.zeros((height, width), dtype=bool)
    if mask is None or bounding_box is None:
        return full
    x0, y0, x1, y1 = box_to_pixels(bounding_box, height, width)
    crop = np.asarray(mask).astype(bool)
    if crop.shape != (y1 - y0, x1 - x0):
        # Boxes from other tools (not on pixel edges): resize the crop like FiftyOne's own renderer does.
        import cv2

        crop = cv2.resize(crop.astype(np.uint8), (max(x1 - x0, 1), max(y1 - y0, 1)),
                          interpolation=cv2.INTER_NEAREST).astype(bool)
        crop = crop[: y1 - y0, : x1 - x0]
    full[y0:y1, x0:x1] = crop[: height - y0, : width - x0]
    return full


# ------------------------------------------------------------------------------------------------ the inputs

def _index_annotations(data: dict[str, Any], path: str | os.PathLike = "annotations"
                       ) -> dict[int, list[dict[str, Any]]]:
    per_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for k, ann in enumerate(data["annotations"]):
        try:
            int(ann["id"])
            per_image[int(ann["image_id"])].append(ann)
        except (KeyError, TypeError, ValueError):
            raise InputError(path, f"annotation #{k} has no integer 'id' and 'image_id': {str(ann)[:120]}") from None
    return per_image


def _check_images(data: dict[str, Any], path: str | os.PathLike) -> None:
    """Every image entry has an integer ``id``, ``height``, ``width`` and a ``file_name`` (InputError otherwise)."""
    for k, im in enumerate(data["images"]):
        try:
            int(im["id"]), int(im["height"]), int(im["width"]), str(im["file_name"])
        except (KeyError, TypeError, ValueError):
            raise InputError(path, f"image #{k} needs an integer 'id', 'height', 'width' and a 'file_name': "
                             f"{str(im)[:120]}") from None


def check_pair(original: dict[str, Any], refined: dict[str, Any], *, original_path: str = "original",
               refined_path: str = "refined") -> None:
    """Raise ``ValueError`` naming the file when the refined COCO file does not match the original one."""
    orig_images = {int(im["id"]) for im in original["images"]}
    extra_images = {int(im["id"]) for im in refined["images"]} - orig_images
    if extra_images:
        raise ValueError(f"{refined_path}: {len(extra_images)} image ids not in {original_path} "
                         f"(e.g. {sorted(extra_images)[:3]}); refine the same COCO file")
    orig_ids = {int(a["id"]): a for a in original["annotations"]}
    for ann in refined["annotations"]:
        src = orig_ids.get(int(ann["id"]))
        if src is None:
            raise ValueError(f"{refined_path}: annotation id {ann['id']} is not in {original_path}; "
                             "a refined file must keep the original annotation ids")
        if int(src["image_id"]) != int(ann["image_id"]):
            raise ValueError(f"{refined_path}: annotation {ann['id']} moved from image {src['image_id']} "
                             f"to {ann['image_id']}")


def _image_payload(image: dict[str, Any], orig_anns: list[dict[str, Any]], ref_anns: dict[int, dict[str, Any]],
                   categories: dict[int, str], *, images_dir: str, boundary_tolerance: int | None,
                   change_threshold: float, sources: tuple[str, str] = ("original", "refined")) -> dict[str, Any]:
    """Everything one sample needs, as plain Python/numpy (computed in worker processes).

    A bad annotation raises :class:`~steadyseg.errors.InputError` naming its file (``sources``: the original and
    the refined COCO file)."""
    from steadyseg.datasets.coco import decode_rle_window, rle_bbox, rle_run_ends, segmentation_to_rle

    def to_rle(ann: dict[str, Any], source: str) -> dict[str, Any]:
        """The annotation's compressed RLE (``counts`` a str; canonical, so equal masks give equal strings)."""
        try:
            return segmentation_to_rle(ann.get("segmentation"), h, w, ann_id=ann.get("id"))
        except (ValueError, TypeError) as exc:
            raise InputError(source, f"image {image.get('id')}: {exc}") from None

    def runs(rle: dict[str, Any], ann: dict[str, Any], source: str
             ) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
        """The mask's RLE run ends and its tight (y0, y1, x0, x1) box, the box read from the RLE (no scan)."""
        try:
            ends = rle_run_ends(rle["counts"])
        except ValueError as exc:
            raise InputError(source, f"image {image.get('id')}: annotation {ann.get('id')}: {exc}") from None
        if ends.size == 0 or ends[-1] != h * w:
            raise InputError(source, f"image {image.get('id')}: annotation {ann.get('id')}: RLE runs cover "
                             f"{int(ends[-1]) if ends.size else 0} pixels, the image has {h * w}")
        x, y, bw, bh = (int(round(v)) for v in rle_bbox(rle))
        return ends, ((y, y + bh, x, x + bw) if bw > 0 and bh > 0 else None)

    def stored(crop: np.ndarray | None, box: tuple[int, int, int, int] | None) -> tuple[list[float], Any]:
        """(relative bounding box, bool crop) as stored on a label; a zero box and no mask when empty."""
        return (relative_box(box, h, w), crop) if box is not None else ([0.0, 0.0, 0.0, 0.0], None)

    h, w = int(image["height"]), int(image["width"])
    tol = davis_tolerance(h, w) if boundary_tolerance is None else int(boundary_tolerance)
    gts, refs = [], []
    for ann in orig_anns:
        ann_id = int(ann["id"])
        try:
            label = categories.get(int(ann.get("category_id")))
        except (TypeError, ValueError):
            label = None
        if label is None:
            raise InputError(sources[0], f"annotation {ann_id}: category_id {ann.get('category_id')!r} not in the "
                             "categories")
        o_rle = to_rle(ann, sources[0])
        o_ends, o_box = runs(o_rle, ann, sources[0])
        common = {"label": label, "coco_id": ann_id, "category_id": int(ann["category_id"]),
                  "iscrowd": bool(ann.get("iscrowd", 0))}
        ref = ref_anns.get(ann_id)
        if ref is None:
            o_crop = decode_rle_window(o_ends, h, o_box) if o_box is not None else None
            o_area = int(np.count_nonzero(o_crop)) if o_crop is not None else 0
        else:
            r_rle = to_rle(ref, sources[1]) if ref.get("segmentation") is not None else None
            same = r_rle is not None and r_rle["counts"] == o_rle["counts"]  # unchanged mask: decoded once
            if r_rle is None or same:
                r_ends, r_box = (o_ends, o_box) if same else (None, None)
            else:
                r_ends, r_box = runs(r_rle, ref, sources[1])
            # both masks are decoded inside the metric window only; the stored crops are cut from it
            window = metric_window(o_box, r_box, h, w)
            if window is None:
                m, o_crop, r_crop = empty_pair_metrics(), None, None
            else:
                size = (window[1] - window[0], window[3] - window[2])
                oc = decode_rle_window(o_ends, h, window) if o_box is not None else np.zeros(size, bool)
                if same:
                    rc = oc  # window_change_metrics takes the same array as "equal masks"
                else:
                    rc = decode_rle_window(r_ends, h, window) if r_box is not None else np.zeros(size, bool)
                m = window_change_metrics(oc, rc, tolerance=tol)
                o_crop = _sub_crop(oc, window, o_box)
                r_crop = o_crop if same else _sub_crop(rc, window, r_box)
            o_area = m["area_original"]
        gt = {**common, "area": float(ann.get("area", o_area)),
              "coco_bbox": [float(v) for v in ann.get("bbox", [])], "mask_area": o_area,
              "removed": False, "vanished": False}
        gt["bounding_box"], gt["mask"] = stored(o_crop, o_box)
        if ref is None:
            gt["removed"] = True
            gts.append(gt)
            continue
        record = ref.get("refine") if isinstance(ref.get("refine"), dict) else {}
        guard = record.get("guard")
        status = "skipped" if "skipped" in record else "error" if "error" in record else "refined"
        r = {**common, "area": float(ref.get("area", m["area_refined"])),
             "coco_bbox": [float(v) for v in ref.get("bbox", [])], "mask_area": m["area_refined"],
             "iou": m["iou"], "area_ratio": m["area_ratio"], "boundary_f": m["boundary_f"],
             "centroid_shift": m["centroid_shift"], "original_area": m["area_original"],
             "guard": guard if isinstance(guard, str) else None,
             "kept_original": bool(record.get("kept_original", False)),
             "status": status, "refiner": record.get("refiner"),
             "error": str(record["error"]) if "error" in record else None}
        r["bounding_box"], r["mask"] = stored(r_crop, r_box)
        gt["vanished"] = m["area_refined"] == 0 or r["guard"] == "vanished"
        gts.append(gt)
        refs.append(r)
    ious = [r["iou"] for r in refs]
    bfs = [r["boundary_f"] for r in refs]
    shifts = [r["centroid_shift"] for r in refs if not math.isnan(r["centroid_shift"])]
    extra = {k: v for k, v in image.items() if k != "id"}
    return {
        "filepath": str(Path(images_dir) / image["file_name"]),
        "width": w, "height": h,
        "coco_image_id": int(image["id"]), "coco_image": extra,
        "ground_truth": gts, "refined": refs,
        "n_original": len(gts), "n_refined": len(refs),
        "n_removed": sum(g["removed"] for g in gts), "n_vanished": sum(g["vanished"] for g in gts),
        "n_changed": sum(i < change_threshold for i in ious), "n_guard": sum(r["guard"] is not None for r in refs),
        "min_iou": min(ious) if ious else None, "mean_iou": float(np.mean(ious)) if ious else None,
        "min_boundary_f": min(bfs) if bfs else None,
        "max_centroid_shift": max(shifts) if shifts else None,
    }


# ---------------------------------------------------------------------------------------------- to FiftyOne

def _payload_to_sample(fo, p: dict[str, Any], tags: dict[str, Any]):
    def dets(items: list[dict[str, Any]], field: str):
        out = []
        for d in items:
            kw = {k: v for k, v in d.items() if k != "mask" or v is not None}
            label_tags = tags.get(field, {}).get(d["coco_id"])
            out.append(fo.Detection(**kw, tags=list(label_tags) if label_tags else []))
        return fo.Detections(detections=out)

    sample = fo.Sample(filepath=p["filepath"], tags=list(tags.get("sample", {}).get(p["coco_image_id"], [])))
    sample["metadata"] = fo.ImageMetadata(width=p["width"], height=p["height"])
    for key in SAMPLE_FIELDS:
        sample[key] = p[key]
    sample[GT_FIELD] = dets(p[GT_FIELD], GT_FIELD)
    sample[REFINED_FIELD] = dets(p[REFINED_FIELD], REFINED_FIELD)
    return sample


def declare_schema(dataset) -> None:
    """Declare every field of a curation dataset (idempotent).

    Adds and deletes one dummy sample whose attributes all have values (``dynamic=True``): one schema update
    instead of one per field.
    """
    fo = require_fiftyone()
    schema = dataset.get_field_schema(flat=True)
    wanted = list(SAMPLE_FIELDS) + [f"{f}.detections.{a}" for f, attrs in
                                    ((GT_FIELD, GT_ATTRS), (REFINED_FIELD, REFINED_ATTRS)) for a in attrs]
    if all(k in schema for k in wanted):
        return
    dummy = {"int": 1, "float": 1.0, "bool": True, "str": "x", "list": [1.0], "dict": {"x": 1}}
    sample = fo.Sample(filepath=str(Path(os.sep) / "steadyseg-schema-placeholder.jpg"))
    for key, kind in SAMPLE_FIELDS.items():
        sample[key] = dummy[kind]
    for field, attrs in ((GT_FIELD, GT_ATTRS), (REFINED_FIELD, REFINED_ATTRS)):
        sample[field] = fo.Detections(detections=[fo.Detection(label="x", **{a: dummy[k] for a, k in attrs.items()})])
    dataset.add_sample(sample, dynamic=True)
    dataset.delete_samples(sample)


def npy_bool_header(height: int, width: int) -> bytes:
    """The ``.npy`` header that ``np.save`` writes for a C-ordered ``(height, width)`` bool array (format 1.0).

    Built from the format's rules (``{'descr': '|b1', 'fortran_order': False, 'shape': (h, w), }``, 21 − digits of
    ``h`` spare spaces, padded with spaces and a newline to a multiple of 64 bytes) instead of numpy's generic
    writer, which costs more than compressing a small mask; a test checks it byte for byte against ``np.save``.
    """
    text = (f"{{'descr': '|b1', 'fortran_order': False, 'shape': ({int(height)}, {int(width)}), }}"
            + " " * (21 - len(str(int(height))))).encode("latin1")
    pad = 64 - ((10 + len(text) + 1) % 64)
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text) + pad + 1) + text + b" " * pad + b"\n"


def serialize_mask(mask: np.ndarray) -> bytes:
    """A mask in FiftyOne's storage format: ``np.save`` bytes, zlib-compressed (as ``fiftyone.core.utils``).

    ``mask``: ``(h, w)`` bool (the stored crops) gets :func:`npy_bool_header`; anything else goes through
    ``np.save``. The uncompressed bytes equal ``np.save``'s either way.
    """
    if mask.dtype == np.bool_ and mask.ndim == 2:
        data = npy_bool_header(*mask.shape) + np.ascontiguousarray(mask).tobytes()
    else:
        import io

        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(mask), allow_pickle=False)
        data = buf.getvalue()
    return zlib.compress(data, 1)  # any level decompresses the same; level 1 is the fastest


def _payload_to_doc(p: dict[str, Any], tags: dict[str, Any]) -> dict[str, Any]:
    """One sample's MongoDB document in FiftyOne's layout (checked against FiftyOne's own in the tests).

    Writing documents directly skips FiftyOne's per-object validation and the reload of every inserted sample,
    which cost more than the insert itself (docs/benchmarks.md); :func:`declare_schema` has already declared every
    field, and :func:`raw_writer_problem` checks this layout against the installed FiftyOne before it is used.
    """
    from bson import Binary, ObjectId

    serialized: dict[int, Binary] = {}  # by id(): a crop shared by both fields (unchanged mask) is compressed once

    def mask_bytes(mask: np.ndarray) -> Binary:
        if id(mask) not in serialized:
            serialized[id(mask)] = Binary(serialize_mask(mask))
        return serialized[id(mask)]

    def dets(items: list[dict[str, Any]], field: str) -> dict[str, Any]:
        out = []
        for d in items:
            doc = {"_id": ObjectId(), "_cls": "Detection", "attributes": {},
                   "tags": list(tags.get(field, {}).get(d["coco_id"], []))}
            for k, v in d.items():
                if k == "mask":
                    if v is not None:
                        doc["mask"] = mask_bytes(v)
                else:
                    doc[k] = v
            out.append(doc)
        return {"_cls": "Detections", "detections": out}

    doc = {"filepath": p["filepath"], "tags": list(tags.get("sample", {}).get(p["coco_image_id"], [])),
           "metadata": {"_cls": "ImageMetadata", "width": p["width"], "height": p["height"]},
           "_media_type": "image", "_rand": random.Random(p["coco_image_id"]).random()}
    for key in SAMPLE_FIELDS:
        if p[key] is not None:
            doc[key] = p[key]
    doc[GT_FIELD] = dets(p[GT_FIELD], GT_FIELD)
    doc[REFINED_FIELD] = dets(p[REFINED_FIELD], REFINED_FIELD)
    return doc


def _compute_chunk(payload_args: list[tuple], tags: dict[str, Any], common: dict[str, Any],
                   as_documents: bool) -> tuple[list[dict[str, Any]], int, list[dict[str, Any]]]:
    """Worker: payloads (or MongoDB documents) of some images, the number of instances in them, and the images
    that could not be used (``[{"image_id", "file", "error"}]``; a bad image is skipped, not inserted)."""
    from steadyseg.errors import user_error_message

    out, n, failures = [], 0, []
    for image, anns, refs in payload_args:
        try:
            p = _image_payload(image, anns, refs, **common)
        except (ValueError, OSError) as exc:
            where = exc.path if isinstance(exc, InputError) and exc.path is not None else common["sources"][0]
            failures.append({"image_id": image.get("id"), "file": str(where), "error": user_error_message(exc)})
            continue
        n += p["n_original"] + p["n_refined"]
        out.append(_payload_to_doc(p, tags) if as_documents else p)
    return out, n, failures


def _insert(dataset, items: list[dict[str, Any]], tags: dict[str, Any], *, writer: str) -> None:
    if writer == "fiftyone":
        fo = require_fiftyone()
        dataset.add_samples([_payload_to_sample(fo, p, tags) for p in items], expand_schema=False, progress=False)
        return
    now = _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)
    dataset_id = dataset._doc.id  # noqa: SLF001 - raw writer, see _payload_to_doc
    for d in items:
        d["_dataset_id"] = dataset_id
        d["created_at"] = now
        d["last_modified_at"] = now
    dataset._sample_collection.insert_many(items, ordered=False)  # noqa: SLF001


def _probe_payload() -> dict[str, Any]:
    """A one-image payload in which every declared field and attribute has a value (for the layout check)."""
    dummy = {"int": 1, "float": 1.0, "bool": True, "str": "x", "list": [1.0], "dict": {"x": 1}}

    def det(attrs: dict[str, str]) -> dict[str, Any]:
        return {"label": "x", "bounding_box": [0.0, 0.0, 0.5, 0.5], "mask": np.ones((2, 2), bool),
                **{a: dummy[kind] for a, kind in attrs.items()}}

    return {"filepath": str(Path(os.sep) / "steadyseg-layout-probe.jpg"), "width": 4, "height": 4,
            **{key: dummy[kind] for key, kind in SAMPLE_FIELDS.items()},
            GT_FIELD: [det(GT_ATTRS)], REFINED_FIELD: [det(REFINED_ATTRS)]}


def _key_tree(doc: Any) -> Any:
    """The keys of a document, recursively (values dropped, volatile keys removed)."""
    if isinstance(doc, dict):
        return {k: _key_tree(v) for k, v in doc.items() if k not in _VOLATILE_KEYS}
    if isinstance(doc, list):
        return [_key_tree(v) for v in doc]
    return None


def raw_writer_problem(dataset) -> str | None:
    """Why the raw writer must not write into ``dataset``, or None when it may.

    The raw writer relies on FiftyOne internals (``dataset._sample_collection``, ``dataset._doc``, the document
    layout), so it is trusted only when the installed FiftyOne is in :data:`RAW_WRITER_TESTED_FIFTYONE` and a probe
    sample serialised by FiftyOne (``dataset._make_dict``) has exactly the keys of :func:`_payload_to_doc`'s
    document. Reads nothing from ``dataset``'s samples and writes nothing.

    Returns:
        a one-line reason naming the version or the first differing keys; None when the check passes.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("fiftyone")
    except PackageNotFoundError:
        return "the fiftyone distribution has no version metadata"
    match = re.match(r"(\d+)\.(\d+)", installed)
    (lo, hi) = RAW_WRITER_TESTED_FIFTYONE
    if match is None or not lo <= (int(match[1]), int(match[2])) < hi:
        return (f"fiftyone {installed} is outside the versions the raw writer was tested on "
                f"(>={lo[0]}.{lo[1]},<{hi[0]}.{hi[1]})")
    try:
        fo = require_fiftyone()
        if not callable(getattr(dataset._sample_collection, "insert_many", None)):  # noqa: SLF001
            return "dataset._sample_collection has no insert_many"
        _ = dataset._doc.id  # noqa: SLF001
        payload = _probe_payload()
        ours = _key_tree(_payload_to_doc(payload, {"sample": {}}))
        theirs = _key_tree(dataset._make_dict(_payload_to_sample(fo, payload, {"sample": {}}),  # noqa: SLF001
                                              include_id=False))
    except Exception as exc:  # noqa: BLE001 - any failure of the internals means: do not use them
        return f"the layout check raised {type(exc).__name__}: {exc}"
    if ours != theirs:
        return f"document layout differs from FiftyOne's: {_first_difference(ours, theirs)}"
    return None


def _first_difference(ours: Any, theirs: Any, path: str = "") -> str:
    if isinstance(ours, dict) and isinstance(theirs, dict):
        only_ours, only_theirs = sorted(ours.keys() - theirs.keys()), sorted(theirs.keys() - ours.keys())
        if only_ours or only_theirs:
            return f"at {path or '/'}: only ours {only_ours}, only FiftyOne's {only_theirs}"
        for k in ours:
            if ours[k] != theirs[k]:
                return _first_difference(ours[k], theirs[k], f"{path}/{k}")
    if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        for i, (a, b) in enumerate(zip(ours, theirs)):
            if a != b:
                return _first_difference(a, b, f"{path}/{i}")
    return f"at {path or '/'}: {ours!r} vs {theirs!r}"


#: ``dataset.info`` key holding the review of a rebuild in progress (written before the samples are cleared and
#: removed when the rebuild completes), so a rebuild that is killed half-way loses no tag: the next build reads it.
PENDING_REVIEW_KEY = "steadyseg_pending_review"


def _collect_review(dataset) -> dict[str, Any]:
    """Label tags by coco_id per field and sample tags by image id, to carry over a rebuild.

    Tags of an earlier rebuild that did not finish (kept in ``dataset.info[PENDING_REVIEW_KEY]``) are merged in for
    the ids whose samples are not back yet; tags present on the samples win.
    """
    tags: dict[str, Any] = {"sample": {}}
    if len(dataset):
        ids, stags = dataset.values(["coco_image_id", "tags"])
        tags["sample"] = {i: t for i, t in zip(ids, stags) if t}
        for field in (GT_FIELD, REFINED_FIELD):
            cids, ltags = dataset.values([f"{field}.detections.coco_id", f"{field}.detections.tags"])
            tags[field] = {c: t for cs, ts in zip(cids, ltags) for c, t in zip(cs or [], ts or []) if t}
    for field, pairs in (dataset.info.get(PENDING_REVIEW_KEY) or {}).items():
        for key, value in pairs:
            tags.setdefault(field, {}).setdefault(key, list(value))
    return tags


def _review_to_info(tags: dict[str, Any]) -> dict[str, list]:
    """The review as ``{field: [[id, tags], ...]}`` (the database stores string keys only)."""
    return {field: [[key, list(value)] for key, value in by_id.items()] for field, by_id in tags.items()}


def build_curation_dataset(original: str | os.PathLike, refined: str | os.PathLike, images_dir: str | os.PathLike,
                           name: str, *, overwrite: bool = False, workers: int = 1, chunk_size: int = 64,
                           change_threshold: float = DEFAULT_CHANGE_THRESHOLD,
                           boundary_tolerance: int | None = None, persistent: bool = True,
                           progress: bool = True, save_views: bool = True, writer: str = "raw",
                           strict: bool = False) -> Any:
    """Create or update the curation dataset ``name`` from an original and a refined COCO instances file.

    Args:
        original: the original COCO instances JSON (polygons, RLE or crowd RLE).
        refined: the refined COCO variant (same image and annotation ids; see ``steadyseg refine-coco``);
            annotations absent from it are recorded as ``removed``.
        images_dir: folder of the images (``file_name`` of each image is joined to it; the files are not read).
        name: FiftyOne dataset name.
        overwrite: delete an existing dataset of that name first (its review tags are lost). Without it the
            dataset is rebuilt in place and the tags are carried over (idempotent update).
        workers: processes that decode and compare (1 = in this process); this process inserts.
        chunk_size: images per insert batch.
        change_threshold: IoU below which ``n_changed`` counts an instance (and the default of the views).
        boundary_tolerance: boundary F tolerance in pixels; None = DAVIS ``ceil(0.008 * diagonal)`` per image.
        persistent: keep the dataset after this process ends.
        progress: show a tqdm bar.
        save_views: (re)register the saved views of :mod:`steadyseg.curation.views`.
        writer: "raw" inserts FiftyOne-layout documents with pymongo (fast, the default); "fiftyone" builds
            ``fo.Sample`` objects and calls ``Dataset.add_samples`` (public API, slower; see docs/benchmarks.md).
            "raw" falls back to "fiftyone" with a ``RuntimeWarning`` when :func:`raw_writer_problem` reports a
            problem; ``dataset.info["steadyseg"]["ingest"]`` records the writer used and the reason.
        strict: after the build, raise :class:`~steadyseg.errors.InputError` for the first bad image or annotation.
            Either way a bad image (an annotation that cannot be decoded, an unknown category) is skipped and
            recorded in ``dataset.info["steadyseg"]["ingest"]["failures"]`` (``image_id``, ``file``, ``error``),
            and annotations of image ids absent from ``images`` are recorded there too.

    Returns:
        the ``fiftyone.core.dataset.Dataset``; ``dataset.info["steadyseg"]`` records inputs, settings and timing.
    """
    from tqdm import tqdm

    from steadyseg.datasets.coco import load_coco_json

    original, refined, images_dir = Path(original), Path(refined), Path(images_dir)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"{images_dir}: image folder not found")
    if writer not in ("raw", "fiftyone"):
        raise ValueError(f"writer must be 'raw' or 'fiftyone', got {writer!r}")
    if workers < 1 or chunk_size < 1:
        raise ValueError(f"workers and chunk_size must be >= 1, got {workers} and {chunk_size}")
    orig = load_coco_json(original)
    ref = load_coco_json(refined)
    for data, path in ((orig, original), (ref, refined)):
        _check_images(data, path)
    orig_by_image = _index_annotations(orig, original)
    ref_by_image = {k: {int(a["id"]): a for a in v} for k, v in _index_annotations(ref, refined).items()}
    check_pair(orig, ref, original_path=str(original), refined_path=str(refined))
    try:
        categories = {int(c["id"]): str(c["name"]) for c in orig["categories"]}
    except (KeyError, TypeError, ValueError):
        raise InputError(original, "every category needs an integer 'id' and a 'name'") from None
    image_ids = {int(im["id"]) for im in orig["images"]}
    failures = [{"image_id": k, "file": str(original), "error": f"{original}: {len(v)} annotation(s) of image id "
                 f"{k}, which is not in 'images' (first: annotation {v[0]['id']})"}
                for k, v in sorted(orig_by_image.items()) if k not in image_ids]

    fo = require_fiftyone()
    t_setup = time.perf_counter()
    if fo.dataset_exists(name) and overwrite:
        fo.delete_dataset(name)
    if fo.dataset_exists(name):
        dataset = fo.load_dataset(name)
        tags = _collect_review(dataset)
        dataset.info[PENDING_REVIEW_KEY] = _review_to_info(tags)  # survives a kill between clear() and the end
        dataset.save()
        dataset.clear()
    else:
        dataset = fo.Dataset(name)
        tags = {"sample": {}}
    dataset.persistent = persistent
    if dataset.media_type is None:
        dataset.media_type = "image"
    declare_schema(dataset)
    writer_fallback = raw_writer_problem(dataset) if writer == "raw" else None
    if writer_fallback is not None:
        warnings.warn(f"curate build: not using the fast raw writer ({writer_fallback}); falling back to FiftyOne's "
                      "public writer (Dataset.add_samples), which gives the same dataset more slowly",
                      RuntimeWarning, stacklevel=2)
        writer = "fiftyone"

    common = {"categories": categories, "images_dir": str(images_dir.resolve()),
              "boundary_tolerance": boundary_tolerance, "change_threshold": change_threshold,
              "sources": (str(original), str(refined))}
    images = sorted(orig["images"], key=lambda im: int(im["id"]))
    args = [(im, orig_by_image.get(int(im["id"]), []), ref_by_image.get(int(im["id"]), {})) for im in images]
    chunks = [args[i: i + chunk_size] for i in range(0, len(args), chunk_size)]
    n_inst = 0
    t0 = time.perf_counter()
    setup_seconds = t0 - t_setup
    bar = tqdm(total=len(args), desc=f"curate build {name}", unit="img", disable=not progress)
    as_docs = writer == "raw"
    if workers == 1 or len(chunks) <= 1:
        results = (_compute_chunk(chunk, tags, common, as_docs) for chunk in chunks)
    else:
        from joblib import Parallel, delayed

        jobs = (delayed(_compute_chunk)(chunk, tags, common, as_docs) for chunk in chunks)
        results = Parallel(n_jobs=workers, backend="loky", return_as="generator")(jobs)
    for chunk, (items, n, bad) in zip(chunks, results):
        failures.extend(bad)
        if items:
            _insert(dataset, items, tags, writer=writer)
        n_inst += n
        bar.update(len(chunk))
    bar.close()
    dataset.reload()
    elapsed = time.perf_counter() - t0

    dataset.default_classes = [categories[k] for k in sorted(categories)]
    dataset.info[INFO_KEY] = {
        "original": str(original.resolve()), "refined": str(refined.resolve()),
        "images_dir": str(images_dir.resolve()),
        "categories": orig["categories"], "coco_info": orig.get("info"), "licenses": orig.get("licenses"),
        "change_threshold": change_threshold, "boundary_tolerance": boundary_tolerance,
        "built": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "ingest": {"images": len(args), "instances": n_inst, "seconds": round(elapsed, 3),
                   "setup_seconds": round(setup_seconds, 3), "workers": workers, "writer": writer,
                   "writer_fallback": writer_fallback,
                   "instances_per_second": round(n_inst / elapsed, 1) if elapsed > 0 else None,
                   "failures": failures},
    }
    dataset.info.pop(PENDING_REVIEW_KEY, None)
    dataset.save()
    from steadyseg.curation.appearance import apply_curation_appearance

    apply_curation_appearance(dataset)  # original orange, refined blue, both checked in the App
    if save_views:
        from steadyseg.curation.views import save_curation_views

        save_curation_views(dataset, change_threshold=change_threshold)
    if strict and failures:
        first = failures[0]
        raise InputError(first["file"], f"{len(failures)} image(s) could not be used (recorded in the dataset "
                         f"info); first: {first['error'].removeprefix(first['file'] + ': ')}")
    return dataset

