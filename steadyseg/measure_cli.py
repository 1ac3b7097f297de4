"""``steadyseg measure``: temporal inconsistency, smoothness and accuracy of a mask video.

Example::

    steadyseg measure --frames ../shared/data/davis2016/JPEGImages/480p/bmx-trees \\
        --masks ../shared/data/davis2017-osvos/bmx-trees --gt ../shared/data/davis2016/Annotations/480p/bmx-trees \\
        --binary --flow dis --preset medium --window 3 --cache cache/flow --workers 2 \\
        --json out/bmx-osvos.json --plot out/bmx-osvos.png

Flows come from :class:`steadyseg.datasets.flow.FlowProvider` (precomputed in parallel into the cache; a temporary
cache is used when ``--cache`` is not given). Normalisation of ``E_cons``: the ground truth's median boundary count
when ``--gt`` is given, else ``--normalizer-masks``' if given, else the masks' own (``--normalizer-masks`` wins
over ``--gt``).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags default to None: the library functions keep the defaults (window 3, σ 1, DIS medium, ...)."""
    parser.add_argument("--frames", metavar="DIR", help="video: folder of frames (or a video file)")
    parser.add_argument("--masks", metavar="DIR", help="masks to evaluate: PNG label maps or .npy/.npz probabilities")
    parser.add_argument("--gt", metavar="DIR", help="ground-truth masks (enables IoU, J, F, recall, mVC)")
    parser.add_argument("--binary", action="store_true", default=None,
                        help="read every object id as foreground 1 (DAVIS-2016 style, binary J/F)")
    parser.add_argument("--flow", choices=("dis", "farneback", "raft"), default=None, help="flow backend (dis)")
    parser.add_argument("--preset", choices=("ultrafast", "fast", "medium"), default=None, help="DIS preset (medium)")
    parser.add_argument("--raft-weights", metavar="PATH", default=None, help="local RAFT checkpoint for --flow raft")
    parser.add_argument("--window", metavar="K", type=int, default=None, help="frame pairs with 1 ≤ |p−q| ≤ K (3)")
    parser.add_argument("--sigma", type=float, default=None, help="E_smooth temporal Gaussian σ in frames (1)")
    parser.add_argument("--no-motion-boundary", action="store_true", default=None,
                        help="do not exclude motion boundaries from the valid mask")
    parser.add_argument("--cache", metavar="DIR", default=None, help="flow cache folder (default: a temporary one)")
    parser.add_argument("--workers", metavar="N", type=int, default=None, help="parallel flow workers and measure threads (default: all cores)")
    parser.add_argument("--max-frames", metavar="N", type=int, default=None, help="use only the first N frames")
    parser.add_argument("--normalizer-masks", metavar="DIR", default=None,
                        help="reference masks whose median boundary count normalises E_cons and E_smooth")
    parser.add_argument("--mvc-n", metavar="N", type=int, default=None, help="clip length of mVC (8)")
    parser.add_argument("--json", metavar="OUT", default=None, help="write all results as JSON (+ resolved config)")
    parser.add_argument("--plot", metavar="OUT.png", default=None,
                        help="per-frame inconsistency over time + where --plot-frame flickers")
    parser.add_argument("--plot-frame", metavar="T", type=int, default=None,
                        help="frame shown in the plot (default: the most inconsistent frame)")


class _Head(Sequence):
    """The first ``n`` items of a mask stack, keeping the attributes ``check_matching`` reads."""

    def __init__(self, stack, n: int):
        self._stack = stack
        self._n = min(int(n), len(stack))
        self.names = list(stack.names[: self._n])
        self.source = stack.source
        self.size = stack.size

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"mask index must be an int, got {type(i).__name__}")
        j = int(i) + self._n if i < 0 else int(i)
        if not 0 <= j < self._n:
            raise IndexError(f"mask index {i} out of range for {self._n} masks of {self.source}")
        return self._stack[j]

    def frame_size(self, i: int):
        return self._stack.frame_size(i)

    def mask_path(self, i: int):
        return self._stack.mask_path(i)


def _opt(args: argparse.Namespace, name: str, default: Any) -> Any:
    value = getattr(args, name, None)
    return default if value is None else value


def _fmt(x: Any, spec: str = ".4f") -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    return format(x, spec)


