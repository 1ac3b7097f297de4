"""``steadyseg refine-coco``: rewrite the instance masks of a COCO file with a refiner.

    steadyseg refine-coco --annotations instances.json --images DIR --out DIR
        [--refiner guided | --refiner cascadepsp --checkpoint F] [--workers N] [--scheduler tcp://HOST:8786]
        [--resume] [--strict] [--shard-size N] [--guard keep-original|flag-only] [--min-area-ratio F]
        [--context F] [--threshold F] [--refiner-arg KEY=VALUE ...]

Flags default to None; :func:`steadyseg.refine.coco.driver.refine_coco` keeps the defaults.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--annotations", type=Path, required=True, help="COCO instances JSON (never modified)")
    parser.add_argument("--images", type=Path, required=True, help="folder with the images' file_name")
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder: instances.json, run.json, config.yaml, shards/")
    parser.add_argument("--refiner", choices=["guided", "cascadepsp", "identity"], default=None,
                        help="refiner (default guided; cascadepsp needs --checkpoint)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="CascadePSP checkpoint (.pth state_dict)")
    parser.add_argument("--refiner-arg", action="append", default=None, metavar="KEY=VALUE",
                        help="a keyword argument of the refiner's builder, e.g. l_max=600, radius_scale=0.03 "
                             "(value parsed as JSON when possible); repeatable")
    parser.add_argument("--workers", type=int, default=None, help="joblib processes (default 1; -1 = all cores)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="Dask scheduler address (tcp://host:8786): run the shards on that cluster")
    parser.add_argument("--resume", action="store_true", default=None, help="skip shards already finished in --out")
    parser.add_argument("--strict", action="store_true", default=None,
                        help="stop at the first bad image or annotation instead of recording it")
    parser.add_argument("--shard-size", type=int, default=None, help="images per shard (default 64)")
    parser.add_argument("--guard", choices=["keep-original", "flag-only"], default=None,
                        help="when a refined mask vanishes or shrinks: keep the original (default) or only flag it")
    parser.add_argument("--min-area-ratio", type=float, default=None,
                        help="refined/original area below this is 'shrunk' (default 0.5)")
    parser.add_argument("--context", type=float, default=None,
                        help="crop padding as a fraction of the box's longest side (default 0.25)")
    parser.add_argument("--context-min", type=int, default=None, help="minimum crop padding in pixels (default 8)")
    parser.add_argument("--threshold", type=float, default=None, help="soft-mask threshold (default 0.5)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_refiner_args(items: list[str] | None) -> dict[str, Any]:
    """``["l_max=600", "fast=true"]`` → ``{"l_max": 600, "fast": True}`` (JSON values, else strings)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--refiner-arg expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main(args: argparse.Namespace) -> int:
    from steadyseg.refine.coco.driver import refine_coco

    kwargs: dict[str, Any] = {}
    for name in ("refiner", "checkpoint", "workers", "scheduler", "resume", "strict", "shard_size", "guard",
                 "min_area_ratio", "context", "context_min", "threshold"):
        value = getattr(args, name, None)
        if value is not None:
            kwargs[name] = value
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
