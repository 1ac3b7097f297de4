"""``steadyseg predict``: per-frame predictions of a trained model (any kind) on a video.

    steadyseg predict --checkpoint RUN/model.pt --frames DIR|VIDEO --out DIR [--probs] [--foreground]
        [--batch-size B] [--device cpu]

Writes ``DIR/<frame stem>.png`` (labels), with ``--probs`` ``DIR/probs/<frame stem>.npz`` ((C, H, W) float16),
with ``--foreground`` a two-class output (1 − p(background)). Flags default to None;
:data:`steadyseg.train.predict.PREDICT_DEFAULTS` keeps the defaults.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="FILE", help="RUN/model.pt of a trained model")
    parser.add_argument("--frames", required=True, metavar="DIR", help="folder of frames or a video file")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--teacher", default=None, metavar="DIR",
                        help="decoder models: the teacher's masks or probabilities of these frames")
    parser.add_argument("--probs", action="store_true", default=None,
                        help="also write probs/<stem>.npz, (C, H, W) float16")
    parser.add_argument("--foreground", action="store_true", default=None,
                        help="two-class output: p = [p_bg, 1 - p_bg], label 1 where 1 - p_bg > 0.5")
    parser.add_argument("--batch-size", type=int, default=None, help="frames per forward pass (default 4)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--no-amp", dest="amp", action="store_false", default=None, help="no autocast on CUDA")
    parser.add_argument("--flow-cache", default=None, metavar="DIR",
                        help="flow-guided decoders: flow cache (default: the persistent cache, `steadyseg cache info`)")
    parser.add_argument("--no-flow-cache", dest="flow_cache", action="store_false", default=None,
                        help="flow-guided decoders: keep no flow on disk")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from steadyseg.cli import set_flags
    from steadyseg.train.predict import predict_video

    rec = predict_video(args.checkpoint, args.frames, args.out, progress=not args.quiet,
                        **set_flags(args, ["probs", "foreground", "batch_size", "device", "amp", "teacher", "flow_cache"]))
    print(f"predict ({rec['kind']}): {rec['count']} frames of {rec['size'][1]}x{rec['size'][0]}, "
          f"{rec['num_classes']} classes, {rec['fps']:.2f} frames/s; wrote {args.out}")
    return 0
