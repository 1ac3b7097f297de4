"""``steadyseg flow``: precompute optical flow for every frame pair in a temporal window into the disk cache.

Example::

    steadyseg flow --frames data/davis2016/JPEGImages/480p/blackswan --cache cache/flow --window 3 \\
        --workers 2          # data/: e.g. a folder with the DAVIS layout

prints the number of pairs, how many were already cached, and timings; a run record
(``flow-run-<video>.yaml``, the resolved configuration) is written into the cache folder. Parsing and printing
only: the work and the defaults are :func:`steadyseg.datasets.flow.precompute_video_flows`.
"""

from __future__ import annotations

import argparse

from steadyseg.cli import set_flags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", required=True, metavar="DIR",
                        help="folder of frames (e.g. DAVIS JPEGImages/480p/<seq>) or a video file (mp4/avi)")
    parser.add_argument("--cache", default=None, metavar="DIR",
                        help="flow cache folder (created if missing; default: the persistent cache that "
                             "`steadyseg measure` reads, see `steadyseg cache info`)")
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
    parser.add_argument("--strict", action="store_true", default=None,
                        help="stop at the first unreadable frame instead of skipping its pairs and recording it")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from steadyseg.datasets.flow import default_flow_cache_dir, precompute_video_flows

    if args.window is not None and args.window < 1:
        raise ValueError(f"--window must be >= 1, got {args.window}")
    cache = args.cache if args.cache is not None else default_flow_cache_dir()
    record = precompute_video_flows(args.frames, cache, progress=not args.quiet, **set_flags(args, {
        "window": "window", "max_frames": "max_frames", "backend": "backend", "preset": "preset",
        "workers": "n_jobs", "raft_weights": "raft_weights", "raft_model": "raft_model",
        "raft_updates": "raft_updates", "device": "device", "cache_dtype": "cache_dtype", "strict": "strict"}))
    result = record["result"]
    h, w = record["size_hw"]
    per_pair = f"{1000 * result['seconds_computing'] / result['computed']:.1f}" if result["computed"] else "-"
    print(f"{record['frames']}: {record['num_frames']} frames {w}x{h}, window {record['window']}: "
          f"{result['pairs']} pairs, {result['cached']} already cached, {result['computed']} computed "
          f"({record['flow_params']['backend']}, {per_pair} ms/pair of flow time, "
          f"{result['seconds_wall']:.1f} s wall with {record['n_jobs']} worker(s)) -> {cache}")
    if record["failures"]:
        print(f"{len(record['failures'])} unreadable frame(s) skipped ({result['skipped_pairs']} pairs not computed; "
              f"recorded in the run record in {cache}):")
        for f in record["failures"][:10]:
            print(f"  failed: {f['error']}")
    return 0
