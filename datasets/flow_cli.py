"""``steadyseg flow``: precompute optical flow for every frame pair in a temporal window into the disk cache.

Example::

    steadyseg flow --frames ../shared/data/davis2016/JPEGImages/480p/blackswan --cache cache/flow --window 3 \\
        --workers 2

prints the number of pairs, how many were already cached, and timings; a run record
(``flow-run-<video>.yaml``, the resolved configuration) is written into the cache folder.
"""

from __future__ import annotations

import argparse

# Library defaults live in steadyseg.datasets.flow; these only document them in --help.
_DEFAULTS = {"backend": "dis", "preset": "medium", "window": 3, "workers": 1, "raft_model": "raft_small",
             "device": "cpu"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", required=True, metavar="DIR",
                        help="folder of frames (e.g. DAVIS JPEGImages/480p/<seq>) or a video file (mp4/avi)")
    parser.add_argument("--cache", required=True, metavar="DIR", help="flow cache folder (created if missing)")
    parser.add_argument("--backend", choices=["dis", "farneback", "raft"], default=None,
                        help="flow backend (default: dis)")
    parser.add_argument("--preset", choices=["ultrafast", "fast", "medium"], default=None,
                        help="DIS preset (default: medium)")
    parser.add_argument("--window", type=int, default=None, metavar="K",
                        help="all ordered pairs with 1 <= |p - q| <= K (default: 3)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="parallel joblib workers, -1 = all cores (default: 1)")
    parser.add_argument("--max-frames", type=int, default=None, metavar="N", help="use only the first N frames")
    parser.add_argument("--raft-weights", default=None, metavar="FILE",
                        help="local torchvision RAFT state dict (required with --backend raft; never downloaded)")
    parser.add_argument("--raft-model", choices=["raft_small", "raft_large"], default=None,
                        help="RAFT variant (default: raft_small)")
    parser.add_argument("--raft-updates", type=int, default=None, metavar="N",
                        help="RAFT recurrent updates (default: 12)")
    parser.add_argument("--device", default=None, help="torch device for RAFT (default: cpu)")
    parser.add_argument("--cache-dtype", choices=["float32", "float16"], default=None,
                        help="storage precision in the cache (default: float32)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from steadyseg.datasets.flow import FlowProvider, window_pairs
    from steadyseg.datasets.video import open_video
    from steadyseg.files import save_resolved_config

    video_kwargs = {} if args.max_frames is None else {"max_frames": args.max_frames}
    frames = open_video(args.frames, **video_kwargs)
    provider_kwargs = {k: v for k, v in {
        "backend": args.backend, "preset": args.preset, "n_jobs": args.workers, "raft_weights": args.raft_weights,
        "raft_model": args.raft_model, "raft_updates": args.raft_updates, "device": args.device,
        "cache_dtype": args.cache_dtype}.items() if v is not None}
    window = args.window if args.window is not None else _DEFAULTS["window"]
    if window < 1:
        raise ValueError(f"--window must be >= 1, got {window}")
    provider = FlowProvider(frames, cache_dir=args.cache, **provider_kwargs)
    pairs = window_pairs(len(frames), window=window)
    result = provider.precompute(pairs, progress=not args.quiet)
    config = {"frames": str(frames.source), "num_frames": len(frames), "size_hw": list(frames.size),
              "cache": str(Path(args.cache)), "window": window, "flow_params": provider.params,
              "n_jobs": provider.n_jobs, "prefer": provider.prefer, "result": result}
    save_resolved_config(args.cache, config, name=f"flow-run-{frames.source.stem}.yaml")
    per_pair = f"{1000 * result['seconds_computing'] / result['computed']:.1f}" if result["computed"] else "-"
    print(f"{frames.source}: {len(frames)} frames {frames.size[1]}x{frames.size[0]}, window {window}: "
          f"{result['pairs']} pairs, {result['cached']} already cached, {result['computed']} computed "
          f"({provider.params['backend']}, {per_pair} ms/pair of flow time, "
          f"{result['seconds_wall']:.1f} s wall with {provider.n_jobs} worker(s)) -> {args.cache}")
    return 0
