"""``steadyseg eval``: mIoU, pixel accuracy and per-class IoU of a trained model on a COCO file.

    steadyseg eval --checkpoint RUN/model.pt --annotations instances_val2017.json --images val2017
        [--labels voc21|coco81|file] [--split val|train] [--base-size N] [--device cpu] [--out result.json]

Prints the result as JSON. Flags default to None; :func:`steadyseg.train.evaluate.evaluate_checkpoint` keeps the
defaults (the model's own label set and base size).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="FILE", help="RUN/model.pt of a trained model")
    parser.add_argument("--annotations", required=True, metavar="FILE", help="COCO instances JSON")
    parser.add_argument("--images", required=True, metavar="DIR", help="folder with the images' file_name")
    parser.add_argument("--labels", choices=["voc21", "coco81", "file"], default=None,
                        help="label set of the targets (default: the model's)")
    parser.add_argument("--split", choices=["val", "train"], default=None, help="default: val (every image)")
    parser.add_argument("--base-size", type=int, default=None, help="shorter side (default: the model's)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--out", default=None, metavar="FILE", help="also write the JSON result here")
    parser.add_argument("--confusion", action="store_true", help="include the confusion matrix in the printout")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    import json

    from steadyseg.cli import set_flags
    from steadyseg.train.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(args.checkpoint, args.annotations, args.images, progress=not args.quiet,
                                 **set_flags(args, ["labels", "split", "base_size", "device", "out"]))
    shown = result if args.confusion else {k: v for k, v in result.items() if k != "confusion"}
    print(json.dumps(shown, indent=2))
    return 0
