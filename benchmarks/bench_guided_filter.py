"""Speed of the (weighted) guided filter: frames per second per class at 854x480 on this CPU.

Measures the streaming :class:`GuidedFilter3d` (what ``steadyseg postprocess wgf`` runs) for 2D and 3D, gray and
colour guides, plain and weighted, and the dependence on the spatial radius r and the temporal radius rt.

    python benchmarks/bench_guided_filter.py [--frames 40] [--repeat 3] [--threads 0] [--json out.json]

Each configuration runs ``--repeat`` times and the fastest run is reported (wall and CPU time separately): on a
shared machine the minimum is the least disturbed estimate.

``--threads`` sets ``cv2.setNumThreads`` (0 = OpenCV's default, all cores). Synthetic input; numbers depend on
the machine, so the JSON records the CPU count and OpenCV threads.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import cv2
import numpy as np

from steadyseg.files import atomic_write_json
from steadyseg.refine.postprocess.guided_filter import GuidedFilter3d, confidence_weights


def _inputs(n_frames: int, height: int, width: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    frames = rng.random((n_frames, height, width, 3), dtype=np.float32)
    probs = cv2.GaussianBlur(rng.random((height, width), dtype=np.float32), (0, 0), 8)
    probs = (probs - probs.min()) / (probs.max() - probs.min())
    return frames, probs


def time_filter(frames, prob, *, radius, temporal_radius, eps, colour, weighted, warmup=3) -> tuple[float, float]:
    """(wall, CPU) seconds per frame for one class, streaming, steady state (the flush at the end is included).

    CPU time is this process's (all threads); on a shared machine it is the steadier of the two.
    """
    gf = GuidedFilter3d(radius=radius, eps=eps, temporal_radius=temporal_radius)
    guides = frames if colour else frames.mean(-1)
    w = confidence_weights(prob) if weighted else None
    for t in range(warmup):
        gf.step(guides[t], prob, weights=w)
    gf.reset()
    start, cpu_start = time.perf_counter(), time.process_time()
    n = 0
    for g in guides:
        n += gf.step(g, prob, weights=w) is not None
    n += len(gf.flush())
    assert n == len(guides)
    return (time.perf_counter() - start) / len(guides), (time.process_time() - cpu_start) / len(guides)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=854)
    ap.add_argument("--repeat", type=int, default=3, help="runs per configuration; the fastest is reported")
    ap.add_argument("--threads", type=int, default=0, help="cv2.setNumThreads (0 = default)")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    if args.threads:
        cv2.setNumThreads(args.threads)
    frames, prob = _inputs(args.frames, args.height, args.width)
    configs = []
    # the paper's kernels (spatial 8, temporal 4 ~ rt 2) for 2D / 3D, gray / colour, plain / weighted
    for colour in (False, True):
        for weighted in (False, True):
            for rt in (0, 2):
                configs.append(dict(radius=8, temporal_radius=rt, colour=colour, weighted=weighted))
    # independence from the radii (colour, weighted: the default of `steadyseg postprocess wgf`)
    for r, rt in [(2, 2), (16, 2), (8, 1), (8, 8)]:
        configs.append(dict(radius=r, temporal_radius=rt, colour=True, weighted=True))
    results = []
    print(f"{args.width}x{args.height}, {args.frames} frames, cv2 threads {cv2.getNumThreads()}, "
          f"{os.cpu_count()} CPUs")
    print(f"{'guide':>6} {'weighted':>8} {'r':>3} {'rt':>3} {'ms/frame':>9} {'fps/class':>10} {'cpu ms':>7}")
    for cfg in configs:
        runs = [time_filter(frames, prob, eps=1e-3, **cfg) for _ in range(max(1, args.repeat))]
        sec, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
        row = dict(cfg, ms_per_frame=1e3 * sec, fps_per_class=1.0 / sec, cpu_ms_per_frame=1e3 * cpu)
        results.append(row)
        print(f"{'colour' if cfg['colour'] else 'gray':>6} {str(cfg['weighted']):>8} {cfg['radius']:>3} "
              f"{cfg['temporal_radius']:>3} {1e3 * sec:9.1f} {1.0 / sec:10.1f} {1e3 * cpu:7.1f}")
    if args.json:
        atomic_write_json(args.json, dict(width=args.width, height=args.height, frames=args.frames,
                                          repeat=args.repeat,
                                          cv2_threads=cv2.getNumThreads(), cpu_count=os.cpu_count(),
                                          processor=platform.processor(), results=results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
