"""The unit of parallel work of ``refine-coco``: a shard of consecutive images, refined in a worker process.

A :class:`ShardTask` holds everything a worker needs (plain data, picklable for joblib and Dask);
:func:`process_shard` returns the shard record that the driver writes to ``out/shards/shard-XXXXX.json``::

    {"format": SHARD_FORMAT, "shard": int, "fingerprint": str, "image_ids": [...], "image_sha256": {id: sha},
     "annotations": [[index, annotation], ...], "failures": [{"index", "id", "image_id", "error"}, ...],
     "timings": {"read_s", "refine_s", "total_s", "pid"}}

Workers build the refiner once per process (:func:`worker_refiner`) and keep it for every later shard.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from steadyseg.refine.coco.annotation import refine_annotation
from steadyseg.refine.refiners import Refiner

SHARD_FORMAT = "steadyseg.refine-coco.shard/1"

# One refiner per worker process, built on first use: key = JSON of (name, kwargs).
_WORKER_REFINERS: dict[str, Any] = {}


@dataclass(frozen=True)
class ShardImage:
    """One image of a shard and its annotations, ``[(index in the input file, annotation dict), ...]``."""

    id: Any
    file_name: str | None
    height: int | None
    width: int | None
    annotations: list


@dataclass(frozen=True)
class ShardTask:
    """Everything one worker needs to refine one shard (see :func:`process_shard`).

    Attributes:
        shard: shard number ``k`` (images ``k · shard_size ...`` of the input file).
        fingerprint: the run's parameter fingerprint, copied into the shard record.
        images_dir: the folder holding the images' ``file_name``.
        refiner, refiner_kwargs: a ``REFINERS`` name and its builder's keyword arguments.
        context, context_min, threshold, guard, min_area_ratio: per-annotation options of
            :func:`~steadyseg.refine.coco.annotation.refine_annotation`.
        images: the shard's images, in file order.
    """

    shard: int
    fingerprint: str
    images_dir: str
    refiner: str
    refiner_kwargs: dict
    context: float
    context_min: int
    threshold: float
    guard: str
    min_area_ratio: float
    images: list[ShardImage]


def worker_refiner(name: str, kwargs: dict[str, Any]) -> Refiner:
    """The refiner ``build_refiner(name, **kwargs)``, built once per process and cached."""
    key = json.dumps([name, kwargs], sort_keys=True, default=str)
    if key not in _WORKER_REFINERS:
        from steadyseg.refine.refiners import build_refiner

        _WORKER_REFINERS[key] = build_refiner(name, **kwargs)
    return _WORKER_REFINERS[key]


def read_image_and_sha(path: Path) -> tuple[np.ndarray, str]:
    """Read an image file as ((H, W, 3) uint8 RGB, sha256 hex of its bytes); clear errors naming the file.

    (:func:`steadyseg.datasets.video.read_image_rgb` returns the image alone.)
    """
    from steadyseg.datasets.video import decode_image_rgb, read_image_bytes

    data = read_image_bytes(path)
    return decode_image_rgb(data, source=path), hashlib.sha256(data).hexdigest()


def process_shard(task: ShardTask, refiner: Refiner | None = None) -> dict[str, Any]:
    """Refine every annotation of one shard; returns the shard record (written to disk by the driver).

    ``refiner``: an already built refiner (the in-process path); ``None`` builds it once per worker process.
    A bad image or annotation becomes a failure entry (its annotation is kept with ``"refine": {"error": ...}``).
    """
    t_start = time.perf_counter()
    if refiner is None:
        refiner = worker_refiner(task.refiner, task.refiner_kwargs)
    images_dir = Path(task.images_dir)
    results: list[list[Any]] = []
    failures: list[dict[str, Any]] = []
    image_sha: dict[str, str] = {}
    t_read = t_refine = 0.0
    for img in task.images:
        if not img.annotations:
            continue
        t0 = time.perf_counter()
        image, image_error = None, None
        path = images_dir / str(img.file_name or "")
        try:
            if not img.file_name:
                raise ValueError(f"image id {img.id}: no 'file_name' in the annotation file")
            image, image_sha[str(img.id)] = read_image_and_sha(path)
            declared = (img.height, img.width)
            if declared != image.shape[:2]:
                raise ValueError(f"{path}: image is {image.shape[1]}x{image.shape[0]} but the annotation file "
                                 f"says {declared[1]}x{declared[0]} (image id {img.id})")
        except (OSError, ValueError) as exc:
            image_error = str(exc)
        t_read += time.perf_counter() - t0
        t0 = time.perf_counter()
        for index, ann in img.annotations:
            try:
                if image_error is not None:
                    raise ValueError(f"annotation {ann.get('id')} (image {ann.get('image_id')}): {image_error}")
                new = refine_annotation(refiner, image, ann, refiner_name=task.refiner, context=task.context,
                                        context_min=task.context_min, threshold=task.threshold, guard=task.guard,
                                        min_area_ratio=task.min_area_ratio)
            except (ValueError, OSError) as exc:
                msg = str(exc)
                failures.append({"index": index, "id": ann.get("id"), "image_id": ann.get("image_id"),
                                 "error": msg, **({"file": str(path)} if image_error is not None else {})})
                new = {**ann, "refine": {"error": msg}}
            results.append([index, new])
        t_refine += time.perf_counter() - t0
    return {"format": SHARD_FORMAT, "shard": task.shard, "fingerprint": task.fingerprint,
            "image_ids": [img.id for img in task.images], "image_sha256": image_sha,
            "annotations": results, "failures": failures,
            "timings": {"read_s": round(t_read, 4), "refine_s": round(t_refine, 4),
                        "total_s": round(time.perf_counter() - t_start, 4), "pid": os.getpid()}}


def shard_path(out: Path, k: int) -> Path:
    """``out/shards/shard-XXXXX.json`` of shard ``k``."""
    return out / "shards" / f"shard-{k:05d}.json"


def load_shard(path: Path, fingerprint: str) -> dict[str, Any] | None:
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


def iter_results(tasks: list[ShardTask], *, refiner: Refiner | None, workers: int,
                 scheduler: str | None) -> Iterable[dict[str, Any]]:
    """Shard records of ``tasks`` as they finish: in this process (``workers == 1``, no scheduler, ``refiner``
    built), in ``workers`` joblib processes (``-1`` = all cores), or on a Dask cluster at ``scheduler``."""
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
