"""Rewrite the instance masks of a COCO file with a refiner: sharded, resumable, parallel (joblib / Dask).

Per annotation: decode the mask, crop around its box with context padding, refine the crop, threshold, paste
back, re-encode as compressed RLE and recompute ``area`` and ``bbox`` (the input box is kept as
``"original_bbox"``). Crowd annotations are copied unchanged. A guard catches the failure the paper reports
(refinement dropping small objects): when the refined mask vanishes or shrinks below ``min_area_ratio`` of the
original, the annotation is flagged and — with ``guard="keep-original"`` — keeps its original mask.

Output folder ``out``::

    instances.json              same images, categories, annotation ids and order as the input; refined masks
    run.json                    run record: inputs + hashes, refiner + checkpoint hash, parameters, counts,
                                change statistics (summary + per annotation), failures, timings
    config.yaml                 resolved configuration (steadyseg.files.save_resolved_config)
    shards/shard-XXXXX.json     one per group of ``shard_size`` consecutive images, written atomically

Every refined annotation carries (the curation stage reads this, keep it exact)::

    "refine": {"iou_with_original": float, "area_ratio": float, "guard": null | "vanished" | "shrunk",
               "kept_original": bool, "refiner": str}
    crowd:   "refine": {"skipped": "crowd", "refiner": str}       (annotation otherwise unchanged)
    failure: "refine": {"error": "annotation 123 (image 456): ..."} (annotation otherwise unchanged)

The run is deterministic: ``instances.json`` depends only on the inputs and the parameters, never on the number
of workers, the scheduler or interruptions. ``resume=True`` skips shards already on disk (after checking that
the recorded parameters are the same) so a killed run finishes with exactly the bytes of an uninterrupted one.
Workers build the refiner once per process and keep it for every later shard.

Python::

    from steadyseg.refine.coco.driver import refine_coco
    record = refine_coco(annotations="instances_val2017.json", images="val2017", out="refined",
                         refiner="guided", workers=2)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from steadyseg import files
from steadyseg.datasets import coco as coco_io

GUARD_POLICIES = ("keep-original", "flag-only")
SHARD_FORMAT = "steadyseg.refine-coco.shard/1"
RUN_FORMAT = "steadyseg.refine-coco.run/1"
_ROUND = 6  # decimals of the floats written into annotations (stable, readable JSON)

# One refiner per worker process, built on first use: key = JSON of (name, kwargs).
_WORKER_REFINERS: dict[str, Any] = {}


# ----------------------------------------------------------------------------------------------------------------
# One annotation
# ----------------------------------------------------------------------------------------------------------------
def crop_box(mask_box: tuple[int, int, int, int], height: int, width: int, *, context: float = 0.25,
             context_min: int = 8) -> tuple[int, int, int, int]:
    """Crop ``(x0, y0, x1, y1)`` (exclusive ends, inside the image) around a box ``(x0, y0, x1, y1)``.

    The box grows on every side by ``max(context_min, context · max(box_w, box_h))`` pixels, then is clipped to
    the ``height`` × ``width`` image.
    """
    x0, y0, x1, y1 = mask_box
    pad = int(math.ceil(max(float(context_min), float(context) * max(x1 - x0, y1 - y0))))
    return max(0, x0 - pad), max(0, y0 - pad), min(width, x1 + pad), min(height, y1 + pad)


def _check_bbox(ann: dict[str, Any], height: int, width: int, where: str) -> None:
    bbox = ann.get("bbox")
    if bbox is None:
        return
    if (not isinstance(bbox, (list, tuple)) or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox)):
        raise coco_io.CocoFormatError(f"{where}: bbox must be 4 finite numbers [x, y, w, h], got {bbox!r}")
    x, y, w, h = bbox
    if w < 0 or h < 0:
        raise coco_io.CocoFormatError(f"{where}: bbox {bbox} has a negative size")
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise coco_io.CocoFormatError(f"{where}: bbox {bbox} lies outside the image ({width}x{height})")


def _polygon_region(segm: list, height: int, width: int, where: str) -> tuple[int, int, int, int]:
    """Pixel box ``(x0, y0, x1, y1)`` (exclusive ends, clipped to the image) that holds every rasterised pixel."""
    xs, ys = [], []
    for poly in segm:
        if isinstance(poly, (list, tuple)) and len(poly) >= 2:
            xs.extend(poly[0::2])
            ys.extend(poly[1::2])
    try:
        x0, x1 = math.floor(min(xs)) - 1, math.ceil(max(xs)) + 2
        y0, y1 = math.floor(min(ys)) - 1, math.ceil(max(ys)) + 2
    except (TypeError, ValueError):  # empty or non-numeric: let the COCO helper name the problem
        return 0, 0, width, height
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    if x0 >= x1 or y0 >= y1:
        raise coco_io.CocoFormatError(f"{where}: polygon lies outside the image ({width}x{height})")
    return x0, y0, x1, y1


def decode_region(ann: dict[str, Any], height: int, width: int, context: float, context_min: int, where: str
                  ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The annotation's mask inside a region that contains its crop: ``(mask (h, w) bool, (x0, y0, x1, y1))``.

    Polygons are rasterised by pycocotools on an image that ends at the far corner of the crop (same coordinates,
    so exactly the pixels of the full-image rasterisation: shifting the polygon instead would change pycocotools'
    rounding of coordinates such as 102.3), so the cost does not grow with the image below and right of the object.
    """
    segm = ann["segmentation"]
    if isinstance(segm, list):
        bx0, by0, bx1, by1 = _polygon_region(segm, height, width, where)
        x0, y0, x1, y1 = crop_box((bx0, by0, bx1, by1), height, width, context=context, context_min=context_min)
        rle = coco_io.segmentation_to_rle(segm, y1, x1, ann_id=ann.get("id"))
        return coco_io.rle_to_mask(rle)[y0:y1, x0:x1], (x0, y0, x1, y1)
    return coco_io.annotation_to_mask(ann, height, width), (0, 0, width, height)


