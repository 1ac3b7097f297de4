"""MS-COCO annotations: the one module of steadyseg that imports pycocotools.

Masks handed to and returned by this module are ``(H, W)`` arrays, ``bool`` or ``uint8`` in {0, 1}; the
column-major ``uint8`` conversion that pycocotools needs happens here and nowhere else. RLEs are COCO compressed
RLE dicts ``{"size": [H, W], "counts": str}`` (counts decoded to ``str`` so they serialise to JSON).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from steadyseg.files import read_json


class CocoFormatError(ValueError):
    """A COCO file or annotation that cannot be used; the message names the file or annotation id."""


def load_coco_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read a COCO instances file as a dict, with clear errors for missing files, bad JSON and missing keys."""
    path = Path(path)
    data = read_json(path, what="COCO annotation file", error=CocoFormatError)
    if not isinstance(data, dict):
        raise CocoFormatError(f"{path}: expected a JSON object with 'images', 'annotations', 'categories'")
    for key in ("images", "annotations", "categories"):
        if key not in data or not isinstance(data[key], list):
            raise CocoFormatError(f"{path}: missing or non-list key {key!r} (not a COCO instances file)")
    return data


def coco_api(path_or_dict: str | os.PathLike | dict[str, Any]):
    """A ``pycocotools.coco.COCO`` object from a file path or an in-memory dict (no printing)."""
    import contextlib
    import io

    from pycocotools.coco import COCO

    data = path_or_dict if isinstance(path_or_dict, dict) else load_coco_json(path_or_dict)
    api = COCO()
    api.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        api.createIndex()
    return api


def _validate_polygons(segm: list, ann_id: Any) -> list[list[float]]:
    polys = []
    for poly in segm:
        if not isinstance(poly, (list, tuple)) or len(poly) % 2:
            raise CocoFormatError(f"annotation {ann_id}: polygon with an odd number of coordinates")
        if len(poly) < 6:
            raise CocoFormatError(f"annotation {ann_id}: polygon with fewer than 3 points ({len(poly) // 2})")
        polys.append([float(v) for v in poly])
    if not polys:
        raise CocoFormatError(f"annotation {ann_id}: empty polygon list")
    return polys


def segmentation_to_rle(segm: Any, height: int, width: int, *, ann_id: Any = None) -> dict[str, Any]:
    """Any COCO ``segmentation`` (polygons, uncompressed or compressed RLE) → one compressed RLE of size (H, W)."""
    if isinstance(segm, list):
        rles = mask_utils.frPyObjects(_validate_polygons(segm, ann_id), height, width)
        rle = mask_utils.merge(rles)
    elif isinstance(segm, dict) and "counts" in segm and "size" in segm:
        if list(segm["size"]) != [height, width]:
            raise CocoFormatError(f"annotation {ann_id}: RLE size {segm['size']} differs from image {[height, width]}")
        rle = mask_utils.frPyObjects(segm, height, width) if isinstance(segm["counts"], list) else dict(segm)
    else:
        raise CocoFormatError(f"annotation {ann_id}: unknown segmentation type {type(segm).__name__}")
    if isinstance(rle.get("counts"), str):
        rle = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    return _rle_to_json(rle)


