"""``steadyseg coco-from-masks``: a COCO instances set from mask videos (e.g. DAVIS) with coarse polygons.

    steadyseg coco-from-masks --frames DIR --masks DIR [--frames DIR --masks DIR ...] [--every K]
        [--polygon-tolerance PX] [--per-id] --out DIR

Writes ``DIR/images/<folder>_<frame>.<ext>`` and ``DIR/instances.json``. Flags default to None;
:data:`steadyseg.datasets.coco_from_masks.COCO_FROM_MASKS_DEFAULTS` keeps the defaults.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", action="append", required=True, metavar="DIR",
                        help="folder of frames or a video file; repeat together with --masks")
    parser.add_argument("--masks", action="append", required=True, metavar="DIR",
                        help="the matching folder of mask PNGs (object ids; 255 void); one per --frames")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder: images/, instances.json")
    parser.add_argument("--every", type=int, default=None, metavar="K", help="take every K-th frame (default 1)")
    parser.add_argument("--polygon-tolerance", type=float, default=None, metavar="PX",
                        help="cv2.approxPolyDP epsilon in pixels (default 2)")
    parser.add_argument("--per-id", action="store_true", default=None,
                        help="one category per object id (default: one category 'object')")
    parser.add_argument("--min-area", type=float, default=None, help="drop smaller annotations (pixels, default 1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from steadyseg.cli import set_flags
    from steadyseg.datasets.coco_from_masks import coco_from_masks

    if len(args.frames) != len(args.masks):
        raise ValueError(f"give one --masks per --frames (got {len(args.frames)} --frames, {len(args.masks)} --masks)")
    summary = coco_from_masks(list(zip(args.frames, args.masks)), args.out, progress=not args.quiet,
                              **set_flags(args, ["every", "polygon_tolerance", "per_id", "min_area"]))
    print(f"coco-from-masks: {summary['images']} images, {summary['annotations']} annotations, "
          f"{summary['categories']} categories ({summary['dropped_small']} tiny objects dropped)")
    print(f"  wrote {summary['instances']}")
    return 0
