"""Kill safety: ``refine-coco``, ``flow`` and ``curate build`` killed with SIGKILL mid-run, then run again.

Each command runs as a real process on synthetic data; the test polls its output and kills it once a seeded
random number of items (shard files, flow cache entries, dataset samples) is written, so the moment is
reproducible whatever the machine's speed. The rerun (``--resume`` for refine-coco, plainly for the idempotent
ones) must give exactly the output of an uninterrupted run, with no duplicate samples and no temporary files
left behind. A temporary file of the killed process (``.<name>.<pid>.<random>.tmp``, the atomic helpers'
pattern) is planted as if the kill had hit mid-write: the rerun must remove it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

SEED = 13


def _start(argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "STEADYSEG_DEBUG": "1"}  # a failure of the rerun shows its traceback
    return subprocess.Popen([sys.executable, "-m", "steadyseg.cli", *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _kill_after(proc: subprocess.Popen, written: Callable[[], int], k: int, timeout: float = 120.0) -> int:
    """SIGKILL ``proc`` as soon as ``written()`` reaches ``k`` (or when it ends by itself); returns the count seen."""
    t_end = time.monotonic() + timeout
    n = 0
    while proc.poll() is None and time.monotonic() < t_end:
        n = written()
        if n >= k:
            break
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    print(f"killed after {n} items written (aimed at {k})")
    assert proc.returncode == -signal.SIGKILL, "the process ended before it was killed"
    return n


def _plant_orphan(folder: Path, name: str, pid: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    orphan = folder / f".{name}.{pid}.k1ll3d.tmp"
    orphan.write_bytes(b"half a file")
    return orphan


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "STEADYSEG_DEBUG": "1"}
    proc = subprocess.run([sys.executable, "-m", "steadyseg.cli", *argv], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


def _temporaries(root: Path) -> list[Path]:
    return sorted(root.rglob(".*.tmp"))


def test_refine_coco_killed_then_resumed(tmp_path: Path):
    from steadyseg.datasets.synthetic import make_synthetic_coco
    from steadyseg.refine.coco import refine_coco

    data = make_synthetic_coco(tmp_path / "coco", num_images=16, height=90, width=120, seed=SEED)
    common = ["--annotations", str(data["instances"]), "--images", str(data["images"]), "--shard-size", "1",
              "--no-progress"]
    ref = refine_coco(data["instances"], data["images"], tmp_path / "ref", shard_size=1, progress=False)

    out = tmp_path / "out"
    k = int(np.random.default_rng(SEED).integers(1, 16))
    proc = _start(["refine-coco", *common, "--out", str(out)])
    _kill_after(proc, lambda: len(list((out / "shards").glob("shard-*.json"))), k)
    orphan = _plant_orphan(out / "shards", "shard-00015.json", proc.pid)

    _run(["refine-coco", *common, "--out", str(out), "--resume"])
    assert (out / "instances.json").read_bytes() == (tmp_path / "ref" / "instances.json").read_bytes()
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["counts"]["refined"] == ref["counts"]["refined"]
    assert run["counts"]["shards_resumed"] + run["counts"]["shards_run"] == 16
    assert not orphan.exists() and _temporaries(tmp_path) == []


def test_flow_killed_then_rerun(tmp_path: Path):
    from steadyseg.datasets.flow import precompute_video_flows
    from steadyseg.datasets.synthetic import make_moving_shapes_video, write_video_folder

    video = make_moving_shapes_video(num_frames=10, height=160, width=224, seed=SEED)
    frames = write_video_folder(video, tmp_path / "davis")["frames"]
    argv = ["--frames", str(frames), "--window", "2", "--backend", "farneback", "--quiet"]
    precompute_video_flows(frames, tmp_path / "ref", window=2, backend="farneback", progress=False)
    reference = {p.relative_to(tmp_path / "ref"): p.read_bytes() for p in (tmp_path / "ref").rglob("*.flow")}

    out = tmp_path / "out"
    k = int(np.random.default_rng(SEED).integers(1, len(reference)))
    proc = _start(["flow", *argv, "--cache", str(out)])
    _kill_after(proc, lambda: len(list(out.rglob("*.flow"))), k)
    some_entry = sorted(reference)[0]
    orphan = _plant_orphan(out / some_entry.parent, some_entry.name, proc.pid)

    printed = _run(["flow", *argv, "--cache", str(out)]).stdout
    assert f"{len(reference)} pairs" in printed
    got = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.flow")}
    assert got == reference
    assert not orphan.exists() and _temporaries(tmp_path) == []


def test_curate_build_killed_then_rerun(tmp_path: Path, fo_env, dataset_name):
    from steadyseg.curation.build import build_curation_dataset
    from steadyseg.datasets.synthetic import make_synthetic_coco

    data = make_synthetic_coco(tmp_path / "coco", num_images=24, height=60, width=80, seed=SEED)
    inputs = ["--original", str(data["instances"]), "--refined", str(data["instances_true"]), "--images",
              str(data["images"]), "--chunk-size", "1"]
    fields = ["coco_image_id", "n_original", "n_refined", "n_changed", "min_iou", "refined.detections.coco_id",
              "refined.detections.iou", "ground_truth.detections.coco_id"]
    ref = build_curation_dataset(data["instances"], data["instances_true"], data["images"], dataset_name + "-ref",
                                 chunk_size=1, progress=False)
    expected = ref.values(fields)

    k = int(np.random.default_rng(SEED).integers(1, 24))
    proc = _start(["curate", "build", *inputs, "--name", dataset_name])

    def samples() -> int:
        return len(fo_env.load_dataset(dataset_name)) if fo_env.dataset_exists(dataset_name) else 0

    _kill_after(proc, samples, k)
    _run(["curate", "build", *inputs, "--name", dataset_name])
    ds = fo_env.load_dataset(dataset_name)
    ds.reload()
    ids = ds.values("coco_image_id")
    assert len(ids) == len(set(ids)) == 24  # no duplicate samples
    assert ds.values(fields) == expected
    assert ds.info["steadyseg"]["ingest"]["failures"] == []
    fo_env.delete_dataset(dataset_name + "-ref")


def test_remove_orphan_temporaries_keeps_live_writers(tmp_path: Path):
    """Only temporaries of processes that are gone are removed (a concurrent writer's stays)."""
    from steadyseg.files import remove_orphan_temporaries

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    mine = _plant_orphan(tmp_path, "a.json", os.getpid())
    gone = _plant_orphan(tmp_path, "b.json", dead.pid)
    other = tmp_path / ".c.json.tmp"  # not our pattern
    other.write_text("x")
    assert remove_orphan_temporaries(tmp_path) == [gone]
    assert mine.exists() and other.exists() and not gone.exists()
