"""``steadyseg train ti``: the TI baseline (the decoder with one input, transform-invariance loss, no flow).

    steadyseg train ti --frames DIR --teacher DIR [--frames DIR --teacher DIR ...] --out RUN [--alpha 0.95]
        [--minutes M | --steps S] [--size H W] [--seed S] [--resume]

Writes ``RUN/model.pt`` of kind ``decoder`` (N = 1), predicted with ``steadyseg predict ... --teacher DIR``.
Flags default to None; :data:`steadyseg.train.decoder_training.DECODER_DEFAULTS` keeps the defaults.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from steadyseg.train.decoder_cli import add_video_training_arguments

    add_video_training_arguments(parser)
    parser.add_argument("--alpha", type=float, default=None, help="weight of the transform-invariance term (0.95)")


def main(args: argparse.Namespace) -> int:
    from steadyseg.train.decoder_cli import COMMON_FLAGS, run_video_training

    return run_video_training(args, COMMON_FLAGS + ["alpha"], name="ti", objective="ti", inputs=1)
