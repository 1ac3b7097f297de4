"""Speed of the video-stage models on this machine: the multi-input decoder and the reference 3D-conv video model.

    python benchmarks/bench_video_models.py [--frames 40] [--threads N] [--device cpu|cuda] [--json FILE]

* decoder (N = 7, ``small`` encoder, model size 240×427, untrained — speed does not depend on the weights):
  offline frames/s at 854×480 with the predictor's steps (resize and encode each frame once, decode every window,
  average, full-resolution finish; no PNG I/O), split into encode / decode / finish, and the causal variant's
  **latency per frame** through ``DecoderStream.step`` (median and 90th percentile, once the window is full);
* the decoder's ``deeplabv3`` encoder: frozen ResNet-50 features (torchvision layout, random init) of 240×427
  frames, ms per frame — what the feature cache pays once per video;
* video model (reference ``mc3_18`` and ``r3d_18``, decoder width 32, T = 8): training clips/s at 64×112 (forward,
  loss, backward, Adam step), inference frames/s at 854×480 through ``VideoModelPredictor`` at model size 64×112
  and at full size.

Synthetic 854×480 frames and teacher probabilities (a moving disc); nothing is downloaded. Prints a table and
writes JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

H, W = 480, 854


def _video(n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` textured 854×480 frames with a moving disc, and a two-class teacher (the disc) per frame."""
    rng = np.random.default_rng(0)
    base = rng.integers(60, 200, (H, W, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:H, 0:W]
    frames, probs = [], []
    for t in range(n):
        fg = (yy - 240) ** 2 + (xx - 200 - 6 * t) ** 2 < 90 ** 2
        img = np.roll(base, 2 * t, axis=1).copy()
        img[fg] = (230, 80, 40)
        frames.append(img)
        p = np.where(fg, 0.9, 0.1).astype(np.float32)
        probs.append(np.stack([1 - p, p]))
    return frames, probs


def bench_decoder(frames, probs, *, device: torch.device) -> dict:
    from steadyseg.train.decoder import build_decoder
    from steadyseg.train.decoder_predict import DecoderStream, _Runner

    out = {}
    model = build_decoder(num_classes=2, inputs=7, encoder="small", width=16, hidden=16, eps=1e-4).to(device).eval()
    run = _Runner(model, size=(240, 427), device=device, amp=True)
    n = len(frames)
    with torch.inference_mode():
        t0 = time.perf_counter()  # offline: encode each frame once, decode every window of 7, average, finish
        feats = [run.encode(f, p) for f, p in zip(frames, probs)]
        t_enc = time.perf_counter() - t0
        corr = [torch.zeros(()) for _ in range(n)]
        cnt = [0] * n
        t0 = time.perf_counter()
        for s in range(n - 6):
            c = run.decode(feats[s:s + 7])
            for k in range(7):
                corr[s + k] = corr[s + k] + c[k]
                cnt[s + k] += 1
        t_dec = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(n):
            run.finish(corr[i] / max(cnt[i], 1), probs[i])
        t_fin = time.perf_counter() - t0
        total = t_enc + t_dec + t_fin
        out["offline"] = {"fps": n / total, "encode_ms": 1e3 * t_enc / n, "decode_ms_per_window": 1e3 * t_dec / (n - 6),
                          "finish_ms": 1e3 * t_fin / n}
        stream = DecoderStream(model, size=(240, 427), device=device)
        lat = []
        for f, p in zip(frames, probs):
            t0 = time.perf_counter()
            stream.step(f, p)
            lat.append(time.perf_counter() - t0)
        lat = lat[7:]  # the window is full from the 7th frame on
        out["causal"] = {"latency_ms_median": 1e3 * statistics.median(lat),
                         "latency_ms_p90": 1e3 * float(np.percentile(lat, 90)), "frames": len(lat)}
    return out


def bench_resnet50_features(frames, *, device: torch.device) -> dict:
    import tempfile

    import torchvision

    from steadyseg.train.decoder_backbone import FrozenBackbone
    from steadyseg.train.decoder_data import resize_image

    small = np.stack([resize_image(f, (240, 427)) for f in frames[:8]])
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(torchvision.models.resnet50(weights=None).state_dict(), Path(tmp) / "resnet50.pth")
        backbone = FrozenBackbone(Path(tmp) / "resnet50.pth", device=device)
    with torch.inference_mode():
        backbone.features(small[:1])  # warm-up
        t0 = time.perf_counter()
        feats = backbone.features(small)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return {"ms_per_frame_240x427": 1e3 * (time.perf_counter() - t0) / len(small),
            "feature_shape": list(feats.shape[1:])}


def bench_video_model(frames, *, device: torch.device, backbone: str, train_steps: int) -> dict:
    from steadyseg.train.video_predict import VideoModelPredictor
    from steadyseg.train.video_reference import build_reference_model
    from steadyseg.train.video_training import video_model_losses

    torch.manual_seed(0)
    model = build_reference_model(backbone=backbone, num_classes=2, decoder_channels=32).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    clip = torch.rand(1, 8, 3, 64, 112, device=device)
    labels = torch.zeros(1, 8, 64, 112, dtype=torch.int64, device=device)
    model.train()
    times = []
    for i in range(train_steps + 1):
        t0 = time.perf_counter()
        loss = video_model_losses(model(clip), labels)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:  # the first step warms up
            times.append(time.perf_counter() - t0)
    model.eval()
    res = {"params_millions": sum(p.numel() for p in model.parameters()) / 1e6,
           "train_clips_per_s_64x112_T8": 1.0 / statistics.mean(times)}
    for size in ((64, 112), None):
        config = {"clip_length": 8, "size": size, "num_classes": 2, "names": ["background", "object 1"]}
        pred = VideoModelPredictor(model, config, device)
        t0 = time.perf_counter()
        count = sum(1 for _ in pred.iter_video(frames))
        key = "infer_fps_480p_model_64x112" if size else "infer_fps_480p_model_full"
        res[key] = count / (time.perf_counter() - t0)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40, help="frames of the synthetic 854×480 video (40)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--train-steps", type=int, default=3, help="timed training steps of the video model (3)")
    ap.add_argument("--backbones", nargs="+", default=["mc3_18", "r3d_18"])
    ap.add_argument("--json", default=None, help="write the numbers here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    frames, probs = _video(args.frames)
    result = {"threads": torch.get_num_threads(), "device": str(device), "frames": args.frames,
              "decoder": bench_decoder(frames, probs, device=device),
              "resnet50_features": bench_resnet50_features(frames, device=device), "video_model": {}}
    for b in args.backbones:
        result["video_model"][b] = bench_video_model(frames, device=device, backbone=b, train_steps=args.train_steps)
    d = result["decoder"]
    print(f"decoder N=7 small, 240x427 → 854x480: {d['offline']['fps']:.1f} frames/s offline "
          f"(encode {d['offline']['encode_ms']:.1f} ms/frame, decode {d['offline']['decode_ms_per_window']:.1f} ms/window, "
          f"finish {d['offline']['finish_ms']:.1f} ms/frame); causal latency {d['causal']['latency_ms_median']:.1f} ms "
          f"median, {d['causal']['latency_ms_p90']:.1f} ms p90")
    r50 = result["resnet50_features"]
    print(f"deeplabv3 encoder (frozen ResNet-50): {r50['ms_per_frame_240x427']:.0f} ms per 240x427 frame → "
          f"{r50['feature_shape']}")
    for b, r in result["video_model"].items():
        print(f"video model {b} ({r['params_millions']:.1f} M params): train {r['train_clips_per_s_64x112_T8']:.2f} "
              f"clips/s (T=8, 64x112); predict 854x480 {r['infer_fps_480p_model_64x112']:.1f} frames/s at model size "
              f"64x112, {r['infer_fps_480p_model_full']:.2f} at full size")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
