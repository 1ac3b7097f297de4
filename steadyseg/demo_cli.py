"""``steadyseg demo``: every stage of the toolkit on a small synthetic input (parsing only; the work and the
defaults are :func:`steadyseg.demo.run_demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from steadyseg.cli import set_flags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: ./demo-output)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the synthetic data (default 0)")
    parser.add_argument("--frames", type=int, default=None, help="frames of the synthetic video (default 24)")
    parser.add_argument("--no-curation", action="store_true", help="skip the FiftyOne stage")


def main(args: argparse.Namespace) -> int:
    from steadyseg.demo import run_demo

    kwargs = set_flags(args, {"out": "out", "seed": "seed", "frames": "num_frames"})
    if args.no_curation:
        kwargs["curation"] = False
    run_demo(**kwargs)
    return 0
