"""``steadyseg train teacher``: torchvision's segmentation recipe on a COCO file.

    steadyseg train teacher --annotations instances_train2017.json --images train2017 --out runs/teacher \\
        [--labels voc21|coco81|file] [--architecture deeplabv3_resnet50|deeplabv3_mobilenet_v3_large|
        lraspp_mobilenet_v3_large] [--init FILE] [--epochs N | --minutes M] [--base-size 520 --crop-size 480]
        [--batch-size 8] [--lr 0.02] [--seed 0] [--workers 2] [--val-annotations F --val-images DIR] [--resume]

Multi-process: ``torchrun --nproc-per-node N -m steadyseg.cli train teacher ...``. Flags default to None;
:data:`steadyseg.train.teacher.TEACHER_DEFAULTS` keeps the defaults.
"""

from __future__ import annotations

import argparse

_FLAGS = ["labels", "split", "architecture", "width_mult", "init", "epochs", "minutes", "stop_at_step",
          "base_size", "crop_size", "min_scale", "max_scale", "hflip_prob", "batch_size", "lr", "momentum",
          "weight_decay", "lr_power", "aux_weight", "aux_lr_mult", "seed", "workers", "device", "val_annotations",
          "val_images", "eval_every", "checkpoint_every", "precise_bn", "resume"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--annotations", required=True, metavar="FILE", help="training COCO instances JSON")
    parser.add_argument("--images", required=True, metavar="DIR", help="folder with the images' file_name")
    parser.add_argument("--out", required=True, metavar="RUN",
                        help="run folder: model.pt, checkpoints/, log.jsonl, curves.png, config.yaml")
    parser.add_argument("--labels", choices=["voc21", "coco81", "file"], default=None,
                        help="label set (default: voc21, torchvision's CAT_LIST)")
    parser.add_argument("--split", choices=["train", "val"], default=None,
                        help="train applies torchvision's area filter (default: train)")
    parser.add_argument("--architecture", default=None,
                        choices=["deeplabv3_resnet50", "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"],
                        help="network (default: deeplabv3_resnet50)")
    parser.add_argument("--no-aux", dest="aux_loss", action="store_false", default=None,
                        help="no auxiliary head (default: on for DeepLabV3, off for LRASPP)")
    parser.add_argument("--width-mult", type=float, default=None,
                        help="MobileNetV3 width multiplier (default 1.0 = torchvision's model)")
    parser.add_argument("--init", default=None, metavar="FILE",
                        help="local checkpoint: a full model state dict (fine-tune) or a backbone-only one")
    budget = parser.add_argument_group("length (give --epochs, --minutes, or both: the first reached stops)")
    budget.add_argument("--epochs", type=float, default=None, help="epochs (default 30; fractions allowed)")
    budget.add_argument("--minutes", type=float, default=None,
                        help="wall-clock budget; alone, the LR schedule's length is measured over the first steps")
    budget.add_argument("--stop-at-step", type=int, default=None,
                        help="stop (and checkpoint) at this step, keeping the planned schedule; --resume continues")
    parser.add_argument("--base-size", type=int, default=None, help="resize base (default 520)")
    parser.add_argument("--crop-size", type=int, default=None, help="training crop (default 480)")
    parser.add_argument("--min-scale", type=float, default=None, help="random resize minimum × base (default 0.5)")
    parser.add_argument("--max-scale", type=float, default=None, help="random resize maximum × base (default 2.0)")
    parser.add_argument("--hflip-prob", type=float, default=None, help="horizontal flip probability (default 0.5)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per step and process (default 8)")
    parser.add_argument("--lr", type=float, default=None, help="base learning rate (default 0.02)")
    parser.add_argument("--momentum", type=float, default=None, help="SGD momentum (default 0.9)")
    parser.add_argument("--weight-decay", type=float, default=None, help="weight decay (default 1e-4)")
    parser.add_argument("--lr-power", type=float, default=None, help="polynomial decay power (default 0.9)")
    parser.add_argument("--aux-weight", type=float, default=None, help="aux loss weight (default 0.5)")
    parser.add_argument("--aux-lr-mult", type=float, default=None, help="aux head lr multiplier (default 10)")
    parser.add_argument("--seed", type=int, default=None, help="seed of data order, augmentation, init (default 0)")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader worker processes (default 2)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--no-amp", dest="amp", action="store_false", default=None,
                        help="no mixed precision on CUDA (AMP is never used on the CPU)")
    parser.add_argument("--val-annotations", default=None, metavar="FILE",
                        help="COCO file evaluated during training (mIoU in the log and plot)")
    parser.add_argument("--val-images", default=None, metavar="DIR", help="images of --val-annotations")
    parser.add_argument("--eval-every", type=float, default=None, help="epochs between evaluations (default 1)")
    parser.add_argument("--checkpoint-every", type=int, default=None,
                        help="steps between checkpoints (they are also written every epoch and at the end)")
    parser.add_argument("--precise-bn", type=int, default=None, metavar="N",
                        help="after training, recompute batch-norm statistics over N training batches (default 0)")
    parser.add_argument("--resume", action="store_true", default=None,
                        help="continue RUN/checkpoints/last.pt exactly")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from steadyseg.cli import set_flags
    from steadyseg.train.teacher import train_teacher

    kwargs = set_flags(args, _FLAGS + ["aux_loss", "amp"])
    record = train_teacher(args.annotations, args.images, args.out, progress=not args.quiet, **kwargs)
    ev = record.get("eval") or {}
    miou = f", val mIoU {ev['miou']:.3f}" if ev.get("miou") is not None else ""
    print(f"train teacher: {record['step']} steps ({record['epochs']:.2f} epochs, stopped by "
          f"{record['stop_reason']}) in {record['wall_s']:.1f} s, {record['images_per_s'] or 0:.1f} images/s{miou}")
    print(f"  wrote {args.out}/model.pt")
    return 0
