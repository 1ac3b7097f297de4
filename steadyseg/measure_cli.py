"""``steadyseg measure``: temporal inconsistency, smoothness and accuracy of a mask video.

Example (``data/`` is e.g. a folder with the DAVIS layout)::

    steadyseg measure --frames data/davis2016/JPEGImages/480p/bmx-trees \\
        --masks data/davis2017-osvos/bmx-trees --gt data/davis2016/Annotations/480p/bmx-trees \\
        --binary --flow dis --preset medium --window 3 --cache cache/flow --workers 2 \\
        --json out/bmx-osvos.json --plot out/bmx-osvos.png

Several methods on one video: repeat ``--masks`` (one table row per masks folder; the flows, validity masks and
ground-truth values are computed once)::

    steadyseg measure --frames …/bmx-trees --masks out/osvos/bmx-trees --masks out/ours/bmx-trees --gt …

Without ``--cache`` the persistent default cache is used (``$XDG_CACHE_HOME/steadyseg/flow``, by default
``~/.cache/steadyseg/flow``; see ``steadyseg cache info``); ``--no-cache`` uses a temporary one.

Parsing and printing only: the work is :func:`steadyseg.measure_video.measure_videos` (flows, measures, the
normalisation rule) and :func:`steadyseg.measure_video.write_measure_many_outputs` (JSON, config, plots).
"""

from __future__ import annotations

import argparse
from typing import Any

from steadyseg.cli import set_flags

