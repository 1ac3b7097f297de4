"""Video flicker view: FiftyOne datasets of one mask video with per-frame inconsistency and flicker regions.

Two datasets with the same labels:

- ``NAME``, the frame dataset: one image sample per frame, ordered by ``frame_index`` (saved views, sorting and
  filtering work frame by frame);
- ``NAME-video``, the video dataset (:mod:`steadyseg.curation.video_sample`): ONE video sample, the clip encoded
  as ``out_dir/clip.mp4`` (H.264), with our own ``VideoMetadata`` (FiftyOne never runs ffprobe) and the labels
  below as frame fields (``sample.frames[t + 1]``), so the App's player plays the clip with its overlays.
  ``video_sample=False`` skips it.

Fields per frame:

- ``frame_index`` (int) and ``inconsistency`` (float): mean ``E_pair`` of the pairs touching the frame, from
  :func:`steadyseg.measures.inconsistency` (NaN when no pair is defined);
- ``masks``: the evaluated label map (``fo.Segmentation``, ``(H, W)`` uint8 labels);
- ``flicker_map``: :func:`steadyseg.measures.flicker_map` as a ``fo.Heatmap`` (uint8 in [0, 255] = fraction of the
  valid flow-warped neighbours that disagree);
- ``flicker_regions``: ``fo.Segmentation`` with 1 where at least half of the valid neighbours disagree.

The frame dataset stores the label arrays in the database; the video dataset points at PNGs under
``out_dir/video_labels/`` (``mask_path`` / ``map_path``).

Saved views of the frame dataset: ``clip_in_order`` (every frame in playback order), ``flicker_worst`` (every frame,
most inconsistent first) and ``flicker_spikes`` (frames whose inconsistency is above ``spike_factor`` x the
video's median; in the video dataset the same frames are the ``flicker_spikes`` temporal detections).
``dataset.info["steadyseg_video"]`` (both datasets) holds ``E_raw``, ``E_cons``, the settings, ``frames_dataset``,
``video_dataset``, ``video_file``, ``fps`` and ``timeline_plot``, the path of ``out_dir/inconsistency_timeline.png``
(per-frame inconsistency over time, spikes marked). The App opens both with ``masks``, ``flicker_map`` and
``flicker_regions`` switched on (:mod:`steadyseg.curation.appearance`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from steadyseg.curation.appearance import apply_flicker_appearance
from steadyseg.curation.env import require_fiftyone
from steadyseg.curation.video_sample import (VIDEO_FILENAME, add_video_dataset, encode_clip, even_size,
                                             require_ffmpeg, source_frame_rate, video_dataset_name,
                                             write_frame_labels)

FLICKER_THRESHOLD = 0.5


BROWSER_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")


def _frame_files(frames, out_dir: Path) -> list[str]:
    """Paths of the frame images: a frame folder's own files when the browser shows them (JPEG, PNG, ...); else
    (a video file, TIFFs, unnamed frames) the frames written as JPEGs to ``out_dir/frames``."""
    import cv2

    frame_path = getattr(frames, "frame_path", None)
    files = [frame_path(t) for t in range(len(frames))] if callable(frame_path) else []
    if files and all(f is not None and Path(f).suffix.lower() in BROWSER_IMAGE_SUFFIXES and Path(f).is_file()
                     for f in files):
        return [str(Path(f).resolve()) for f in files]
    frame_dir = out_dir / "frames"
    frame_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for t in range(len(frames)):
        path = frame_dir / f"{t:05d}.jpg"
        if not path.is_file():
            tmp = frame_dir / f".{t:05d}.tmp.jpg"
            if not cv2.imwrite(str(tmp), cv2.cvtColor(np.asarray(frames[t]), cv2.COLOR_RGB2BGR)):
                raise ValueError(f"{tmp}: could not write frame {t}")
            os.replace(tmp, path)
        paths.append(str(path.resolve()))
    return paths


def _make_room(fo, names: list[str], *, overwrite: bool) -> None:
    """Delete the datasets ``names`` when ``overwrite``; else fail (before any work) if one of them exists."""
    existing = [n for n in names if fo.dataset_exists(n)]
    if existing and not overwrite:
        raise ValueError(f"FiftyOne dataset {existing[0]!r} exists; pass overwrite=True (--overwrite) to replace it"
                         + (f" (and {existing[1:]})" if len(existing) > 1 else ""))
    for n in existing:
        fo.delete_dataset(n)


def save_timeline_plot(per_frame: np.ndarray, path: Path, *, spike_level: float, title: str) -> Path:
    """The per-frame inconsistency over time as a PNG (the spike level dashed, spikes marked)."""
    from steadyseg.plots import pyplot, save_figure

    plt = pyplot()
    values = np.asarray(per_frame, dtype=float)
    fig, ax = plt.subplots(figsize=(8, 2.6))
    ax.plot(np.arange(len(values)), values, "-", color="#1f77ff", lw=1.2, label="per-frame inconsistency")
    if math.isfinite(spike_level):
        ax.axhline(spike_level, color="#e8112d", ls="--", lw=1, label="spike level")
        spikes = np.flatnonzero(values > spike_level)
        ax.plot(spikes, values[spikes], "o", color="#e8112d", ms=4)
    ax.set_xlabel("frame_index")
    ax.set_ylabel("inconsistency")
    ax.set_title(f"{title}: per-frame inconsistency (mean E_pair of the pairs touching the frame)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    return save_figure(fig, path, dpi=110)


def build_flicker_dataset(video: str | os.PathLike, masks: str | os.PathLike, name: str,
                          out_dir: str | os.PathLike, *, window: int = 3, flow_backend: str = "dis",
                          flow_cache_dir: str | os.PathLike | None = None, binary: bool = False,
                          spike_factor: float = 2.0, overwrite: bool = False, persistent: bool = True,
                          progress: bool = True, video_sample: bool = True, fps: float | None = None):
    """Measure a mask video's temporal inconsistency and put it in FiftyOne, frame by frame.

    Args:
        video: frame folder or video file (``steadyseg.datasets.video.open_video``).
        masks: mask stack of the same length and size (``steadyseg.datasets.masks.open_masks``).
        name: FiftyOne dataset name (replaced when ``overwrite``; else an existing one is an error).
        out_dir: folder for extracted frames (video files) and the resolved config.
        window: K of the measure (pairs ``1 <= |p - q| <= K``).
        flow_backend: optical flow backend of ``FlowProvider`` ("dis" default).
        flow_cache_dir: flow cache folder (default ``out_dir/flow``).
        binary: collapse object ids to foreground/background.
        spike_factor: ``flicker_spikes`` keeps frames above this multiple of the median inconsistency.
        overwrite, persistent, progress: dataset replacement (both datasets), persistence, tqdm bar.
        video_sample: also build the video dataset ``name + "-video"`` (:mod:`steadyseg.curation.video_sample`):
            ``out_dir/clip.mp4`` (H.264, imageio-ffmpeg's ffmpeg) as one video sample with the same labels on its
            frames. False builds the frame dataset only.
        fps: frame rate of the encoded clip (default: the video file's, or 24 for a frame folder).

    Returns:
        the FiftyOne frame dataset; ``dataset.info["steadyseg_video"]["video_dataset"]`` names the video dataset
        (None when ``video_sample=False``).
    """
    from tqdm import tqdm

    from steadyseg.datasets.flow import FlowProvider
    from steadyseg.datasets.masks import open_masks
    from steadyseg.datasets.video import open_video
    from steadyseg.files import save_resolved_config
    from steadyseg.measures import flicker_map, inconsistency

    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = open_video(video)
    stack = open_masks(masks, binary=binary)
    if len(frames) != len(stack):
        raise ValueError(f"{masks}: {len(stack)} masks for {len(frames)} frames of {video}")
    if len(frames) < 2:
        raise ValueError(f"{video}: need at least 2 frames, got {len(frames)}")
    labels = [np.asarray(stack[t]) for t in range(len(stack))]
    if labels[0].shape != tuple(np.asarray(frames[0]).shape[:2]):
        raise ValueError(f"{masks}: mask size {labels[0].shape} differs from frame size "
                         f"{np.asarray(frames[0]).shape[:2]} of {video}")
    fo = require_fiftyone()
    video_name = video_dataset_name(name) if video_sample else None
    if video_sample:
        require_ffmpeg()  # before any work: a missing imageio-ffmpeg is an install problem, not a late surprise
    _make_room(fo, [name] + ([video_name] if video_name else []), overwrite=overwrite)
    flows = FlowProvider(frames, backend=flow_backend, cache_dir=flow_cache_dir or out_dir / "flow")
    result = inconsistency(labels, flows, window=window)
    paths = _frame_files(frames, out_dir)

    dataset = fo.Dataset(name)
    dataset.persistent = persistent
    samples, frame_fields = [], []
    video_size = even_size(*labels[0].shape)
    for t in tqdm(range(len(labels)), desc=f"flicker maps {name}", unit="frame", disable=not progress):
        fmap = flicker_map(labels, flows, t, window=window)
        value = float(result.per_frame[t])
        lab = labels[t]
        lab8 = np.where(lab > 255, 255, lab).astype(np.uint8) if lab.max(initial=0) > 255 else lab.astype(np.uint8)
        heat = np.round(fmap * 255).astype(np.uint8)
        regions = (fmap >= FLICKER_THRESHOLD).astype(np.uint8)
        fields = {"frame_index": t, "inconsistency": None if math.isnan(value) else value,
                  "flicker_fraction": float((fmap >= FLICKER_THRESHOLD).mean())}
        samples.append(fo.Sample(
            filepath=paths[t], **fields, masks=fo.Segmentation(mask=lab8),
            flicker_map=fo.Heatmap(map=heat, range=[0, 255]), flicker_regions=fo.Segmentation(mask=regions)))
        if video_sample:
            frame_fields.append({**fields, **write_frame_labels(out_dir, t, mask=lab8, heat=heat, regions=regions,
                                                                size=video_size)})
    dataset.add_samples(samples, progress=False)
    F = fo.ViewField
    finite = result.per_frame[np.isfinite(result.per_frame)]
    median = float(np.median(finite)) if finite.size else float("nan")
    dataset.save_view("clip_in_order", dataset.sort_by("frame_index"),
                      description="every frame in playback order (frame_index)", overwrite=True)
    dataset.save_view("flicker_worst", dataset.exists("inconsistency").sort_by("inconsistency", reverse=True),
                      description="frames by per-frame inconsistency, worst first", overwrite=True)
    spike_view = dataset.match(F("inconsistency") > spike_factor * median) if finite.size else dataset.limit(0)
    dataset.save_view("flicker_spikes", spike_view.sort_by("inconsistency", reverse=True),
                      description=f"frames above {spike_factor}x the median inconsistency", overwrite=True)
    config: dict[str, Any] = {"video": str(Path(video).resolve()), "masks": str(Path(masks).resolve()),
                              "window": window, "flow_backend": flow_backend, "binary": binary,
                              "spike_factor": spike_factor, "flicker_threshold": FLICKER_THRESHOLD,
                              "e_raw": float(result.e_raw), "e_cons": float(result.e_cons),
                              "median_frame_inconsistency": median, "frames": len(labels)}
    timeline = out_dir / "inconsistency_timeline.png"
    save_timeline_plot(result.per_frame, timeline, spike_level=spike_factor * median, title=name)
    config["timeline_plot"] = str(timeline.resolve())
    config["frames_dataset"] = name
    config["video_dataset"] = video_name
    if video_sample:
        clip = encode_clip(frames, out_dir / VIDEO_FILENAME, fps=fps or source_frame_rate(video))
        config.update(video_file=str(clip.path), fps=float(clip.fps))
        spike = (result.per_frame > spike_factor * median) if finite.size else np.zeros(len(labels), dtype=bool)
        video_ds = add_video_dataset(video_name, clip, frame_fields, info=config, spike=spike, persistent=persistent)
        apply_flicker_appearance(video_ds)
    dataset.info["steadyseg_video"] = config
    dataset.save()
    apply_flicker_appearance(dataset)  # masks, flicker map and regions checked and coloured when the App opens
    save_resolved_config(out_dir, {"dataset": name, **config}, name="curate_video.config.yaml")
    return dataset
