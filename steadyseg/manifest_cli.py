"""``steadyseg run manifests/<name>.yaml``: run a YAML manifest (parsing and printing only).

The manifests, their schemas and runners are :mod:`steadyseg.manifest` (:func:`~steadyseg.manifest.load_manifest`,
:func:`~steadyseg.manifest.run_manifest`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from steadyseg.cli import set_flags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", type=Path, help="a YAML manifest, e.g. manifests/coco-val2017-80-guided.yaml")
    parser.add_argument("--resume", action="store_true", default=None, help="continue a killed run")
    parser.add_argument("--workers", type=int, default=None, help="override execution.workers")
    parser.add_argument("--scheduler", default=None, help="override execution.scheduler (Dask address)")
    parser.add_argument("--dry-run", action="store_true", help="validate and print the resolved job, run nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    import yaml

    from steadyseg.manifest import load_manifest, run_manifest

    job = load_manifest(args.manifest)
    if args.dry_run:
        print(f"# {job.source} (kind {job.kind}), resolved:")
        print(yaml.safe_dump(job.spec, sort_keys=False), end="")
        return 0
    record = run_manifest(job, progress=not args.no_progress, **set_flags(args, ("resume", "workers", "scheduler")))
    counts = record.get("counts", {})
    print(f"run {job.spec.get('name')}: {counts}")
    print(f"  outputs in {job.spec.get('output')}")
    return 0
