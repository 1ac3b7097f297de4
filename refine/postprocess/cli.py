"""``steadyseg postprocess wgf|gauss``: 3D weighted guided filter or temporal Gaussian on a mask video.

::

    steadyseg postprocess wgf   --frames DIR (--masks DIR | --probs DIR) --out DIR [--strength light|medium|strong]
                                [--radius R] [--temporal-radius RT] [--eps EPS] [--guide color|gray] [--no-weights]
                                [--low 0.3] [--high 0.5] [--binary]
    steadyseg postprocess gauss [--frames DIR] (--masks DIR | --probs DIR) --out DIR [--sigma 1.0] [--binary]

Parsing only: flags default to None, the flags given are forwarded with :func:`steadyseg.cli.set_flags` to
:func:`steadyseg.refine.postprocess.video_filter.postprocess_video`, which keeps the defaults
(:data:`~steadyseg.refine.postprocess.video_filter.WGF_DEFAULTS`, ``WGF_PRESETS``, ``GAUSS_DEFAULTS``) and documents
the formats. ``--strength`` picks a measured point of the WGF's inconsistency / accuracy front (a preset of guide,
radius, temporal radius and eps); the explicit flags override the preset's values.
"""

from __future__ import annotations

import argparse

from steadyseg.cli import set_flags
from steadyseg.refine.postprocess.video_filter import GAUSS_DEFAULTS, WGF_DEFAULTS, WGF_PRESETS, postprocess_video

__all__ = ["add_arguments", "main"]


def _common(p: argparse.ArgumentParser, *, frames_required: bool) -> None:
    p.add_argument("--frames", default=None, required=frames_required,
                   help="the video: a folder of frames (e.g. DAVIS JPEGImages/480p/<seq>) or a video file"
                        + ("" if frames_required else " (optional: only checked against the masks)"))
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--masks", default=None, help="folder of mask PNGs (DAVIS {0,255}, palette ids, labels)")
    src.add_argument("--probs", default=None,
                     help="folder of (C,H,W) .npy/.npz probabilities, or one (T,C,H,W) file")
    p.add_argument("--out", required=True, help="output folder (masks in the input's format + config.yaml)")
    p.add_argument("--binary", action="store_true", default=None, help="collapse object ids 1..254 into one class")
    p.add_argument("--max-frames", type=int, default=None, help="only the first N frames")
    p.add_argument("--no-progress", action="store_true", default=None, help="no progress bar")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``postprocess wgf`` and ``postprocess gauss`` sub-subcommands (flags default to None)."""
    parser.set_defaults(func=main, pp_method=None)
    sub = parser.add_subparsers(dest="pp_method", metavar="METHOD")
    d = WGF_DEFAULTS
    wgf = sub.add_parser("wgf", help="3D (x, y, t) weighted guided filter, guided by the frames",
                         description="3D weighted guided filter (paper 5.4) on each class's probability.")
    _common(wgf, frames_required=True)
    presets = "; ".join(f"{name}: {p['guide']} r {p['radius']}, rt {p['temporal_radius']}, eps {p['eps']:g}"
                        for name, p in WGF_PRESETS.items())
    wgf.add_argument("--strength", choices=list(WGF_PRESETS), default=None,
                     help=f"a measured point of the steadiness / accuracy front, stronger = steadier ({presets}; "
                          f"default {d['strength']}); the flags below override it")
    wgf.add_argument("--radius", type=int, default=None,
                     help=f"spatial radius r, window 2r+1 (default: the strength's, {d['radius']})")
    wgf.add_argument("--temporal-radius", type=int, default=None,
                     help=f"temporal radius rt in frames, window 2rt+1; 0 = 2D filter "
                          f"(default: the strength's, {d['temporal_radius']})")
    wgf.add_argument("--eps", type=float, default=None,
                     help=f"regularisation on the guide variance (default: the strength's, {d['eps']})")
    wgf.add_argument("--guide", choices=["color", "gray"], default=None,
                     help=f"guide image (default: the strength's, {d['guide']})")
    wgf.add_argument("--no-weights", dest="weighted", action="store_false", default=None,
                     help="plain guided filter (no confidence weights)")
    wgf.add_argument("--low", type=float, default=None,
                     help=f"confidence: background below this p (default {d['low']})")
    wgf.add_argument("--high", type=float, default=None,
                     help=f"confidence: foreground above this p (default {d['high']})")
    wgf.add_argument("--floor", type=float, default=None, help=f"minimum confidence weight (default {d['floor']})")
    wgf.set_defaults(func=main)
    gauss = sub.add_parser("gauss", help="temporal Gaussian smoothing of the class probabilities (baseline)",
                           description="Temporal Gaussian of each class's probability, sigma in frames.")
    _common(gauss, frames_required=False)
    gauss.add_argument("--sigma", type=float, default=None,
                       help=f"sigma in frames (default {GAUSS_DEFAULTS['sigma']})")
    gauss.add_argument("--truncate", type=float, default=None,
                       help=f"kernel radius in sigmas (default {GAUSS_DEFAULTS['truncate']})")
    gauss.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run :func:`postprocess_video` with the method and the flags given; prints what was written."""
    method = getattr(args, "pp_method", None)
    if method not in ("wgf", "gauss"):
        raise ValueError("postprocess: choose a method: `steadyseg postprocess wgf ...` or `... gauss ...` "
                         "(see --help)")
    params = set_flags(args, list(WGF_DEFAULTS if method == "wgf" else GAUSS_DEFAULTS))
    options = set_flags(args, {"frames": "frames_path", "binary": "binary", "max_frames": "max_frames"})
    config = postprocess_video(args.masks or args.probs, args.out, method=method, progress=not args.no_progress,
                               **options, **params)
    print(f"postprocess {method}: wrote {config['frames_processed']} masks ({config['reading']}) to {args.out}")
    return 0
