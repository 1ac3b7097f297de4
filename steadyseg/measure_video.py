"""Measure one mask video end to end: flows, temporal inconsistency, smoothness, TC and (with ground truth) accuracy.

The library behind ``steadyseg measure`` (:mod:`steadyseg.measure_cli` only parses flags and prints)::

    from steadyseg.measure_video import measure_video, write_measure_outputs
    result = measure_video(frames="data/davis2016/JPEGImages/480p/bmx-trees",      # e.g. a DAVIS folder
                           masks="data/davis2017-osvos/bmx-trees",
                           gt="data/davis2016/Annotations/480p/bmx-trees", binary=True, cache="cache/flow")
    result["inconsistency"], result["j_mean"]
    write_measure_outputs(result, json_path="out/bmx-osvos.json", plot_path="out/bmx-osvos.png")

Several mask videos of one video (e.g. several methods) in one call, sharing flows, validity masks and the ground
truth's values::

    from steadyseg.measure_video import measure_videos, write_measure_many_outputs
    results = measure_videos(frames="…/bmx-trees", masks=["out/osvos/bmx-trees", "out/ours/bmx-trees"], gt="…")
    write_measure_many_outputs(results, json_path="out/bmx.json")

Flows come from :class:`steadyseg.datasets.flow.FlowProvider` (precomputed in parallel into the cache), and the
validity masks ``M[p→q]`` are cached beside them. The cache: ``cache=None`` (default) is the persistent default
cache (:func:`steadyseg.datasets.flow.default_flow_cache_dir`, e.g. ``~/.cache/steadyseg/flow``), ``cache=False``
a temporary one removed afterwards, a path that folder (:func:`resolve_cache`). Normalisation of ``E_cons``: the
median boundary count of ``normalizer_masks`` when given, else of the ground truth when given, else of the masks
themselves.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["measure_video", "measure_videos", "resolve_cache", "write_measure_outputs", "write_measure_many_outputs",
           "save_measure_result_plot", "format_value"]


def format_value(x: Any, spec: str = ".4f") -> str:
    """A number of a result for a table: ``"-"`` for None, ``"nan"`` for NaN, else ``format(x, spec)``."""
    if x is None:
        return "-"
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    return format(x, spec)


#: bytes of decoded masks that :func:`measure_videos` keeps in memory (compacted to uint8/uint16) so that its passes
#: (inconsistency, smoothness, accuracy, mVC) decode each mask PNG once; masks beyond it are decoded again
MASK_MEMORY_BYTES = 512 * 2**20

#: DIS preset of the measure's flow. ``"fast"``: about 3× cheaper per flow than ``"medium"`` (a cold run of
#: ``steadyseg measure`` at 854×480, K = 3, 2 cores: ~7 fps against ~3.5) and as valid for the measure: it follows
#: the consistency axis of the study grid as ``"medium"`` does and finds OSVOS less consistent than the DAVIS ground
#: truth on all 8 sequences of the project's data (docs/measure.md, "Which flow the measure uses by default").
#: ``steadyseg bench`` keeps ``"medium"``: it evaluates models trained with DIS ``fast`` flow, so it measures with a
#: different flow.
MEASURE_PRESET = "fast"


class _DecodedOnce:
    """A mask stack whose masks are decoded once and kept (as uint8/uint16, within a byte budget shared by the stacks
    of one call); every access returns a fresh array of the stack's own dtype, equal to reading it again. Other
    attributes (``names``, ``size``, ...) are the stack's."""

    def __init__(self, stack, budget: list[int]):
        self._stack, self._budget, self._kept = stack, budget, {}

    def __len__(self) -> int:
        return len(self._stack)

    def __getattr__(self, name: str):
        if name.startswith("_"):  # not set up yet (copy, pickle): no delegation
            raise AttributeError(name)
        return getattr(self._stack, name)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, i):
        n = len(self._stack)
        if not isinstance(i, (int, np.integer)) or not -n <= i < n:
            return self._stack[i]
        i = int(i) % n
        kept = self._kept.get(i)
        if kept is not None:
            return kept[0].astype(kept[1])
        arr = self._stack[i]
        if arr.dtype.kind in "iu" and arr.size and self._budget[0] >= 2 * arr.size:
            lo, hi = int(arr.min()), int(arr.max())
            if 0 <= lo and hi <= 65535:
                small = arr.astype(np.uint8 if hi <= 255 else np.uint16)
                self._kept[i] = (small, arr.dtype)
                self._budget[0] -= small.nbytes
        return arr


