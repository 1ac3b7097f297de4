"""The clip as ONE FiftyOne video sample: an H.264 MP4 that the App plays, with the flicker labels on its frames.

:func:`steadyseg.curation.video.build_flicker_dataset` builds the frame dataset ``NAME`` (one image sample per
frame) and, next to it, the video dataset ``NAME-video`` (:func:`video_dataset_name`) with this module:

- :func:`encode_clip` encodes the frames to ``OUT/clip.mp4`` with the ``ffmpeg`` binary that the PyPI package
  ``imageio-ffmpeg`` ships (``libx264``, ``yuv420p``, constant frame rate, ``+faststart``; no system ffmpeg);
- :func:`video_metadata` writes FiftyOne's :class:`fiftyone.core.metadata.VideoMetadata` from what we encoded.
  FiftyOne would otherwise run ``ffprobe`` (``compute_metadata``, or the App server when ``frame_width``,
  ``frame_height`` or ``frame_rate`` is missing), and no ``ffprobe`` is shipped; nothing here lets it do that;
- :func:`write_frame_labels` writes each frame's labels as PNG files under ``OUT/video_labels/``;
- :func:`add_video_dataset` adds the sample. Frame ``t`` of the clip (0-based) is FiftyOne frame ``t + 1`` with
  ``frame_index`` (= t), ``inconsistency``, ``flicker_fraction``, ``masks`` (``fo.Segmentation`` with
  ``mask_path``), ``flicker_map`` (``fo.Heatmap`` with ``map_path``, range [0, 255]) and ``flicker_regions``
  (``fo.Segmentation`` with ``mask_path``). The sample itself carries ``e_raw``, ``e_cons`` and
  ``flicker_spikes`` (``fo.TemporalDetections``: one per run of consecutive spike frames).

H.264 in MP4 because Debian's Chromium (the browser test) answers ``canPlayType('video/mp4; codecs="avc1.42E01E"')``
with ``"probably"`` and plays the file (VP9 WebM plays too; H.264 is what FiftyOne's own re-encoding uses).
``yuv420p`` needs an even width and height: an odd-sized clip is padded by one row/column at the bottom/right
(frames by edge replication, label PNGs with 0), so the labels stay pixel-aligned with the video.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from steadyseg.curation.env import EXTRA_HINT, CurationExtraMissing, require_fiftyone

VIDEO_FILENAME = "clip.mp4"
VIDEO_CODEC = "libx264"       # ffmpeg encoder
ENCODING_STR = "avc1"         # the MP4 sample entry (fourcc) of H.264, what ffprobe reports as codec_tag_string
MIME_TYPE = "video/mp4"
PIX_FMT = "yuv420p"           # 4:2:0, 8 bit: what browsers decode
CRF = 18                      # x264 quality (0 lossless ... 51 worst); 18 is visually lossless
DEFAULT_FPS = 24.0            # DAVIS's frame rate; used for frame folders (they carry none)
LABEL_DIR = "video_labels"
VIDEO_SUFFIX = "-video"

__all__ = ["EncodedClip", "video_dataset_name", "require_ffmpeg", "source_frame_rate", "even_size", "pad_to",
           "encode_clip", "video_metadata", "write_frame_labels", "spike_runs", "add_video_dataset"]


@dataclass(frozen=True)
class EncodedClip:
    """What :func:`encode_clip` wrote: the file, its frame size (padded to even), frame count and frame rate."""

    path: Path
    width: int
    height: int
    frame_count: int
    fps: Fraction


def video_dataset_name(name: str) -> str:
    """The video dataset beside frame dataset ``name``: ``name + "-video"``."""
    return f"{name}{VIDEO_SUFFIX}"


def require_ffmpeg() -> str:
    """Path of the ffmpeg binary shipped by ``imageio-ffmpeg`` (curation extra); a clear error when it is missing."""
    try:
        import imageio_ffmpeg
    except ImportError as exc:
        raise CurationExtraMissing(f"encoding the clip as a video needs the 'imageio-ffmpeg' package; {EXTRA_HINT}"
                                   ) from exc
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        raise CurationExtraMissing(f"imageio-ffmpeg found no ffmpeg binary ({exc}); reinstall it: "
                                   f"pip install --force-reinstall imageio-ffmpeg") from exc


def source_frame_rate(video: str | os.PathLike) -> float:
    """Frame rate of a video file (OpenCV's ``CAP_PROP_FPS``); :data:`DEFAULT_FPS` for a frame folder or no rate."""
    path = Path(video)
    if path.is_dir():
        return DEFAULT_FPS
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS)) if cap.isOpened() else 0.0
    finally:
        cap.release()
    return fps if math.isfinite(fps) and 0.0 < fps <= 1000.0 else DEFAULT_FPS


