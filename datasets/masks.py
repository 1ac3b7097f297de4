"""Lazy mask stacks: per-frame label maps or soft probabilities from any model or annotation set.

Conventions (shared by every stage): a mask is an ``(H, W) int32`` label map, 0 = background, 1.. =
objects/classes, 255 = void (:data:`steadyseg.labels.VOID`, ignored everywhere). Soft outputs are
``(C, H, W) float32`` per-class probabilities in [0, 1].

Readings (reported in ``MaskStack.reading``):

* ``"davis2016-binary"``: grayscale PNGs whose values are {0, 255} (DAVIS 2016 annotations): 255 → 1 (object).
* ``"palette-ids"``: palette (mode ``P``) PNGs (DAVIS 2017, OSVOS output): the palette index is the object id,
  255 = void.
* ``"label-png"``: other grayscale/16-bit PNGs: the pixel value is the label, 255 = void.
* ``"soft-probs"``: a folder of ``.npy``/``.npz`` files, one ``(C, H, W)`` float array per frame, or one
  ``.npy``/``.npz`` file holding ``(T, C, H, W)``; labels are the per-pixel argmax.

Example::

    from steadyseg.datasets.masks import open_masks
    masks = open_masks("data/davis2017-osvos/bmx-trees", binary=True)   # e.g. a folder of OSVOS results
    masks.reading        # "palette-ids"
    masks[10]            # (480, 854) int32 in {0, 1}
    masks.probs(10)      # (2, 480, 854) float32 one-hot
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from steadyseg.datasets.video import image_header_size, list_image_files, sequence_index
from steadyseg.errors import InputError, exception_text
from steadyseg.labels import VOID

READINGS = ("davis2016-binary", "palette-ids", "label-png", "soft-probs")

__all__ = ["MaskStack", "open_masks", "check_matching", "write_label_png", "VOID", "READINGS", "labels_to_onehot"]


def labels_to_onehot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """One-hot ``(C, H, W) float32`` of an ``(H, W)`` label map; void (255) pixels get an all-zero column.

    Raises ``ValueError`` when a non-void label is ``>= num_classes``.
    """
    if labels.ndim != 2:
        raise ValueError(f"expected an (H, W) label map, got shape {labels.shape}")
    valid = labels != VOID
    if valid.any():
        top = int(labels[valid].max())
        if top >= num_classes:
            raise ValueError(f"label {top} does not fit num_classes={num_classes}")
    out = np.zeros((num_classes,) + labels.shape, dtype=np.float32)
    ys, xs = np.nonzero(valid)
    out[labels[ys, xs], ys, xs] = 1.0
    return out


class MaskStack(Sequence):
    """A lazy sequence of per-frame masks.

    Attributes:
        names: frame names (file stems, naturally sorted; ``"%05d"`` for a single ``(T, C, H, W)`` file).
        size: ``(H, W)``, from the first frame.
        source: the folder or file.
        reading: one of :data:`READINGS` (how the files were interpreted).
        num_classes: ``C`` for soft probabilities (or for hard labels when given to :func:`open_masks`, or 2 with
            ``binary=True``); ``None`` for hard labels otherwise (then :meth:`probs` uses :meth:`class_count`).
            Read-only: open the stack with ``num_classes=`` or use :meth:`with_num_classes`.
        binary: whether object ids 1..254 were mapped to 1.

    ``masks[i]`` is an ``(H, W) int32`` label map (0 background, 255 void); ``masks.probs(i)`` is ``(C, H, W)
    float32``: the stored probabilities for soft stacks, a one-hot of the labels (void → all-zero column) otherwise.
    """

    def __init__(self, source: Path, names: list[str], size: tuple[int, int], reading: str, *,
                 files: list[Path] | None = None, array_file: Path | None = None, binary: bool = False,
                 num_classes: int | None = None):
        if reading not in READINGS:
            raise ValueError(f"unknown mask reading {reading!r}; expected one of {READINGS}")
        self.source = Path(source)
        self.names = list(names)
        self.size = (int(size[0]), int(size[1]))
        self.reading = reading
        self.binary = bool(binary)
        self._num_classes = num_classes
        self._files = files
        self._array_file = array_file
        self._array = None  # (T, C, H, W), memory-mapped for .npy, loaded on first use for .npz
        self._max_label: int | None = None

    @property
    def num_classes(self) -> int | None:
        """``C`` given at opening (or read from soft probabilities, or 2 with ``binary``); ``None`` if unknown."""
        return self._num_classes

    def with_num_classes(self, num_classes: int) -> "MaskStack":
        """The same masks with ``num_classes`` set (a new stack over the same files; ``self`` is unchanged).

        For hard labels, :meth:`probs` then returns ``num_classes`` channels; a soft stack must already have that
        many channels (``ValueError`` otherwise).
        """
        if int(num_classes) < 1:
            raise ValueError(f"{self.source}: num_classes must be >= 1, got {num_classes}")
        if self.reading == "soft-probs" and self._num_classes is not None and int(num_classes) != self._num_classes:
            raise ValueError(f"{self.source}: soft probabilities have {self._num_classes} channels, "
                             f"not num_classes={num_classes}")
        stack = MaskStack(self.source, self.names, self.size, self.reading, files=self._files,
                          array_file=self._array_file, binary=self.binary, num_classes=int(num_classes))
        stack._array = self._array
        return stack

    def __len__(self) -> int:
        return len(self.names)

    def _index(self, i) -> int:
        return sequence_index(i, len(self), what="mask", source=self.source)

    def _where(self, j: int) -> str:
        return str(self._files[j]) if self._files is not None else f"{self.source} [frame {j}]"

    def mask_path(self, i: int) -> Path | None:
        """The file of mask ``i`` (``None`` for a single-file ``(T, C, H, W)`` stack)."""
        return None if self._files is None else self._files[self._index(i)]

    def frame_size(self, i: int) -> tuple[int, int]:
        """``(H, W)`` of mask ``i`` from the file header only (no decoding of PNG pixels)."""
        j = self._index(i)
        if self.reading == "soft-probs":
            return tuple(self._soft_raw(j, header_only=True)[-2:])
        return image_header_size(self._files[j])

    # -- labels ------------------------------------------------------------------------------------------------
    def __getitem__(self, i) -> np.ndarray:
        j = self._index(i)
        if self.reading == "soft-probs":
            p = self.probs(j)
            labels = np.argmax(p, axis=0).astype(np.int32)
        else:
            labels = self._read_png(j)
        if self.binary:
            labels = np.where((labels >= 1) & (labels < VOID), 1, labels).astype(np.int32)
        if labels.shape != self.size:
            raise InputError(self._where(j), f"mask size {labels.shape[1]}x{labels.shape[0]} (WxH) differs from "
                             f"the first mask's {self.size[1]}x{self.size[0]}")
        return labels

    def _read_png(self, j: int) -> np.ndarray:
        path = self._files[j]
        try:
            with Image.open(path) as im:
                mode = im.mode
                arr = np.array(im)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: mask file disappeared after the stack was opened") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise InputError(path, f"cannot decode mask PNG ({exception_text(exc, path)})") from None
        if self.reading == "palette-ids":
            if mode != "P":
                raise InputError(path, f"expected a palette (mode P) PNG like the first mask, got mode {mode}; "
                                 "palette and grayscale masks are mixed in this folder")
            return arr.astype(np.int32)
        if mode == "P":
            raise InputError(path, f"palette (mode P) PNG among single-channel masks ({self.reading}); palette and "
                             "grayscale masks are mixed in this folder")
        if arr.ndim != 2:
            raise ValueError(f"{path}: expected a single-channel mask PNG, got mode {mode} with shape {arr.shape}")
        if self.reading == "davis2016-binary":
            bad = (arr != 0) & (arr != 255)
            if bad.any():
                vals = np.unique(arr[bad])[:5].tolist()
                raise ValueError(f"{path}: DAVIS-2016 binary reading expects values {{0, 255}}, found {vals}; "
                                 "open the stack with reading='label-png' if 255 means void here")
            return (arr == 255).astype(np.int32)
        return arr.astype(np.int32)  # label-png

    # -- probabilities -----------------------------------------------------------------------------------------
    def _soft_raw(self, j: int, *, header_only: bool = False):
        if self._array_file is not None:
            if self._array is None:
                self._array = _load_array(self._array_file, mmap=True)
            return self._array.shape[1:] if header_only else np.asarray(self._array[j])
        path = self._files[j]
        if header_only and path.suffix == ".npy":
            return np.load(path, mmap_mode="r").shape
        return _load_array(path, mmap=False).shape if header_only else _load_array(path, mmap=False)

    def probs(self, i) -> np.ndarray:
        """``(C, H, W) float32`` probabilities of frame ``i``.

        Soft stacks return the stored values (checked: 3-D, finite, in [0, 1] within 1e-3). With ``binary=True`` a
        soft stack collapses to ``[p_0, 1 - p_0]`` (C = 2). Hard stacks return the one-hot of ``self[i]`` with
        ``C =`` :meth:`class_count`; void pixels are an all-zero column.
        """
        j = self._index(i)
        if self.reading == "soft-probs":
            p = self._soft_raw(j)
            where = self._where(j)
            if p.ndim != 3:
                raise ValueError(f"{where}: expected (C, H, W) probabilities, got shape {p.shape}")
            if not np.issubdtype(p.dtype, np.floating):
                raise ValueError(f"{where}: probabilities must be floating point, got {p.dtype}")
            p = p.astype(np.float32, copy=True)
            if not np.isfinite(p).all():
                raise ValueError(f"{where}: probabilities contain NaN or inf")
            if p.min() < -1e-3 or p.max() > 1 + 1e-3:
                raise ValueError(f"{where}: probabilities outside [0, 1] (min {p.min():.3g}, max {p.max():.3g}); "
                                 "apply softmax before saving")
            if self._num_classes is not None and p.shape[0] != self._num_classes and not self.binary:
                raise ValueError(f"{where}: {p.shape[0]} channels, but the stack has num_classes={self._num_classes}")
            if self.binary:
                p = np.stack([p[0], 1.0 - p[0]]).astype(np.float32)
            return p
        labels = self[j]
        try:
            return labels_to_onehot(labels, self.class_count())
        except ValueError as exc:
            raise InputError(self._where(j), str(exc)) from None

    def class_count(self) -> int:
        """``C`` of :meth:`probs`: 2 with ``binary``, else :attr:`num_classes` when known, else the largest non-void
        label of the stack + 1 (hard labels only; computed once by reading every mask of the stack, then kept)."""
        if self.binary:
            return 2
        if self._num_classes is not None:
            return self._num_classes
        if self._max_label is None:
            top = 0
            for k in range(len(self)):
                lab = self._read_png(k)
                valid = lab[lab != VOID]
                if valid.size:
                    top = max(top, int(valid.max()))
            self._max_label = top
        return self._max_label + 1

    def __repr__(self) -> str:
        return (f"MaskStack(source={str(self.source)!r}, masks={len(self)}, size={self.size}, "
                f"reading={self.reading!r}, num_classes={self.num_classes})")


def _load_array(path: Path, *, mmap: bool) -> np.ndarray:
    """Load a ``.npy`` (optionally memory-mapped) or ``.npz`` (its single array, or key ``probs``)."""
    try:
        if path.suffix == ".npy":
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.keys())
            if len(keys) == 1:
                return z[keys[0]]
            if "probs" in keys:
                return z["probs"]
            raise InputError(path, f".npz with several arrays {keys}; name the probabilities 'probs'")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: probability file not found") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(path, f"cannot read probability array ({exc})") from None


def _png_reading(files: list[Path]) -> str:
    """Choose the reading from the PNG mode and values of the first, middle and last masks."""
    probe = sorted({0, len(files) // 2, len(files) - 1})
    values: set[int] = set()
    for k in probe:
        try:
            with Image.open(files[k]) as im:
                mode = im.mode
                arr = np.array(im)
        except (OSError, SyntaxError, ValueError) as exc:
            raise InputError(files[k], f"cannot decode mask PNG ({exception_text(exc, files[k])})") from None
        if mode == "P":
            return "palette-ids"
        if mode in ("RGB", "RGBA", "LA") or arr.ndim != 2:
            raise ValueError(f"{files[k]}: colour mask PNG (mode {mode}) is not supported; save masks as palette "
                             "(mode P, index = object id) or single-channel label PNGs")
        values.update(np.unique(arr).tolist())
    return "davis2016-binary" if values <= {0, 255} else "label-png"


def open_masks(path: str | os.PathLike, *, binary: bool = False, num_classes: int | None = None,
               reading: str | None = None, max_frames: int | None = None) -> MaskStack:
    """Open a stack of masks lazily.

    Args:
        path: a folder of PNG masks, a folder of per-frame ``.npy``/``.npz`` probabilities ``(C, H, W)``, or one
            ``.npy``/``.npz`` file with ``(T, C, H, W)`` probabilities.
        binary: map every object id in 1..254 to 1 (void stays 255); for soft stacks, collapse to
            background vs. foreground.
        num_classes: the number of classes ``C`` for :meth:`MaskStack.probs` of hard labels (checked against
            soft stacks).
        reading: force a reading (one of :data:`READINGS`) instead of deciding from the PNG mode and values:
            palette PNG → ``"palette-ids"``; single-channel PNGs whose values (first/middle/last mask) are within
            {0, 255} → ``"davis2016-binary"``; other single-channel PNGs → ``"label-png"``.
        max_frames: keep only the first N masks (N ≥ 1; fewer when the stack is shorter), like
            :func:`steadyseg.datasets.video.open_video`'s ``max_frames``; ``None`` keeps all.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: no masks in the folder, mixed PNG and array files, colour PNGs, bad array shapes.
    """
    path = Path(path)
    if reading is not None and reading not in READINGS:
        raise ValueError(f"reading must be one of {READINGS}, got {reading!r}")
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if max_frames is not None and int(max_frames) < 1:
        raise ValueError(f"{path}: max_frames must be >= 1, got {max_frames}")
    keep = None if max_frames is None else int(max_frames)
    if not path.exists():
        raise FileNotFoundError(f"{path}: mask folder or file not found")
    if path.is_file():
        if path.suffix not in (".npy", ".npz"):
            raise ValueError(f"{path}: a single mask file must be .npy/.npz with (T, C, H, W) probabilities")
        arr = _load_array(path, mmap=True)
        if arr.ndim != 4:
            raise ValueError(f"{path}: expected (T, C, H, W) probabilities, got shape {arr.shape}")
        t, c, h, w = arr.shape
        if num_classes is not None and c != num_classes:
            raise ValueError(f"{path}: {c} channels, but num_classes={num_classes} was given")
        stack = MaskStack(path, [f"{k:05d}" for k in range(t)][:keep], (h, w), "soft-probs", array_file=path,
                          binary=binary, num_classes=2 if binary else c)
        stack._array = arr
        return stack
    pngs = list_image_files(path, (".png",))
    arrays = list_image_files(path, (".npy", ".npz"))[:keep]
    if pngs and arrays:
        raise ValueError(f"{path}: contains both PNG masks and .npy/.npz probabilities; keep one kind per folder")
    if arrays:
        if reading not in (None, "soft-probs"):
            raise ValueError(f"{path}: reading={reading!r} does not apply to .npy/.npz probabilities")
        first = _load_array(arrays[0], mmap=True)
        if first.ndim != 3:
            raise ValueError(f"{arrays[0]}: expected (C, H, W) probabilities per frame, got shape {first.shape}")
        c, h, w = first.shape
        if num_classes is not None and c != num_classes:
            raise ValueError(f"{arrays[0]}: {c} channels, but num_classes={num_classes} was given")
        return MaskStack(path, [p.stem for p in arrays], (h, w), "soft-probs", files=arrays, binary=binary,
                         num_classes=2 if binary else c)
    if not pngs:
        raise ValueError(f"{path}: no mask files (.png, or .npy/.npz probabilities) in this folder")
    chosen = reading or _png_reading(pngs)  # decided on the whole folder, whatever max_frames keeps
    if chosen == "soft-probs":
        raise ValueError(f"{path}: reading='soft-probs' needs .npy/.npz files, found PNGs")
    pngs = pngs[:keep]
    h, w = image_header_size(pngs[0])
    return MaskStack(path, [p.stem for p in pngs], (h, w), chosen, files=pngs, binary=binary,
                     num_classes=2 if binary else num_classes)


def check_matching(frames, masks: MaskStack) -> None:
    """Check that a video and a mask stack have the same frame count and ``(H, W)`` for every frame.

    Sizes come from file headers (nothing is decoded). Raises ``ValueError`` naming both sources and the first
    offending file: for a count mismatch, the first frame name present in one but not the other (or the first
    extra item); for a size mismatch, the first mask/frame pair whose sizes differ.
    """
    fsrc, msrc = frames.source, masks.source
    if len(frames) != len(masks):
        in_masks = set(masks.names)
        in_frames = set(frames.names)
        offending = None
        for k, name in enumerate(frames.names):
            if name not in in_masks:
                offending = f"frame {_describe(frames, k)} has no mask"
                break
        if offending is None:
            for k, name in enumerate(masks.names):
                if name not in in_frames:
                    offending = f"mask {_describe(masks, k)} has no frame"
                    break
        if offending is None:
            n = min(len(frames), len(masks))
            offending = (f"frame {_describe(frames, n)} has no mask" if len(frames) > n
                         else f"mask {_describe(masks, n)} has no frame")
        raise ValueError(f"frames {fsrc} ({len(frames)}) and masks {msrc} ({len(masks)}) differ in count: "
                         f"first offending file: {offending}")
    for k in range(len(frames)):
        fs, ms = frames.frame_size(k), masks.frame_size(k)
        if tuple(fs) != tuple(ms):
            odd = frames.frame_path(k) if tuple(fs) != tuple(frames.size) else masks.mask_path(k)
            raise InputError(odd or msrc, f"frames {fsrc} and masks {msrc} differ in size at index {k}: frame "
                             f"{_describe(frames, k)} is {fs[1]}x{fs[0]} but mask {_describe(masks, k)} is "
                             f"{ms[1]}x{ms[0]} (WxH); first offending file: {_describe(masks, k)}")


def _describe(stack, k: int) -> str:
    path = stack.frame_path(k) if hasattr(stack, "frame_path") else stack.mask_path(k)
    return str(path) if path is not None else f"{stack.source} [{stack.names[k]}]"



def write_label_png(path: str | os.PathLike, labels: np.ndarray, *, reading: str,
                    palette: list[int] | None = None) -> Path:
    """Write one ``(H, W)`` integer label map (0 background, 255 void) atomically as a PNG in a reading's format.

    Args:
        path: output file (written as given; use a ``.png`` suffix).
        labels: ``(H, W)`` integer labels.
        reading: ``"davis2016-binary"`` (label 1 → 255, everything else → 0; more than one object is an error),
            ``"palette-ids"`` (mode P, ids as indices, ``palette`` kept when given) or ``"label-png"`` (values as
            they are, 8-bit, or 16-bit when a label exceeds 255).
        palette: the palette of a ``palette-ids`` input (``PIL.Image.getpalette()``).
    """
    from steadyseg.files import atomic_path

    path = Path(path)
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"{path}: expected an (H, W) label map, got shape {labels.shape}")
    if reading == "davis2016-binary":
        if labels[labels != VOID].max(initial=0) > 1:
            raise ValueError(f"{path}: davis2016-binary output needs 2 classes, got labels up to {labels.max()}")
        img = Image.fromarray(np.where(labels == 1, 255, 0).astype(np.uint8), mode="L")
    elif reading == "palette-ids":
        img = Image.fromarray(labels.astype(np.uint8), mode="P")
        if palette is not None:
            img.putpalette(palette)
    elif reading == "label-png":
        img = Image.fromarray(labels.astype(np.uint8 if labels.max(initial=0) <= 255 else np.uint16))
    else:
        raise ValueError(f"{path}: cannot write masks of reading {reading!r} as PNG")
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path
