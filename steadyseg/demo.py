"""Every stage of the toolkit on a small synthetic input, no downloads and no data sets (``steadyseg demo``,
:mod:`steadyseg.demo_cli`).

The demo writes a synthetic COCO-format image set (textured shapes whose annotations are slightly misaligned with
the object edges) and a short synthetic video (textured shapes moving with known, exact flow, plus a "per-frame
model" whose masks flicker), then runs the stages through the same CLI a user would type, printing each command
and where its output is:

    refine-coco (guided refiner) → refine-eval → [curate build, if the curation extra is installed]
    flow (cache) → measure (flickering model vs ground truth) → postprocess wgf / gauss → measure again
    study make-grid
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import time
from pathlib import Path


def _run(step: str, argv: list[str], log: list[dict]) -> None:
    from steadyseg.cli import main as cli_main

    print(f"\n== {step}\n$ steadyseg {shlex.join(argv)}", flush=True)
    t0 = time.perf_counter()
    rc = cli_main(argv)
    seconds = time.perf_counter() - t0
    log.append({"step": step, "argv": ["steadyseg", *argv], "returncode": rc, "seconds": round(seconds, 2)})
    if rc:
        raise SystemExit(f"steadyseg demo: step {step!r} failed with exit code {rc}")


def run_demo(out: str | Path = "demo-output", *, seed: int = 0, num_frames: int = 24, curation: bool = True) -> dict:
    """Generate the synthetic inputs under ``out`` and run every stage; returns the run log (also in demo.json).

    Args:
        out: output folder (created).
        seed: seed of the synthetic data.
        num_frames: frames of the synthetic video.
        curation: also build the FiftyOne dataset when the ``curation`` extra is installed.

    Returns:
        ``{"out", "steps": [{step, argv, returncode, seconds}], "summary": {raw|wgf3d|gauss: measures}}``.
    """
    from steadyseg.datasets.synthetic import make_moving_shapes_video, make_synthetic_coco, write_video_folder
    from steadyseg.files import atomic_write_json, save_resolved_config

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_resolved_config(out, {"seed": seed, "num_frames": num_frames, "curation": curation})
    log: list[dict] = []

    print(f"steadyseg demo → {out.resolve()}")
    coco = make_synthetic_coco(out / "coco-synthetic", seed=seed)
    video = make_moving_shapes_video(num_frames=num_frames, height=120, width=160, seed=seed)
    vid = write_video_folder(video, out / "video")
    print(f"synthetic COCO set: {coco['instances']}\nsynthetic video:    {vid['frames']}")

    refined = out / "coco-refined-guided"
    _run("refine COCO masks (guided refiner)",
         ["refine-coco", "--annotations", str(coco["instances"]), "--images", str(coco["images"]),
          "--out", str(refined), "--refiner", "guided", "--workers", "1"], log)
    _run("evaluate the refinement against the exact masks",
         ["refine-eval", "--reference", str(coco["instances_true"]), "--original", str(coco["instances"]),
          "--refined", str(refined / "instances.json"), "--json", str(out / "refine-eval.json")], log)

    if curation and importlib.util.find_spec("fiftyone") is not None:
        _run("curation dataset in FiftyOne (original vs refined)",
             ["curate", "build", "--original", str(coco["instances"]), "--refined", str(refined / "instances.json"),
              "--images", str(coco["images"]), "--name", "steadyseg-demo"], log)
    elif curation:
        print("\n== curation skipped: the 'curation' extra (fiftyone) is not installed")

    cache = out / "flow-cache"
    _run("optical flow (DIS) into the cache", ["flow", "--frames", str(vid["frames"]), "--cache", str(cache)], log)
    _run("measure the flickering per-frame model",
         ["measure", "--frames", str(vid["frames"]), "--masks", str(vid["predictions"]), "--gt", str(vid["annotations"]),
          "--cache", str(cache), "--json", str(out / "measure-raw.json"), "--plot", str(out / "measure-raw.png")], log)
    _run("3D weighted guided filter",
         ["postprocess", "wgf", "--frames", str(vid["frames"]), "--masks", str(vid["predictions"]),
          "--out", str(out / "masks-wgf3d")], log)
    _run("temporal Gaussian smoothing baseline",
         ["postprocess", "gauss", "--frames", str(vid["frames"]), "--masks", str(vid["predictions"]),
          "--out", str(out / "masks-gauss")], log)
    for name in ("wgf3d", "gauss"):
        _run(f"measure after {name}",
             ["measure", "--frames", str(vid["frames"]), "--masks", str(out / f"masks-{name}"), "--gt",
              str(vid["annotations"]), "--cache", str(cache), "--json", str(out / f"measure-{name}.json")], log)
    _run("user-study qualification grid",
         ["study", "make-grid", "--frames", str(vid["frames"]), "--masks", str(vid["annotations"]),
          "--out", str(out / "study-grid")], log)

    summary = {}
    for name in ("raw", "wgf3d", "gauss"):
        m = json.loads((out / f"measure-{name}.json").read_text())
        summary[name] = {k: m.get(k) for k in ("inconsistency", "inconsistency_raw", "smoothness", "iou", "j_recall")}
    record = {"out": str(out.resolve()), "steps": log, "summary": summary}
    atomic_write_json(out / "demo.json", record)

    print("\n== summary (flickering model, after the 3D WGF, after Gaussian smoothing)")
    print(f"{'':8s} {'E_cons':>8s} {'E_raw':>8s} {'E_smooth':>9s} {'IoU':>6s} {'recall':>7s}")
    for name, m in summary.items():
        print(f"{name:8s} {m['inconsistency']:8.3f} {m['inconsistency_raw']:8.4f} {m['smoothness']:9.3f} "
              f"{m['iou']:6.3f} {m['j_recall']:7.3f}")
    print(f"\noutputs: {out.resolve()}  (run log: {out / 'demo.json'})")
    return record
