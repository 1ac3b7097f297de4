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

Stages: :func:`plan_run` checks the arguments and the input, groups annotations by image and cuts the images
into :class:`~steadyseg.refine.coco.shards.ShardTask` s (skipping finished shards when resuming);
:func:`run_shards` refines them (:mod:`steadyseg.refine.coco.shards`, one annotation:
:mod:`steadyseg.refine.coco.annotation`) and writes each shard file; :func:`assemble` reads every shard file
back and writes ``instances.json`` and the run record.

The run is deterministic: ``instances.json`` depends only on the inputs and the parameters, never on the number
of workers, the scheduler or interruptions. ``resume=True`` skips shards already on disk (after checking that
the recorded parameters are the same) so a killed run finishes with exactly the bytes of an uninterrupted one.
Workers build the refiner once per process and keep it for every later shard.

Python::

    from steadyseg.refine.coco import refine_coco
    record = refine_coco(annotations="instances_val2017.json", images="val2017", out="refined",
                         refiner="guided", workers=2)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from steadyseg import files
from steadyseg.datasets import coco as coco_io
from steadyseg.errors import InputError
from steadyseg.refine.coco.annotation import GUARD_POLICIES
from steadyseg.refine.coco.shards import ShardImage, ShardTask, iter_results, load_shard, shard_path

RUN_FORMAT = "steadyseg.refine-coco.run/1"


@dataclass
class RunPlan:
    """What :func:`plan_run` decided; :func:`run_shards` and :func:`assemble` carry it out.

    Attributes:
        out: the output folder.
        data: the input COCO dict (annotations are replaced in :func:`assemble`).
        fingerprint: sha256 of ``record["parameters"]`` (a resumed run must have the same).
        record: the run record so far (``out/run.json`` with ``"status": "running"``).
        tasks: the shards still to refine.
        done: finished shard records found on disk (``resume``), by shard number.
        n_shards: number of shards of the whole file.
        out_anns: the output annotations by input index (``None`` until known; failures of the planning stage,
            such as an unknown image id, are already filled in).
        failures: failures of the planning stage.
        n_annotations: annotations with a known image (what the shards refine).
    """

    out: Path
    data: dict[str, Any]
    fingerprint: str
    record: dict[str, Any]
    tasks: list[ShardTask]
    done: dict[int, dict[str, Any]]
    n_shards: int
    out_anns: list[dict[str, Any] | None]
    failures: list[dict[str, Any]]
    n_annotations: int


