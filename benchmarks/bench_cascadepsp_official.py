"""Our CascadePSPRefiner against the official ``segmentation-refinement`` 0.6 ``Refiner``, side by side.

Both refine the same COCO val2017 image(s) of the shared data with the same random-init weights (seeded, saved
once in the official ``module.``-prefixed layout to a temporary file that both load), on the same number of torch
threads, in one process. Every setting (threads, L, fast/full) runs the two implementations alternately
(``--repeats`` rounds, the first implementation alternating between rounds and settings) and keeps the fastest
wall time and the smallest process CPU time (user + system, all threads) of each; on a shared machine the CPU
time is the steadier of the two. The outputs are compared: ours scaled like the official output,
``(soft * 255).astype(uint8)``, against the official ``uint8`` map (max abs difference, differing pixels).

The official package is imported from ``--official`` (a folder holding ``segmentation_refinement/``, e.g.
the unpacked wheel) with ``download_and_check_model=False``: nothing is downloaded. Get it from the package
registry without installing it (its dependencies are ours)::

    pip download segmentation-refinement==0.6 --no-deps -d /tmp/segref
    python -m zipfile -e /tmp/segref/segmentation_refinement-0.6-py3-none-any.whl /tmp/segref

The input mask of an image is the golden fixture's ``<stem>_ann*_mask.png`` (the largest non-crowd COCO
annotation, dilated; see ``<shared>/golden/cascadepsp/README.md``).

    python benchmarks/bench_cascadepsp_official.py --official /tmp/segref [--threads 1,2] [--L 400,900] \\
        [--modes fast,full] [--repeats 1] [--images 000000005001] [--json PATH]

Prints a table and writes a record with date, command, machine and load average to
``benchmarks/results/bench_cascadepsp_official-<UTC>.json``; ``--json PATH`` writes only the measurements there
instead (the form ``benchmarks/make_page.py record`` wraps); ``--no-record`` writes nothing.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
NAME = "bench_cascadepsp_official"


def _shared_data(arg: str | None) -> Path:
    """The real-data root: ``--data``, else ``$STEADYSEG_SHARED_DATA``, else ``../shared/data`` beside the repo."""
    root = Path(arg or os.environ.get("STEADYSEG_SHARED_DATA") or REPO.parent / "shared" / "data")
    if not (root / "coco-val2017-80" / "val2017").is_dir():
        raise SystemExit(f"{root}: no coco-val2017-80/val2017 folder (pass --data)")
    return root


def load_pair(data: Path, stem: str) -> tuple[np.ndarray, np.ndarray, str]:
    """``(image (H, W, 3) uint8 RGB, mask (H, W) uint8 {0, 255}, mask file name)`` for the COCO image ``stem``."""
    from PIL import Image

    image_path = data / "coco-val2017-80" / "val2017" / f"{stem}.jpg"
    masks = sorted((data.parent / "golden" / "cascadepsp").glob(f"{stem}_ann*_mask.png"))
    if not image_path.is_file() or not masks:
        golden = data.parent / "golden" / "cascadepsp"
        raise SystemExit(f"{image_path} or its golden mask {golden}/{stem}_ann*_mask.png is missing")
    image = np.array(Image.open(image_path).convert("RGB"))  # writable copies (torchvision warns otherwise)
    mask = np.array(Image.open(masks[0]))
    return image, mask, masks[0].name


def save_weights(folder: Path, seed: int) -> Path:
    """Seeded random-init weights (torch default init, Kaiming for the ResNet) in the official layout, as
    ``folder/model`` (the file name the official ``Refiner`` reads)."""
    import torch

    from steadyseg.refine.cascadepsp.network import build_cascadepsp_net, to_official_state_dict

    torch.manual_seed(seed)
    path = folder / "model"
    torch.save(to_official_state_dict(build_cascadepsp_net()), path)
    return path


def make_refiners(official_root: Path, folder: Path, checkpoint: Path) -> dict[str, Callable]:
    """``{"official": refine, "ours": refine}``, each ``refine(image, mask, fast, L) -> (H, W) uint8``."""
    sys.path.insert(0, str(official_root))
    try:
        from segmentation_refinement.main import Refiner
    except ImportError as exc:
        raise SystemExit(f"{official_root}: cannot import segmentation_refinement ({exc}); pass --official, or unpack "
                         "the wheel there: pip download segmentation-refinement==0.6 --no-deps -d DIR, then "
                         "python -m zipfile -e DIR/segmentation_refinement-0.6-py3-none-any.whl DIR") from exc
    from steadyseg.refine.cascadepsp.refiner import CascadePSPRefiner

    official = Refiner(device="cpu", model_folder=str(folder), download_and_check_model=False)
    ours = CascadePSPRefiner(checkpoint=checkpoint, device="cpu")

    def run_official(image: np.ndarray, mask: np.ndarray, fast: bool, L: int) -> np.ndarray:
        return official.refine(image, mask, fast=fast, L=L)

    def run_ours(image: np.ndarray, mask: np.ndarray, fast: bool, L: int) -> np.ndarray:
        return (ours.refine(image, mask, fast=fast, L=L) * 255).astype(np.uint8)

    run_ours.refiner = ours  # type: ignore[attr-defined]
    return {"official": run_official, "ours": run_ours}


def compare(ours: np.ndarray, official: np.ndarray) -> dict[str, Any]:
    """Pixel difference of two ``(H, W)`` uint8 maps: max abs, count differing, count differing by > 1."""
    d = np.abs(ours.astype(np.int16) - official.astype(np.int16))
    return {"identical": bool(not d.any()), "max_abs_diff": int(d.max()), "pixels_differing": int((d > 0).sum()),
            "pixels_off_by_more_than_one": int((d > 1).sum()), "pixels": int(d.size)}


def run_setting(refiners: dict[str, Callable], image: np.ndarray, mask: np.ndarray, *, fast: bool, L: int,
                repeats: int, first: int) -> dict[str, Any]:
    """Time both implementations alternately ``repeats`` times; fastest time of each and the output comparison."""
    names = ["official", "ours"]
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    outputs: dict[str, np.ndarray] = {}
    for r in range(repeats):
        order = names if (first + r) % 2 == 0 else names[::-1]
        for name in order:
            t0, c0 = time.perf_counter(), time.process_time()
            out = refiners[name](image, mask, fast, L)
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
            if name in outputs and not np.array_equal(outputs[name], out):
                raise SystemExit(f"{name}: two runs of the same setting gave different maps (fast={fast}, L={L})")
            outputs[name] = out
    stats = refiners["ours"].refiner.last_stats
    best = {n: min(t) for n, t in times.items()}
    best_cpu = {n: min(t) for n, t in cpu.items()}
    return {"official_s": round(best["official"], 3), "ours_s": round(best["ours"], 3),
            "speedup": round(best["official"] / best["ours"], 3),
            "official_cpu_s": round(best_cpu["official"], 3), "ours_cpu_s": round(best_cpu["ours"], 3),
            "speedup_cpu": round(best_cpu["official"] / best_cpu["ours"], 3),
            "official_all_s": [round(t, 3) for t in times["official"]],
            "ours_all_s": [round(t, 3) for t in times["ours"]],
            "official_all_cpu_s": [round(t, 3) for t in cpu["official"]],
            "ours_all_cpu_s": [round(t, 3) for t in cpu["ours"]],
            "order_first": "official" if first % 2 == 0 else "ours",
            "patches_planned": stats.get("patches_planned", 0), "patches_refined": stats.get("patches_refined", 0),
            **compare(outputs["ours"], outputs["official"])}


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _record(args: argparse.Namespace, argv: list[str], results: list[dict[str, Any]], load_before: list[float],
            start: _dt.datetime) -> dict[str, Any]:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from make_page import machine

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "refine/cascadepsp"], cwd=REPO, capture_output=True,
                           text=True)
    return {"benchmark": NAME, "title": "CascadePSP: ours against the official code (`bench_cascadepsp_official.py`)",
            "source": "run", "date": start.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "command": "python benchmarks/bench_cascadepsp_official.py " + shlex.join(argv),
            "machine": machine(), "load_average": {"before": load_before,
                                                   "after": [round(v, 2) for v in os.getloadavg()]},
            "git_commit": commit.stdout.strip() or None, "git_dirty": bool(dirty.stdout.strip()), "notes": args.notes,
            "output": {"weights": f"random init, torch.manual_seed({args.seed})", "repeats": args.repeats,
                       "results": results}}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", default="/tmp/segref", help="folder holding segmentation_refinement/")
    parser.add_argument("--data", help="real-data root (default: $STEADYSEG_SHARED_DATA or ../shared/data)")
    parser.add_argument("--images", default="000000005001", help="comma-separated COCO val2017 stems")
    parser.add_argument("--threads", default="1", help="comma-separated torch thread counts, e.g. 1,2")
    parser.add_argument("--L", default="400,900", help="comma-separated working resolutions")
    parser.add_argument("--modes", default="fast,full", help="fast, full or both")
    parser.add_argument("--repeats", type=int, default=1, help="alternating rounds per setting (fastest kept)")
    parser.add_argument("--seed", type=int, default=0, help="torch seed of the random-init weights")
    parser.add_argument("--json", help="write the record here (default benchmarks/results/<name>-<UTC>.json)")
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument("--notes", help="free text stored in the record")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or set(modes) - {"fast", "full"}:
        raise SystemExit(f"--modes must list fast and/or full, got {args.modes!r}")
    if args.repeats < 1:
        raise SystemExit(f"--repeats must be >= 1, got {args.repeats}")

    import torch

    start, load_before = _dt.datetime.now(_dt.timezone.utc), [round(v, 2) for v in os.getloadavg()]
    data = _shared_data(args.data)
    pairs = [(stem, *load_pair(data, stem)) for stem in args.images.split(",") if stem.strip()]
    results: list[dict[str, Any]] = []
    header = (f"{'image':>14} {'thr':>3} {'L':>4} {'mode':>4} {'official s':>10} {'ours s':>8} {'speedup':>7} "
              f"{'off. CPU s':>10} {'ours CPU s':>10} {'CPU speedup':>11} {'patches':>7} {'max diff':>8} "
              f"{'px differing':>12}")
    print(f"load average {load_before}", flush=True)
    print(header, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = save_weights(Path(tmp), args.seed)
        refiners = make_refiners(Path(args.official), Path(tmp), checkpoint)
        k = 0
        for threads in _ints(args.threads):
            torch.set_num_threads(threads)
            for stem, image, mask, mask_name in pairs:
                for L in _ints(args.L):
                    for mode in modes:
                        r = run_setting(refiners, image, mask, fast=mode == "fast", L=L, repeats=args.repeats,
                                        first=k)
                        k += 1
                        r = {"image": stem, "mask": mask_name, "size": list(image.shape[:2]), "threads": threads,
                             "L": L, "mode": mode, **r}
                        results.append(r)
                        print(f"{stem:>14} {threads:>3} {L:>4} {mode:>4} {r['official_s']:>10.2f} "
                              f"{r['ours_s']:>8.2f} {r['speedup']:>6.2f}x {r['official_cpu_s']:>10.2f} "
                              f"{r['ours_cpu_s']:>10.2f} {r['speedup_cpu']:>10.2f}x {r['patches_refined']:>7} "
                              f"{r['max_abs_diff']:>8} {r['pixels_differing']:>12}", flush=True)
    rec = _record(args, argv, results, load_before, start)
    print(f"load average after {rec['load_average']['after']}", flush=True)
    if not args.no_record:
        out = Path(args.json) if args.json else REPO / "benchmarks" / "results" / \
            f"{NAME}-{start.strftime('%Y%m%dT%H%M%SZ')}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        # --json (as passed by ``make_page.py record``, which adds date/machine/load itself) gets the bare output.
        out.write_text(json.dumps(rec["output"] if args.json else rec, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
