"""Throughput of ``refine-coco`` on ../shared/data/coco-val2017-80: instances per second for each refiner.

The identity refiner measures the pipeline's own overhead (decode polygon → crop → refine → threshold → paste →
RLE encode → shard write → assembly); the goal is ≥ 200 instances/s per core so that COCO's 860k instances cost
well under an hour of overhead on a small cluster. CascadePSP runs on the first ``--cascadepsp-images`` images
(random weights unless ``--checkpoint``: the speed is the same, the masks are meaningless) with the per-crop ``L``
policy, and with ``--compare-official`` also with the official "everything at L = 900" policy, reporting the cost
per instance of both and how close the policy's masks are to the official-style ones (IoU, mBA).

    python benchmarks/bench_refine_coco.py [--refiners identity guided cascadepsp] [--workers 1 2]
        [--checkpoint cascadepsp.pth] [--cascadepsp-images 2] [--compare-official] [--json bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_one(ann: Path, images: Path, out: Path, *, refiner: str, workers: int, **kw) -> dict:
    from steadyseg.refine.coco import refine_coco

    t0, c0 = time.perf_counter(), time.process_time()
    record = refine_coco(ann, images, out, refiner=refiner, workers=workers, progress=False, **kw)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    c = record["counts"]
    n = c["annotations"] - c["failed"]
    shards = record["timings"]["shards"]
    work = record["timings"]["work_s"]
    return {"refiner": refiner, "workers": workers, "annotations": c["annotations"], "refined": c["refined"],
            "crowd": c["crowd"], "wall_s": round(wall, 3), "work_s": work,
            "instances_per_s": round(n / work, 2), "instances_per_s_per_worker": round(n / work / workers, 2),
            "read_s": round(sum(s["read_s"] for s in shards), 3),
            "refine_loop_s": round(sum(s["refine_s"] for s in shards), 3),
            "guard_vanished": c["guard_vanished"], "guard_shrunk": c["guard_shrunk"],
            # CPU time of this process: the whole cost when workers == 1 (robust on a shared machine)
            "cpu_s": round(cpu, 3) if workers == 1 else None,
            "instances_per_cpu_s": round(n / cpu, 2) if workers == 1 and cpu > 0 else None}


def subset(ann: Path, n_images: int, out: Path) -> Path:
    data = json.loads(ann.read_text())
    keep = {im["id"] for im in data["images"][:n_images]}
    data["images"] = [im for im in data["images"] if im["id"] in keep]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    out.write_text(json.dumps(data))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("STEADYSEG_SHARED_DATA",
                                                                     REPO.parent / "shared" / "data")))
    ap.add_argument("--refiners", nargs="+", default=["identity", "guided", "cascadepsp"])
    ap.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--shard-size", type=int, default=8)
    ap.add_argument("--checkpoint", type=Path, default=None, help="CascadePSP weights (default: random init)")
    ap.add_argument("--cascadepsp-images", type=int, default=2, help="images of the sample for CascadePSP")
    ap.add_argument("--compare-official", action="store_true", help="also run CascadePSP at L = 900 for all crops")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    root = args.data / "coco-val2017-80"
    ann, images = root / "annotations" / "instances_val2017.json", root / "val2017"
    if not ann.is_file():
        raise SystemExit(f"{ann}: not found (set STEADYSEG_SHARED_DATA)")
    rows, extra = [], {}
    with tempfile.TemporaryDirectory(prefix="bench-refine-coco-") as tmp:
        tmp = Path(tmp)
        for refiner in [r for r in args.refiners if r != "cascadepsp"]:
            for w in args.workers:
                rows.append(run_one(ann, images, tmp / f"{refiner}-{w}", refiner=refiner, workers=w,
                                    shard_size=args.shard_size))
                print(json.dumps(rows[-1]), flush=True)
        if "cascadepsp" in args.refiners:
            import torch

            ckpt = args.checkpoint
            if ckpt is None:
                from steadyseg.refine.cascadepsp.network import build_cascadepsp_net, to_official_state_dict

                torch.manual_seed(0)
                ckpt = tmp / "random-cascadepsp.pth"
                torch.save(to_official_state_dict(build_cascadepsp_net()), ckpt)
            sub = subset(ann, args.cascadepsp_images, tmp / "subset.json")
            policies = {"policy (L<=900, <=2x upscale, >=224)": {"l_max": 900, "l_min": 224, "max_upscale": 2.0}}
            if args.compare_official:
                policies["official (L=900 for every crop)"] = {"l_max": 900, "l_min": 900,
                                                               "max_upscale": float("inf")}
            outs = {}
            for label, kw in policies.items():
                out = tmp / f"cascadepsp-{len(outs)}"
                row = run_one(sub, images, out, refiner="cascadepsp", workers=1, shard_size=1, checkpoint=ckpt,
                              refiner_kwargs=kw)
                row.update({"policy": label, "checkpoint": "given" if args.checkpoint else "random init",
                            "seconds_per_instance": round(row["work_s"] / max(1, row["refined"]), 3)})
                rows.append(row)
                outs[label] = out / "instances.json"
                print(json.dumps(row), flush=True)
            if len(outs) == 2:
                from steadyseg.refine.coco.evaluation import compare_coco

                (p_label, p_out), (o_label, o_out) = outs.items()
                rep = compare_coco(p_out, o_out, progress=False)
                extra["policy_vs_official"] = rep["refined_vs_reference"]
                print(f"policy vs official-style masks: {json.dumps(extra['policy_vs_official'])}")

    print(f"\nrefine-coco on coco-val2017-80 ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)")
    print(f"{'refiner':<12}{'policy':<40}{'workers':>8}{'inst/s':>9}{'inst/s/worker':>15}{'inst/CPU-s':>12}")
    for r in rows:
        per_cpu = "" if r["instances_per_cpu_s"] is None else f"{r['instances_per_cpu_s']:.1f}"
        print(f"{r['refiner']:<12}{r.get('policy', ''):<40}{r['workers']:>8}{r['instances_per_s']:>9.1f}"
              f"{r['instances_per_s_per_worker']:>15.1f}{per_cpu:>12}")
    if args.json is not None:
        from steadyseg import files

        files.atomic_write_json(args.json, {"rows": rows, **extra, "cpu_count": os.cpu_count(),
                                            "platform": platform.platform()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