def resolve_cache(cache: str | os.PathLike | None | bool) -> Path | None:
    """The flow cache folder a ``cache`` argument names: None → the persistent default
    (:func:`steadyseg.datasets.flow.default_flow_cache_dir`), False → None (a temporary cache, removed afterwards),
    a path → that folder. ``True`` is refused (say None for the default)."""
    if cache is None:
        from steadyseg.datasets.flow import default_flow_cache_dir

        return default_flow_cache_dir()
    if cache is False:
        return None
    if cache is True:
        raise ValueError("cache must be a folder, None (the default cache) or False (a temporary one), got True")
    return Path(cache)


def measure_video(*, frames: str | os.PathLike, masks: str | os.PathLike, **kwargs: Any) -> dict[str, Any]:
    """Measure one mask video against its frames (and optionally its ground truth).

    :func:`measure_videos` with one masks folder: ``measure_video(frames=F, masks=A, **kw)`` is
    ``measure_videos(frames=F, masks=[A], **kw)[0]``; the arguments and the result are described there.
    """
    return measure_videos(frames=frames, masks=[masks], **kwargs)[0]


def measure_videos(*, frames: str | os.PathLike, masks: Sequence[str | os.PathLike],
                   gt: str | os.PathLike | None = None, binary: bool = False, flow: str = "dis",
                   preset: str = MEASURE_PRESET, raft_weights: str | None = None, window: int = 3, sigma: float = 1.0,
                   check_motion_boundary: bool = True, cache: str | os.PathLike | None | bool = None,
                   workers: int | None = None, max_frames: int | None = None,
                   normalizer_masks: str | os.PathLike | None = None, mvc_n: int = 8,
                   progress: bool = True) -> list[dict[str, Any]]:
    """Measure several mask videos of ONE video (e.g. the results of several methods) in one call.

    The flows, the validity masks ``M[p→q]``, the ground truth's values (its inconsistency, the normaliser) are
    computed once and shared: one pass of :func:`steadyseg.measures.inconsistency_many` over all the mask videos
    (and the ground truth) warps every one of them with each flow read once. Each result equals what a separate
    call would give.

    Args:
        frames: folder of frames or a video file (:func:`steadyseg.datasets.video.open_video`).
        masks: the masks folders to evaluate (≥ 1): each a folder of PNG label maps or ``.npy``/``.npz``
            probabilities (:func:`steadyseg.datasets.masks.open_masks`), one per frame.
        gt: ground-truth masks (enables IoU, J, F, recall, mVC and the ground truth's own inconsistency).
        binary: read every object id as foreground 1 (DAVIS-2016 style, binary J/F).
        flow, preset, raft_weights: flow backend (``"dis"``, ``"farneback"``, ``"raft"``), DIS preset (default
            :data:`MEASURE_PRESET`, ``"fast"``), local RAFT weights (:func:`steadyseg.datasets.flow.compute_flow`).
        window: K ≥ 1, frame pairs with ``1 ≤ |p−q| ≤ K``.
        sigma: temporal Gaussian σ of ``E_smooth`` in frames.
        check_motion_boundary: exclude motion boundaries from the valid mask.
        cache: the flow cache folder (flows, validity masks, sampling maps). ``None`` (default): the persistent
            default cache :func:`steadyseg.datasets.flow.default_flow_cache_dir` (``$STEADYSEG_CACHE_DIR/flow``, else
            ``$XDG_CACHE_HOME/steadyseg/flow``, else ``~/.cache/steadyseg/flow``); ``False``: a temporary one,
            removed afterwards; a path: that folder (see :func:`resolve_cache`).
        workers: flow processes and measure threads (None: all cores).
        max_frames: use only the first N frames (and masks).
        normalizer_masks: reference masks whose median boundary count normalises ``E_cons`` and ``E_smooth``.
        mvc_n: clip length of mVC.
        progress: show progress bars.

    Returns:
        One JSON-ready dict per masks folder, in order: ``inconsistency`` (E_cons), ``inconsistency_raw``
        (E_raw), ``smoothness``, ``normalizer`` and ``normalizer_source`` (``"normalizer-masks"``, ``"gt"`` or
        ``"self"``), ``tc``; with ``gt``: ``iou`` (mean), ``j_mean``, ``f_mean``, ``j_recall``, ``mvc``,
        ``objects`` and ``gt`` (the ground truth's own ``inconsistency`` / ``inconsistency_raw``), else None for
        each; ``mvc_n``; ``frames`` (per frame ``name``, ``inconsistency``, ``iou``, ``boundary``),
        ``num_frames``, ``height``, ``width``, ``skipped_pairs``, ``skipped_directions``, ``per_pair``
        (``"p-q"`` → E_pair), ``timing`` (seconds of the shared steps and of this masks folder's own measures,
        flow pairs computed / cached, validity masks and nearest sampling maps read / stored, flows read after the
        precompute — 0 on a warm run) and ``config`` (every argument, resolved:
        ``masks`` is this result's folder, ``cache`` the folder used or None for a temporary one).

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
    from steadyseg.measures import inconsistency_many, median_boundary, smoothness
    from steadyseg.pairs import window_pairs

    masks = [masks] if isinstance(masks, (str, os.PathLike)) else list(masks)
    if not masks:
        raise ValueError("measure_videos: no masks folder given")
    workers = int(workers) if workers is not None else max(1, os.cpu_count() or 1)
    cache_dir = resolve_cache(cache)
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

    budget = [MASK_MEMORY_BYTES]  # shared by the stacks; each mask PNG is decoded once while it lasts
    preds = [_DecodedOnce(open_stack(m, "--masks" if len(masks) == 1 else f"--masks {m}"), budget) for m in masks]
    gt_stack = _DecodedOnce(open_stack(gt, "--gt"), budget) if gt is not None else None
    norm_stack = (_DecodedOnce(open_stack(normalizer_masks, "--normalizer-masks"), budget)
                  if normalizer_masks is not None else None)
    norm_source = "normalizer-masks" if norm_stack is not None else ("gt" if gt_stack is not None else "self")
    norm_ref = norm_stack if norm_stack is not None else gt_stack
    normalizer = median_boundary(norm_ref) if norm_ref is not None else None

    tmp = tempfile.TemporaryDirectory(prefix="steadyseg-flow-") if cache_dir is None else None
    own_s = [0.0] * len(preds)
    try:
        provider = FlowProvider(video, backend=flow, preset=preset, raft_weights=raft_weights,
                                cache_dir=cache_dir if cache_dir is not None else tmp.name, n_jobs=workers)
        t0 = time.perf_counter()
        flow_stats = provider.precompute(window_pairs(n, window), progress=progress)
        t_flow = time.perf_counter() - t0

        t0 = time.perf_counter()
        stacks = preds + ([gt_stack] if gt_stack is not None else [])
        in_pass_tc = bool(check_motion_boundary)  # TC's valid mask always excludes motion boundaries
        results = inconsistency_many(stacks, provider, window=window, normalizers=[normalizer] * len(stacks),
                                     check_motion_boundary=check_motion_boundary, progress=progress,
                                     threads=workers, valid_cache=provider,
                                     tc=[in_pass_tc] * len(preds) + [False] * (len(stacks) - len(preds)))
        t_incons = time.perf_counter() - t0
        res_list, gt_res = results[:len(preds)], (results[-1] if gt_stack is not None else None)
        gt_incons = {"inconsistency": gt_res.e_cons, "inconsistency_raw": gt_res.e_raw} if gt_res else None
        extra = []
        for k, (pred, res) in enumerate(zip(preds, res_list)):
            t0 = time.perf_counter()
            e_smooth = smoothness(pred, sigma=sigma, normalizer=res.normalizer)
            tc = res.tc if res.tc is not None else temporal_consistency_tc(pred, provider)
            acc: dict[str, Any] | None = None
            mvc = None
            if gt_stack is not None:
                acc = davis_scores(pred, gt_stack, binary=binary, progress=progress)
                mvc = mean_video_consistency(pred, gt_stack, n=mvc_n)
            own_s[k] = time.perf_counter() - t0
            extra.append((e_smooth, tc, acc, mvc))
    finally:
        if tmp is not None:
            tmp.cleanup()

    total = time.perf_counter() - t_start
    out = []
    for k, (path, pred, res, (e_smooth, tc, acc, mvc)) in enumerate(zip(masks, preds, res_list, extra)):
        per_frame = []
        for i in range(n):
            per_frame.append({"name": pred.names[i], "inconsistency": float(res.per_frame[i]),
                              "iou": (acc["iou"][i] if acc else None), "boundary": int(res.boundary_counts[i])})
        out.append({
            "inconsistency": res.e_cons, "inconsistency_raw": res.e_raw, "smoothness": e_smooth,
            "normalizer": res.normalizer, "normalizer_source": norm_source,
            "iou": acc["mean_iou"] if acc else None, "j_mean": acc["J_mean"] if acc else None,
            "f_mean": acc["F_mean"] if acc else None, "j_recall": acc["J_recall"] if acc else None,
            "mvc": mvc, "mvc_n": mvc_n, "tc": tc, "gt": gt_incons,
            "frames": per_frame, "num_frames": n, "height": res.height, "width": res.width,
            "skipped_pairs": res.skipped_pairs, "skipped_directions": res.skipped_directions,
            "per_pair": res.to_dict()["per_pair"],
            "objects": ({str(kk): {m: v[m] for m in ("J_mean", "F_mean", "J_recall")}
                         for kk, v in acc["objects"].items()} if acc else None),
            "timing": {"flow_s": t_flow, "inconsistency_s": t_incons, "other_measures_s": own_s[k],
                       "total_s": total, "flow_pairs_computed": flow_stats.get("computed"),
                       "flow_pairs_cached": flow_stats.get("cached"),
                       "valid_masks_cached": int(provider.stats["valid_hits"]),
                       "valid_masks_computed": int(provider.stats["valid_stored"]),
                       "nearest_maps_cached": int(provider.stats["map_hits"]),
                       "nearest_maps_computed": int(provider.stats["map_stored"]),
                       "flows_read": int(provider.stats["hits"]),
                       "mask_videos_in_pass": len(stacks)},
            "config": {"frames": str(frames), "masks": str(path), "gt": None if gt is None else str(gt),
                       "binary": bool(binary), "flow": flow, "preset": preset, "raft_weights": raft_weights,
                       "window": window, "sigma": sigma, "check_motion_boundary": check_motion_boundary,
                       "cache": None if cache_dir is None else str(cache_dir), "workers": workers,
                       "max_frames": max_frames,
                       "normalizer_masks": None if normalizer_masks is None else str(normalizer_masks),
                       "mvc_n": mvc_n},
        })
    return out


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


def write_measure_many_outputs(results: Sequence[dict[str, Any]], *, json_path: str | os.PathLike | None = None,
                               plot_path: str | os.PathLike | None = None,
                               plot_frame: int | None = None) -> list[Path]:
    """Write the results of :func:`measure_videos`. One result: exactly :func:`write_measure_outputs`. Several:
    one JSON ``{"masks": [folder, ...], "results": [result, ...]}`` (in the order of the masks) with
    ``<stem>.config.yaml`` beside it (the shared configuration, ``masks`` a list), and one plot per masks folder,
    ``<stem>-<k><suffix>`` for k = 1 … N in that order. Returns the paths written, JSON first."""
    from steadyseg.files import atomic_write_json, save_resolved_config

    results = list(results)
    if len(results) == 1:
        return write_measure_outputs(results[0], json_path=json_path, plot_path=plot_path, plot_frame=plot_frame)
    config = {**results[0]["config"], "masks": [r["config"]["masks"] for r in results]}
    written: list[Path] = []
    if json_path is not None:
        json_path = Path(json_path)
        atomic_write_json(json_path, {"masks": config["masks"], "results": results})
        save_resolved_config(json_path.parent, config, name=f"{json_path.stem}.config.yaml")
        written.append(json_path)
    if plot_path is not None:
        plot_path = Path(plot_path)
        for k, res in enumerate(results, start=1):
            path = plot_path.with_name(f"{plot_path.stem}-{k}{plot_path.suffix}")
            save_measure_result_plot(res, path, plot_frame=plot_frame)
            written.append(path)
        if json_path is None:
            save_resolved_config(plot_path.parent, config, name=f"{plot_path.stem}.config.yaml")
    return written
