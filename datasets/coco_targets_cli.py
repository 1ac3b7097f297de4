"""``steadyseg coco-targets``: write the semantic targets a teacher learns from a COCO file (palette PNGs).

    steadyseg coco-targets --annotations instances.json --images DIR --labels voc21|coco81|file
        [--split train|val] --out DIR

Flags default to None; :func:`steadyseg.datasets.coco_targets.write_coco_targets` keeps the defaults.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--annotations", required=True, metavar="FILE", help="COCO instances JSON")
    parser.add_argument("--images", required=True, metavar="DIR", help="folder with the images' file_name")
    parser.add_argument("--labels", choices=["voc21", "coco81", "file"], default=None,
                        help="label set: voc21 (torchvision's CAT_LIST), coco81, or file (the file's categories) "
                             "(default: voc21)")
    parser.add_argument("--split", choices=["train", "val"], default=None,
                        help="train drops images whose kept annotations' areas sum to <= 1000 (default: val)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder: <stem>.png, targets.json")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from steadyseg.cli import set_flags
    from steadyseg.datasets.coco_targets import write_coco_targets

    record = write_coco_targets(args.annotations, args.images, args.out, progress=not args.quiet,
                                **set_flags(args, ["labels", "split"]))
    print(f"coco-targets: {len(record['image_ids'])} images kept, {len(record['dropped'])} dropped "
          f"({record['label_set']}, {len(record['names'])} classes, split {record['split']}); "
          f"void pixels {record['pixel_counts']['void']}")
    print(f"  wrote {args.out}/targets.json")
    return 0
