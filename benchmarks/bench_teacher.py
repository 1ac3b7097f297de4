"""Teacher speed: training images/s per architecture, data-loading samples/s, inference frames/s at 480p, memory.

    python benchmarks/bench_teacher.py [--device cpu|cuda] [--archs lraspp_mobilenet_v3_large ...]
        [--crop-size 96] [--batch-size 4] [--steps 5] [--frames 8] [--workers 2] [--threads N] [--out FILE.json]

* training: ``--steps`` SGD steps (after one warm-up step) of the teacher recipe's forward + loss + backward on
  random ``(B, 3, crop, crop)`` batches, per architecture (aux head as the recipe has it);
* data: samples/s of the training DataLoader (torchvision's train transform, decoded-target cache warm) on a
  synthetic COCO set of 120×160 images, with ``--workers`` processes — it must exceed the training images/s;
* inference: frames/s of ``predict``'s per-frame path on 854×480 frames (shorter side resized to 480, logits
  resized back, softmax), batch 1 and 4;
* memory: peak resident set size of the process (CPU) or peak CUDA memory allocated, per phase.

Prints a table and writes the numbers as JSON (``--out``). Nothing is downloaded (weights are random).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ARCHS = ["lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large", "deeplabv3_resnet50"]


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_train(arch: str, *, device: torch.device, crop: int, batch: int, steps: int, num_classes: int = 21) -> dict:
    from steadyseg.train.models import build_teacher
    from steadyseg.train.teacher import param_groups, segmentation_losses

    torch.manual_seed(0)
    model = build_teacher(arch, num_classes=num_classes).to(device).train()
    opt = torch.optim.SGD(param_groups(model, lr=0.02), lr=0.02, momentum=0.9, weight_decay=1e-4)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    x = torch.randn(batch, 3, crop, crop, device=device)
    y = torch.randint(0, num_classes, (batch, crop, crop), device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = None
    for i in range(steps + 1):
        if i == 1:
            _sync(device)
            t0 = time.perf_counter()
        with torch.autocast(device_type=device.type, enabled=use_amp):
            loss = sum(segmentation_losses(model(x), y).values())
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    _sync(device)
    dt = time.perf_counter() - t0
    return {"arch": arch, "train_images_per_s": steps * batch / dt, "train_s_per_step": dt / steps,
            "train_peak_mb": _peak_mb(device), "params_m": sum(p.numel() for p in model.parameters()) / 1e6}


def bench_infer(arch: str, *, device: torch.device, frames: int, batch: int, num_classes: int = 21) -> dict:
    from steadyseg.train.models import build_teacher
    from steadyseg.train.predict import FramewisePredictor

    torch.manual_seed(0)
    model = build_teacher(arch, num_classes=num_classes).to(device).eval()
    config = {"names": [str(i) for i in range(num_classes)], "num_classes": num_classes, "base_size": 480,
              "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    pred = FramewisePredictor(model, config, device, amp=True)
    rng = np.random.default_rng(0)
    video = [rng.integers(0, 256, size=(480, 854, 3), dtype=np.uint8) for _ in range(frames)]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    list(pred.iter_video(video[:batch], batch_size=batch))  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    n = sum(1 for _ in pred.iter_video(video, batch_size=batch))
    _sync(device)
    dt = time.perf_counter() - t0
    return {f"infer_fps_b{batch}": n / dt, f"infer_peak_mb_b{batch}": _peak_mb(device)}


def bench_data(*, crop: int, batch: int, workers: int, batches: int = 20) -> dict:
    from steadyseg.datasets.coco_targets import CocoSemanticTargets
    from steadyseg.datasets.synthetic import make_synthetic_coco
    from steadyseg.train.data import EpochSampler, SegmentationSamples, collate

    with tempfile.TemporaryDirectory() as tmp:
        p = make_synthetic_coco(Path(tmp) / "coco", num_images=16)
        ds = CocoSemanticTargets(p["instances"], p["images"], labels="file", split="train")
        samples = SegmentationSamples(ds, train=True, base_size=crop, crop_size=crop,
                                      target_cache=Path(tmp) / "cache")
        for i in range(len(samples)):  # warm the decoded-target cache, as after a run's first epoch
            samples.load(i)
        loader = torch.utils.data.DataLoader(samples, batch_size=batch, num_workers=workers, collate_fn=collate,
                                             sampler=EpochSampler(len(samples), batch_size=batch, seed=0))
        it = iter(loader)
        next(it)
        t0 = time.perf_counter()
        for _ in range(batches):
            next(it)
        dt = time.perf_counter() - t0
        del it
    return {"data_samples_per_s": batches * batch / dt, "data_workers": workers}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--archs", nargs="+", default=ARCHS, choices=ARCHS)
    ap.add_argument("--crop-size", type=int, default=96, help="training crop (the small CPU size)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--frames", type=int, default=8, help="480p frames per inference measurement")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader processes for the data measurement")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--skip-infer", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="write the numbers here as JSON")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    for arch in args.archs:
        row = bench_train(arch, device=device, crop=args.crop_size, batch=args.batch_size, steps=args.steps)
        if not args.skip_infer:
            for b in (1, 4):
                row.update(bench_infer(arch, device=device, frames=args.frames, batch=b))
        rows.append(row)
        print(json.dumps(row), flush=True)
    data = bench_data(crop=args.crop_size, batch=args.batch_size, workers=args.workers)
    result = {"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "threads": torch.get_num_threads(), "crop_size": args.crop_size, "batch_size": args.batch_size,
              "steps": args.steps, "torch": torch.__version__, "rows": rows, **data,
              "command": " ".join(["python", "benchmarks/bench_teacher.py", *(argv or sys.argv[1:])])}
    print(f"\n{'architecture':32s} {'train img/s':>11s} {'s/step':>8s} {'infer fps b1':>12s} {'b4':>7s} "
          f"{'peak MB':>8s}")
    for r in rows:
        print(f"{r['arch']:32s} {r['train_images_per_s']:11.2f} {r['train_s_per_step']:8.3f} "
              f"{r.get('infer_fps_b1', float('nan')):12.2f} {r.get('infer_fps_b4', float('nan')):7.2f} "
              f"{max(r['train_peak_mb'], r.get('infer_peak_mb_b4', 0)):8.0f}")
    print(f"data loading: {data['data_samples_per_s']:.1f} samples/s with {data['data_workers']} workers")
    if args.out is not None:
        from steadyseg.files import atomic_write_json

        atomic_write_json(args.out, result)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