def _rle_to_json(rle: dict[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    return {"size": [int(rle["size"][0]), int(rle["size"][1])],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def _rle_to_api(rle: dict[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def annotation_to_mask(ann: dict[str, Any], height: int, width: int) -> np.ndarray:
    """Decode an annotation's segmentation to a ``(H, W)`` bool mask."""
    rle = segmentation_to_rle(ann.get("segmentation"), height, width, ann_id=ann.get("id"))
    return rle_to_mask(rle)


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Compressed RLE → ``(H, W)`` bool mask."""
    return mask_utils.decode(_rle_to_api(rle)).astype(bool)


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """``(H, W)`` bool/uint8 mask → JSON-ready compressed RLE ``{"size": [H, W], "counts": str}``."""
    if mask.ndim != 2:
        raise ValueError(f"expected an (H, W) mask, got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8) > 0, dtype=np.uint8))
    return _rle_to_json(rle)


def rle_area(rle: dict[str, Any]) -> int:
    """Foreground pixel count (int >= 0) of a compressed RLE."""
    return int(mask_utils.area(_rle_to_api(rle)))


def rle_bbox(rle: dict[str, Any]) -> list[float]:
    """COCO ``[x, y, w, h]`` box of an RLE (zeros for an empty mask)."""
    return [float(v) for v in mask_utils.toBbox(_rle_to_api(rle))]


def rle_iou(a: dict[str, Any], b: dict[str, Any]) -> float:
    """IoU in [0, 1] of two compressed RLEs of the same size, computed in the RLE domain by pycocotools.

    This is the RLE counterpart of :func:`steadyseg.accuracy.iou` (which takes ``(H, W)`` arrays): it never decodes
    the masks, which is what COCO-sized files need. Same convention: 1.0 when both masks are empty.
    """
    if rle_area(a) == 0 and rle_area(b) == 0:
        return 1.0
    return float(mask_utils.iou([_rle_to_api(a)], [_rle_to_api(b)], [0])[0, 0])


# ----------------------------------------------------------------------------------------------------------------
# Geometry of one annotation (pixel boxes, masks inside a box, RLE of a pasted crop)
# ----------------------------------------------------------------------------------------------------------------
def check_bbox(ann: dict[str, Any], height: int, width: int, *, where: str) -> None:
    """Raise ``CocoFormatError`` (message starting with ``where``) unless ``ann["bbox"]`` is usable.

    A usable box is absent, or 4 finite numbers ``[x, y, w, h]`` (COCO pixels) with ``w, h >= 0`` that overlap the
    ``height`` × ``width`` image.
    """
    bbox = ann.get("bbox")
    if bbox is None:
        return
    if (not isinstance(bbox, (list, tuple)) or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox)):
        raise CocoFormatError(f"{where}: bbox must be 4 finite numbers [x, y, w, h], got {bbox!r}")
    x, y, w, h = bbox
    if w < 0 or h < 0:
        raise CocoFormatError(f"{where}: bbox {bbox} has a negative size")
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise CocoFormatError(f"{where}: bbox {bbox} lies outside the image ({width}x{height})")


def polygon_pixel_box(segm: list, height: int, width: int, *, where: str) -> tuple[int, int, int, int]:
    """Pixel box ``(x0, y0, x1, y1)`` (exclusive ends, clipped to the image) holding every rasterised pixel.

    ``segm`` is a COCO polygon list ``[[x0, y0, x1, y1, ...], ...]``; the box is the polygons' extent widened by one
    pixel before and two after (pycocotools' rounding). Empty or non-numeric polygons give the whole image, so that
    :func:`segmentation_to_rle` names the problem. Raises ``CocoFormatError`` when the polygons lie outside.
    """
    xs, ys = [], []
    for poly in segm:
        if isinstance(poly, (list, tuple)) and len(poly) >= 2:
            xs.extend(poly[0::2])
            ys.extend(poly[1::2])
    try:
        x0, x1 = math.floor(min(xs)) - 1, math.ceil(max(xs)) + 2
        y0, y1 = math.floor(min(ys)) - 1, math.ceil(max(ys)) + 2
    except (TypeError, ValueError):  # empty or non-numeric: let segmentation_to_rle name the problem
        return 0, 0, width, height
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    if x0 >= x1 or y0 >= y1:
        raise CocoFormatError(f"{where}: polygon lies outside the image ({width}x{height})")
    return x0, y0, x1, y1


def annotation_mask_in_box(ann: dict[str, Any], height: int, width: int,
                           box: tuple[int, int, int, int]) -> np.ndarray:
    """The annotation's mask inside ``box = (x0, y0, x1, y1)`` (exclusive ends): ``(y1 - y0, x1 - x0)`` bool.

    Polygons are rasterised by pycocotools on an image that ends at ``(x1, y1)`` (same coordinates, so exactly the
    pixels of the full-image rasterisation: shifting the polygon instead would change pycocotools' rounding of
    coordinates such as 102.3), so the cost does not grow with the image below and right of the box. RLEs are
    decoded at the full ``height`` × ``width`` and cut.
    """
    x0, y0, x1, y1 = box
    segm = ann.get("segmentation")
    if isinstance(segm, list):
        return rle_to_mask(segmentation_to_rle(segm, y1, x1, ann_id=ann.get("id")))[y0:y1, x0:x1]
    return annotation_to_mask(ann, height, width)[y0:y1, x0:x1]


def rle_run_ends(counts: str | bytes) -> np.ndarray:
    """COCO compressed RLE ``counts`` → ``(n,)`` int64 cumulative run ends (column-major pixel indices).

    Runs alternate background/foreground, starting with background (run ``k`` covers pixels
    ``[ends[k-1], ends[k])``, ``ends[-1]`` = H*W). The string is read as pycocotools' ``rleFrString`` reads it
    (5 bits per character with a continuation bit, sign-extended, runs from the third on stored as the difference
    to the run two before), vectorised: no full-image array is made. Raises ``ValueError`` for a truncated string.
    """
    c = np.frombuffer(counts.encode("ascii") if isinstance(counts, str) else counts, np.uint8) - np.uint8(48)
    if c.size == 0:
        return np.zeros(0, np.int64)
    more = (c & 0x20) != 0
    if more[-1]:
        raise ValueError("compressed RLE counts end in the middle of a number")
    is_start = np.empty(c.size, bool)
    is_start[0] = True
    np.logical_not(more[:-1], out=is_start[1:])
    index = np.arange(c.size)
    shift = (index - np.maximum.accumulate(np.where(is_start, index, 0))) * 5  # 5 bits per char of a number
    runs = np.add.reduceat((c & 0x1f).astype(np.int64) << shift, np.flatnonzero(is_start))
    last = ~more
    negative = (c[last] & 0x10) != 0
    if negative.any():
        runs[negative] |= np.int64(-1) << (shift[last][negative] + 5)
    if runs.size > 3:  # run m > 2 is stored as the difference to run m - 2
        runs[3::2] = np.cumsum(runs[1::2])[1:]
        runs[4::2] += np.cumsum(runs[2::2])[:-1]
    if runs.size and runs.min() < 0:
        raise ValueError("compressed RLE counts hold a negative run length")
    return np.cumsum(runs)


def decode_rle_window(ends: np.ndarray, height: int, window: tuple[int, int, int, int]) -> np.ndarray:
    """The ``(y1 - y0, x1 - x0)`` bool crop of an RLE mask inside ``window = (y0, y1, x0, x1)`` (end exclusive).

    ``ends``: the mask's run ends (:func:`rle_run_ends`) of an image ``height`` pixels high. Only the window's
    columns are expanded, so the cost grows with the window, not with the image; equal to the same crop of
    pycocotools' full-image ``decode``.
    """
    y0, y1, x0, x1 = window
    first, stop = x0 * height, x1 * height
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1]
    lengths = np.minimum(ends, stop) - np.maximum(starts, first)
    np.maximum(lengths, 0, out=lengths)
    columns = np.repeat((np.arange(ends.size) & 1).astype(bool), lengths).reshape(x1 - x0, height)
    return np.ascontiguousarray(columns[:, y0:y1].T)


def crop_to_rle(crop: np.ndarray, height: int, width: int, x0: int, y0: int) -> dict[str, Any]:
    """Compressed RLE of a ``height`` × ``width`` mask that is zero except ``crop`` pasted at ``(x0, y0)``.

    ``crop``: ``(h, w)`` bool (or {0, 1}) inside the image. Run lengths are computed on the crop's columns only
    (column-major, as COCO's RLE), then compressed by pycocotools; equal to ``mask_to_rle`` of the pasted mask.
    """
    ch, cw = crop.shape
    block = np.zeros((cw, height), dtype=np.int8)  # the crop's columns, each a full image column (transposed)
    block[:, y0:y0 + ch] = crop.T
    seq = block.ravel()
    change = np.flatnonzero(seq[1:] != seq[:-1]) + 1
    bounds = np.concatenate(([0], change, [seq.size]))
    runs = np.diff(bounds).tolist()
    if seq[0] == 1:
        runs.insert(0, 0)
    runs[0] += x0 * height
    tail = (width - x0 - cw) * height
    if len(runs) % 2 == 1:  # ends with a run of zeros
        runs[-1] += tail
    elif tail:
        runs.append(tail)
    return segmentation_to_rle({"size": [height, width], "counts": runs}, height, width)


def evaluate_segm(gt_path_or_dict, dt_annotations: list[dict[str, Any]]) -> dict[str, float]:
    """Run ``COCOeval`` (iouType='segm') of detections against ground truth; returns AP/AR summary numbers.

    Detections are annotations with ``image_id``, ``category_id``, ``segmentation`` (RLE) and ``score``.
    """
    import contextlib
    import io

    from pycocotools.cocoeval import COCOeval

    gt = coco_api(gt_path_or_dict)
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes([{**d, "segmentation": _rle_to_api(d["segmentation"])} for d in dt_annotations])
        ev = COCOeval(gt, dt, iouType="segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    names = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
    return {n: float(v) for n, v in zip(names, ev.stats)}
