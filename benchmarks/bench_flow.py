"""Benchmark the flow backends and the flow cache on a 480p DAVIS pair.

    python benchmarks/bench_flow.py [--data ../shared/data] [--sequence blackswan] [--repeats 5]
        [--threads N] [--raft-weights FILE --device cuda] [--json out.json]

Prints ms per pair (median over repeats, after one warm-up) for DIS ultrafast/fast/medium, Farneback and
optionally RAFT (local weights only), the end-point difference of each backend against DIS-medium, the end-point
error against the EXACT flow of a synthetic 240x320 moving-shapes pair (pixels 8 px or more from the border), and
the cache's write and read time per pair (float32 and float16 entries).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from steadyseg.datasets.flow import FlowCache, compute_flow, flow_cache_key
from steadyseg.datasets.synthetic import make_moving_shapes_video
from steadyseg.datasets.video import open_video
from steadyseg.files import atomic_write_json

REPO = Path(__file__).resolve().parents[1]


def _time(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up (allocations, model load)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("STEADYSEG_SHARED_DATA", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--sequence", default="blackswan")
    parser.add_argument("--frame", type=int, default=10, help="pair (frame, frame + 1)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="cv2.setNumThreads (default: OpenCV's choice)")
    parser.add_argument("--raft-weights", default=None, help="local torchvision RAFT state dict (optional)")
    parser.add_argument("--raft-model", default="raft_small")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, metavar="PATH")
    args = parser.parse_args(argv)

    if args.threads is not None:
        cv2.setNumThreads(args.threads)
    frames = open_video(Path(args.data) / "davis2016" / "JPEGImages" / "480p" / args.sequence)
    a, b = frames[args.frame], frames[args.frame + 1]
    h, w = frames.size
    rows: list[dict] = []
    synth = make_moving_shapes_video(num_frames=2, height=240, width=320, num_objects=3, seed=0)
    exact = synth.flows(0, 1)
    ref = None
    configs = [("dis", "ultrafast"), ("dis", "fast"), ("dis", "medium"), ("farneback", None)]
    if args.raft_weights:
        configs.append(("raft", None))
    for backend, preset in configs:
        kwargs = {"backend": backend}
        if preset:
            kwargs["preset"] = preset
        if backend == "raft":
            kwargs.update(raft_weights=args.raft_weights, raft_model=args.raft_model, device=args.device)
        ms, flow = _time(lambda: compute_flow(a, b, **kwargs), args.repeats)
        if (backend, preset) == ("dis", "medium"):
            ref = flow
        est = compute_flow(synth.frames[0], synth.frames[1], **kwargs)
        epe_exact = float(np.hypot(*(est - exact).transpose(2, 0, 1))[8:-8, 8:-8].mean())
        rows.append({"what": f"{backend}" + (f" {preset}" if preset else ""), "ms_per_pair": ms, "flow": flow,
                     "synthetic_epe_vs_exact_px": epe_exact})
    for r in rows:
        flow = r.pop("flow")
        r["mean_epe_vs_dis_medium_px"] = float(np.hypot(*(flow - ref).transpose(2, 0, 1)).mean())
        r["mean_magnitude_px"] = float(np.hypot(flow[..., 0], flow[..., 1]).mean())

    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("float32", "float16"):
            cache = FlowCache(Path(tmp) / dtype, dtype=dtype)
            keys = [flow_cache_key(f"a{i}", "b", {"bench": dtype}) for i in range(args.repeats + 1)]
            it = iter(keys)
            ms_w, _ = _time(lambda: cache.put(next(it), ref), args.repeats)
            ms_r, got = _time(lambda: cache.get(keys[0], shape=(h, w)), args.repeats)
            assert got is not None
            size = cache.path(keys[0]).stat().st_size
            rows.append({"what": f"cache write {dtype}", "ms_per_pair": ms_w, "bytes_per_pair": size})
            rows.append({"what": f"cache read {dtype}", "ms_per_pair": ms_r, "bytes_per_pair": size,
                         "max_abs_error_px": float(np.abs(got - ref).max())})

    env = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "opencv": cv2.__version__,
           "cv2_threads": cv2.getNumThreads(), "python": sys.version.split()[0],
           "pair": f"{args.sequence} {args.frame}->{args.frame + 1}", "size_hw": [h, w], "repeats": args.repeats}
    print(f"flow benchmark, {args.sequence} {w}x{h}, frames {args.frame}->{args.frame + 1}, "
          f"median of {args.repeats}, OpenCV threads {cv2.getNumThreads()}")
    print(f"{'what':<22} {'ms/pair':>9} {'EPE vs DIS-med':>15} {'EPE synthetic':>14} {'MB/pair':>8}")
    for r in rows:
        epe = r.get("mean_epe_vs_dis_medium_px", r.get("max_abs_error_px"))
        mb = r.get("bytes_per_pair")
        syn = r.get("synthetic_epe_vs_exact_px")
        print(f"{r['what']:<22} {r['ms_per_pair']:>9.1f} {'' if epe is None else f'{epe:.3f}':>15} "
              f"{'' if syn is None else f'{syn:.3f}':>14} "
              f"{'' if mb is None else f'{mb / 1e6:.2f}':>8}")
    if args.json:
        atomic_write_json(args.json, {"environment": env, "results": rows})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
