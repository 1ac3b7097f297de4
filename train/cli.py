"""``steadyseg train``: the training commands, one sub-subcommand per model kind.

    steadyseg train teacher ...      DeepLabV3 / LRASPP teacher on a COCO file (steadyseg.train.teacher_cli)
    steadyseg train decoder ...      the multi-input decoder with the consistency loss (steadyseg.train.decoder_cli)
    steadyseg train ti ...           the TI baseline (steadyseg.train.ti_cli)
    steadyseg train video-model ...  a video model, and its consistency fine-tuning (steadyseg.train.video_model_cli)

A new training command adds one line to :data:`TRAIN_COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib

# name -> (module with add_arguments/main, one-line help)
TRAIN_COMMANDS: dict[str, tuple[str, str]] = {
    "teacher": ("steadyseg.train.teacher_cli", "train a DeepLabV3 / LRASPP teacher on a COCO file"),
    "decoder": ("steadyseg.train.decoder_cli", "train the multi-input decoder with the consistency loss on video"),
    "ti": ("steadyseg.train.ti_cli", "train the TI baseline (one-input decoder, transform-invariance loss)"),
    "video-model": ("steadyseg.train.video_model_cli",
                    "train a video model (3D-conv or your own) on annotated video; fine-tune it with the consistency "
                    "loss"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="train_command", metavar="MODEL")
    for name, (module_name, help_text) in TRAIN_COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(func=module.main)
    parser.set_defaults(func=_no_command(parser))


def _no_command(parser: argparse.ArgumentParser):
    def run(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2
    return run


def main(args: argparse.Namespace) -> int:  # reached only through the sub-subcommands' func
    return args.func(args)
