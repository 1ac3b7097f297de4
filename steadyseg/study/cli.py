"""``steadyseg study make-grid`` and ``steadyseg study analyze``: parsing and printing only.

The work is :func:`steadyseg.study.grid.write_grid` and :func:`steadyseg.study.io.analyze_rating_files`; flags
default to None and only the flags a user set are forwarded (:func:`steadyseg.cli.set_flags`), so the library
keeps the defaults.
"""

from __future__ import annotations

import argparse

from steadyseg.cli import set_flags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``steadyseg study make-grid`` and ``steadyseg study analyze`` (flags default to None)."""
    sub = parser.add_subparsers(dest="study_command", metavar="STUDY_COMMAND")
    g = sub.add_parser("make-grid", help="write the 3x3 qualification grid of corrupted mask videos",
                       description="Corrupt an accurate mask sequence along accuracy (directional erosion) and "
                                   "consistency (per-frame piecewise-affine displacement); write 9 mask folders, "
                                   "grid.json, config.yaml and preview.png.")
    g.add_argument("--frames", required=True, help="video frames (folder of images or a video file)")
    g.add_argument("--masks", required=True, help="accurate masks (folder of PNGs, DAVIS {0,255} or label maps)")
    g.add_argument("--out", required=True, help="output folder")
    g.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    g.add_argument("--max-frames", type=int, default=None, help="use only the first N frames")
    g.add_argument("--name", default=None, help="video-name prefix in grid.json (default: the masks folder name)")
    g.add_argument("--erosion-levels", type=int, nargs="+", default=None, help="px (default 0 10 20)")
    g.add_argument("--displacement-levels", type=float, nargs="+", default=None, help="px (default 0 4 8)")
    g.add_argument("--cells", type=int, nargs=2, default=None, metavar=("ROWS", "COLS"),
                   help="lattice cells of the piecewise-affine displacement (default 4 4)")
    g.add_argument("--measure", action="store_true", default=None,
                   help="also compute E_cons/E_raw/E_smooth of every cell (DIS flow; one normaliser: the clean "
                        "masks' median boundary) into measures.csv and print Spearman with each axis")
    g.add_argument("--flow-cache", default=None, help="flow cache folder for --measure")
    g.add_argument("--preset", default=None, choices=("ultrafast", "fast", "medium"),
                   help="DIS preset of the flow for --measure (default fast, as steadyseg measure)")
    g.set_defaults(func=main_make_grid)

    a = sub.add_parser("analyze", help="analyse crowd ratings: qualification filter, agreement, correlations",
                       description="Spearman correlations of mean crowd ratings with measures, the §4.1 worker "
                                   "filter and the §4.2 low-agreement split.")
    a.add_argument("--ratings", required=True, help="CSV with columns video,worker,rating (1-5, higher = more "
                                                    "consistent)")
    a.add_argument("--measures", required=True, help="CSV (video + one column per measure) or JSON")
    a.add_argument("--grid", action="append", default=None,
                   help="grid.json of qualification videos (repeat for several clips)")
    a.add_argument("--low-agreement-std", type=float, default=None, help="std threshold (default 1.0)")
    a.add_argument("--json", default=None, help="write the full result as JSON here")
    a.set_defaults(func=main_analyze)


def main(args: argparse.Namespace) -> int:
    func = getattr(args, "func", None)
    if func is None or func is main:
        raise ValueError("choose a study command: make-grid or analyze (see `steadyseg study --help`)")
    return func(args)


def main_make_grid(args: argparse.Namespace) -> int:
    from steadyseg.study.grid import GRID_MEASURES, write_grid

    if args.max_frames is not None and args.max_frames < 1:
        raise ValueError(f"--max-frames must be >= 1, got {args.max_frames}")
    kwargs = set_flags(args, ("seed", "max_frames", "name", "measure", "flow_cache", "preset"))
    for flag in ("erosion_levels", "displacement_levels", "cells"):
        if getattr(args, flag) is not None:
            kwargs[flag] = tuple(getattr(args, flag))
    record = write_grid(args.frames, args.masks, args.out, progress=True, **kwargs)
    print(f"wrote {len(record['videos'])} mask videos of {record['n_frames']} frames, grid.json and preview.png "
          f"to {args.out}")
    if "measures_axes" in record:
        print(f"{'measure':<10}{'rho_accuracy':>14}{'rho_consistency':>17}{'effect acc/cons':>17}")
        for m in GRID_MEASURES:
            c = record["measures_axes"][m]
            print(f"{m:<10}{c['rho_accuracy']:>+14.3f}{c['rho_consistency']:>+17.3f}{c['effect_ratio']:>+17.3f}")
    return 0


def main_analyze(args: argparse.Namespace) -> int:
    from steadyseg.study.io import analyze_rating_files
    from steadyseg.study.ratings import format_report

    result = analyze_rating_files(args.ratings, args.measures, args.grid, json_path=args.json,
                                  **set_flags(args, ("low_agreement_std",)))
    print(format_report(result))
    if args.json:
        print(f"wrote {args.json}")
    return 0
