"""Benchmark CascadePSPRefiner on the CPU: seconds per image and peak memory (max RSS), fast vs full, L = 900 / 400.

Random-init weights (the official ones cannot be downloaded here; time does not depend on the weight values, but
the NUMBER of local patches does: with random weights the global result is near-constant, so the share of
patches skipped by the 0.1/0.9 foreground rule differs from real use). To make the full setting representative
the benchmark forces every planned patch through the network (``skip_low=0, skip_high=1``): an upper bound of the
local step's cost. Each setting runs in its own subprocess so that ``resource.getrusage(RUSAGE_SELF).ru_maxrss``
is that setting's peak.

A setting whose projected time exceeds ``--budget`` seconds is measured partially: the global step is timed in
full, then as many patch batches as fit in the budget; the total is extrapolated linearly in the patch count and
reported with ``"extrapolated": true``.

    python benchmarks/bench_cascadepsp.py --json bench_cascadepsp.json [--threads 2] [--budget 180]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SETTINGS = [
    # (name, width, height, fast, L)
    ("640x480", 640, 480, True, 900),
    ("640x480", 640, 480, False, 900),
    ("640x480", 640, 480, True, 400),
    ("640x480", 640, 480, False, 400),
    ("2000x1500", 2000, 1500, True, 900),
    ("2000x1500", 2000, 1500, False, 900),
    ("2000x1500", 2000, 1500, True, 400),
    ("2000x1500", 2000, 1500, False, 400),
]


def _one(width: int, height: int, fast: bool, L: int, threads: int, budget: float, batch: int) -> dict:
    """Run one setting in this process; returns the measurement dict."""
    import resource

    import numpy as np
    import torch

    from steadyseg.refine.cascadepsp.network import build_cascadepsp_net
    from steadyseg.refine.cascadepsp.refiner import CascadePSPRefiner, plan_patches

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), dtype=bool)
    mask[height // 4:3 * height // 4, width // 5:4 * width // 5] = True
    ref = CascadePSPRefiner(model=build_cascadepsp_net(), device="cpu", patch_batch_size=batch, skip_low=0.0,
                            skip_high=1.0)
    rss_model = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res = {"width": width, "height": height, "fast": fast, "L": L, "threads": threads, "patch_batch_size": batch}
    # Time the global step alone (it is also the whole of fast mode).
    t0 = time.perf_counter()
    ref.refine(image, mask, fast=True, L=L)
    t_global = time.perf_counter() - t0
    res["global_s"] = round(t_global, 2)
    if fast:
        res.update(seconds=round(t_global, 2), extrapolated=False)
    else:
        patches = plan_patches(height, width, L)
        res["patches"] = len(patches)
        # Per-batch cost of the local step, measured on the first batches until the budget is spent.
        with torch.inference_mode():
            im, seg = ref._to_tensors(image, mask)  # noqa: SLF001 - benchmark reaches into the steps
            glob = ref._global(im, seg, L)  # noqa: SLF001
            h, w = height, width
            import torch.nn.functional as F

            r224 = (F.interpolate(glob["pred_224"], size=(h, w), mode="bilinear") > 0.5).float() * 2 - 1
            r56 = F.interpolate(glob["pred_56_2"], size=(h, w), mode="bilinear") * 2 - 1
            done, t_local = 0, 0.0
            for i in range(0, len(patches), batch):
                bp = patches[i:i + batch]
                t1 = time.perf_counter()
                ref._forward(torch.cat([im[..., p.y0:p.y1, p.x0:p.x1] for p in bp]),  # noqa: SLF001
                             torch.cat([r224[..., p.y0:p.y1, p.x0:p.x1] for p in bp]),
                             inter_s8=torch.cat([r56[..., p.y0:p.y1, p.x0:p.x1] for p in bp]))
                t_local += time.perf_counter() - t1
                done += len(bp)
                if t_global + t_local > budget and done < len(patches):
                    break
        per_patch = t_local / max(done, 1)
        res.update(patches_timed=done, seconds_per_patch=round(per_patch, 2),
                   seconds=round(t_global + per_patch * len(patches), 2), extrapolated=done < len(patches))
    res["model_rss_mb"] = round(rss_model)
    res["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=180.0, help="seconds per setting before extrapolating")
    parser.add_argument("--patch-batch-size", type=int, default=1)
    parser.add_argument("--only", help="comma-separated indices of SETTINGS to run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        w, h, fast, L = json.loads(args.child)
        print(json.dumps(_one(w, h, fast, L, args.threads, args.budget, args.patch_batch_size)))
        return 0
    idx = range(len(SETTINGS)) if not args.only else [int(i) for i in args.only.split(",")]
    results = []
    for i in idx:
        name, w, h, fast, L = SETTINGS[i]
        cmd = [sys.executable, os.path.abspath(__file__), "--threads", str(args.threads), "--budget",
               str(args.budget), "--patch-batch-size", str(args.patch_batch_size),
               "--child", json.dumps([w, h, fast, L])]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(f"{name} fast={fast} L={L}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            results.append({"width": w, "height": h, "fast": fast, "L": L, "error": proc.stderr[-500:]})
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        extra = f", {r['patches']} patches ({r['patches_timed']} timed)" if "patches" in r else ""
        print(f"{name:>9} {'fast' if fast else 'full'} L={L}: {r['seconds']:.1f} s/image"
              f"{' (extrapolated)' if r['extrapolated'] else ''}, peak RSS {r['peak_rss_mb']} MB{extra}",
              flush=True)
    if args.json:
        from steadyseg.files import atomic_write_json

        atomic_write_json(args.json, {"device": "cpu", "cpu_count": os.cpu_count(), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
