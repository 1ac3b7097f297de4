"""Ingest speed of ``steadyseg curate build`` vs FiftyOne's own COCO importer, and a projection for COCO train2017.

The real 80-image COCO sample (815 instances) is repeated ``--repeat`` times with new image and annotation ids;
the "refined" file shifts every ``--shift-every``-th mask (default 5th; 1 = every mask changes) by 2 px and drops
every 10th annotation (refinement itself is not timed). Each method ingests into a private mongod (started here,
removed at the end):

- ``steadyseg raw``: our builder (decode, change metrics, both label fields), raw writer, with each ``--workers``;
- ``steadyseg raw (baseline REF)``: the same with the builder of git revision ``--baseline REF`` (its
  ``curation/build.py`` and ``curation/metrics.py``), run interleaved with the working tree's, ``--rounds`` times,
  so that a before/after comes from one run on the same machine load;
- ``steadyseg fiftyone``: ours through ``Dataset.add_samples`` (public API; ``--skip-public-writer`` skips it);
- ``fiftyone coco importer``: ``fo.Dataset.from_dir(COCODetectionDataset, label_types="segmentations")`` of the
  original file only (one label field, no metrics; ``--skip-importer`` skips it).

Rates are instances per second, counting every stored instance mask (original + refined for ours), from the fastest
of the ``--rounds`` runs (all runs are in the JSON); with 1 worker the rate per CPU second of this process is also
printed (less sensitive to other jobs on a shared machine; MongoDB's own CPU is not in it). The projection for
train2017 uses 860,001 instances x 2 fields (ours) or x 1 field (importer).

    python benchmarks/bench_curation_ingest.py --repeat 5 --workers 1 2 --rounds 3 --baseline c99a591 --json out.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TRAIN2017_INSTANCES = 860_001
REPO = Path(__file__).resolve().parents[1]


def make_inputs(coco_dir: Path, repeat: int, out: Path, *, shift_every: int = 5) -> tuple[Path, Path, int]:
    from steadyseg.datasets.coco import annotation_to_mask, load_coco_json, mask_to_rle, rle_area, rle_bbox

    d = load_coco_json(coco_dir / "annotations" / "instances_val2017.json")
    ims = {im["id"]: im for im in d["images"]}
    images, orig, ref = [], [], []
    for r in range(repeat):
        off_img, off_ann = r * 10_000_000, r * 100_000_000
        images += [{**im, "id": im["id"] + off_img} for im in d["images"]]
        for k, a in enumerate(d["annotations"]):
            a2 = {**a, "id": a["id"] + off_ann, "image_id": a["image_id"] + off_img}
            orig.append(a2)
            if k % 10 == 3:
                continue
            im = ims[a["image_id"]]
            m = annotation_to_mask(a, im["height"], im["width"])
            if k % shift_every == 0:
                m = np.roll(m, 2, axis=1)
            rle = mask_to_rle(m)
            ref.append({**a2, "segmentation": rle, "area": float(rle_area(rle)), "bbox": rle_bbox(rle),
                        "refine": {"guard": None, "kept_original": False, "refiner": "bench-shift"}})
    base = {"images": images, "categories": d["categories"]}
    (out / "original.json").write_text(json.dumps({**base, "annotations": orig}))
    (out / "refined.json").write_text(json.dumps({**base, "annotations": ref}))
    return out / "original.json", out / "refined.json", len(orig)


def load_baseline(ref: str, folder: Path):
    """The ``curation/build.py`` of git revision ``ref`` as module ``_baseline_build`` (with that revision's
    ``curation/metrics.py`` as ``_baseline_metrics``), importable by loky's worker processes too."""
    for name in ("build", "metrics"):
        try:
            src = subprocess.run(["git", "show", f"{ref}:curation/{name}.py"], cwd=REPO, capture_output=True,
                                 text=True, check=True).stdout
        except subprocess.CalledProcessError as exc:
            raise SystemExit(f"--baseline {ref}: git show {ref}:curation/{name}.py failed: {exc.stderr.strip()}")
        src = src.replace("from steadyseg.curation.metrics import", "from _baseline_metrics import")
        (folder / f"_baseline_{name}.py").write_text(src)
    sys.path.insert(0, str(folder))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH")) if p)
    return importlib.import_module("_baseline_build")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--coco", default=str(REPO.parent / "shared" / "data" / "coco-val2017-80"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time (default 1 2)")
    ap.add_argument("--rounds", type=int, default=1, help="runs of each raw-writer configuration (fastest reported)")
    ap.add_argument("--baseline", metavar="GIT_REF", default=None,
                    help="also time the builder of this git revision, interleaved (before/after in one run)")
    ap.add_argument("--shift-every", type=int, default=5, help="shift every N-th refined mask by 2 px (1 = all)")
    ap.add_argument("--skip-public-writer", action="store_true")
    ap.add_argument("--skip-importer", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if min(args.workers) < 1 or args.rounds < 1 or args.shift_every < 1:
        ap.error("--workers, --rounds and --shift-every must be >= 1")

    from steadyseg.curation.env import start_mongod

    tmp = Path(tempfile.mkdtemp(prefix="bench-curation-"))
    baseline = load_baseline(args.baseline, tmp) if args.baseline else None
    handle = start_mongod(tmp / "db")
    os.environ.update(handle.env("bench-curation"))
    try:
        import fiftyone as fo

        from steadyseg.curation.build import build_curation_dataset

        original, refined, n_ann = make_inputs(Path(args.coco), args.repeat, tmp, shift_every=args.shift_every)
        images = Path(args.coco) / "val2017"
        results = []

        def record(method, workers, seconds, instances, fields, runs=None, cpu=None):
            rate = instances / seconds
            proj = TRAIN2017_INSTANCES * fields / rate
            extra = {}
            if runs:
                extra["runs_seconds"] = [round(t, 2) for t in runs]
            if cpu and workers == 1:  # this process's CPU time: what a machine with a free core would take
                extra["cpu_seconds"] = round(min(cpu), 2)
                extra["instances_per_cpu_second"] = round(instances / min(cpu), 1)
            results.append({"method": method, "workers": workers, "instances": instances,
                            "seconds": round(seconds, 2), "instances_per_second": round(rate, 1),
                            "train2017_projection_minutes": round(proj / 60, 1), **extra})
            cpu_text = f"  ({extra['instances_per_cpu_second']:.0f} inst per CPU s)" if "cpu_seconds" in extra else ""
            print(f"{method:<34s} workers={workers} {instances:>7d} instances {seconds:7.1f} s "
                  f"{rate:8.0f} inst/s  train2017 ({fields} field(s)): {proj / 60:6.1f} min{cpu_text}", flush=True)

        def build(builder, writer, workers, name):
            t0, c0 = time.perf_counter(), time.process_time()
            ds = builder(original, refined, images, name, writer=writer, workers=workers, progress=False,
                         save_views=False, persistent=False)
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            n = ds.info["steadyseg"]["ingest"]["instances"]
            ds.delete()
            return dt, n, cpu

        fo.Dataset("warmup").delete()  # connect once so no run pays the start-up
        builders = [("steadyseg raw", build_curation_dataset)]
        if baseline is not None:
            builders.insert(0, (f"steadyseg raw (baseline {args.baseline})", baseline.build_curation_dataset))
        runs: dict[tuple[str, int], list[float]] = {}
        cpus: dict[tuple[str, int], list[float]] = {}
        counts: dict[tuple[str, int], int] = {}
        for r in range(args.rounds):  # interleaved: every configuration once per round, the order alternating
            for workers in args.workers:
                for label, builder in (builders if r % 2 == 0 else builders[::-1]):
                    dt, n, cpu = build(builder, "raw", workers, f"bench-{r}-{workers}-{len(runs)}")
                    runs.setdefault((label, workers), []).append(dt)
                    cpus.setdefault((label, workers), []).append(cpu)
                    counts[(label, workers)] = n
        for (label, workers), times in runs.items():
            record(label, workers, min(times), counts[(label, workers)], 2, runs=times, cpu=cpus[(label, workers)])
        if not args.skip_public_writer:
            dt, n, _ = build(build_curation_dataset, "fiftyone", 1, "bench-public")
            record("steadyseg fiftyone", 1, dt, n, 2)
        if not args.skip_importer:
            t0 = time.perf_counter()
            ds = fo.Dataset.from_dir(dataset_type=fo.types.COCODetectionDataset, data_path=str(images),
                                     labels_path=str(original), label_types="segmentations", label_field="gt",
                                     name="bench-importer", progress=False)
            dt = time.perf_counter() - t0
            record("fiftyone coco importer", 1, dt, ds.count("gt_segmentations.detections")
                   if "gt_segmentations" in ds.get_field_schema() else ds.count("gt.detections"), 1)
            ds.delete()
        summary = {"repeat": args.repeat, "annotations": n_ann, "shift_every": args.shift_every,
                   "rounds": args.rounds, "baseline": args.baseline, "cpu_count": os.cpu_count(),
                   "load_average_1min": os.getloadavg()[0], "results": results}
        if args.json:
            from steadyseg.files import atomic_write_json

            atomic_write_json(args.json, summary)
        return 0
    finally:
        handle.stop()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