def even_size(height: int, width: int) -> tuple[int, int]:
    """``(height, width)`` rounded up to even numbers (``yuv420p`` needs both even)."""
    return height + height % 2, width + width % 2


def pad_to(image: np.ndarray, height: int, width: int, *, mode: str) -> np.ndarray:
    """Pad ``image`` (``(H, W)`` or ``(H, W, C)``) at the bottom/right to ``(height, width)``.

    ``mode="edge"`` repeats the last row/column (frames); ``mode="zero"`` fills 0 (labels). Unchanged when the
    size already matches.
    """
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    if h > height or w > width:
        raise ValueError(f"cannot pad a {h}x{w} image to the smaller {height}x{width}")
    pads = [(0, height - h), (0, width - w)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, pads, mode="edge" if mode == "edge" else "constant")


def encode_clip(frames: Sequence[np.ndarray], path: str | os.PathLike, *, fps: float) -> EncodedClip:
    """Encode RGB frames to an H.264 MP4 (constant ``fps``, frame ``t`` shown at ``t / fps`` seconds).

    Args:
        frames: ``T >= 1`` frames, each ``(H, W, 3) uint8`` RGB of one size (e.g. ``open_video(...)``).
        path: output ``.mp4`` (replaced atomically: written to a temporary name first).
        fps: frames per second (> 0), passed to ffmpeg as an exact fraction.

    Returns:
        :class:`EncodedClip` (width/height padded to even, see :func:`even_size`).
    """
    import imageio_ffmpeg

    require_ffmpeg()
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"{path}: fps must be a positive number, got {fps}")
    if len(frames) < 1:
        raise ValueError(f"{path}: no frames to encode")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    first = np.asarray(frames[0])
    h, w = first.shape[:2]
    height, width = even_size(h, w)
    rate = Fraction(fps).limit_denominator(100_000)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    writer = imageio_ffmpeg.write_frames(
        str(tmp), (width, height), fps=rate, codec=VIDEO_CODEC, pix_fmt_in="rgb24", pix_fmt_out=PIX_FMT,
        quality=None, macro_block_size=1, ffmpeg_log_level="error",
        output_params=["-crf", str(CRF), "-preset", "medium", "-movflags", "+faststart"])
    try:
        writer.send(None)
        for t in range(len(frames)):
            frame = np.asarray(frames[t])
            if frame.shape != (h, w, 3) or frame.dtype != np.uint8:
                raise ValueError(f"{path}: frame {t} is {frame.shape} {frame.dtype}, expected ({h}, {w}, 3) uint8")
            writer.send(np.ascontiguousarray(pad_to(frame, height, width, mode="edge")))
        writer.close()
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return EncodedClip(path=path.resolve(), width=width, height=height, frame_count=len(frames), fps=rate)


def video_metadata(clip: EncodedClip):
    """FiftyOne's ``VideoMetadata`` of an encoded clip, from what we encoded (never ffprobe).

    ``duration = frame_count / fps`` (constant frame rate), ``encoding_str = "avc1"``, ``mime_type =
    "video/mp4"``, ``size_bytes`` from the file.
    """
    fo = require_fiftyone()
    return fo.VideoMetadata(size_bytes=clip.path.stat().st_size, mime_type=MIME_TYPE, frame_width=clip.width,
                            frame_height=clip.height, frame_rate=float(clip.fps),
                            total_frame_count=clip.frame_count, duration=float(clip.frame_count / clip.fps),
                            encoding_str=ENCODING_STR)


