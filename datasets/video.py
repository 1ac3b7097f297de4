"""Lazy video readers: a DAVIS sequence or any folder of images, or a video file (mp4/avi via OpenCV).

Frames come out as ``(H, W, 3) uint8`` RGB arrays, one at a time: a :class:`VideoFrames` object holds file names
and a few small strings (content hashes), never the decoded pixels, so opening a long video costs nothing.

Example::

    from steadyseg.datasets.video import open_video
    frames = open_video("data/davis2016/JPEGImages/480p/blackswan")   # e.g. a DAVIS folder
    frames.size          # (480, 854)  -> (H, W)
    frames[0].shape      # (480, 854, 3) uint8 RGB
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from steadyseg.errors import InputError, exception_text

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")

__all__ = ["VideoFrames", "open_video", "frame_hash", "natural_sort_key", "list_image_files", "IMAGE_EXTENSIONS",
           "VIDEO_EXTENSIONS"]


def natural_sort_key(name: str) -> tuple:
    """Sort key that orders ``frame2`` before ``frame10`` (digit runs compare as numbers)."""
    return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name))


def list_image_files(folder: Path, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files directly inside ``folder`` (no recursion), naturally sorted by stem; hidden files ignored.

    Raises ``ValueError`` naming the folder when two files share a stem (``00000.jpg`` and ``00000.png``): the
    frame name would be ambiguous.
    """
    files = [p for p in folder.iterdir()
             if p.is_file() and p.suffix.lower() in extensions and not p.name.startswith(".")]
    files.sort(key=lambda p: natural_sort_key(p.stem))
    stems = [p.stem for p in files]
    if len(set(stems)) != len(stems):
        dup = next(s for s in stems if stems.count(s) > 1)
        raise ValueError(f"{folder}: two files share the frame name {dup!r} "
                         f"({', '.join(p.name for p in files if p.stem == dup)}); keep one")
    return files


def frame_hash(frame: np.ndarray) -> str:
    """sha256 hex digest of a decoded frame: its shape and dtype (as ``f"{shape}{dtype}"``), then its C-order bytes.

    The content key of a frame everywhere (``VideoFrames.content_hash``, the flow cache of
    :class:`steadyseg.datasets.flow.FlowProvider`): two frames with the same pixels share it whatever file they came
    from. ``frame``: any numpy array, typically ``(H, W, 3) uint8`` RGB.
    """
    h = hashlib.sha256()
    h.update(f"{frame.shape}{frame.dtype}".encode())
    h.update(np.ascontiguousarray(frame).tobytes())
    return h.hexdigest()


def sequence_index(i, n: int, *, what: str, source) -> int:
    """Validate an int index (negative counts from the end) into ``n`` items of ``source``; returns 0 ≤ j < n."""
    if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
        raise TypeError(f"{what} index must be an int, got {type(i).__name__}")
    j = int(i) + n if i < 0 else int(i)
    if not 0 <= j < n:
        raise IndexError(f"{what} index {i} out of range for {n} {what}s of {source}")
    return j


def decode_image_rgb(data: bytes, *, source: str | os.PathLike) -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, ...) to ``(H, W, 3) uint8`` RGB; ``source`` names the file in errors.

    Raises :class:`~steadyseg.errors.InputError` for an empty, corrupt or truncated file (OpenCV's own warnings
    about it are silenced, so the error is the only message).
    """
    if not data:
        raise InputError(source, "empty image file (0 bytes)")
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if bgr is None:
        raise InputError(source, "cannot decode image (corrupt, truncated or unsupported format)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_image_bytes(path: str | os.PathLike) -> bytes:
    """The encoded bytes of an image file, with errors that name the file."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: image file not found") from None
    except OSError as exc:
        raise OSError(f"{path}: cannot read image file: {exc.strerror or exc}") from None