# flag -> keyword of measure_video (--no-motion-boundary is forwarded as check_motion_boundary=False)
_FORWARDED = ("gt", "binary", "flow", "preset", "raft_weights", "window", "sigma", "cache", "workers", "max_frames",
              "normalizer_masks", "mvc_n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags default to None: the library functions keep the defaults (window 3, σ 1, DIS fast, ...)."""
    parser.add_argument("--frames", metavar="DIR", help="video: folder of frames (or a video file)")
    parser.add_argument("--masks", metavar="DIR", action="append", default=None,
                        help="masks to evaluate: PNG label maps or .npy/.npz probabilities; repeat it to measure "
                             "several mask videos of the same frames in one run (flows computed once)")
    parser.add_argument("--gt", metavar="DIR", help="ground-truth masks (enables IoU, J, F, recall, mVC)")
    parser.add_argument("--binary", action="store_true", default=None,
                        help="read every object id as foreground 1 (DAVIS-2016 style, binary J/F)")
    parser.add_argument("--flow", choices=("dis", "farneback", "raft"), default=None, help="flow backend (dis)")
    parser.add_argument("--preset", choices=("ultrafast", "fast", "medium"), default=None,
                        help="DIS preset (fast; medium is ~3x slower per flow: the preset of steadyseg bench)")
    parser.add_argument("--raft-weights", metavar="PATH", default=None, help="local RAFT checkpoint for --flow raft")
    parser.add_argument("--window", metavar="K", type=int, default=None, help="frame pairs with 1 ≤ |p−q| ≤ K (3)")
    parser.add_argument("--sigma", type=float, default=None, help="E_smooth temporal Gaussian σ in frames (1)")
    parser.add_argument("--no-motion-boundary", action="store_true", default=None,
                        help="do not exclude motion boundaries from the valid mask")
    parser.add_argument("--cache", metavar="DIR", default=None,
                        help="flow cache folder (default: the persistent cache $XDG_CACHE_HOME/steadyseg/flow, "
                             "i.e. ~/.cache/steadyseg/flow; see 'steadyseg cache info')")
    parser.add_argument("--no-cache", action="store_true", default=None,
                        help="use a temporary flow cache, removed afterwards (nothing is kept)")
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


def print_table(result: dict[str, Any]) -> None:
    """Readable summary of a :func:`steadyseg.measure_video.measure_video` result."""
    from steadyseg.measure_video import format_value as fmt

    rows = [
        ("frames", f"{result['num_frames']} ({result['width']}x{result['height']})"),
        ("E_cons (inconsistency)", fmt(result["inconsistency"])),
        ("E_raw", fmt(result["inconsistency_raw"], ".5f")),
        ("E_smooth", fmt(result["smoothness"])),
        ("normaliser (median N_bd)", f"{fmt(result['normalizer'], '.1f')} ({result['normalizer_source']})"),
        ("TC (warped-previous mIoU)", fmt(result["tc"])),
    ]
    if result["iou"] is not None:
        rows += [("IoU (mean)", fmt(result["iou"])), ("J mean", fmt(result["j_mean"])),
                 ("F mean", fmt(result["f_mean"])), ("J recall", fmt(result["j_recall"])),
                 (f"mVC_{result['mvc_n']}", fmt(result["mvc"]))]
    if result.get("gt"):
        rows += [("GT E_cons (floor)", fmt(result["gt"]["inconsistency"])),
                 ("GT E_raw (floor)", fmt(result["gt"]["inconsistency_raw"], ".5f"))]
    tm = result["timing"]
    rows.append(("time: flow / measure / total",
                 f"{tm['flow_s']:.1f} s / {tm['inconsistency_s']:.1f} s / {tm['total_s']:.1f} s"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


def print_many_table(results: list[dict[str, Any]]) -> None:
    """One row per masks folder of a :func:`steadyseg.measure_video.measure_videos` result list, then the shared
    values (frames, normaliser, the ground truth's floor, time)."""
    from pathlib import Path

    from steadyseg.measure_video import format_value as fmt

    with_gt = results[0]["iou"] is not None
    head = ["masks", "E_cons", "E_raw", "E_smooth", "TC"]
    if with_gt:
        head += ["IoU", "J mean", "F mean", "J recall", f"mVC_{results[0]['mvc_n']}"]
    names = [r["config"]["masks"] for r in results]
    if len({Path(m).name for m in names}) == len(names):
        names = [Path(m).name for m in names]
    rows = []
    for name, r in zip(names, results):
        row = [name, fmt(r["inconsistency"]), fmt(r["inconsistency_raw"], ".5f"), fmt(r["smoothness"]), fmt(r["tc"])]
        if with_gt:
            row += [fmt(r["iou"]), fmt(r["j_mean"]), fmt(r["f_mean"]), fmt(r["j_recall"]), fmt(r["mvc"])]
        rows.append(row)
    widths = [max(len(str(x[i])) for x in [head] + rows) for i in range(len(head))]
    for row in [head] + rows:
        print("  ".join(f"{x:<{w}}" if i == 0 else f"{x:>{w}}" for i, (x, w) in enumerate(zip(row, widths))))
    r0 = results[0]
    print(f"frames {r0['num_frames']} ({r0['width']}x{r0['height']}); normaliser (median N_bd) "
          f"{fmt(r0['normalizer'], '.1f')} ({r0['normalizer_source']})")
    if r0.get("gt"):
        print(f"GT floor: E_cons {fmt(r0['gt']['inconsistency'])}, E_raw {fmt(r0['gt']['inconsistency_raw'], '.5f')}")
    tm = r0["timing"]
    print(f"time: flow {tm['flow_s']:.1f} s / measure (all masks) {tm['inconsistency_s']:.1f} s / total "
          f"{tm['total_s']:.1f} s")


def main(args: argparse.Namespace) -> int:
    from steadyseg.measure_video import measure_videos, write_measure_many_outputs

    if not args.frames or not args.masks:
        raise ValueError("--frames DIR and --masks DIR are required")
    if args.no_cache and args.cache is not None:
        raise ValueError("--cache DIR and --no-cache exclude each other")
    for flag in ("window", "workers", "max_frames", "mvc_n"):
        v = getattr(args, flag, None)
        if v is not None and v < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be ≥ 1, got {v}")
    kwargs = set_flags(args, _FORWARDED)
    if args.no_motion_boundary:
        kwargs["check_motion_boundary"] = False
    if args.no_cache:
        kwargs["cache"] = False
    results = measure_videos(frames=args.frames, masks=args.masks, **kwargs)
    if len(results) == 1:
        print_table(results[0])
    else:
        print_many_table(results)
    for path in write_measure_many_outputs(results, json_path=args.json, plot_path=args.plot,
                                           plot_frame=args.plot_frame):
        print(f"wrote {path}")
    return 0