def crop_to_rle(crop: np.ndarray, height: int, width: int, x0: int, y0: int) -> dict[str, Any]:
    """Compressed COCO RLE of a ``height`` × ``width`` mask that is zero except ``crop`` pasted at ``(x0, y0)``.

    Run lengths are computed on the crop's columns only (column-major, as COCO's RLE), then compressed by
    pycocotools through :func:`steadyseg.datasets.coco.segmentation_to_rle`.
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
    return coco_io.segmentation_to_rle({"size": [height, width], "counts": runs}, height, width)


def refine_annotation(refiner: Any, image: np.ndarray, ann: dict[str, Any], *, refiner_name: str,
                      context: float = 0.25, context_min: int = 8, threshold: float = 0.5,
                      guard: str = "keep-original", min_area_ratio: float = 0.5) -> dict[str, Any]:
    """Refine one annotation of ``image`` ((H, W, 3) uint8 RGB); returns the new annotation dict.

    Raises ``CocoFormatError`` (bad segmentation / box) or ``ValueError`` (refiner output) with a message naming
    the annotation; the caller records it. Crowd annotations are returned unchanged with ``refine.skipped``.
    """
    where = f"annotation {ann.get('id')} (image {ann.get('image_id')})"
    if ann.get("iscrowd"):
        return {**ann, "refine": {"skipped": "crowd", "refiner": refiner_name}}
    height, width = image.shape[:2]
    _check_bbox(ann, height, width, where)
    if "segmentation" not in ann:
        raise coco_io.CocoFormatError(f"{where}: no 'segmentation'")
    region, (rx0, ry0, _, _) = decode_region(ann, height, width, context, context_min, where)
    rows = np.flatnonzero(region.any(axis=1))
    if rows.size == 0:
        raise coco_io.CocoFormatError(f"{where}: segmentation is empty inside the image ({width}x{height})")
    cols = np.flatnonzero(region.any(axis=0))
    x0, y0, x1, y1 = crop_box((rx0 + int(cols[0]), ry0 + int(rows[0]), rx0 + int(cols[-1]) + 1,
                               ry0 + int(rows[-1]) + 1), height, width, context=context, context_min=context_min)
    mask_crop = region[y0 - ry0:y1 - ry0, x0 - rx0:x1 - rx0]
    try:
        soft = refiner.refine(np.ascontiguousarray(image[y0:y1, x0:x1]), np.ascontiguousarray(mask_crop))
    except Exception as exc:  # a refiner bug or a bad crop must not stop the other annotations
        raise ValueError(f"{where}: refiner {refiner_name!r} failed: {type(exc).__name__}: {exc}") from exc
    soft = np.asarray(soft)
    if soft.shape != mask_crop.shape:
        raise ValueError(f"{where}: refiner {refiner_name!r} returned shape {soft.shape}, "
                         f"expected {mask_crop.shape}")
    if not np.isfinite(soft).all():
        raise ValueError(f"{where}: refiner {refiner_name!r} returned non-finite values")
    refined = soft > threshold
    area_orig = int(mask_crop.sum())
    area_new = int(refined.sum())
    inter = int(np.logical_and(refined, mask_crop).sum())
    union = area_orig + area_new - inter
    iou = inter / union if union else 1.0
    ratio = area_new / area_orig
    flag = "vanished" if area_new == 0 else ("shrunk" if ratio < min_area_ratio else None)
    kept = flag is not None and guard == "keep-original"
    final = mask_crop if kept else refined
    out = dict(ann)
    out["segmentation"] = crop_to_rle(final, height, width, x0, y0)
    out["area"] = float(final.sum())
    frows, fcols = np.flatnonzero(final.any(axis=1)), np.flatnonzero(final.any(axis=0))
    out["bbox"] = ([float(x0 + fcols[0]), float(y0 + frows[0]), float(fcols[-1] - fcols[0] + 1),
                    float(frows[-1] - frows[0] + 1)] if frows.size else [0.0, 0.0, 0.0, 0.0])
    out["original_bbox"] = ann.get("bbox")
    out["refine"] = {"iou_with_original": round(float(iou), _ROUND), "area_ratio": round(float(ratio), _ROUND),
                     "guard": flag, "kept_original": bool(kept), "refiner": refiner_name}
    return out


# ----------------------------------------------------------------------------------------------------------------
# One shard (runs in a worker process)
# ----------------------------------------------------------------------------------------------------------------
def _worker_refiner(name: str, kwargs: dict[str, Any]) -> Any:
    key = json.dumps([name, kwargs], sort_keys=True, default=str)
    if key not in _WORKER_REFINERS:
        from steadyseg.refine.refiners import build_refiner

        _WORKER_REFINERS[key] = build_refiner(name, **kwargs)
    return _WORKER_REFINERS[key]


def read_image_rgb(path: Path) -> tuple[np.ndarray, str]:
    """Read an image file as (H, W, 3) uint8 RGB and the sha256 of its bytes; clear errors naming the file."""
    from steadyseg.datasets.video import decode_image_rgb, read_image_bytes

    data = read_image_bytes(path)
    return decode_image_rgb(data, source=path), hashlib.sha256(data).hexdigest()


def process_shard(task: dict[str, Any], refiner: Any = None) -> dict[str, Any]:
    """Refine every annotation of one shard; returns the shard record (written to disk by the driver).

    ``task``: ``{"shard", "images_dir", "images": [{"id", "file_name", "height", "width", "annotations":
    [[index, ann], ...]}], "refiner", "refiner_kwargs", "params"}``. ``refiner``: an already built refiner (the
    in-process path); ``None`` builds it once per worker process.
    """
    t_start = time.perf_counter()
    if refiner is None:
        refiner = _worker_refiner(task["refiner"], task["refiner_kwargs"])
    p = task["params"]
    name = task["refiner"]
    images_dir = Path(task["images_dir"])
    results: list[list[Any]] = []
    failures: list[dict[str, Any]] = []
    image_sha: dict[str, str] = {}
    t_read = t_refine = 0.0
    for img in task["images"]:
        anns = img["annotations"]
        if not anns:
            continue
        t0 = time.perf_counter()
        image, image_error = None, None
        path = images_dir / str(img.get("file_name", ""))
        try:
            if not img.get("file_name"):
                raise ValueError(f"image id {img['id']}: no 'file_name' in the annotation file")
            image, image_sha[str(img["id"])] = read_image_rgb(path)
            declared = (img.get("height"), img.get("width"))
            if declared != image.shape[:2]:
                raise ValueError(f"{path}: image is {image.shape[1]}x{image.shape[0]} but the annotation file "
                                 f"says {declared[1]}x{declared[0]} (image id {img['id']})")
        except (OSError, ValueError) as exc:
            image_error = str(exc)
        t_read += time.perf_counter() - t0
        t0 = time.perf_counter()
        for index, ann in anns:
            try:
                if image_error is not None:
                    raise ValueError(f"annotation {ann.get('id')} (image {ann.get('image_id')}): {image_error}")
                new = refine_annotation(refiner, image, ann, refiner_name=name, context=p["context"],
                                        context_min=p["context_min"], threshold=p["threshold"], guard=p["guard"],
                                        min_area_ratio=p["min_area_ratio"])
            except (ValueError, OSError) as exc:
                msg = str(exc)
                failures.append({"index": index, "id": ann.get("id"), "image_id": ann.get("image_id"),
                                 "error": msg})
                new = {**ann, "refine": {"error": msg}}
            results.append([index, new])
        t_refine += time.perf_counter() - t0
    return {"format": SHARD_FORMAT, "shard": task["shard"], "fingerprint": task["fingerprint"],
            "image_ids": [img["id"] for img in task["images"]], "image_sha256": image_sha,
            "annotations": results, "failures": failures,
            "timings": {"read_s": round(t_read, 4), "refine_s": round(t_refine, 4),
                        "total_s": round(time.perf_counter() - t_start, 4), "pid": os.getpid()}}


# ----------------------------------------------------------------------------------------------------------------
# The driver
# ----------------------------------------------------------------------------------------------------------------
def _shard_path(out: Path, k: int) -> Path:
    return out / "shards" / f"shard-{k:05d}.json"


def _fingerprint(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


def _load_shard(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """A finished shard file, or None when it is absent; errors for a foreign or unreadable one."""
    if not path.is_file():
        return None
    try:
        with open(path, encoding="utf-8") as f:
            shard = json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: unreadable shard file ({exc.msg}); delete it to recompute the shard") from None
    if shard.get("format") != SHARD_FORMAT or shard.get("fingerprint") != fingerprint:
        raise ValueError(f"{path}: shard of a different run (parameters or inputs differ); "
                         "use a fresh --out folder")
    return shard


def _change_stats(annotations: list[dict[str, Any]]) -> dict[str, Any]:
    refined = [a for a in annotations if "iou_with_original" in a.get("refine", {})]
    ious = np.array([a["refine"]["iou_with_original"] for a in refined], dtype=np.float64)
    ratios = np.array([a["refine"]["area_ratio"] for a in refined], dtype=np.float64)

    def summary(x: np.ndarray) -> dict[str, float] | None:
        if x.size == 0:
            return None
        q = np.percentile(x, [1, 5, 25, 50, 75, 95, 99])
        return {"mean": float(x.mean()), "min": float(x.min()), "max": float(x.max()),
                **{f"p{p}": float(v) for p, v in zip((1, 5, 25, 50, 75, 95, 99), q)}}

    return {
        "iou_with_original": summary(ious),
        "area_ratio": summary(ratios),
        "iou_histogram": {"edges": [0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 1.0],
                          "counts": np.histogram(ious, bins=[0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 1.0 + 1e-12])[0]
                          .tolist()},
        "per_annotation": {"id": [a.get("id") for a in refined], "iou_with_original": ious.tolist(),
                           "area_ratio": ratios.tolist(), "guard": [a["refine"]["guard"] for a in refined],
                           "kept_original": [a["refine"]["kept_original"] for a in refined]},
    }


def _iter_results(tasks: list[dict[str, Any]], *, refiner: Any, workers: int,
                  scheduler: str | None) -> Iterable[dict[str, Any]]:
    if not tasks:
        return
    if workers == 1 and scheduler is None:
        for task in tasks:
            yield process_shard(task, refiner)
        return
    import joblib

    if scheduler is not None:
        try:
            from dask.distributed import Client
        except ImportError as exc:
            raise ValueError("--scheduler needs dask.distributed: pip install 'steadyseg[distributed]'") from exc
        client = Client(scheduler, set_as_default=False)
        try:
            with joblib.parallel_config(backend="dask", client=client):
                yield from joblib.Parallel(n_jobs=-1, return_as="generator_unordered", batch_size=1)(
                    joblib.delayed(process_shard)(t) for t in tasks)
        finally:
            client.close()
        return
    yield from joblib.Parallel(n_jobs=workers, return_as="generator_unordered", batch_size=1)(
        joblib.delayed(process_shard)(t) for t in tasks)


def refine_coco(annotations: str | os.PathLike, images: str | os.PathLike, out: str | os.PathLike, *,
                refiner: str = "guided", refiner_kwargs: dict[str, Any] | None = None,
                checkpoint: str | os.PathLike | None = None, context: float = 0.25, context_min: int = 8,
                threshold: float = 0.5, guard: str = "keep-original", min_area_ratio: float = 0.5,
                shard_size: int = 64, workers: int = 1, scheduler: str | None = None, resume: bool = False,
                strict: bool = False, progress: bool = True) -> dict[str, Any]:
    """Refine every instance mask of a COCO file; writes ``out/instances.json``, ``run.json``, ``config.yaml``.

    Args:
        annotations: COCO instances JSON (polygons or RLE). Never modified.
        images: folder holding each image's ``file_name``.
        out: output folder (created). Without ``resume`` it must not hold another run.
        refiner: a name of ``steadyseg.refine.refiners.REFINERS`` ("guided", "cascadepsp", "identity").
        refiner_kwargs: keyword arguments of that refiner's builder (e.g. ``{"l_max": 900}``).
        checkpoint: CascadePSP checkpoint (recorded with its sha256).
        context: crop padding as a fraction of the mask's longest box side (at least ``context_min`` pixels).
        threshold: the refined soft mask is ``> threshold``.
        guard: ``"keep-original"`` (a vanished/shrunk result keeps the original mask, flagged) or
            ``"flag-only"`` (keep the refined mask, flagged).
        min_area_ratio: refined area / original area below this counts as "shrunk".
        shard_size: images per shard (shards are the unit of parallel work and of resumption).
        workers: joblib processes (``-1`` = all cores); 1 runs in this process.
        scheduler: a Dask scheduler address (``tcp://host:8786``): run the shards on that cluster instead.
        resume: skip finished shards of a previous run in ``out`` (refused when its parameters differ).
        strict: stop at the first bad annotation/image with its error instead of recording it.
        progress: show a tqdm progress bar (annotations, with ETA).

    Returns:
        The run record (also written to ``out/run.json``).
    """
    from tqdm import tqdm

    t_start = time.perf_counter()
    ann_path, images_dir, out = Path(annotations), Path(images), Path(out)
    if guard not in GUARD_POLICIES:
        raise ValueError(f"guard must be one of {GUARD_POLICIES}, got {guard!r}")
    if not 0.0 <= float(min_area_ratio) <= 1.0:
        raise ValueError(f"min_area_ratio must be in [0, 1], got {min_area_ratio}")
    if not 0.0 <= float(threshold) < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    if context < 0 or context_min < 0:
        raise ValueError(f"context and context_min must be >= 0, got {context}, {context_min}")
    if int(shard_size) < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    if int(workers) == 0 or int(workers) < -1:
        raise ValueError(f"workers must be >= 1 or -1 (all cores), got {workers}")
    if not images_dir.is_dir():
        raise FileNotFoundError(f"{images_dir}: images folder not found")
    if (out / "instances.json").resolve() == ann_path.resolve():
        raise ValueError(f"{out}: the output would overwrite the input {ann_path}; choose another --out")
    from steadyseg.refine.refiners import REFINERS

    if refiner not in REFINERS:
        raise ValueError(f"unknown refiner {refiner!r}; choose one of {sorted(REFINERS)}")
    rkwargs = dict(refiner_kwargs or {})
    ckpt_record = None
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise FileNotFoundError(f"{checkpoint}: refiner checkpoint not found")
        rkwargs["checkpoint"] = str(checkpoint.resolve())
        ckpt_record = {"path": str(checkpoint.resolve()), "sha256": files.sha256_file(checkpoint)}
    elif refiner == "cascadepsp" and "checkpoint" not in rkwargs:
        raise ValueError("--refiner cascadepsp needs --checkpoint PATH (CascadePSP weights); "
                         "without one use the default --refiner guided")

    data = coco_io.load_coco_json(ann_path)
    ann_sha = files.sha256_file(ann_path)
    params = {"annotations_sha256": ann_sha, "images_dir": str(images_dir.resolve()), "refiner": refiner,
              "refiner_kwargs": rkwargs, "checkpoint_sha256": ckpt_record and ckpt_record["sha256"],
              "context": float(context), "context_min": int(context_min), "threshold": float(threshold),
              "guard": guard, "min_area_ratio": float(min_area_ratio), "shard_size": int(shard_size)}
    fingerprint = _fingerprint(params)

    run_path = out / "run.json"
    if run_path.is_file() or (out / "shards").is_dir():
        if not resume:
            raise ValueError(f"{out}: already holds a refine-coco run; pass --resume to continue it "
                             "or choose another --out")
        if run_path.is_file():
            with open(run_path, encoding="utf-8") as f:
                previous = json.load(f)
            old = previous.get("parameters", {})
            if previous.get("fingerprint") != fingerprint:
                diff = sorted(k for k in set(old) | set(params) if old.get(k) != params.get(k))
                raise ValueError(f"{run_path}: cannot resume, the parameters differ from the recorded run: "
                                 + ", ".join(f"{k}: {old.get(k)!r} -> {params.get(k)!r}" for k in diff))

    # Group annotations by image (file order); annotations of unknown images fail here.
    images_list = data["images"]
    by_image: dict[Any, list[list[Any]]] = {}
    for img in images_list:
        if not isinstance(img, dict) or "id" not in img:
            raise coco_io.CocoFormatError(f"{ann_path}: an entry of 'images' has no 'id': {str(img)[:200]}")
        by_image[img["id"]] = []
    out_anns: list[dict[str, Any] | None] = [None] * len(data["annotations"])
    failures: list[dict[str, Any]] = []
    for index, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise coco_io.CocoFormatError(f"{ann_path}: annotation #{index} is not a JSON object")
        if ann.get("image_id") not in by_image:
            msg = f"annotation {ann.get('id')}: unknown image id {ann.get('image_id')!r} (not in {ann_path.name})"
            failures.append({"index": index, "id": ann.get("id"), "image_id": ann.get("image_id"), "error": msg})
            out_anns[index] = {**ann, "refine": {"error": msg}}
        else:
            by_image[ann["image_id"]].append([index, ann])
    if strict and failures:
        raise ValueError(failures[0]["error"])

    n_shards = max(1, math.ceil(len(images_list) / shard_size))
    tasks, done = [], {}
    for k in range(n_shards):
        chunk = images_list[k * shard_size:(k + 1) * shard_size]
        shard = _load_shard(_shard_path(out, k), fingerprint) if resume else None
        if shard is not None:
            done[k] = shard
            continue
        tasks.append({"shard": k, "fingerprint": fingerprint, "images_dir": str(images_dir.resolve()),
                      "refiner": refiner, "refiner_kwargs": rkwargs, "params": params,
                      "images": [{"id": im["id"], "file_name": im.get("file_name"), "height": im.get("height"),
                                  "width": im.get("width"), "annotations": by_image[im["id"]]} for im in chunk]})

    out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "format": RUN_FORMAT, "status": "running", "fingerprint": fingerprint, "parameters": params,
        "inputs": {"annotations": {"path": str(ann_path.resolve()), "sha256": ann_sha},
                   "images": {"dir": str(images_dir.resolve()), "count": len(images_list)}},
        "refiner": {"name": refiner, "kwargs": rkwargs, "checkpoint": ckpt_record},
        "execution": {"workers": workers, "scheduler": scheduler, "strict": strict, "resume": resume},
    }
    files.atomic_write_json(run_path, record)
    files.save_resolved_config(out, {"annotations": str(ann_path), "images": str(images_dir), "out": str(out),
                                     "refiner": refiner, "refiner_kwargs": rkwargs,
                                     "checkpoint": None if checkpoint is None else str(checkpoint),
                                     "context": context, "context_min": context_min, "threshold": threshold,
                                     "guard": guard, "min_area_ratio": min_area_ratio, "shard_size": shard_size,
                                     "workers": workers, "scheduler": scheduler, "resume": resume,
                                     "strict": strict})

    local_refiner = None
    if workers == 1 and scheduler is None and tasks:
        from steadyseg.refine.refiners import build_refiner

        local_refiner = build_refiner(refiner, **rkwargs)
    n_done_anns = sum(len(s["annotations"]) for s in done.values())
    n_total = sum(len(v) for v in by_image.values())
    t_work = time.perf_counter()
    bar = tqdm(total=n_total, initial=n_done_anns, unit="ann", desc="refine-coco", disable=not progress,
               dynamic_ncols=True)
    shard_timings = []
    try:
        for result in _iter_results(tasks, refiner=local_refiner, workers=int(workers), scheduler=scheduler):
            if strict and result["failures"]:
                raise ValueError(result["failures"][0]["error"])
            files.atomic_write_json(_shard_path(out, result["shard"]), result, indent=None)
            shard_timings.append({"shard": result["shard"], **result["timings"],
                                  "annotations": len(result["annotations"])})
            bar.update(len(result["annotations"]))
    finally:
        bar.close()
    work_s = time.perf_counter() - t_work

    # Assemble from the shard files (same code path for fresh and resumed runs → identical bytes).
    image_sha: dict[str, str] = {}
    for k in range(n_shards):
        shard = _load_shard(_shard_path(out, k), fingerprint)
        if shard is None:
            raise ValueError(f"{_shard_path(out, k)}: shard missing after the run")
        for index, ann in shard["annotations"]:
            out_anns[index] = ann
        failures.extend(shard["failures"])
        image_sha.update(shard["image_sha256"])
    missing = [i for i, a in enumerate(out_anns) if a is None]
    if missing:
        raise ValueError(f"{out}: {len(missing)} annotations were not produced (first index {missing[0]})")
    result_data = {**data, "annotations": out_anns}
    files.atomic_write_text(out / "instances.json", json.dumps(result_data, separators=(",", ":")) + "\n")

    failures.sort(key=lambda f: f["index"])
    refined = [a for a in out_anns if "iou_with_original" in a["refine"]]
    counts = {"images": len(images_list), "annotations": len(out_anns), "refined": len(refined),
              "crowd": sum(1 for a in out_anns if a["refine"].get("skipped") == "crowd"),
              "failed": len(failures),
              "guard_vanished": sum(1 for a in refined if a["refine"]["guard"] == "vanished"),
              "guard_shrunk": sum(1 for a in refined if a["refine"]["guard"] == "shrunk"),
              "kept_original": sum(1 for a in refined if a["refine"]["kept_original"]),
              "shards": n_shards, "shards_resumed": len(done), "shards_run": len(tasks)}
    digest = hashlib.sha256(json.dumps(sorted(image_sha.items())).encode()).hexdigest()
    total_s = time.perf_counter() - t_start
    n_run = sum(t["annotations"] for t in shard_timings)
    record.update({
        "status": "complete",
        "counts": counts,
        "change_stats": _change_stats(out_anns),
        "failures": failures,
        "outputs": {"instances": {"path": str((out / "instances.json").resolve()),
                                  "sha256": files.sha256_file(out / "instances.json")}},
        "timings": {"total_s": round(total_s, 3), "work_s": round(work_s, 3),
                    "annotations_per_s": round(n_run / work_s, 2) if n_run and work_s > 0 else None,
                    "shards": sorted(shard_timings, key=lambda t: t["shard"])},
    })
    record["inputs"]["images"]["sha256_of_image_hashes"] = digest
    record["inputs"]["images"]["hashed"] = len(image_sha)
    files.atomic_write_json(run_path, record)
    return record
