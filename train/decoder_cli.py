"""``steadyseg train decoder``: the multi-input decoder trained with the consistency loss on unlabeled video.

    steadyseg train decoder --frames DIR --teacher DIR [--frames DIR --teacher DIR ...] --out RUN
        [--inputs 7] [--causal] [--flow-guided [--base teacher|vote] [--photometric-sigma S]]
        [--encoder small|deeplabv3 --encoder-checkpoint PATH] [--size H W] [--lambda-data F]
        [--data-target teacher|vote [--photometric-sigma S]]
        [--loss-photometric-sigma S]
        [--balance windows|videos [--balance-power P]] [--minutes M | --steps S] [--seed S] [--resume]

``--frames``/``--teacher`` pairs are matched in order. Flags default to None;
:data:`steadyseg.train.decoder_training.DECODER_DEFAULTS` keeps the defaults. The flags shared with
``steadyseg train ti`` (:mod:`steadyseg.train.ti_cli`) are added by :func:`add_video_training_arguments`.
"""

from __future__ import annotations

import argparse

#: flags of every video-training command (decoder, ti), forwarded to train_decoder when set
COMMON_FLAGS = ["width", "hidden", "size", "crop", "hflip_prob", "confidence", "binary", "num_classes", "lr",
                "batch_size", "steps", "minutes", "seed", "checkpoint_every", "device", "amp", "resume"]
_DECODER_FLAGS = ["inputs", "causal", "flow_guided", "base", "photometric_sigma", "encoder", "encoder_checkpoint",
                  "lambda_data", "data_target", "loss_photometric_sigma", "balance", "balance_power", "flow", "preset",
                  "cache_dir", "flow_jobs"]


