"""How much each refiner recovers of perturbed DAVIS ground-truth masks (IoU and boundary accuracy, before/after).

Ground-truth masks of ``../shared/data/davis2016`` (every ``--stride``-th frame of the 8 sequences) are corrupted
the way CascadePSP's training corrupts its inputs (``steadyseg.refine.cascadepsp.training.perturb_mask``: contour
simplification, then random rectangles dilated/eroded until the IoU falls below a target drawn from
U[``--iou-low``, ``--iou-high``)), seeded. Each refiner then refines the corrupted mask on a crop around it
(the ``refine-coco`` crop: box + 25 % context) and the result is scored against the ground truth with
``steadyseg.refine.coco.evaluation`` (ΣI/ΣU IoU, mean IoU, mBA over CascadePSP's 5 radii).

    python benchmarks/eval_refiners_davis.py [--stride 10] [--checkpoint cascadepsp.pth] [--json out.json]

CascadePSP is evaluated only with ``--checkpoint`` (the official weights; random weights recover nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
from steadyseg.datasets.davis import DAVIS2016_SEQUENCES as SEQUENCES  # noqa: E402 - one list for all


def load_frames(davis: Path, stride: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``[(name, image (H,W,3) uint8 RGB, gt (H,W) bool)]`` for every ``stride``-th frame of the sequences."""
    out = []
    for seq in SEQUENCES:
        ann_dir = davis / "Annotations" / "480p" / seq
        if not ann_dir.is_dir():
            raise FileNotFoundError(f"{ann_dir}: DAVIS annotations not found")
        for png in sorted(ann_dir.glob("*.png"))[::stride]:
            jpg = davis / "JPEGImages" / "480p" / seq / (png.stem + ".jpg")
            bgr = cv2.imread(str(jpg), cv2.IMREAD_COLOR)
            gt = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
            if bgr is None or gt is None:
                raise FileNotFoundError(f"{jpg} or {png}: unreadable")
            if gt.any():
                out.append((f"{seq}/{png.stem}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), gt > 127))
    return out


def refine_full_mask(refiner, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Refine ``mask`` on the refine-coco crop around it; returns the full-size (H, W) bool result."""
    from steadyseg.refine.refiners import refine_on_crop

    crop = refine_on_crop(refiner, image, mask)
    return mask.copy() if crop is None else crop.paste(*mask.shape)


def perturb(mask: np.ndarray, rng: np.random.Generator, iou_target: float) -> np.ndarray:
    from steadyseg.refine.cascadepsp.training import perturb_mask

    return perturb_mask(mask, iou_target=iou_target, rng=rng)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("STEADYSEG_SHARED_DATA",
                                                                     REPO.parent / "shared" / "data")))
    ap.add_argument("--stride", type=int, default=10, help="every n-th annotated frame (default 10)")
    ap.add_argument("--iou-low", type=float, default=0.8)
    ap.add_argument("--iou-high", type=float, default=0.95)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint", type=Path, default=None, help="CascadePSP weights (official format)")
    ap.add_argument("--cascadepsp-l-max", type=int, default=900)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--guided", action="append", default=None, metavar="JSON",
                    help='extra guided settings to compare, e.g. \'{"radius_scale": 0.03}\' (repeatable)')
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    from steadyseg.refine.refiners import build_refiner
    from steadyseg.refine.coco.evaluation import mask_pair_metrics, summarize_metrics

    frames = load_frames(args.data / "davis2016", args.stride)
    rng = np.random.default_rng(args.seed)
    inputs = [perturb(gt, rng, float(rng.uniform(args.iou_low, args.iou_high))) for _, _, gt in frames]
    refiners = {"none (perturbed input)": None, "guided (default)": build_refiner("guided")}
    for spec in args.guided or []:
        refiners[f"guided {spec}"] = build_refiner("guided", **json.loads(spec))
    if args.checkpoint is not None:
        refiners[f"cascadepsp L<={args.cascadepsp_l_max}"] = build_refiner(
            "cascadepsp", checkpoint=args.checkpoint, device=args.device, l_max=args.cascadepsp_l_max)
    results = {}
    for name, refiner in refiners.items():
        t0 = time.perf_counter()
        metrics = []
        for (_, image, gt), seg in zip(frames, inputs):
            out = seg if refiner is None else refine_full_mask(refiner, image, seg)
            metrics.append(mask_pair_metrics(out, gt))
        seconds = time.perf_counter() - t0
        results[name] = {**summarize_metrics(metrics), "seconds_per_mask": seconds / len(frames)}
    print(f"DAVIS 2016, {len(frames)} frames (stride {args.stride}), perturbed to IoU in "
          f"[{args.iou_low}, {args.iou_high}), seed {args.seed}")
    print(f"{'refiner':<42}{'IoU ΣI/ΣU':>11}{'mean IoU':>10}{'mBA':>8}{'s/mask':>9}")
    for name, r in results.items():
        print(f"{name:<42}{r['iou']:>11.4f}{r['mean_iou']:>10.4f}{r['mba']:>8.4f}{r['seconds_per_mask']:>9.3f}")
    if args.checkpoint is None:
        print("(CascadePSP not run: pass --checkpoint with the official weights; random weights recover nothing)")
    if args.json is not None:
        from steadyseg import files

        files.atomic_write_json(args.json, {"frames": len(frames), "stride": args.stride, "seed": args.seed,
                                            "iou_range": [args.iou_low, args.iou_high], "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
