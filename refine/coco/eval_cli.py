"""``steadyseg refine-eval``: compare refined COCO masks with reference masks and with the originals.

    steadyseg refine-eval --refined OUT/instances.json [--reference exact.json] [--original instances.json]
        [--include-crowd] [--json report.json]

Prints IoU (ΣI/ΣU and mean), mBA (CascadePSP's boundary accuracy over 5 radii) of the refined and the original
masks against the reference, and the change statistics refined-vs-original; ``--json`` writes the full report
(atomically, with the resolved config beside it).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``refine-eval``'s flags (all default to None)."""
    parser.add_argument("--refined", type=Path, required=True, help="refined COCO instances JSON")
    parser.add_argument("--reference", type=Path, default=None, help="reference (ground-truth) COCO JSON")
    parser.add_argument("--original", type=Path, default=None, help="the unrefined input COCO JSON")
    parser.add_argument("--include-crowd", action="store_true", default=None, help="also score crowd annotations")
    parser.add_argument("--json", type=Path, default=None, help="write the full report here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _fmt(x) -> str:
    return "—" if x is None else f"{x:.4f}"


def main(args: argparse.Namespace) -> int:
    """Run :func:`~steadyseg.refine.coco.evaluation.compare_coco` with the flags given; print and save the report."""
    from steadyseg import files
    from steadyseg.cli import set_flags
    from steadyseg.refine.coco.evaluation import compare_coco

    if args.reference is None and args.original is None:
        raise ValueError("refine-eval needs --reference, --original, or both")
    report = compare_coco(args.refined, progress=not args.no_progress,
                          **set_flags(args, ["reference", "original", "include_crowd"]))
    print(f"refine-eval: {report['counts']['scored']} annotations scored "
          f"({report['counts']['crowd_excluded']} crowd excluded)")
    rows = [("original", report["original_vs_reference"]), ("refined", report["refined_vs_reference"])]
    if any(r for _, r in rows):
        print(f"  {'vs reference':<14}{'IoU (ΣI/ΣU)':>13}{'mean IoU':>10}{'mBA':>9}")
        for name, r in rows:
            if r:
                print(f"  {name:<14}{_fmt(r['iou']):>13}{_fmt(r['mean_iou']):>10}{_fmt(r['mba']):>9}")
    ch = report["change"]
    if ch:
        print(f"  change vs original: mean IoU {ch['mean_iou_with_original']:.4f}, median "
              f"{ch['median_iou_with_original']:.4f}, changed {ch['changed']}, IoU<0.5 {ch['iou_below_0.5']}, "
              f"vanished {ch['vanished']}, mean area ratio {ch['mean_area_ratio']:.4f}")
    for k, ids in report["missing"].items():
        if ids:
            print(f"  {len(ids)} refined annotation ids missing from the {k} file (first: {ids[:5]})")
    if args.json is not None:
        files.atomic_write_json(args.json, report)
        files.save_resolved_config(Path(args.json).parent, {k: (str(v) if isinstance(v, Path) else v)
                                                             for k, v in vars(args).items() if k != "func"},
                                   name=Path(args.json).stem + ".config.yaml")
        print(f"  wrote {args.json}")
    return 0
