"""``steadyseg train video-model``: train a video segmentation model on annotated video, or fine-tune it with the
consistency loss.

    steadyseg train video-model --frames DIR --masks DIR [--frames DIR --masks DIR ...] --out RUN
        [--model reference | module.path:factory | file.py:factory] [--model-arg KEY=VALUE ...]
        [--adapter KEY=VALUE ...] [--backbone r3d_18|mc3_18|r2plus1d_18] [--checkpoint PATH]
        [--clip-length T] [--size H W] [--binary] [--epochs E | --minutes M] [--seed S] [--resume]
    steadyseg train video-model ... --init RUN/model.pt --consistency-weight W      (consistency fine-tuning)

``--frames``/``--masks`` pairs are matched in order. Flags default to None;
:data:`steadyseg.train.video_training.VIDEO_MODEL_DEFAULTS` keeps the defaults.
"""

from __future__ import annotations

import argparse

_FLAGS = ["model", "backbone", "backbone_checkpoint", "decoder_channels", "checkpoint", "init", "clip_length",
          "size", "crop", "hflip_prob", "binary", "num_classes", "consistency_weight", "pair_window",
          "soft_iou_weight", "optimizer", "lr", "momentum", "weight_decay", "batch_size", "clips_per_epoch",
          "epochs", "minutes", "seed", "flow", "preset", "cache_dir", "flow_jobs", "device", "amp", "resume"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--frames", action="append", required=True, metavar="DIR",
                      help="folder of frames (or a video file); repeat for more videos")
    data.add_argument("--masks", action="append", required=True, metavar="DIR",
                      help="the annotation masks of the matching --frames (any mask format; repeat in order)")
    parser.add_argument("--out", required=True, metavar="RUN",
                        help="run folder (model.pt, epoch-NNN.pt, checkpoints/, log.jsonl)")
    data.add_argument("--clip-length", type=int, default=None, metavar="T", help="frames per clip (8)")
    data.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"),
                      help="training size (default: the videos' size); prediction is at full resolution")
    data.add_argument("--crop", type=int, nargs=2, default=None, metavar=("H", "W"),
                      help="random crop of the training-size clips (default: none)")
    data.add_argument("--hflip-prob", type=float, default=None, help="horizontal flip probability (0.5)")
    data.add_argument("--binary", action="store_true", default=None,
                      help="every object id is foreground (DAVIS-2016 / salient-object style)")
    data.add_argument("--num-classes", type=int, default=None, help="class count (default: from the masks)")
    model = parser.add_argument_group("model")
    model.add_argument("--model", default=None, metavar="SPEC",
                       help="reference (the 3D-conv model, default) or a factory: module.path:name or file.py:name")
    model.add_argument("--model-arg", dest="model_args", action="append", default=None, metavar="KEY=VALUE",
                       help="keyword argument of the factory (repeat; values read as JSON, else strings)")
    model.add_argument("--adapter", action="append", default=None, metavar="KEY=VALUE",
                       help="adapter option (repeat): layout, output_layout, output_key, scale, mean, std, "
                            "size_multiple, time_multiple, resize_output")
    model.add_argument("--backbone", choices=("r3d_18", "mc3_18", "r2plus1d_18"), default=None,
                       help="reference model: torchvision video backbone (r3d_18)")
    model.add_argument("--backbone-checkpoint", default=None, metavar="PATH",
                       help="reference model: local torchvision backbone weights (default: random init)")
    model.add_argument("--decoder-channels", type=int, default=None, help="reference model: decoder width (64)")
    model.add_argument("--checkpoint", default=None, metavar="PATH",
                       help="weights to load into the model (a state dict; mismatches are listed)")
    model.add_argument("--init", default=None, metavar="RUN/model.pt",
                       help="start from a trained video model (its config defines the model)")
    loss = parser.add_argument_group("loss")
    loss.add_argument("--consistency-weight", type=float, default=None, metavar="W",
                      help="weight of the flow-consistency loss (0: plain supervised training)")
    loss.add_argument("--pair-window", type=int, default=None, metavar="K",
                      help="consistency pairs with 1 <= |p - q| <= K inside a clip (3, as the measure)")
    loss.add_argument("--soft-iou-weight", type=float, default=None, help="weight of 1 - soft IoU (0)")
    optim = parser.add_argument_group("optimiser and budget (the first reached stops the run)")
    optim.add_argument("--optimizer", choices=("adam", "sgd"), default=None, help="adam (default) or sgd")
    optim.add_argument("--lr", type=float, default=None, help="learning rate (1e-3; 1e-4 with --init/--checkpoint)")
    optim.add_argument("--momentum", type=float, default=None, help="SGD momentum (0.9)")
    optim.add_argument("--weight-decay", type=float, default=None, help="weight decay (0)")
    optim.add_argument("--batch-size", type=int, default=None, help="clips per step and process (1)")
    optim.add_argument("--clips-per-epoch", type=int, default=None,
                       help="clips per epoch (default: annotated frames / clip length)")
    optim.add_argument("--epochs", type=float, default=None, help="epochs (a model is saved after each)")
    optim.add_argument("--minutes", type=float, default=None, help="time budget in minutes")
    parser.add_argument("--seed", type=int, default=None, help="random seed (0)")
    flow = parser.add_argument_group("flow (consistency loss)")
    flow.add_argument("--flow", choices=("dis", "farneback"), default=None, help="flow backend (dis)")
    flow.add_argument("--preset", choices=("ultrafast", "fast", "medium"), default=None, help="DIS preset (medium)")
    flow.add_argument("--cache-dir", default=None, metavar="DIR", help="flow cache (default RUN/cache/flow)")
    flow.add_argument("--flow-jobs", type=int, default=None, help="parallel flow workers (1; -1 = all cores)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--no-amp", dest="amp", action="store_false", default=None, help="no bfloat16 autocast on CUDA")
    parser.add_argument("--resume", action="store_true", default=None, help="continue RUN/checkpoints/last.pt")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def main(args: argparse.Namespace) -> int:
    from steadyseg.cli import parse_key_values, set_flags
    from steadyseg.errors import InputError
    from steadyseg.train.video_training import train_video_model

    if len(args.frames) != len(args.masks):
        raise InputError(None, f"give one --masks per --frames (got {len(args.frames)} --frames and "
                               f"{len(args.masks)} --masks)")
    kwargs = set_flags(args, _FLAGS)
    if args.model_args is not None:
        kwargs["model_args"] = parse_key_values(args.model_args, flag="--model-arg")
    if args.adapter is not None:
        kwargs["adapter"] = parse_key_values(args.adapter, flag="--adapter")
    rec = train_video_model(list(zip(args.frames, args.masks)), args.out, progress=not args.quiet, **kwargs)
    terms = ", ".join(f"{k} {v:.4f}" for k, v in rec["final_loss_terms"].items())
    print(f"train video-model: {rec['step']} steps = {rec['epoch']:.2f} epochs ({rec['stop_reason']}), "
          f"{rec['wall_s']:.0f} s, {rec['clips_per_s'] or 0:.2f} clips/s; last step: {terms}; "
          f"wrote {args.out}/model.pt and epoch-*.pt")
    return 0