def run_measure(*, frames: str | Path, masks: str | Path, gt: str | Path | None = None, binary: bool = False,
                flow: str = "dis", preset: str = "medium", raft_weights: str | None = None, window: int = 3,
                sigma: float = 1.0, check_motion_boundary: bool = True, cache: str | Path | None = None,
                workers: int | None = None, max_frames: int | None = None, normalizer_masks: str | Path | None = None,
                mvc_n: int = 8, progress: bool = True) -> dict[str, Any]:
    """Measure one mask video; returns the JSON-ready result dict (see the module docstring for the keys).

    ``workers`` (default: all cores) is the number of flow processes and of measure threads.
    """
    import os

    workers = int(workers) if workers is not None else max(1, os.cpu_count() or 1)
    from steadyseg.accuracy import davis_scores
    from steadyseg.consistency_scores import mean_video_consistency, temporal_consistency_tc
    from steadyseg.datasets.flow import FlowProvider, window_pairs
    from steadyseg.datasets.masks import check_matching, open_masks
    from steadyseg.datasets.video import open_video
    from steadyseg.measures import inconsistency, median_boundary, smoothness

    t_start = time.perf_counter()
    video = open_video(frames, max_frames=max_frames)
    n = len(video)

    def open_stack(path, what):
        stack = open_masks(path, binary=binary)
        if max_frames is not None and len(stack) > n:
            stack = _Head(stack, n)
        try:
            check_matching(video, stack)
        except ValueError as exc:
            raise ValueError(f"{what}: {exc}") from None
        return stack

    pred = open_stack(masks, "--masks")
    gt_stack = open_stack(gt, "--gt") if gt is not None else None
    norm_stack = open_stack(normalizer_masks, "--normalizer-masks") if normalizer_masks is not None else None
    norm_source = "normalizer-masks" if norm_stack is not None else ("gt" if gt_stack is not None else "self")
    norm_ref = norm_stack if norm_stack is not None else gt_stack
    normalizer = median_boundary(norm_ref) if norm_ref is not None else None

    tmp = tempfile.TemporaryDirectory(prefix="steadyseg-flow-") if cache is None else None
    try:
        provider = FlowProvider(video, backend=flow, preset=preset, raft_weights=raft_weights,
                                cache_dir=cache if cache is not None else tmp.name, n_jobs=workers)
        t0 = time.perf_counter()
        flow_stats = provider.precompute(window_pairs(n, window), progress=progress)
        t_flow = time.perf_counter() - t0

        t0 = time.perf_counter()
        res = inconsistency(pred, provider, window=window, normalizer=normalizer,
                            check_motion_boundary=check_motion_boundary, progress=progress, threads=workers)
        t_incons = time.perf_counter() - t0
        t0 = time.perf_counter()
        e_smooth = smoothness(pred, sigma=sigma, normalizer=res.normalizer)
        tc = temporal_consistency_tc(pred, provider)
        t_other = time.perf_counter() - t0
        gt_incons = None
        acc: dict[str, Any] | None = None
        mvc = None
        if gt_stack is not None:
            t0 = time.perf_counter()
            acc = davis_scores(pred, gt_stack, binary=binary, progress=progress)
            mvc = mean_video_consistency(pred, gt_stack, n=mvc_n)
            gt_res = inconsistency(gt_stack, provider, window=window, normalizer=res.normalizer,
                                   check_motion_boundary=check_motion_boundary, threads=workers)
            gt_incons = {"inconsistency": gt_res.e_cons, "inconsistency_raw": gt_res.e_raw}
            t_other += time.perf_counter() - t0
    finally:
        if tmp is not None:
            tmp.cleanup()

    per_frame = []
    for i in range(n):
        per_frame.append({"name": pred.names[i], "inconsistency": float(res.per_frame[i]),
                          "iou": (acc["iou"][i] if acc else None), "boundary": int(res.boundary_counts[i])})
    return {
        "inconsistency": res.e_cons, "inconsistency_raw": res.e_raw, "smoothness": e_smooth,
        "normalizer": res.normalizer, "normalizer_source": norm_source,
        "iou": acc["mean_iou"] if acc else None, "j_mean": acc["J_mean"] if acc else None,
        "f_mean": acc["F_mean"] if acc else None, "j_recall": acc["J_recall"] if acc else None,
        "mvc": mvc, "mvc_n": mvc_n, "tc": tc, "gt": gt_incons,
        "frames": per_frame, "num_frames": n, "height": res.height, "width": res.width,
        "skipped_pairs": res.skipped_pairs, "skipped_directions": res.skipped_directions,
        "per_pair": res.to_dict()["per_pair"],
        "objects": ({str(k): {kk: v[kk] for kk in ("J_mean", "F_mean", "J_recall")}
                     for k, v in acc["objects"].items()} if acc else None),
        "timing": {"flow_s": t_flow, "inconsistency_s": t_incons, "other_measures_s": t_other,
                   "total_s": time.perf_counter() - t_start, "flow_pairs_computed": flow_stats.get("computed"),
                   "flow_pairs_cached": flow_stats.get("cached")},
        "config": {"frames": str(frames), "masks": str(masks), "gt": None if gt is None else str(gt),
                   "binary": bool(binary), "flow": flow, "preset": preset, "raft_weights": raft_weights, "window": window, "sigma": sigma,
                   "check_motion_boundary": check_motion_boundary, "cache": None if cache is None else str(cache),
                   "workers": workers, "max_frames": max_frames,
                   "normalizer_masks": None if normalizer_masks is None else str(normalizer_masks),
                   "mvc_n": mvc_n},
    }


