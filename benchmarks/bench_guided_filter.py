"""Speed of the (weighted) guided filter: frames per second per class at 854x480 on this CPU.

Measures the streaming :class:`GuidedFilter3d` (what ``steadyseg postprocess wgf`` runs) for 2D and 3D, gray and
colour guides, plain and weighted, and the dependence on the spatial radius r and the temporal radius rt.

    python benchmarks/bench_guided_filter.py [--frames 40] [--repeat 3] [--threads 1] [--quick] [--ab REV]
        [--tile-rows N] [--json out.json]

Each configuration runs ``--repeat`` times and the fastest run is reported (wall and CPU time separately): on a
shared machine the minimum is the least disturbed estimate.

``--ab REV`` also times the implementation of ``refine/postprocess/guided_filter.py`` at the git revision REV
(e.g. ``HEAD`` before a change is committed), loaded from ``git show`` into its own module: the two run interleaved
(old, new, new, old, ...) on the same input so that both see the same machine load, and the report adds the old
timings, the speed-up and the largest difference between the two outputs.

``--threads`` sets ``cv2.setNumThreads`` (default 1: the speed of one core; 0 = OpenCV's default, all cores).
Synthetic input; numbers depend on the machine, so the JSON records the CPU count and OpenCV threads.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np

from steadyseg.files import atomic_write_json

REPO = Path(__file__).resolve().parents[1]
MODULE_PATH = "refine/postprocess/guided_filter.py"


def _inputs(n_frames: int, height: int, width: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    frames = rng.random((n_frames, height, width, 3), dtype=np.float32)
    probs = cv2.GaussianBlur(rng.random((height, width), dtype=np.float32), (0, 0), 8)
    probs = (probs - probs.min()) / (probs.max() - probs.min())
    return frames, probs


def load_revision(rev: str) -> ModuleType:
    """The guided-filter module as it was at git revision ``rev`` (its own module object, not the installed one)."""
    text = subprocess.run(["git", "show", f"{rev}:{MODULE_PATH}"], cwd=REPO, capture_output=True, text=True)
    if text.returncode != 0:
        raise ValueError(f"--ab {rev}: cannot read {MODULE_PATH} at that revision: {text.stderr.strip()}")
    path = Path(tempfile.mkdtemp(prefix="bench-gf-")) / f"guided_filter_{rev.replace('/', '_')}.py"
    path.write_text(text.stdout)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def time_filter(module: ModuleType, frames, prob, *, radius, temporal_radius, eps, colour, weighted, warmup=3
                ) -> tuple[float, float, np.ndarray]:
    """(wall, CPU) seconds per frame for one class, streaming, steady state (the flush at the end is included),
    and the last output frame (to compare implementations).

    CPU time is this process's (all threads); on a shared machine it is the steadier of the two.
    """
    gf = module.GuidedFilter3d(radius=radius, eps=eps, temporal_radius=temporal_radius)
    guides = frames if colour else frames.mean(-1)
    w = module.confidence_weights(prob) if weighted else None
    for t in range(warmup):
        gf.step(guides[t], prob, weights=w)
    gf.reset()
    start, cpu_start = time.perf_counter(), time.process_time()
    outs = []
    for g in guides:
        q = gf.step(g, prob, weights=w)
        if q is not None:
            outs.append(q)
    outs += gf.flush()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    assert len(outs) == len(guides)
    return wall / len(guides), cpu / len(guides), np.stack(outs[len(outs) // 2:len(outs) // 2 + 3])


def configs(quick: bool) -> list[dict]:
    """The paper's kernels (spatial 8, temporal 4 ~ rt 2) for 2D / 3D, gray / colour, plain / weighted; then the
    dependence on the radii (colour, weighted). ``quick``: only r 8, rt 2."""
    out = []
    for colour in (False, True):
        for weighted in (False, True):
            for rt in ((2,) if quick else (0, 2)):
                out.append(dict(radius=8, temporal_radius=rt, colour=colour, weighted=weighted))
    if not quick:
        for r, rt in [(2, 2), (4, 2), (16, 2), (8, 1), (8, 4)]:
            out.append(dict(radius=r, temporal_radius=rt, colour=True, weighted=True))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=854)
    ap.add_argument("--repeat", type=int, default=3, help="runs per configuration; the fastest is reported")
    ap.add_argument("--threads", type=int, default=1, help="cv2.setNumThreads (default 1 core; 0 = OpenCV's default)")
    ap.add_argument("--quick", action="store_true", help="only the paper's kernels r 8, rt 2")
    ap.add_argument("--ab", default=None, metavar="REV", help="also time the implementation at git revision REV")
    ap.add_argument("--tile-rows", type=int, default=None,
                    help="override the new implementation's row tile (_TILE_ROWS) to try other cache sizes")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    cv2.setNumThreads(args.threads)
    new = importlib.import_module("steadyseg.refine.postprocess.guided_filter")
    if args.tile_rows:
        new._TILE_ROWS = args.tile_rows  # noqa: SLF001 - a tuning knob of this benchmark
    old = load_revision(args.ab) if args.ab else None
    frames, prob = _inputs(args.frames, args.height, args.width)
    results = []
    print(f"{args.width}x{args.height}, {args.frames} frames, cv2 threads {cv2.getNumThreads()}, "
          f"{os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, load {os.getloadavg()}")
    head = f"{'guide':>6} {'weighted':>8} {'r':>3} {'rt':>3} {'ms/frame':>9} {'fps/class':>10} {'cpu ms':>7}"
    print(head + (f" {'old ms':>7} {'old fps':>8} {'old cpu':>7} {'speed-up wall/cpu':>17} {'max|diff|':>9}"
                  if old else ""))
    for cfg in configs(args.quick):
        runs = {"new": [], "old": []}
        outputs = {}
        for i in range(max(1, args.repeat)):
            order = [("new", new), ("old", old)] if i % 2 == 0 else [("old", old), ("new", new)]
            for name, module in order:
                if module is None:
                    continue
                wall, cpu, out = time_filter(module, frames, prob, eps=1e-3, **cfg)
                runs[name].append((wall, cpu))
                outputs[name] = out
        sec, cpu = min(r[0] for r in runs["new"]), min(r[1] for r in runs["new"])
        row = dict(cfg, ms_per_frame=1e3 * sec, fps_per_class=1.0 / sec, cpu_ms_per_frame=1e3 * cpu)
        line = (f"{'colour' if cfg['colour'] else 'gray':>6} {str(cfg['weighted']):>8} {cfg['radius']:>3} "
                f"{cfg['temporal_radius']:>3} {1e3 * sec:9.1f} {1.0 / sec:10.1f} {1e3 * cpu:7.1f}")
        if old is not None:
            sec_old, cpu_old = min(r[0] for r in runs["old"]), min(r[1] for r in runs["old"])
            diff = float(np.abs(outputs["new"] - outputs["old"]).max())
            row.update(ms_per_frame_old=1e3 * sec_old, fps_per_class_old=1.0 / sec_old,
                       cpu_ms_per_frame_old=1e3 * cpu_old, speedup=sec_old / sec, speedup_cpu=cpu_old / cpu,
                       max_abs_diff_vs_old=diff)
            line += (f" {1e3 * sec_old:7.1f} {1.0 / sec_old:8.1f} {1e3 * cpu_old:7.1f} "
                     f"{sec_old / sec:8.2f}/{cpu_old / cpu:<8.2f} {diff:9.1e}")
        results.append(row)
        print(line, flush=True)
    if args.json:
        atomic_write_json(args.json, dict(width=args.width, height=args.height, frames=args.frames,
                                          repeat=args.repeat, ab_revision=args.ab,
                                          tile_rows=getattr(new, "_TILE_ROWS", None),
                                          cv2_threads=cv2.getNumThreads(), cpu_count=os.cpu_count(),
                                          omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
                                          processor=platform.processor(), results=results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
