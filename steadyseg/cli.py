"""The ``steadyseg`` console script.

Every subcommand lives in its own module that exposes two functions::

    def add_arguments(parser: argparse.ArgumentParser) -> None  # flags default to None
    def main(args: argparse.Namespace) -> int | None            # the library keeps the defaults

Modules import heavy dependencies (torch, fiftyone, ...) inside ``main`` so that ``steadyseg --help`` stays fast.
A subcommand with sub-subcommands (``study make-grid``) adds its own subparsers in ``add_arguments`` and sets
``func`` on each of them; otherwise ``main`` is called.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Iterable, Mapping
from typing import Any

# name -> (module, one-line help). Order is the order shown in --help.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("steadyseg.demo_cli", "run every stage on a small synthetic input (no downloads, no data sets)"),
    "measure": ("steadyseg.measure_cli", "temporal inconsistency, smoothness and accuracy of a mask video"),
    "flow": ("steadyseg.datasets.flow_cli", "compute and cache optical flow for a video"),
    "cache": ("steadyseg.cache_cli", "the persistent flow cache: info (location, entries, size) and clear"),
    "study": ("steadyseg.study.cli", "user-study protocol of the paper (qualification grid, rating analysis)"),
    "postprocess": ("steadyseg.refine.postprocess.cli", "3D weighted guided filter / temporal Gaussian on mask videos"),
    "refine-coco": ("steadyseg.refine.coco.cli", "rewrite COCO instance masks with a refiner"),
    "refine-eval": ("steadyseg.refine.coco.eval_cli", "compare refined masks with references (IoU, mBA, change stats)"),
    "refine-train": ("steadyseg.refine.cascadepsp.train_cli", "train or fine-tune the CascadePSP refiner"),
    "curate": ("steadyseg.curation.cli", "FiftyOne curation: build, views, app, export"),
    "coco-targets": ("steadyseg.datasets.coco_targets_cli", "semantic targets (palette PNGs) of a COCO file"),
    "coco-from-masks": ("steadyseg.datasets.coco_from_masks_cli", "a COCO instances set from mask videos"),
    "train": ("steadyseg.train.cli", "train models: teacher (DeepLabV3 / LRASPP), decoder (the paper's method), ti, video-model"),
    "eval": ("steadyseg.train.eval_cli", "mIoU, pixel accuracy, per-class IoU of a trained model on a COCO set"),
    "predict": ("steadyseg.train.predict_cli", "per-frame predictions of a trained model on a video"),
    "bench": ("steadyseg.train.bench_cli", "Table 1 / Fig. 7 / Fig. 9 comparisons on videos with GT"),
    "run": ("steadyseg.manifest_cli", "run a YAML manifest from manifests/"),
}


def set_flags(args: argparse.Namespace, names: Iterable[str] | Mapping[str, str]) -> dict[str, Any]:
    """The flags the user set, as keyword arguments for a library call.

    CLI flags default to ``None`` so that the library keeps the only defaults; this forwards exactly the flags that
    were given. ``names`` lists attribute names (keyword = attribute) or maps attribute -> keyword, e.g.
    ``set_flags(args, {"temporal_radius": "temporal_radius", "no_weights": "weighted"})``. A name the parser does
    not define raises ``AttributeError`` (a typo must not silently drop a flag).

    Returns:
        ``{keyword: value}`` for each listed attribute whose value is not ``None``.
    """
    mapping = dict(names) if isinstance(names, Mapping) else {n: n for n in names}
    return {kw: getattr(args, attr) for attr, kw in mapping.items() if getattr(args, attr) is not None}


def parse_key_values(items: Iterable[str] | None, *, flag: str) -> dict[str, Any]:
    """``["l_max=600", "fast=true", "layout=BCTHW"]`` → ``{"l_max": 600, "fast": True, "layout": "BCTHW"}``: the
    values of repeatable ``KEY=VALUE`` flags, read as JSON (numbers, booleans, lists), else kept as strings.

    Raises ``ValueError`` naming ``flag`` for an item without ``=`` or without a key.
    """
    import json

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="steadyseg", description=__doc__.splitlines()[0])
    from steadyseg import __version__

    parser.add_argument("--version", action="version", version=f"steadyseg {__version__}")
    parser.add_argument("--debug", action="store_true", default=None,
                        help="show the Python traceback of an input error (also: STEADYSEG_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # an optional stage whose extra is missing must not break the CLI
            if exc.name == module_name:
                raise ModuleNotFoundError(f"steadyseg: subcommand {name!r} has no module {module_name}") from exc
            if exc.name and exc.name.split(".")[0] in {"fiftyone", "dask", "distributed"}:
                p = sub.add_parser(name, help=f"{help_text} [needs an extra: {exc.name}]")
                p.set_defaults(func=_missing_extra(exc.name))
                continue
            raise
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        if "func" not in p._defaults:  # noqa: SLF001 - argparse has no public accessor
            p.set_defaults(func=module.main)
    return parser


def _missing_extra(name: str):
    def run(_args):
        raise SystemExit(f"steadyseg: this command needs the optional package {name!r}; "
                         "install it with: pip install 'steadyseg[curation,distributed]'")
    return run


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    from steadyseg.errors import USER_ERRORS, user_error_message

    debug = bool(args.debug) or os.environ.get("STEADYSEG_DEBUG", "") not in ("", "0")
    try:
        rc = args.func(args)
    except USER_ERRORS as exc:
        # Bad inputs (the library names the file and the problem): one line, no traceback unless asked for.
        # Anything else (KeyError, TypeError, ...) is a bug and keeps its traceback.
        if debug:
            raise
        print(f"steadyseg {args.command}: error: {user_error_message(exc)}", file=sys.stderr)
        return 1
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
