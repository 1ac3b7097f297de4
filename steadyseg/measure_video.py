"""Measure one mask video end to end: flows, temporal inconsistency, smoothness, TC and (with ground truth) accuracy.

The library behind ``steadyseg measure`` (:mod:`steadyseg.measure_cli` only parses flags and prints)::

    from steadyseg.measure_video import measure_video, write_measure_outputs
    result = measure_video(frames="data/davis2016/JPEGImages/480p/bmx-trees",      # e.g. a DAVIS folder
                           masks="data/davis2017-osvos/bmx-trees",
                           gt="data/davis2016/Annotations/480p/bmx-trees", binary=True, cache="cache/flow")
    result["inconsistency"], result["j_mean"]
    write_measure_outputs(result, json_path="out/bmx-osvos.json", plot_path="out/bmx-osvos.png")

Flows come from :class:`steadyseg.datasets.flow.FlowProvider` (precomputed in parallel into the cache; a temporary
cache is used when ``cache`` is None). Normalisation of ``E_cons``: the median boundary count of
``normalizer_masks`` when given, else of the ground truth when given, else of the masks themselves.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["measure_video", "write_measure_outputs", "save_measure_result_plot", "format_value"]


def format_value(x: Any, spec: str = ".4f") -> str:
    """A number of a result for a table: ``"-"`` for None, ``"nan"`` for NaN, else ``format(x, spec)``."""
    if x is None:
        return "-"
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    return format(x, spec)


def measure_video(*, frames: str | os.PathLike, masks: str | os.PathLike, gt: str | os.PathLike | None = None,
                  binary: bool = False, flow: str = "dis", preset: str = "medium", raft_weights: str | None = None,
                  window: int = 3, sigma: float = 1.0, check_motion_boundary: bool = True,
                  cache: str | os.PathLike | None = None, workers: int | None = None, max_frames: int | None = None,
                  normalizer_masks: str | os.PathLike | None = None, mvc_n: int = 8,
                  progress: bool = True) -> dict[str, Any]:
    """Measure one mask video against its frames (and optionally its ground truth).

    Args:
        frames: folder of frames or a video file (:func:`steadyseg.datasets.video.open_video`).
        masks: the masks to evaluate: a folder of PNG label maps or ``.npy``/``.npz`` probabilities
            (:func:`steadyseg.datasets.masks.open_masks`), one per frame.
        gt: ground-truth masks (enables IoU, J, F, recall, mVC and the ground truth's own inconsistency).
        binary: read every object id as foreground 1 (DAVIS-2016 style, binary J/F).
        flow, preset, raft_weights: flow backend (``"dis"``, ``"farneback"``, ``"raft"``), DIS preset, local RAFT
            weights (:func:`steadyseg.datasets.flow.compute_flow`).
        window: K ≥ 1, frame pairs with ``1 ≤ |p−q| ≤ K``.
        sigma: temporal Gaussian σ of ``E_smooth`` in frames.
        check_motion_boundary: exclude motion boundaries from the valid mask.
        cache: flow cache folder (None: a temporary one, removed afterwards).
        workers: flow processes and measure threads (None: all cores).
        max_frames: use only the first N frames (and masks).
        normalizer_masks: reference masks whose median boundary count normalises ``E_cons`` and ``E_smooth``.
        mvc_n: clip length of mVC.
        progress: show progress bars.

    Returns:
        A JSON-ready dict: ``inconsistency`` (E_cons), ``inconsistency_raw`` (E_raw), ``smoothness``,
        ``normalizer`` and ``normalizer_source`` (``"normalizer-masks"``, ``"gt"`` or ``"self"``), ``tc``;
        with ``gt``: ``iou`` (mean), ``j_mean``, ``f_mean``, ``j_recall``, ``mvc``, ``objects`` and ``gt``
        (the ground truth's own ``inconsistency`` / ``inconsistency_raw``), else None for each; ``mvc_n``;
        ``frames`` (per frame ``name``, ``inconsistency``, ``iou``, ``boundary``), ``num_frames``, ``height``,
        ``width``, ``skipped_pairs``, ``skipped_directions``, ``per_pair`` (``"p-q"`` → E_pair), ``timing``
        (seconds and flow pairs computed / cached) and ``config`` (every argument, resolved).

    Raises:
        FileNotFoundError / ValueError naming the file: missing inputs, masks that do not match the frames
        (count or size).
    """
    from steadyseg.accuracy import davis_scores
    from steadyseg.consistency_scores import mean_video_consistency, temporal_consistency_tc
    from steadyseg.datasets.flow import FlowProvider
    from steadyseg.datasets.masks import check_matching, open_masks
    from steadyseg.datasets.video import open_video
    from steadyseg.errors import InputError
    from steadyseg.measures import inconsistency, median_boundary, smoothness
    from steadyseg.pairs import window_pairs

    workers = int(workers) if workers is not None else max(1, os.cpu_count() or 1)
    t_start = time.perf_counter()
    video = open_video(frames, max_frames=max_frames)
    n = len(video)

    def open_stack(path, what):
        stack = open_masks(path, binary=binary, max_frames=None if max_frames is None else n)
        try:
            check_matching(video, stack)
        except InputError:  # names the file first already
            raise
        except ValueError as exc:
            raise ValueError(f"{what}: {exc}") from None
        return stack

    pred = open_stack(masks, "--masks")
    gt_stack = open_stack(gt, "--gt") if gt is not None else None
    norm_stack = open_stack(normalizer_masks, "--normalizer-masks") if normalizer_masks is not None else None
    norm_source = "normalizer-masks" if norm_stack is not None else ("gt" if gt_stack is not None else "self")
    norm_ref = norm_stack if norm_stack is not None else gt_stack
    normalizer = median_boundary(norm_ref) if norm_ref is not None else None

    tmp = tempfile.TemporaryDirectory(prefix="steadyseg-flow-") if cache is None else None
    try:
        provider = FlowProvider(video, backend=flow, preset=preset, raft_weights=raft_weights,
                                cache_dir=cache if cache is not None else tmp.name, n_jobs=workers)
        t0 = time.perf_counter()
        flow_stats = provider.precompute(window_pairs(n, window), progress=progress)
        t_flow = time.perf_counter() - t0

        t0 = time.perf_counter()
        res = inconsistency(pred, provider, window=window, normalizer=normalizer,
                            check_motion_boundary=check_motion_boundary, progress=progress, threads=workers)
        t_incons = time.perf_counter() - t0
        t0 = time.perf_counter()
        e_smooth = smoothness(pred, sigma=sigma, normalizer=res.normalizer)
        tc = temporal_consistency_tc(pred, provider)
        t_other = time.perf_counter() - t0
        gt_incons = None
        acc: dict[str, Any] | None = None
        mvc = None
        if gt_stack is not None:
            t0 = time.perf_counter()
            acc = davis_scores(pred, gt_stack, binary=binary, progress=progress)
            mvc = mean_video_consistency(pred, gt_stack, n=mvc_n)
            gt_res = inconsistency(gt_stack, provider, window=window, normalizer=res.normalizer,
                                   check_motion_boundary=check_motion_boundary, threads=workers)
            gt_incons = {"inconsistency": gt_res.e_cons, "inconsistency_raw": gt_res.e_raw}
            t_other += time.perf_counter() - t0
    finally:
        if tmp is not None:
            tmp.cleanup()

    per_frame = []
    for i in range(n):
        per_frame.append({"name": pred.names[i], "inconsistency": float(res.per_frame[i]),
                          "iou": (acc["iou"][i] if acc else None), "boundary": int(res.boundary_counts[i])})
    return {
        "inconsistency": res.e_cons, "inconsistency_raw": res.e_raw, "smoothness": e_smooth,
        "normalizer": res.normalizer, "normalizer_source": norm_source,
        "iou": acc["mean_iou"] if acc else None, "j_mean": acc["J_mean"] if acc else None,
        "f_mean": acc["F_mean"] if acc else None, "j_recall": acc["J_recall"] if acc else None,
        "mvc": mvc, "mvc_n": mvc_n, "tc": tc, "gt": gt_incons,
        "frames": per_frame, "num_frames": n, "height": res.height, "width": res.width,
        "skipped_pairs": res.skipped_pairs, "skipped_directions": res.skipped_directions,
        "per_pair": res.to_dict()["per_pair"],
        "objects": ({str(k): {kk: v[kk] for kk in ("J_mean", "F_mean", "J_recall")}
                     for k, v in acc["objects"].items()} if acc else None),
        "timing": {"flow_s": t_flow, "inconsistency_s": t_incons, "other_measures_s": t_other,
                   "total_s": time.perf_counter() - t_start, "flow_pairs_computed": flow_stats.get("computed"),
                   "flow_pairs_cached": flow_stats.get("cached")},
        "config": {"frames": str(frames), "masks": str(masks), "gt": None if gt is None else str(gt),
                   "binary": bool(binary), "flow": flow, "preset": preset, "raft_weights": raft_weights,
                   "window": window, "sigma": sigma, "check_motion_boundary": check_motion_boundary,
                   "cache": None if cache is None else str(cache), "workers": workers, "max_frames": max_frames,
                   "normalizer_masks": None if normalizer_masks is None else str(normalizer_masks),
                   "mvc_n": mvc_n},
    }


def save_measure_result_plot(result: dict[str, Any], path: str | os.PathLike, *,
                             plot_frame: int | None = None) -> Path:
    """PNG of a :func:`measure_video` result: per-frame inconsistency over time and where ``plot_frame`` flickers.

    Re-reads the frames and masks named in ``result["config"]`` and the flows (from its cache, or recomputed into a
    temporary one) to draw :func:`steadyseg.measures.flicker_map` of ``plot_frame`` (default: the most
    inconsistent frame; negative counts from the end). Returns ``path``.
    """
    from steadyseg.datasets.flow import FlowProvider
    from steadyseg.datasets.masks import open_masks
    from steadyseg.datasets.video import open_video
    from steadyseg.measures import flicker_map
    from steadyseg.plots import save_measure_plot

    cfg = result["config"]
    per_frame = [f["inconsistency"] for f in result["frames"]]
    n = len(per_frame)
    if plot_frame is None:
        finite = [v if np.isfinite(v) else -1.0 for v in per_frame]
        plot_frame = int(np.argmax(finite))
    if not -n <= plot_frame < n:
        raise ValueError(f"plot_frame {plot_frame} is out of range for {n} frames")
    plot_frame %= n
    video = open_video(cfg["frames"], max_frames=cfg["max_frames"])
    masks = open_masks(cfg["masks"], binary=cfg["binary"], max_frames=len(video))
    tmp = tempfile.TemporaryDirectory(prefix="steadyseg-flow-") if cfg["cache"] is None else None
    try:
        provider = FlowProvider(video, backend=cfg["flow"], preset=cfg["preset"], raft_weights=cfg["raft_weights"],
                                cache_dir=cfg["cache"] if cfg["cache"] is not None else tmp.name)
        flick = flicker_map(masks, provider, plot_frame, window=cfg["window"],
                            check_motion_boundary=cfg["check_motion_boundary"])
    finally:
        if tmp is not None:
            tmp.cleanup()
    iou = [f["iou"] for f in result["frames"]] if result["iou"] is not None else None
    save_measure_plot(path, per_frame=per_frame, frame=video[plot_frame], mask=masks[plot_frame], flicker=flick,
                      t=plot_frame, iou=iou,
                      title=f"{Path(cfg['masks']).name}: E_cons {format_value(result['inconsistency'], '.3f')}, "
                            f"E_raw {format_value(result['inconsistency_raw'], '.4f')}")
    return Path(path)


def write_measure_outputs(result: dict[str, Any], *, json_path: str | os.PathLike | None = None,
                          plot_path: str | os.PathLike | None = None,
                          plot_frame: int | None = None) -> list[Path]:
    """Write a :func:`measure_video` result: the JSON (with ``<stem>.config.yaml``, the resolved configuration,
    beside it) and/or the plot (:func:`save_measure_result_plot`; its own ``<stem>.config.yaml`` when no JSON is
    written). Returns the paths written, JSON first."""
    from steadyseg.files import atomic_write_json, save_resolved_config

    written: list[Path] = []
    if json_path is not None:
        json_path = Path(json_path)
        atomic_write_json(json_path, result)
        save_resolved_config(json_path.parent, result["config"], name=f"{json_path.stem}.config.yaml")
        written.append(json_path)
    if plot_path is not None:
        plot_path = Path(plot_path)
        save_measure_result_plot(result, plot_path, plot_frame=plot_frame)
        if json_path is None:
            save_resolved_config(plot_path.parent, result["config"], name=f"{plot_path.stem}.config.yaml")
        written.append(plot_path)
    return written
