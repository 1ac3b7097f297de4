"""``steadyseg refine-train``: train or fine-tune the CascadePSP refiner.

Sources (one of): ``--images DIR --masks DIR`` (pairs by file stem), ``--coco instances.json --images DIR``
(one sample per non-crowd instance), ``--davis DIR`` (DAVIS ``JPEGImages/480p`` + ``Annotations/480p``).
Writes ``OUT/checkpoint.pt`` (usable as ``--checkpoint`` of the refiners), ``OUT/config.yaml`` and
``OUT/history.json``. Flags default to None; the library (:func:`train_cascadepsp`) keeps the defaults.
"""

from __future__ import annotations

import argparse

from steadyseg.cli import set_flags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``refine-train``'s flags (all default to None)."""
    src = parser.add_argument_group("data (one source)")
    src.add_argument("--images", help="image folder (with --masks, or the COCO image folder with --coco)")
    src.add_argument("--masks", help="mask folder: files with the same stem as the images, foreground > 0 / > 127")
    src.add_argument("--coco", help="COCO instances JSON; samples are its non-crowd instances")
    src.add_argument("--coco-min-area", type=float, default=None, help="skip COCO instances smaller (default 1024)")
    src.add_argument("--davis", help="DAVIS root with JPEGImages/480p and Annotations/480p")
    parser.add_argument("--out", required=True, help="output folder (checkpoint.pt, config.yaml, history.json)")
    parser.add_argument("--iterations", type=int, default=None, help="training iterations (default 45000)")
    parser.add_argument("--batch-size", type=int, default=None, help="batch size (default 12)")
    parser.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 2.25e-4)")
    parser.add_argument("--weight-decay", type=float, default=None, help="Adam weight decay (default 1e-4)")
    parser.add_argument("--crop", type=int, default=None, help="square crop side, multiple of 8 (default 224)")
    parser.add_argument("--init", help="initial weights (official CascadePSP checkpoint or one of ours)")
    parser.add_argument("--resume", action="store_true", default=None, help="continue from OUT/checkpoint.pt")
    parser.add_argument("--device", default=None, help="torch device (default cpu)")
    parser.add_argument("--seed", type=int, default=None, help="seed of init and data stream (default 0)")
    parser.add_argument("--num-workers", type=int, default=None, help="data loader processes (default 0)")
    parser.add_argument("--save-every", type=int, default=None, help="checkpoint interval (default 1000)")


def _samples(args: argparse.Namespace):
    from steadyseg.refine.cascadepsp import training as T

    chosen = [name for name, on in (("--images/--masks", args.masks is not None), ("--coco", args.coco is not None),
                                    ("--davis", args.davis is not None)) if on]
    if len(chosen) != 1:
        raise ValueError(f"give exactly one data source (--images DIR --masks DIR | --coco FILE --images DIR | "
                         f"--davis DIR), got {chosen or 'none'}")
    if args.davis is not None:
        return T.davis_samples(args.davis), {"davis": args.davis}
    if args.images is None:
        raise ValueError(f"{chosen[0]} needs --images DIR")
    if args.coco is not None:
        kw = set_flags(args, {"coco_min_area": "min_area"})
        return T.coco_samples(args.coco, args.images, **kw), {"coco": args.coco, "images": args.images, **kw}
    return T.folder_samples(args.images, args.masks), {"images": args.images, "masks": args.masks}


def main(args: argparse.Namespace) -> int:
    """Train with :func:`~steadyseg.refine.cascadepsp.training.train_cascadepsp` on the chosen data source."""
    from steadyseg.refine.cascadepsp.training import train_cascadepsp

    samples, source = _samples(args)
    kwargs = set_flags(args, ["iterations", "batch_size", "lr", "weight_decay", "crop", "init", "resume", "device",
                              "seed", "num_workers", "save_every"])
    history = train_cascadepsp(samples, args.out, config={"source": source}, **kwargs)
    if history:
        last = history[-1]
        print(f"refine-train: {len(samples)} samples, iteration {last['iteration']}, loss {last['total']:.4f}; "
              f"checkpoint {args.out}/checkpoint.pt")
    return 0