def _fingerprint(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


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


def _check_arguments(ann_path: Path, images_dir: Path, out: Path, *, refiner: str, context: float,
                     context_min: int, threshold: float, guard: str, min_area_ratio: float, shard_size: int,
                     workers: int) -> None:
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


def _check_resumable(out: Path, fingerprint: str, params: dict[str, Any], *, resume: bool) -> None:
    run_path = out / "run.json"
    if run_path.is_file() or (out / "shards").is_dir():
        if not resume:
            raise ValueError(f"{out}: already holds a refine-coco run; pass --resume to continue it "
                             "or choose another --out")
        if run_path.is_file():
            try:
                with open(run_path, encoding="utf-8") as f:
                    previous = json.load(f)
            except json.JSONDecodeError as exc:
                raise InputError(run_path, f"unreadable run record ({exc.msg}); delete it to start over") from None
            old = previous.get("parameters", {})
            if previous.get("fingerprint") != fingerprint:
                diff = sorted(k for k in set(old) | set(params) if old.get(k) != params.get(k))
                raise ValueError(f"{run_path}: cannot resume, the parameters differ from the recorded run: "
                                 + ", ".join(f"{k}: {old.get(k)!r} -> {params.get(k)!r}" for k in diff))


def plan_run(annotations: str | os.PathLike, images: str | os.PathLike, out: str | os.PathLike, *,
             refiner: str = "guided", refiner_kwargs: dict[str, Any] | None = None,
             checkpoint: str | os.PathLike | None = None, context: float = 0.25, context_min: int = 8,
             threshold: float = 0.5, guard: str = "keep-original", min_area_ratio: float = 0.5,
             shard_size: int = 64, workers: int = 1, scheduler: str | None = None, resume: bool = False,
             strict: bool = False) -> RunPlan:
    """Check the arguments and the input, group annotations by image, cut shards; writes ``run.json``
    (``"status": "running"``) and ``config.yaml``. Arguments as in :func:`refine_coco`."""
    ann_path, images_dir, out = Path(annotations), Path(images), Path(out)
    _check_arguments(ann_path, images_dir, out, refiner=refiner, context=context, context_min=context_min,
                     threshold=threshold, guard=guard, min_area_ratio=min_area_ratio, shard_size=shard_size,
                     workers=workers)
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
    _check_resumable(out, fingerprint, params, resume=resume)
    for folder in (out, out / "shards"):  # files a killed run was writing
        files.remove_orphan_temporaries(folder)

    # Group annotations by image (file order); annotations of unknown images fail here.
    images_list = data["images"]
    by_image: dict[Any, list[list[Any]]] = {}
    for img in images_list:
        if not isinstance(img, dict) or "id" not in img:
            raise coco_io.CocoFormatError(f"{ann_path}: an entry of 'images' has no 'id': {str(img)[:200]}")
        by_image[img["id"]] = []
    category_ids = {c.get("id") for c in data["categories"] if isinstance(c, dict)}
    out_anns: list[dict[str, Any] | None] = [None] * len(data["annotations"])
    failures: list[dict[str, Any]] = []
    for index, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise coco_io.CocoFormatError(f"{ann_path}: annotation #{index} is not a JSON object")
        if ann.get("image_id") not in by_image:
            msg = f"annotation {ann.get('id')}: unknown image id {ann.get('image_id')!r} (not in {ann_path.name})"
        elif ann.get("category_id") not in category_ids:
            msg = (f"annotation {ann.get('id')}: unknown category id {ann.get('category_id')!r} "
                   f"(not in {ann_path.name})")
        else:
            by_image[ann["image_id"]].append([index, ann])
            continue
        failures.append({"index": index, "id": ann.get("id"), "image_id": ann.get("image_id"), "error": msg,
                         "file": str(ann_path)})
        out_anns[index] = {**ann, "refine": {"error": msg}}
    if strict and failures:
        raise InputError(ann_path, failures[0]["error"])

    n_shards = max(1, math.ceil(len(images_list) / shard_size))
    tasks, done = [], {}
    for k in range(n_shards):
        chunk = images_list[k * shard_size:(k + 1) * shard_size]
        shard = load_shard(shard_path(out, k), fingerprint) if resume else None
        if shard is not None:
            done[k] = shard
            continue
        tasks.append(ShardTask(
            shard=k, fingerprint=fingerprint, images_dir=str(images_dir.resolve()), refiner=refiner,
            refiner_kwargs=rkwargs, context=params["context"], context_min=params["context_min"],
            threshold=params["threshold"], guard=guard, min_area_ratio=params["min_area_ratio"],
            images=[ShardImage(id=im["id"], file_name=im.get("file_name"), height=im.get("height"),
                               width=im.get("width"), annotations=by_image[im["id"]]) for im in chunk]))

    out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "format": RUN_FORMAT, "status": "running", "fingerprint": fingerprint, "parameters": params,
        "inputs": {"annotations": {"path": str(ann_path.resolve()), "sha256": ann_sha},
                   "images": {"dir": str(images_dir.resolve()), "count": len(images_list)}},
        "refiner": {"name": refiner, "kwargs": rkwargs, "checkpoint": ckpt_record},
        "execution": {"workers": workers, "scheduler": scheduler, "strict": strict, "resume": resume},
    }
    files.atomic_write_json(out / "run.json", record)
    files.save_resolved_config(out, {"annotations": str(ann_path), "images": str(images_dir), "out": str(out),
                                     "refiner": refiner, "refiner_kwargs": rkwargs,
                                     "checkpoint": None if checkpoint is None else str(checkpoint),
                                     "context": context, "context_min": context_min, "threshold": threshold,
                                     "guard": guard, "min_area_ratio": min_area_ratio, "shard_size": shard_size,
                                     "workers": workers, "scheduler": scheduler, "resume": resume,
                                     "strict": strict})
    return RunPlan(out=out, data=data, fingerprint=fingerprint, record=record, tasks=tasks, done=done,
                   n_shards=n_shards, out_anns=out_anns, failures=failures,
                   n_annotations=sum(len(v) for v in by_image.values()))


def run_shards(plan: RunPlan, *, workers: int = 1, scheduler: str | None = None, strict: bool = False,
               progress: bool = True) -> tuple[list[dict[str, Any]], float]:
    """Refine the shards still to do and write each shard file atomically as it finishes.

    Returns the timings of the shards run here (``[{"shard", "read_s", "refine_s", "total_s", "pid",
    "annotations"}]``, in finishing order) and the seconds spent refining (after building the refiner).
    ``strict`` stops at the first failure of a shard.
    """
    from tqdm import tqdm

    local_refiner = None
    if workers == 1 and scheduler is None and plan.tasks:
        from steadyseg.refine.refiners import build_refiner

        local_refiner = build_refiner(plan.tasks[0].refiner, **plan.tasks[0].refiner_kwargs)
    n_done_anns = sum(len(s["annotations"]) for s in plan.done.values())
    t_work = time.perf_counter()
    bar = tqdm(total=plan.n_annotations, initial=n_done_anns, unit="ann", desc="refine-coco",
               disable=not progress, dynamic_ncols=True)
    shard_timings = []
    try:
        for result in iter_results(plan.tasks, refiner=local_refiner, workers=int(workers), scheduler=scheduler):
            if strict and result["failures"]:
                first = result["failures"][0]
                raise InputError(first.get("file") or plan.record["inputs"]["annotations"]["path"], first["error"])
            files.atomic_write_json(shard_path(plan.out, result["shard"]), result, indent=None)
            shard_timings.append({"shard": result["shard"], **result["timings"],
                                  "annotations": len(result["annotations"])})
            bar.update(len(result["annotations"]))
    finally:
        bar.close()
    return shard_timings, time.perf_counter() - t_work