def write_frame_labels(out_dir: str | os.PathLike, t: int, *, mask: np.ndarray, heat: np.ndarray,
                       regions: np.ndarray, size: tuple[int, int]) -> dict[str, str]:
    """Write frame ``t``'s labels as 8-bit grayscale PNGs, zero-padded to the video's ``size = (height, width)``.

    Args:
        out_dir: the ``curate video`` output folder; files go to ``out_dir/video_labels/<field>/<t:05d>.png``.
        mask: ``(H, W) uint8`` label map; heat: ``(H, W) uint8`` flicker map in [0, 255];
        regions: ``(H, W) uint8`` 0/1 flicker regions.

    Returns:
        ``{"masks", "flicker_map", "flicker_regions"}`` -> absolute PNG path.
    """
    from steadyseg.datasets.masks import write_label_png

    root = Path(out_dir) / LABEL_DIR
    out = {}
    for field, image in (("masks", mask), ("flicker_map", heat), ("flicker_regions", regions)):
        if image.dtype != np.uint8 or image.ndim != 2:
            raise ValueError(f"{field} of frame {t}: expected (H, W) uint8, got {image.shape} {image.dtype}")
        path = write_label_png(root / field / f"{t:05d}.png", pad_to(image, *size, mode="zero"), reading="label-png")
        out[field] = str(path.resolve())
    return out


def spike_runs(spike: np.ndarray) -> list[tuple[int, int]]:
    """Runs of consecutive True frames as 1-based inclusive ``(first, last)`` FiftyOne frame numbers.

    ``spike``: ``(T,)`` bool, one per frame (0-based). E.g. ``[F, T, T, F, T]`` -> ``[(2, 3), (5, 5)]``.
    """
    spike = np.asarray(spike, dtype=bool)
    edges = np.diff(np.concatenate([[0], spike.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(s) + 1, int(e)) for s, e in zip(starts, ends)]


def add_video_dataset(name: str, clip: EncodedClip, frame_fields: list[dict], *, info: dict, spike: np.ndarray,
                      persistent: bool = True):
    """Create dataset ``name`` with one video sample: the clip, our metadata and the per-frame labels.

    Args:
        name: a dataset name that does not exist yet.
        clip: the encoded clip (:func:`encode_clip`).
        frame_fields: one dict per frame (0-based, ``len == clip.frame_count``) with ``frame_index``,
            ``inconsistency`` (float or None), ``flicker_fraction`` and the label paths of
            :func:`write_frame_labels`.
        info: stored as ``dataset.info["steadyseg_video"]``; ``e_raw`` and ``e_cons`` also go on the sample.
        spike: ``(T,)`` bool, the frames of the ``flicker_spikes`` view (stored as temporal detections).
        persistent: keep the dataset after the process ends.

    Returns:
        the FiftyOne dataset (``media_type == "video"``).
    """
    fo = require_fiftyone()
    if len(frame_fields) != clip.frame_count:
        raise ValueError(f"{clip.path}: {len(frame_fields)} frame label sets for {clip.frame_count} frames")
    dataset = fo.Dataset(name)
    dataset.persistent = persistent
    sample = fo.Sample(filepath=str(clip.path), metadata=video_metadata(clip),
                       e_raw=info.get("e_raw"), e_cons=info.get("e_cons"),
                       flicker_spikes=fo.TemporalDetections(detections=[
                           fo.TemporalDetection(label="spike", support=[first, last])
                           for first, last in spike_runs(spike)]))
    for t, fields in enumerate(frame_fields):
        sample.frames[t + 1] = fo.Frame(
            frame_index=fields["frame_index"], inconsistency=fields["inconsistency"],
            flicker_fraction=fields["flicker_fraction"],
            masks=fo.Segmentation(mask_path=fields["masks"]),
            flicker_map=fo.Heatmap(map_path=fields["flicker_map"], range=[0, 255]),
            flicker_regions=fo.Segmentation(mask_path=fields["flicker_regions"]))
    dataset.add_sample(sample)
    dataset.info["steadyseg_video"] = dict(info)
    dataset.save()
    return dataset
