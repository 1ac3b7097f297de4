"""``steadyseg refine-coco``: rewrite the instance masks of a COCO file with a refiner.

    steadyseg refine-coco --annotations instances.json --images DIR --out DIR
        [--refiner guided | --refiner cascadepsp --checkpoint F] [--workers N] [--scheduler tcp://HOST:8786]
        [--resume] [--strict] [--shard-size N] [--guard keep-original|flag-only] [--min-area-ratio F]
        [--context F] [--threshold F] [--refiner-arg KEY=VALUE ...]

Flags default to None and only the flags given are forwarded (:func:`steadyseg.cli.set_flags`):
:func:`steadyseg.refine.coco.driver.refine_coco` keeps the defaults (the help text reads them from its signature),
``REFINERS`` and ``GUARD_POLICIES`` the choices.
"""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path
from typing import Any

from steadyseg.cli import set_flags
from steadyseg.refine.coco.annotation import GUARD_POLICIES
from steadyseg.refine.coco.driver import refine_coco
from steadyseg.refine.refiners import REFINERS

_DEFAULTS = {k: p.default for k, p in inspect.signature(refine_coco).parameters.items()
             if p.default is not inspect.Parameter.empty}
_FORWARDED = ("refiner", "checkpoint", "workers", "scheduler", "resume", "strict", "shard_size", "guard",
              "min_area_ratio", "context", "context_min", "threshold")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``refine-coco``'s flags (all default to None)."""
    d = _DEFAULTS
    parser.add_argument("--annotations", type=Path, required=True, help="COCO instances JSON (never modified)")
    parser.add_argument("--images", type=Path, required=True, help="folder with the images' file_name")
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder: instances.json, run.json, config.yaml, shards/")
    parser.add_argument("--refiner", choices=list(REFINERS), default=None,
                        help=f"refiner (default {d['refiner']}; cascadepsp needs --checkpoint)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="CascadePSP checkpoint (.pth state_dict)")
    parser.add_argument("--refiner-arg", action="append", default=None, metavar="KEY=VALUE",
                        help="a keyword argument of the refiner's builder, e.g. l_max=600, radius_scale=0.03 "
                             "(value parsed as JSON when possible); repeatable")
    parser.add_argument("--workers", type=int, default=None,
                        help=f"joblib processes (default {d['workers']}; -1 = all cores)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="Dask scheduler address (tcp://host:8786): run the shards on that cluster")
    parser.add_argument("--resume", action="store_true", default=None, help="skip shards already finished in --out")
    parser.add_argument("--strict", action="store_true", default=None,
                        help="stop at the first bad image or annotation instead of recording it")
    parser.add_argument("--shard-size", type=int, default=None,
                        help=f"images per shard (default {d['shard_size']})")
    parser.add_argument("--guard", choices=list(GUARD_POLICIES), default=None,
                        help="when a refined mask vanishes or shrinks: keep the original or only flag it "
                             f"(default {d['guard']})")
    parser.add_argument("--min-area-ratio", type=float, default=None,
                        help=f"refined/original area below this is 'shrunk' (default {d['min_area_ratio']})")
    parser.add_argument("--context", type=float, default=None,
                        help=f"crop padding as a fraction of the box's longest side (default {d['context']})")
    parser.add_argument("--context-min", type=int, default=None,
                        help=f"minimum crop padding in pixels (default {d['context_min']})")
    parser.add_argument("--threshold", type=float, default=None,
                        help=f"soft-mask threshold (default {d['threshold']})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_refiner_args(items: list[str] | None) -> dict[str, Any]:
    """``["l_max=600", "fast=true"]`` → ``{"l_max": 600, "fast": True}`` (JSON values, else strings)."""
    from steadyseg.cli import parse_key_values

    return parse_key_values(items, flag="--refiner-arg")


def main(args: argparse.Namespace) -> int:
    """Run :func:`refine_coco` with the flags given; prints the counts and where the outputs are."""
    kwargs = set_flags(args, _FORWARDED)
    refiner_kwargs = parse_refiner_args(args.refiner_arg)
    if refiner_kwargs:
        kwargs["refiner_kwargs"] = refiner_kwargs
    record = refine_coco(args.annotations, args.images, args.out, progress=not args.no_progress, **kwargs)
    c = record["counts"]
    print(f"refine-coco: {c['annotations']} annotations ({c['refined']} refined, {c['crowd']} crowd copied, "
          f"{c['failed']} failed; guard: {c['guard_vanished']} vanished, {c['guard_shrunk']} shrunk, "
          f"{c['kept_original']} kept original) in {record['timings']['total_s']:.1f} s "
          f"[{c['shards_run']} shards run, {c['shards_resumed']} resumed]")
    print(f"  wrote {Path(args.out) / 'instances.json'} and {Path(args.out) / 'run.json'}")
    for f in record["failures"][:10]:
        print(f"  failed: {f['error']}")
    if len(record["failures"]) > 10:
        print(f"  ... {len(record['failures']) - 10} more failures in run.json")
    return 0
