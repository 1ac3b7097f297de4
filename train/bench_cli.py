"""``steadyseg bench``: the paper's comparisons (teacher, Gaussians, 2D/3D WGF, trained decoders) on videos with GT.

    steadyseg bench --frames DIR --gt DIR --teacher DIR [--frames ... --gt ... --teacher ...] --out DIR
        [--method SPEC ...] [--max-frames N] [--binary] [--cache DIR]
    steadyseg bench --manifest manifests/bench-davis-osvos.yaml [--out DIR] [--max-frames N]
    steadyseg bench tradeoff --checkpoints RUN/epoch-*.pt [...] --frames DIR --gt DIR [...] --out DIR [--binary]

``bench tradeoff`` (:mod:`steadyseg.train.tradeoff`): accuracy vs inconsistency of video-model checkpoints along
their epochs (Fig. 10).

Method specs and outputs: :mod:`steadyseg.train.bench`. Flags default to None; flags given override the manifest's
``options``; :data:`steadyseg.train.bench.BENCH_DEFAULTS` keeps the defaults.
"""

from __future__ import annotations

import argparse


def _add_measure_flags(parser: argparse.ArgumentParser) -> None:
    """The flags ``bench`` and ``bench tradeoff`` share: which frames, binary masks, flow preset and cache, workers,
    quiet."""
    parser.add_argument("--max-frames", type=int, default=None, metavar="N", help="only the first N frames")
    parser.add_argument("--binary", action="store_true", default=None,
                        help="every object id is foreground (DAVIS-2016 style)")
    parser.add_argument("--preset", default=None, choices=("ultrafast", "fast", "medium"),
                        help="DIS preset of the measure's flow (default medium; fast passes the same validity checks, "
                             "see docs/measure.md)")
    parser.add_argument("--cache", default=None, metavar="DIR", help="flow cache (default OUT/flow-cache)")
    parser.add_argument("--workers", type=int, default=None, help="flow processes and measure threads")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", default=None, metavar="FILE", help="a bench manifest (videos, methods, options)")
    parser.add_argument("--frames", action="append", default=None, metavar="DIR", help="frames of a video (repeat)")
    parser.add_argument("--gt", action="append", default=None, metavar="DIR", help="its ground truth (repeat)")
    parser.add_argument("--teacher", action="append", default=None, metavar="DIR",
                        help="its teacher's masks or probabilities (repeat)")
    parser.add_argument("--out", default=None, metavar="DIR", help="output folder (required without a manifest out)")
    parser.add_argument("--method", dest="methods", action="append", default=None, metavar="SPEC",
                        help="a row (repeat): teacher, gauss:SIGMA, wgf2d, wgf3d, decoder:NAME=RUN/model.pt, "
                             "decoder+wgf3d:NAME=RUN/model.pt (default: teacher, gauss:0.5/1/2/3, wgf2d, wgf3d)")
    _add_measure_flags(parser)
    sub = parser.add_subparsers(dest="bench_command", metavar="{tradeoff}")
    tradeoff = sub.add_parser("tradeoff", help="accuracy vs inconsistency of video-model checkpoints (Fig. 10)",
                              description="accuracy (J&F, recall) vs inconsistency (E_raw, E_cons, E_smooth) of "
                                          "video-model checkpoints along their epochs (Fig. 10)")
    tradeoff.add_argument("--checkpoints", nargs="+", action="extend", required=True, metavar="PT",
                          help="video-model checkpoints, e.g. RUN/epoch-*.pt (runs are grouped by folder)")
    tradeoff.add_argument("--frames", action="append", required=True, metavar="DIR", help="frames of a video (repeat)")
    tradeoff.add_argument("--gt", action="append", required=True, metavar="DIR", help="its ground truth (repeat)")
    tradeoff.add_argument("--out", required=True, metavar="DIR", help="output folder")
    _add_measure_flags(tradeoff)
    tradeoff.set_defaults(func=main_tradeoff)


def main_tradeoff(args: argparse.Namespace) -> int:
    from steadyseg.cli import set_flags
    from steadyseg.errors import InputError
    from steadyseg.measure_video import format_value
    from steadyseg.train.tradeoff import run_tradeoff

    if len(args.frames) != len(args.gt):
        raise InputError(None, f"give one --gt per --frames (got {len(args.frames)} --frames, {len(args.gt)} --gt)")
    res = run_tradeoff(args.checkpoints, [{"frames": f, "gt": g} for f, g in zip(args.frames, args.gt)], args.out,
                       progress=not args.quiet, **set_flags(args, ["max_frames", "binary", "preset", "cache", "workers"]))
    for run in res["runs"]:
        for p in run["points"]:
            m = res["mean"][run["slug"]][p["name"]]
            print(f"{run['slug']:<16} {p['name']:<10} J&F {format_value(m['jf'], '.3f')}  "
                  f"recall {format_value(m['recall'], '.3f')}  E_raw {format_value(m['e_raw'])}")
    print(f"bench tradeoff: {len(res['videos'])} video(s), {sum(len(r['points']) for r in res['runs'])} "
          f"checkpoints; wrote {args.out}/results.md and fig10-tradeoff.png")
    return 0


def main(args: argparse.Namespace) -> int:
    from steadyseg.cli import set_flags
    from steadyseg.errors import InputError
    from steadyseg.measure_video import format_value
    from steadyseg.train.bench import load_bench_manifest, run_bench

    videos, options, out = [], {}, None
    if args.manifest is not None:
        job = load_bench_manifest(args.manifest)
        videos, out = job["videos"], job["out"]
        options = {**job["options"], "methods": job["methods"]}
    flags = [args.frames or [], args.gt or [], args.teacher or []]
    if len({len(f) for f in flags}) != 1:
        raise InputError(None, f"give one --gt and one --teacher per --frames (got {len(flags[0])} --frames, "
                               f"{len(flags[1])} --gt, {len(flags[2])} --teacher)")
    videos = list(videos) + [{"frames": f, "gt": g, "teacher": t} for f, g, t in zip(*flags)]
    out = args.out or out
    if out is None:
        raise InputError(args.manifest, "no output folder: give --out DIR (or out: in the manifest)")
    options.update(set_flags(args, ["methods", "max_frames", "binary", "preset", "cache", "workers"]))
    res = run_bench(videos, out, progress=not args.quiet, **options)
    mean = res["mean"]
    for row in res["rows"]:
        m = mean[row["slug"]]
        print(f"{row['label']:<24} recall {format_value(m['recall'], '.3f')}  IoU {format_value(m['iou'], '.3f')}  "
              f"E_raw {format_value(m['e_raw'])}  ΔE_raw {format_value(m['e_raw_change'], '+.1%')}")
    print(f"bench: {len(res['videos'])} video(s), {len(res['rows'])} rows; wrote {out}/results.md")
    return 0