def add_video_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of :data:`COMMON_FLAGS` plus ``--frames``/``--teacher``/``--out``/``--quiet``."""
    parser.add_argument("--frames", action="append", required=True, metavar="DIR",
                        help="folder of frames (or a video file); repeat for more videos")
    parser.add_argument("--teacher", action="append", required=True, metavar="DIR",
                        help="the teacher's per-frame masks (PNG) or probabilities (.npy/.npz) of the matching "
                             "--frames; repeat in the same order")
    parser.add_argument("--out", required=True, metavar="RUN", help="run folder (model.pt, checkpoints/, log.jsonl)")
    parser.add_argument("--width", type=int, default=None, help="encoder channels per frame (16)")
    parser.add_argument("--hidden", type=int, default=None, help="joint-decoder channels per frame (16)")
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="training size (default: the videos' size); prediction stays at full resolution")
    parser.add_argument("--crop", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="random crop of the training-size windows (default: none)")
    parser.add_argument("--hflip-prob", type=float, default=None, help="horizontal flip probability (0.5)")
    parser.add_argument("--confidence", type=float, default=None,
                        help="label probability given to hard teacher masks (0.9)")
    parser.add_argument("--binary", action="store_true", default=None,
                        help="teacher object ids 1..254 → one foreground class")
    parser.add_argument("--num-classes", type=int, default=None, help="class count (default: from the teachers)")
    parser.add_argument("--lr", type=float, default=None, help="Adam learning rate (1e-3)")
    parser.add_argument("--batch-size", type=int, default=None, help="windows per step and process (1)")
    budget = parser.add_argument_group("budget (the first reached stops the run)")
    budget.add_argument("--steps", type=int, default=None, help="training steps")
    budget.add_argument("--minutes", type=float, default=None, help="time budget in minutes")
    parser.add_argument("--seed", type=int, default=None, help="random seed (0)")
    parser.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints (50)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--no-amp", dest="amp", action="store_false", default=None,
                        help="no bfloat16 autocast on CUDA")
    parser.add_argument("--resume", action="store_true", default=None, help="continue RUN/checkpoints/last.pt")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run_video_training(args: argparse.Namespace, flags: list[str], *, name: str, **fixed) -> int:
    """Forward the set flags (and ``fixed`` keyword arguments) to ``train_decoder`` and print a summary."""
    from steadyseg.cli import set_flags
    from steadyseg.train.decoder_training import train_decoder

    if len(args.frames) != len(args.teacher):
        raise SystemExit(f"give one --teacher per --frames (got {len(args.frames)} --frames and "
                         f"{len(args.teacher)} --teacher)")
    rec = train_decoder(list(zip(args.frames, args.teacher)), args.out, progress=not args.quiet, **fixed,
                        **set_flags(args, flags))
    terms = ", ".join(f"{k} {v:.4f}" for k, v in rec["final_loss_terms"].items())
    print(f"train {name}: {rec['step']} steps ({rec['stop_reason']}), {rec['wall_s']:.0f} s; last step: {terms}; "
          f"wrote {args.out}/model.pt")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_video_training_arguments(parser)
    parser.add_argument("--inputs", type=int, default=None, metavar="N", help="frames per window (7)")
    parser.add_argument("--causal", action="store_true", default=None,
                        help="online model: frame t is predicted from frames t-N+1..t only (streaming)")
    parser.add_argument("--flow-guided", action="store_true", default=None,
                        help="the decoder also reads the neighbours' teacher outputs warped into each frame by flow")
    parser.add_argument("--base", choices=("teacher", "vote"), default=None,
                        help="what the learned correction is added to: the teacher (default, the paper) or, with "
                             "--flow-guided, the vote of each frame and its neighbours warped by flow")
    parser.add_argument("--photometric-sigma", type=float, default=None, metavar="S",
                        help="--flow-guided or --data-target vote: weight each warped neighbour by "
                             "exp(-|I_t - W(I_n)|^2 / 2 S^2), its colour match with the frame (RGB in [0, 1]; e.g. "
                             "0.1), not by the 0/1 validity alone")
    parser.add_argument("--encoder", choices=("small", "deeplabv3"), default=None,
                        help="frame encoder: small (from scratch, default) or deeplabv3 (frozen, features cached)")
    parser.add_argument("--encoder-checkpoint", default=None, metavar="PATH",
                        help="deeplabv3: a teacher model.pt or a torchvision deeplabv3_resnet50 checkpoint")
    parser.add_argument("--lambda-data", type=float, default=None, help="weight λ of the data term (0.5)")
    parser.add_argument("--data-target", choices=("teacher", "vote"), default=None,
                        help="target of the data term: the teacher (default, the paper) or the teacher's flow vote "
                             "(each frame averaged with its neighbours warped by the training flows, weighted by "
                             "--photometric-sigma when given; any model, flow-guided or not, N >= 3)")
    parser.add_argument("--loss-photometric-sigma", type=float, default=None, metavar="S",
                        help="weight each pixel pair of the consistency loss by its colour match, exp(-|I_q - "
                             "W(I_p)|^2 / 2 S^2), on top of the flow validity (default: validity only, the paper)")
    parser.add_argument("--balance", choices=("windows", "videos"), default=None,
                        help="windows: uniform over all windows (the paper, default); videos: every video equally "
                             "often, its consistency term weighted by its teacher's flicker (same relative gain asked "
                             "of every video)")
    parser.add_argument("--balance-power", type=float, default=None, metavar="P",
                        help="--balance videos: weights ∝ (1 / teacher flicker) ** P, P in [0, 1] "
                             "(1; 0 = no weights)")
    parser.add_argument("--flow", choices=("dis", "farneback"), default=None, help="flow backend (dis)")
    parser.add_argument("--preset", choices=("ultrafast", "fast", "medium"), default=None, help="DIS preset (medium)")
    parser.add_argument("--cache-dir", default=None, metavar="DIR", help="flow cache (default RUN/cache/flow)")
    parser.add_argument("--flow-jobs", type=int, default=None, help="parallel flow workers (1; -1 = all cores)")


def main(args: argparse.Namespace) -> int:
    return run_video_training(args, COMMON_FLAGS + _DECODER_FLAGS, name="decoder")