def assemble(plan: RunPlan, *, shard_timings: list[dict[str, Any]], work_s: float, total_s: float
             ) -> dict[str, Any]:
    """Read every shard file back (the same code path for fresh and resumed runs, hence identical bytes), write
    ``out/instances.json`` and the completed run record ``out/run.json``; returns the record."""
    out, out_anns, failures = plan.out, list(plan.out_anns), list(plan.failures)
    image_sha: dict[str, str] = {}
    for k in range(plan.n_shards):
        shard = load_shard(shard_path(out, k), plan.fingerprint)
        if shard is None:
            raise ValueError(f"{shard_path(out, k)}: shard missing after the run")
        for index, ann in shard["annotations"]:
            out_anns[index] = ann
        failures.extend({**f, "file": f.get("file") or plan.record["inputs"]["annotations"]["path"]}
                        for f in shard["failures"])
        image_sha.update(shard["image_sha256"])
    missing = [i for i, a in enumerate(out_anns) if a is None]
    if missing:
        raise ValueError(f"{out}: {len(missing)} annotations were not produced (first index {missing[0]})")
    result_data = {**plan.data, "annotations": out_anns}
    files.atomic_write_text(out / "instances.json", json.dumps(result_data, separators=(",", ":")) + "\n")

    failures.sort(key=lambda f: f["index"])
    refined = [a for a in out_anns if "iou_with_original" in a["refine"]]
    counts = {"images": len(plan.data["images"]), "annotations": len(out_anns), "refined": len(refined),
              "crowd": sum(1 for a in out_anns if a["refine"].get("skipped") == "crowd"),
              "failed": len(failures),
              "guard_vanished": sum(1 for a in refined if a["refine"]["guard"] == "vanished"),
              "guard_shrunk": sum(1 for a in refined if a["refine"]["guard"] == "shrunk"),
              "kept_original": sum(1 for a in refined if a["refine"]["kept_original"]),
              "shards": plan.n_shards, "shards_resumed": len(plan.done), "shards_run": len(plan.tasks)}
    digest = hashlib.sha256(json.dumps(sorted(image_sha.items())).encode()).hexdigest()
    n_run = sum(t["annotations"] for t in shard_timings)
    record = plan.record
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
    files.atomic_write_json(out / "run.json", record)
    return record


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
        guard: one of :data:`~steadyseg.refine.coco.annotation.GUARD_POLICIES`: ``"keep-original"`` (a
            vanished/shrunk result keeps the original mask, flagged) or ``"flag-only"`` (keep the refined mask,
            flagged).
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
    t_start = time.perf_counter()
    existed = Path(out).exists()
    fresh = not (Path(out) / "run.json").exists() and not (Path(out) / "shards").exists()
    try:
        return _refine_coco(t_start, annotations, images, out, refiner=refiner, refiner_kwargs=refiner_kwargs,
                            checkpoint=checkpoint, context=context, context_min=context_min, threshold=threshold,
                            guard=guard, min_area_ratio=min_area_ratio, shard_size=shard_size, workers=workers,
                            scheduler=scheduler, resume=resume, strict=strict, progress=progress)
    except BaseException:
        if fresh:
            _remove_unstarted_run(Path(out), remove_folder=not existed)
        raise


def _remove_unstarted_run(out: Path, *, remove_folder: bool) -> None:
    """After a failure before any shard was written: remove what the run wrote (run.json, config.yaml, empty
    folders), so a bad input (a foreign checkpoint, a read-only image) leaves no output behind. A run with
    finished shards is kept: ``--resume`` continues it."""
    shards = out / "shards"
    if shards.is_dir() and any(shards.iterdir()):
        return
    for name in ("run.json", "config.yaml"):
        try:
            (out / name).unlink()
        except OSError:  # absent, or `out` is not a folder
            pass
    for folder in (shards, out) if remove_folder else (shards,):
        try:
            folder.rmdir()
        except OSError:  # absent, or holds files the run did not write
            pass


def _refine_coco(t_start, annotations, images, out, *, refiner, refiner_kwargs, checkpoint, context, context_min,
                 threshold, guard, min_area_ratio, shard_size, workers, scheduler, resume, strict, progress):
    plan = plan_run(annotations, images, out, refiner=refiner, refiner_kwargs=refiner_kwargs, checkpoint=checkpoint,
                    context=context, context_min=context_min, threshold=threshold, guard=guard,
                    min_area_ratio=min_area_ratio, shard_size=shard_size, workers=workers, scheduler=scheduler,
                    resume=resume, strict=strict)
    shard_timings, work_s = run_shards(plan, workers=workers, scheduler=scheduler, strict=strict,
                                       progress=progress)
    return assemble(plan, shard_timings=shard_timings, work_s=work_s, total_s=time.perf_counter() - t_start)
