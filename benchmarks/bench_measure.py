"""Benchmark of ``steadyseg measure``'s core: the flow inconsistency on a real 480p DAVIS sequence, and its memory.

1. Speed on a DAVIS-2016 sequence (854×480), K = 3, DIS ``--preset`` (the measure's default, fast), OSVOS masks:
   - cold: empty temporary flow cache → ``FlowProvider.precompute`` (``--workers``) + ``inconsistency``;
   - cached: the same again with the cache filled (flows read from disk);
   - compute only: flows already in memory (no disk, no flow), i.e. the measure's own arithmetic.
   Reports frames per second (wall), CPU time (``time.process_time`` of this process, its threads included, plus
   the flow workers' CPU time from ``precompute``) and "CPU fps" = frames / CPU seconds × cores (what the machine
   would give with nobody else on it), the share of the cold time spent outside the flow computation (wall and
   CPU), and the wall / CPU milliseconds per flow read from the cache.
2. The whole command (``steadyseg measure``'s library call :func:`steadyseg.measure_video.measure_video`, with TC,
   E_smooth and the ground truth's values when ``--gt``): cold (empty flow cache: flows, validity masks, measures)
   and cached (validity masks and nearest sampling maps read from the cache, no flow read), ``--repeats`` times
   each (best and median fps reported), wall and CPU, interleaved with "cached_flows" (the same warm run reading
   the float flows instead of the sampling maps: the path before the maps were cached, for an A/B on one machine
   state); ``--masks-copies N`` also times N mask videos in one call (``measure_videos``).
3. Memory on a long synthetic 480p video generated lazily (a ``Sequence`` that draws mask ``i`` on demand: a
   jittered moving rectangle) with its exact flow (a callable returning a constant translation): peak traced
   memory (``tracemalloc``, numpy buffers included) of ``inconsistency`` for ``--mem-frames`` lengths, each in a
   fresh subprocess that also reports its peak RSS. Memory must not grow with the length.

Usage::

    python benchmarks/bench_measure.py --sequence blackswan --json bench_measure.json
    python benchmarks/bench_measure.py --skip-speed --mem-frames 200 1000
    OMP_NUM_THREADS=1 python benchmarks/bench_measure.py --skip-speed --mem-frames --sequence blackswan \
        --max-frames 50 --workers 1 --json bench_command.json      # the command only: cold and cached fps

The machine is shared; wall numbers depend on its load (``os.getloadavg`` is recorded); compare CPU numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("STEADYSEG_SHARED_DATA", REPO.parent / "shared" / "data"))


def bench_speed(sequence: str, *, preset: str, window: int, workers: int, max_frames: int | None) -> dict:
    from steadyseg.datasets.flow import FlowProvider, window_pairs
    from steadyseg.datasets.masks import open_masks
    from steadyseg.datasets.video import open_video
    from steadyseg.measures import inconsistency

    video = open_video(DATA / "davis2016" / "JPEGImages" / "480p" / sequence, max_frames=max_frames)
    masks = open_masks(DATA / "davis2017-osvos" / sequence, binary=True, max_frames=len(video))
    n = len(video)
    for i in range(n):  # decode + hash every frame once, so both runs pay the same for keys
        video.content_hash(i)
    pairs = window_pairs(n, window)
    out: dict = {"sequence": sequence, "frames": n, "size": list(video.size), "window": window, "preset": preset,
                 "workers": workers, "measure_threads": workers, "flow_pairs": len(pairs)}
    ncpu = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="bench-flow-") as cache:
        prov = FlowProvider(video, backend="dis", preset=preset, cache_dir=cache, n_jobs=workers)
        t0, c0 = time.perf_counter(), time.process_time()
        stats = prov.precompute(pairs, progress=False)
        t_flow, c_flow_main = time.perf_counter() - t0, time.process_time() - c0
        c_flow = stats["cpu_seconds_workers"] + c_flow_main
        t0, c0 = time.perf_counter(), time.process_time()
        r_cold = inconsistency(masks, prov, window=window, threads=workers)
        t_meas, c_meas = time.perf_counter() - t0, time.process_time() - c0
        cold, c_cold = t_flow + t_meas, c_flow + c_meas
        out["cold"] = {"seconds": cold, "fps": n / cold, "flow_seconds": t_flow, "measure_seconds": t_meas,
                       "share_outside_flow": t_meas / cold, "flow_pairs_per_s": len(pairs) / t_flow,
                       "flow_compute_seconds_in_workers": stats.get("seconds_computing"),
                       "cpu_seconds": c_cold, "flow_cpu_seconds": c_flow, "measure_cpu_seconds": c_meas,
                       "cpu_ms_per_flow": 1000 * c_flow / len(pairs),
                       "share_outside_flow_cpu": c_meas / c_cold,
                       "fps_cpu_1core": n / c_cold, f"fps_cpu_{ncpu}cores": ncpu * n / c_cold}

        prov2 = FlowProvider(video, backend="dis", preset=preset, cache_dir=cache, n_jobs=workers)
        t0, c0 = time.perf_counter(), time.process_time()
        prov2.precompute(pairs, progress=False)
        r_cached = inconsistency(masks, prov2, window=window, threads=workers)
        t_cached, c_cached = time.perf_counter() - t0, time.process_time() - c0
        assert r_cached.e_raw == r_cold.e_raw
        out["cached"] = {"seconds": t_cached, "fps": n / t_cached, "cpu_seconds": c_cached,
                         "fps_cpu_1core": n / c_cached, f"fps_cpu_{ncpu}cores": ncpu * n / c_cached}

        t0, c0 = time.perf_counter(), time.process_time()
        flows = {pq: prov2(*pq) for pq in pairs}
        t_read, c_read = time.perf_counter() - t0, time.process_time() - c0
        out["cache_read"] = {"seconds": t_read, "flows_per_s": len(pairs) / t_read,
                             "ms_per_flow": 1000 * t_read / len(pairs), "cpu_ms_per_flow": 1000 * c_read / len(pairs)}
    mem_masks = [masks[i] for i in range(n)]
    t0, c0 = time.perf_counter(), time.process_time()
    r_mem = inconsistency(mem_masks, lambda p, q: flows[(p, q)], window=window, threads=workers)
    t_cpu, c_cpu = time.perf_counter() - t0, time.process_time() - c0
    out["compute_only"] = {"seconds": t_cpu, "fps": n / t_cpu, "cpu_seconds": c_cpu,
                           "ms_per_direction": 1000 * t_cpu / len(pairs),
                           "cpu_ms_per_direction": 1000 * c_cpu / len(pairs),
                           "fps_cpu_1core": n / c_cpu, f"fps_cpu_{ncpu}cores": ncpu * n / c_cpu}
    out["e_raw"], out["e_cons"] = r_mem.e_raw, r_mem.e_cons
    return out


@contextlib.contextmanager
def _sampling_maps(*, enabled: bool):
    """A/B switch of this benchmark only: with ``enabled=False`` the measure does not see the cache's nearest
    sampling maps and reads and adds the float flows (the code path before the maps were cached)."""
    from steadyseg.datasets.flow import FlowProvider

    saved = FlowProvider.get_nearest_map
    if not enabled:
        FlowProvider.get_nearest_map = None
    try:
        yield
    finally:
        FlowProvider.get_nearest_map = saved


def bench_command(sequence: str, *, preset: str, window: int, workers: int, max_frames: int | None,
                  repeats: int, gt: bool, masks_copies: int) -> dict:
    """fps of :func:`steadyseg.measure_video.measure_video` (what ``steadyseg measure`` runs) with an empty cache
    (cold) and with every flow and validity mask cached, each ``repeats`` times (a fresh cache per cold run)."""
    import statistics

    from steadyseg.measure_video import measure_video, measure_videos

    frames = DATA / "davis2016" / "JPEGImages" / "480p" / sequence
    kw = {"frames": frames, "masks": DATA / "davis2017-osvos" / sequence, "window": window, "preset": preset,
          "workers": workers, "max_frames": max_frames, "progress": False, "binary": True,
          "gt": (DATA / "davis2016" / "Annotations" / "480p" / sequence) if gt else None}
    out: dict = {"sequence": sequence, "window": window, "preset": preset, "workers": workers, "gt": gt,
                 "repeats": repeats}

    def timed(**extra):
        t0, c0 = time.perf_counter(), time.process_time()
        res = measure_video(**kw, **extra)
        return time.perf_counter() - t0, time.process_time() - c0, res

    runs: dict[str, list] = {"cold": [], "cached": [], "cached_flows": []}
    reference = None
    with tempfile.TemporaryDirectory(prefix="bench-measure-") as tmp:
        for r in range(repeats):
            cache = Path(tmp) / f"cold{r}"
            secs, cpu, res = timed(cache=cache)
            runs["cold"].append((secs, cpu, res["timing"]))
            n = res["num_frames"]
            if reference is None:
                reference = res
        for _ in range(repeats):  # interleaved: warm with the sampling maps, then the same reading the float flows
            for name in ("cached", "cached_flows"):
                with _sampling_maps(enabled=name == "cached"):
                    secs, cpu, res = timed(cache=Path(tmp) / "cold0")
                assert res["timing"]["flow_pairs_computed"] == 0 and res["timing"]["valid_masks_computed"] == 0
                assert res["timing"]["flows_read"] == (0 if name == "cached" else res["timing"]["flow_pairs_cached"])
                assert res["inconsistency_raw"] == reference["inconsistency_raw"] and res["tc"] == reference["tc"]
                runs[name].append((secs, cpu, res["timing"]))
        if masks_copies > 1:
            t0 = time.perf_counter()
            many = measure_videos(**{**kw, "masks": [kw["masks"]] * masks_copies}, cache=Path(tmp) / "cold0")
            t_many = time.perf_counter() - t0
            assert all(m["inconsistency_raw"] == reference["inconsistency_raw"] for m in many)
            out["several_masks"] = {"copies": masks_copies, "seconds": t_many,
                                    "mask_videos_per_s": masks_copies * n / t_many,
                                    "seconds_per_extra_masks": (t_many - statistics.median(
                                        s for s, _, _ in runs["cached"])) / (masks_copies - 1)}
    out["frames"] = n
    out["size"] = [reference["height"], reference["width"]]
    for name, rows in runs.items():
        fps = [n / s for s, _, _ in rows]
        out[name] = {"fps_best": max(fps), "fps_median": statistics.median(fps), "seconds": [s for s, _, _ in rows],
                     "cpu_seconds": [c for _, c, _ in rows], "fps_cpu_best": max(n / c for _, c, _ in rows),
                     "timing": [t for _, _, t in rows]}
    out["e_raw"], out["e_cons"], out["tc"] = reference["inconsistency_raw"], reference["inconsistency"], reference["tc"]
    return out


from steadyseg.datasets.davis import DAVIS2016_SEQUENCES as SEQUENCES  # noqa: E402 - one list for all


def davis_table(*, preset: str, window: int, workers: int, max_frames: int | None, cache: str | None) -> list[dict]:
    """E_raw / E_cons (GT-normalised), E_smooth, IoU and F of OSVOS and of the ground truth on the 8 sequences."""
    from steadyseg.accuracy import davis_scores
    from steadyseg.datasets.flow import FlowProvider, window_pairs
    from steadyseg.datasets.masks import open_masks
    from steadyseg.datasets.video import open_video
    from steadyseg.measures import inconsistency, median_boundary, smoothness

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-flow-") as tmp:
        for seq in SEQUENCES:
            video = open_video(DATA / "davis2016" / "JPEGImages" / "480p" / seq, max_frames=max_frames)
            n = len(video)
            gt = open_masks(DATA / "davis2016" / "Annotations" / "480p" / seq, binary=True, max_frames=n)
            pred = open_masks(DATA / "davis2017-osvos" / seq, binary=True, max_frames=n)
            prov = FlowProvider(video, backend="dis", preset=preset, cache_dir=cache or tmp, n_jobs=workers)
            prov.precompute(window_pairs(n, window), progress=False)
            norm = median_boundary(gt)
            r_gt = inconsistency(gt, prov, window=window, normalizer=norm)
            r_pr = inconsistency(pred, prov, window=window, normalizer=norm)
            acc = davis_scores(pred, gt, binary=True)
            rows.append({"sequence": seq, "frames": n, "gt_e_raw": r_gt.e_raw, "gt_e_cons": r_gt.e_cons,
                         "osvos_e_raw": r_pr.e_raw, "osvos_e_cons": r_pr.e_cons,
                         "gt_smooth": smoothness(gt, normalizer=norm), "osvos_smooth": smoothness(pred, normalizer=norm),
                         "osvos_j": acc["J_mean"], "osvos_f": acc["F_mean"]})
            r = rows[-1]
            print(f"  {seq:15s} GT E_raw {r['gt_e_raw']:.4f}  OSVOS E_raw {r['osvos_e_raw']:.4f}  "
                  f"(E_cons {r['gt_e_cons']:.2f} vs {r['osvos_e_cons']:.2f}; E_smooth {r['gt_smooth']:.3f} vs "
                  f"{r['osvos_smooth']:.3f}; OSVOS J {r['osvos_j']:.3f} F {r['osvos_f']:.3f})", flush=True)
    return rows


class LazyMasks(Sequence):
    """Mask i of a synthetic 480p video, drawn on demand: a rectangle moving +2 px/frame in x, jittered ±1 px."""

    def __init__(self, n: int, h: int = 480, w: int = 854):
        self.n, self.h, self.w = n, h, w

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        rng = np.random.default_rng(i)
        m = np.zeros((self.h, self.w), np.uint8)
        x0 = 100 + (2 * i) % (self.w - 400) + int(rng.integers(-1, 2))
        m[120:360, x0:x0 + 200] = 1
        return m


def _mem_child(n: int, window: int) -> dict:
    import tracemalloc

    from steadyseg.measures import inconsistency

    h, w = 480, 854

    def flows(p, q):
        f = np.zeros((h, w, 2), np.float32)
        f[..., 0] = 2.0 * (q - p)  # exact apart from the wrap-around, which the out-of-frame test removes
        return f

    tracemalloc.start()
    t0 = time.perf_counter()
    r = inconsistency(LazyMasks(n, h, w), flows, window=window)
    secs = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"frames": n, "seconds": secs, "fps": n / secs, "tracemalloc_peak_mb": peak / 2**20,
            "max_rss_mb": _peak_rss_mb(), "e_raw": r.e_raw}


def _peak_rss_mb() -> float:
    """Peak resident set of this process (``VmHWM``; ``ru_maxrss`` would inherit the parent's peak across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_memory(lengths: list[int], window: int) -> list[dict]:
    rows = []
    for n in lengths:
        res = subprocess.run([sys.executable, __file__, "--_mem-child", str(n), "--mem-window", str(window)],
                             check=True, capture_output=True, text=True)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequence", default="blackswan")
    from steadyseg.measure_video import MEASURE_PRESET

    ap.add_argument("--preset", default=MEASURE_PRESET, choices=("ultrafast", "fast", "medium"),
                    help=f"DIS preset of every flow (default {MEASURE_PRESET}, the measure's)")
    ap.add_argument("--window", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--mem-frames", type=int, nargs="*", default=[200, 1000])
    ap.add_argument("--mem-window", type=int, default=1, help="K for the memory runs (memory is about length)")
    ap.add_argument("--skip-speed", action="store_true", help="skip the core benchmark (inconsistency alone)")
    ap.add_argument("--skip-command", action="store_true", help="skip the whole-command benchmark (cold / cached)")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each whole-command case (cold, cached)")
    ap.add_argument("--no-gt", action="store_true", help="whole command without --gt (no accuracy, no GT floor)")
    ap.add_argument("--masks-copies", type=int, default=3,
                    help="also time N copies of the masks in one measure_videos call (1: skip)")
    ap.add_argument("--davis-table", action="store_true", help="OSVOS vs ground truth on the 8 DAVIS sequences")
    ap.add_argument("--cache", default=None, help="flow cache for --davis-table (default: temporary)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--_mem-child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._mem_child is not None:
        print(json.dumps(_mem_child(args._mem_child, args.mem_window)))
        return 0
    result: dict = {"cpu_count": os.cpu_count(), "loadavg_start": os.getloadavg()}
    if not args.skip_speed:
        sp = bench_speed(args.sequence, preset=args.preset, window=args.window, workers=args.workers,
                         max_frames=args.max_frames)
        result["speed"] = sp
        print(f"{sp['sequence']}: {sp['frames']} frames {sp['size'][1]}x{sp['size'][0]}, K={sp['window']}, "
              f"DIS {sp['preset']}, {sp['flow_pairs']} flows, {sp['workers']} workers")
        c, k = sp["cold"], f"fps_cpu_{result['cpu_count']}cores"
        print(f"  (load average at start {result['loadavg_start'][0]:.1f}; 'CPU fps' = frames / CPU seconds x "
              f"{result['cpu_count']} cores, i.e. what an idle machine would give with perfect overlap)")
        print(f"  cold   : {c['fps']:6.2f} fps wall, {c[k]:6.2f} fps CPU ({c['seconds']:.1f} s; flow "
              f"{c['flow_seconds']:.1f} s = {c['flow_pairs_per_s']:.1f} pairs/s, {c['cpu_ms_per_flow']:.0f} ms CPU per "
              f"flow; measure {c['measure_seconds']:.1f} s; outside flow {100 * c['share_outside_flow']:.0f} % "
              f"of wall, {100 * c['share_outside_flow_cpu']:.0f} % of CPU)")
        cr = sp["cache_read"]
        print(f"  cached : {sp['cached']['fps']:6.2f} fps wall, {sp['cached'][k]:6.2f} fps CPU "
              f"({sp['cached']['seconds']:.1f} s; cache reads {cr['ms_per_flow']:.2f} ms wall, "
              f"{cr['cpu_ms_per_flow']:.2f} ms CPU per flow)")
        co = sp["compute_only"]
        print(f"  compute: {co['fps']:6.2f} fps wall, {co[k]:6.2f} fps CPU (flows in memory; "
              f"{co['ms_per_direction']:.1f} ms wall, {co['cpu_ms_per_direction']:.1f} ms CPU per direction)")
    if not args.skip_command:
        cm = bench_command(args.sequence, preset=args.preset, window=args.window, workers=args.workers,
                           max_frames=args.max_frames, repeats=args.repeats, gt=not args.no_gt,
                           masks_copies=args.masks_copies)
        result["command"] = cm
        print(f"measure_video (steadyseg measure): {cm['sequence']}, {cm['frames']} frames {cm['size'][1]}x"
              f"{cm['size'][0]}, K={cm['window']}, DIS {cm['preset']}, {cm['workers']} workers, "
              f"{'with' if cm['gt'] else 'without'} --gt, best / median of {cm['repeats']} "
              f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, load {os.getloadavg()[0]:.1f})")
        for name in ("cold", "cached", "cached_flows"):
            c = cm[name]
            print(f"  {name:<12} : {c['fps_best']:6.2f} / {c['fps_median']:6.2f} fps wall, {c['fps_cpu_best']:6.2f} "
                  f"fps CPU (this process) ({min(c['seconds']):.1f} s)")
        if "several_masks" in cm:
            sm = cm["several_masks"]
            print(f"  {sm['copies']} mask videos in one call (cached): {sm['seconds']:.1f} s, "
                  f"{sm['seconds_per_extra_masks']:.2f} s per extra mask video")
    if args.davis_table:
        print(f"OSVOS vs ground truth, DIS {args.preset}, K={args.window}, first {args.max_frames or 'all'} frames, "
              "normalised by the GT's median boundary:")
        result["davis_table"] = davis_table(preset=args.preset, window=args.window, workers=args.workers,
                                            max_frames=args.max_frames, cache=args.cache)
    if args.mem_frames:
        rows = bench_memory(args.mem_frames, args.mem_window)
        result["memory"] = rows
        print(f"memory on a lazy synthetic 854x480 video, K={args.mem_window}, exact flow:")
        for r in rows:
            print(f"  memory : {r['frames']:5d} frames: tracemalloc peak {r['tracemalloc_peak_mb']:.1f} MB, "
                  f"max RSS {r['max_rss_mb']:.0f} MB, {r['fps']:.1f} fps")
    result["loadavg_end"] = os.getloadavg()
    if args.json:
        from steadyseg.files import atomic_write_json

        atomic_write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