def read_image_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read one image file as ``(H, W, 3) uint8`` RGB, with errors that name the file."""
    return decode_image_rgb(read_image_bytes(path), source=path)


def image_header_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(H, W)`` of an image file from its header (PIL, no decoding); ``InputError`` naming the file if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except (OSError, SyntaxError, ValueError) as exc:  # PIL.UnidentifiedImageError is an OSError
        raise InputError(path, "cannot read the image header: empty, corrupt or not an image "
                         f"({exception_text(exc, path)})") from None
    return (h, w)


class VideoFrames(Sequence):
    """A lazy, indexable sequence of RGB frames.

    Attributes:
        names: frame names, sorted (file stems for a folder, ``"%05d"`` indices for a video file).
        size: ``(H, W)`` of every frame (read from the first frame; other frames are checked when read).
        source: the folder or video file.

    ``frames[i]`` decodes frame ``i`` (negative indices allowed) and returns a fresh ``(H, W, 3) uint8`` RGB array
    in [0, 255]. ``content_hash(i)`` is the sha256 of the decoded pixels (plus shape/dtype), cached per index:
    the flow cache keys on it, so renaming or moving a video keeps its cached flow, and re-encoding invalidates it.
    Objects are picklable (a video file is reopened in the receiving process), so joblib workers can use them.
    """

    def __init__(self, source: Path, names: list[str], size: tuple[int, int], *, files: list[Path] | None = None,
                 video_frame_count: int | None = None):
        self.source = Path(source)
        self.names = list(names)
        self.size = (int(size[0]), int(size[1]))
        self._files = files
        self._video_count = video_frame_count
        self._hashes: dict[int, str] = {}
        self._cap = None
        self._cap_next = 0
        self._lock = threading.Lock()

    # -- Sequence protocol -------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.names)

    def _index(self, i) -> int:
        return sequence_index(i, len(self), what="frame", source=self.source)

    def __getitem__(self, i) -> np.ndarray:
        j = self._index(i)
        frame = self._read_file(j) if self._files is not None else self._read_video(j)
        if frame.shape[:2] != self.size:
            where = self._files[j] if self._files is not None else f"{self.source} frame {j}"
            raise InputError(where, f"frame size {frame.shape[1]}x{frame.shape[0]} (WxH) differs from the first "
                             f"frame's {self.size[1]}x{self.size[0]}; all frames of a video must have one size")
        return frame

    def frame_path(self, i: int) -> Path | None:
        """The image file of frame ``i``, or ``None`` for a video file."""
        return None if self._files is None else self._files[self._index(i)]

    def frame_size(self, i: int) -> tuple[int, int]:
        """``(H, W)`` of frame ``i`` read from the file header only (no decoding); used by ``check_matching``."""
        j = self._index(i)
        if self._files is None:
            return self.size
        return image_header_size(self._files[j])

    def content_hash(self, i: int) -> str:
        """sha256 hex digest of the decoded frame ``i`` (shape, dtype and pixel bytes); cached per index."""
        j = self._index(i)
        h = self._hashes.get(j)
        if h is None:
            h = frame_hash(self[j])
            self._hashes[j] = h
        return h

    # -- readers -----------------------------------------------------------------------------------------------
    def _read_file(self, j: int) -> np.ndarray:
        path = self._files[j]
        if not path.exists():
            raise FileNotFoundError(f"{path}: frame file disappeared after the video was opened")
        return read_image_rgb(path)

    def _read_video(self, j: int) -> np.ndarray:
        with self._lock:  # one capture per object; threads take turns
            if self._cap is None:
                self._cap = cv2.VideoCapture(str(self.source))
                self._cap_next = 0
                if not self._cap.isOpened():
                    raise ValueError(f"{self.source}: OpenCV cannot open the video file")
            if j != self._cap_next:
                if j > self._cap_next and j - self._cap_next < 16:  # short forward skips: decode through
                    while self._cap_next < j:
                        self._cap.grab()
                        self._cap_next += 1
                else:
                    self._cap.set(cv2.CAP_PROP_POS_FRAMES, j)
                    self._cap_next = j
            ok, bgr = self._cap.read()
            self._cap_next = j + 1
        if not ok or bgr is None:
            raise ValueError(f"{self.source}: cannot decode frame {j} of {len(self)}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    # -- pickling (joblib workers) -----------------------------------------------------------------------------
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_cap"] = None
        state["_cap_next"] = 0
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __del__(self):
        cap = getattr(self, "_cap", None)
        if cap is not None:
            cap.release()

    def __repr__(self) -> str:
        return f"VideoFrames(source={str(self.source)!r}, frames={len(self)}, size={self.size})"


def _count_video_frames(path: Path, cap) -> int:
    """Count decodable frames by grabbing through the file (the container's frame count can be wrong)."""
    n = 0
    while cap.grab():
        n += 1
    return n


def open_video(path: str | os.PathLike, *, max_frames: int | None = None,
               sequence: str | None = None) -> VideoFrames:
    """Open a video lazily.

    Args:
        path: a folder of images (``.jpg/.jpeg/.png/.bmp``, e.g. DAVIS ``.../JPEGImages/480p/<seq>``), a DAVIS root
            (a folder containing ``JPEGImages/480p``; then ``sequence`` names the sequence), or a video file that
            OpenCV can decode (``.mp4``, ``.avi``, ...).
        max_frames: keep only the first ``max_frames`` frames (``None``: all).
        sequence: the sequence name when ``path`` is a DAVIS root.

    Returns:
        a :class:`VideoFrames` whose items are ``(H, W, 3) uint8`` RGB frames.

    Raises:
        FileNotFoundError: ``path`` (or the DAVIS sequence) does not exist.
        ValueError: a folder without images, an unreadable first frame, or a video OpenCV cannot decode.
    """
    path = Path(path)
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")
    if not path.exists():
        raise FileNotFoundError(f"{path}: video not found (expected a folder of frames or a video file)")
    if path.is_dir():
        if (path / "JPEGImages" / "480p").is_dir():
            davis = path / "JPEGImages" / "480p"
            if sequence is None:
                seqs = sorted(p.name for p in davis.iterdir() if p.is_dir())
                raise ValueError(f"{path}: this is a DAVIS root; pass sequence= one of {seqs} "
                                 f"or open {davis}/<sequence>")
            path = davis / sequence
            if not path.is_dir():
                raise FileNotFoundError(f"{path}: DAVIS sequence {sequence!r} not found")
        elif sequence is not None:
            path = path / sequence
            if not path.is_dir():
                raise FileNotFoundError(f"{path}: sequence folder not found")
        files = list_image_files(path)
        if not files:
            raise ValueError(f"{path}: no image frames ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
        if max_frames is not None:
            files = files[:max_frames]
        first = read_image_rgb(files[0])
        return VideoFrames(path, [p.stem for p in files], first.shape[:2], files=files)

    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        raise ValueError(f"{path}: not a folder of frames and not a video file ({', '.join(VIDEO_EXTENSIONS)})")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ValueError(f"{path}: OpenCV cannot open this video file (unsupported codec or corrupt file)")
        w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        n = _count_video_frames(path, cap)
    finally:
        cap.release()
    if n == 0 or h <= 0 or w <= 0:
        raise ValueError(f"{path}: the video has no decodable frames")
    if max_frames is not None:
        n = min(n, max_frames)
    return VideoFrames(path, [f"{i:05d}" for i in range(n)], (h, w), video_frame_count=n)