def print_table(result: dict[str, Any]) -> None:
    """Readable summary of a :func:`run_measure` result."""
    rows = [
        ("frames", f"{result['num_frames']} ({result['width']}x{result['height']})"),
        ("E_cons (inconsistency)", _fmt(result["inconsistency"])),
        ("E_raw", _fmt(result["inconsistency_raw"], ".5f")),
        ("E_smooth", _fmt(result["smoothness"])),
        ("normaliser (median N_bd)", f"{_fmt(result['normalizer'], '.1f')} ({result['normalizer_source']})"),
        ("TC (warped-previous mIoU)", _fmt(result["tc"])),
    ]
    if result["iou"] is not None:
        rows += [("IoU (mean)", _fmt(result["iou"])), ("J mean", _fmt(result["j_mean"])),
                 ("F mean", _fmt(result["f_mean"])), ("J recall", _fmt(result["j_recall"])),
                 (f"mVC_{result['mvc_n']}", _fmt(result["mvc"]))]
    if result.get("gt"):
        rows += [("GT E_cons (floor)", _fmt(result["gt"]["inconsistency"])),
                 ("GT E_raw (floor)", _fmt(result["gt"]["inconsistency_raw"], ".5f"))]
    tm = result["timing"]
    rows.append(("time: flow / measure / total",
                 f"{tm['flow_s']:.1f} s / {tm['inconsistency_s']:.1f} s / {tm['total_s']:.1f} s"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


def main(args: argparse.Namespace) -> int:
    from steadyseg.files import atomic_write_json, save_resolved_config

    if not args.frames or not args.masks:
        raise ValueError("--frames DIR and --masks DIR are required")
    for flag in ("window", "workers", "max_frames", "mvc_n"):
        v = getattr(args, flag, None)
        if v is not None and v < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be ≥ 1, got {v}")
    kwargs: dict[str, Any] = {"frames": args.frames, "masks": args.masks}
    for flag, key in (("gt", "gt"), ("binary", "binary"), ("flow", "flow"), ("preset", "preset"),
                      ("raft_weights", "raft_weights"), ("window", "window"), ("sigma", "sigma"),
                      ("cache", "cache"), ("workers", "workers"), ("max_frames", "max_frames"),
                      ("normalizer_masks", "normalizer_masks"), ("mvc_n", "mvc_n")):
        v = getattr(args, flag, None)
        if v is not None:
            kwargs[key] = v
    if getattr(args, "no_motion_boundary", None):
        kwargs["check_motion_boundary"] = False
    result = run_measure(**kwargs)
    print_table(result)
    outputs = []
    if args.json:
        atomic_write_json(args.json, result)
        save_resolved_config(Path(args.json).parent, result["config"], name=f"{Path(args.json).stem}.config.yaml")
        outputs.append(args.json)
    if args.plot:
        _plot(result, args.plot, plot_frame=args.plot_frame)
        if not args.json:
            save_resolved_config(Path(args.plot).parent, result["config"],
                                 name=f"{Path(args.plot).stem}.config.yaml")
        outputs.append(args.plot)
    for o in outputs:
        print(f"wrote {o}")
    return 0


def _plot(result: dict[str, Any], path: str, *, plot_frame: int | None) -> None:
    from steadyseg.datasets.flow import FlowProvider
    from steadyseg.datasets.masks import open_masks
    from steadyseg.datasets.video import open_video
    from steadyseg.measures import flicker_map
    from steadyseg.plots import save_measure_plot

    cfg = result["config"]
    per_frame = [f["inconsistency"] for f in result["frames"]]
    n = len(per_frame)
    if plot_frame is None:
        finite = [v if np.isfinite(v) else -1.0 for v in per_frame]
        plot_frame = int(np.argmax(finite))
    if not -n <= plot_frame < n:
        raise ValueError(f"--plot-frame {plot_frame} is out of range for {n} frames")
    plot_frame %= n
    video = open_video(cfg["frames"], max_frames=cfg["max_frames"])
    masks = open_masks(cfg["masks"], binary=cfg["binary"])
    w = cfg["window"]
    tmp = tempfile.TemporaryDirectory(prefix="steadyseg-flow-") if cfg["cache"] is None else None
    try:
        provider = FlowProvider(video, backend=cfg["flow"], preset=cfg["preset"], raft_weights=cfg["raft_weights"],
                                cache_dir=cfg["cache"] if cfg["cache"] is not None else tmp.name)
        flick = flicker_map(masks, provider, plot_frame, window=w,
                            check_motion_boundary=cfg["check_motion_boundary"])
    finally:
        if tmp is not None:
            tmp.cleanup()
    iou = [f["iou"] for f in result["frames"]] if result["iou"] is not None else None
    save_measure_plot(path, per_frame=per_frame, frame=video[plot_frame], mask=masks[plot_frame], flicker=flick,
                      t=plot_frame, iou=iou,
                      title=f"{Path(cfg['masks']).name}: E_cons {_fmt(result['inconsistency'], '.3f')}, "
                            f"E_raw {_fmt(result['inconsistency_raw'], '.4f')}")
