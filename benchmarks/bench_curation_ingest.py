"""Ingest speed of ``steadyseg curate build`` vs FiftyOne's own COCO importer, and a projection for COCO train2017.

The real 80-image COCO sample (815 instances) is repeated ``--repeat`` times with new image and annotation ids;
the "refined" file shifts every 5th mask by 2 px and drops every 10th annotation (refinement itself is not
timed). Each method ingests into a private mongod (started here, removed at the end):

- ``steadyseg raw``: our builder (decode, change metrics, both label fields), raw writer, 1 and N workers;
- ``steadyseg fiftyone``: same, through ``Dataset.add_samples`` (public API);
- ``fiftyone coco importer``: ``fo.Dataset.from_dir(COCODetectionDataset, label_types="segmentations")`` of the
  original file only (one label field, no metrics).

Rates are instances per second, counting every stored instance mask (original + refined for ours). The projection
for train2017 uses 860,001 instances x 2 fields (ours) or x 1 field (importer).

    python benchmarks/bench_curation_ingest.py --repeat 10 --workers 2 --json bench_curation.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TRAIN2017_INSTANCES = 860_001
REPO = Path(__file__).resolve().parents[1]


def make_inputs(coco_dir: Path, repeat: int, out: Path) -> tuple[Path, Path, int]:
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
            if k % 5 == 0:
                m = np.roll(m, 2, axis=1)
            rle = mask_to_rle(m)
            ref.append({**a2, "segmentation": rle, "area": float(rle_area(rle)), "bbox": rle_bbox(rle),
                        "refine": {"guard": None, "kept_original": False, "refiner": "bench-shift"}})
    base = {"images": images, "categories": d["categories"]}
    (out / "original.json").write_text(json.dumps({**base, "annotations": orig}))
    (out / "refined.json").write_text(json.dumps({**base, "annotations": ref}))
    return out / "original.json", out / "refined.json", len(orig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--coco", default=str(REPO.parent / "shared" / "data" / "coco-val2017-80"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-importer", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    from steadyseg.curation.env import start_mongod

    tmp = Path(tempfile.mkdtemp(prefix="bench-curation-"))
    handle = start_mongod(tmp / "db")
    os.environ.update(handle.env("bench-curation"))
    try:
        import fiftyone as fo

        from steadyseg.curation.build import build_curation_dataset

        original, refined, n_ann = make_inputs(Path(args.coco), args.repeat, tmp)
        images = Path(args.coco) / "val2017"
        results = []

        def record(method, workers, seconds, instances, fields):
            rate = instances / seconds
            proj = TRAIN2017_INSTANCES * fields / rate
            results.append({"method": method, "workers": workers, "instances": instances,
                            "seconds": round(seconds, 2), "instances_per_second": round(rate, 1),
                            "train2017_projection_minutes": round(proj / 60, 1)})
            print(f"{method:<26s} workers={workers} {instances:>7d} instances {seconds:7.1f} s "
                  f"{rate:8.0f} inst/s  train2017 ({fields} field(s)): {proj / 60:6.1f} min", flush=True)

        fo.Dataset("warmup").delete()  # connect once so no run pays the start-up
        configs = [("steadyseg raw", "raw", 1), ("steadyseg raw", "raw", args.workers),
                   ("steadyseg fiftyone", "fiftyone", 1)]
        for i, (label, writer, workers) in enumerate(configs):
            if workers == 1 and i == 1:
                continue
            t0 = time.perf_counter()
            ds = build_curation_dataset(original, refined, images, f"bench-{i}", writer=writer, workers=workers,
                                        progress=False, save_views=False, persistent=False)
            dt = time.perf_counter() - t0
            record(label, workers, dt, ds.info["steadyseg"]["ingest"]["instances"], 2)
            ds.delete()
        if not args.skip_importer:
            t0 = time.perf_counter()
            ds = fo.Dataset.from_dir(dataset_type=fo.types.COCODetectionDataset, data_path=str(images),
                                     labels_path=str(original), label_types="segmentations", label_field="gt",
                                     name="bench-importer", progress=False)
            dt = time.perf_counter() - t0
            record("fiftyone coco importer", 1, dt, ds.count("gt_segmentations.detections")
                   if "gt_segmentations" in ds.get_field_schema() else ds.count("gt.detections"), 1)
            ds.delete()
        summary = {"repeat": args.repeat, "annotations": n_ann, "cpu_count": os.cpu_count(),
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
