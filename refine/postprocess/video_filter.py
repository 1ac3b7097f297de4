"""Video post-processing of mask videos: 3D weighted guided filter or temporal Gaussian, in the input's format.

The library behind ``steadyseg postprocess wgf|gauss`` (:mod:`steadyseg.refine.postprocess.cli`)::

    from steadyseg.refine.postprocess.video_filter import postprocess_video
    config = postprocess_video("masks/", "out/", method="wgf", frames_path="frames/", strength="light")

Input masks are read with :func:`steadyseg.datasets.masks.open_masks` (DAVIS {0, 255} PNGs, palette PNGs, label
PNGs, or ``.npy``/``.npz`` probabilities) and written back in the same format with the same file names:

- ``davis2016-binary`` -> grayscale PNG {0, 255};  ``palette-ids`` -> palette PNG with the input's palette;
- ``label-png`` -> grayscale label PNG (uint8, or uint16 above 255 labels);
- ``soft-probs`` -> one ``(C, H, W)`` float32 ``.npy`` per frame (clipped to [0, 1], renormalised to sum to 1).

Classes: the probabilities of each class are filtered independently (after softmax, before binarisation) and the
label is the argmax after filtering. With two classes (binary) only the foreground probability is filtered (with its
own confidence weights) and the background is ``1 - fg``, i.e. the label is ``fg > 0.5``. Hard masks become one-hot
probabilities in {0, 1}: confidence weights are then 1 everywhere and the weighted filter is the plain one; soft
input (network probabilities) is what makes the weighting useful. Void pixels (255) of a hard input stay void.

Defaults: :data:`WGF_DEFAULTS` (the ``"medium"`` point of :data:`WGF_PRESETS`, the measured front) and
:data:`GAUSS_DEFAULTS`; the confidence thresholds (``low``, ``high``, ``floor``)
and the Gaussian's ``truncate`` are read from the signatures of
:func:`~steadyseg.refine.postprocess.guided_filter.confidence_weights` and
:class:`~steadyseg.refine.postprocess.temporal_smoothing.TemporalGaussian`, so each default has one source.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from steadyseg.labels import VOID
from steadyseg.refine.postprocess.guided_filter import GuidedFilter3d, confidence_weights
from steadyseg.refine.postprocess.temporal_smoothing import TemporalGaussian


def _keyword_defaults(fn: Callable[..., Any], names: Sequence[str]) -> dict[str, Any]:
    params = inspect.signature(fn).parameters
    return {name: params[name].default for name in names}


#: Named points of the measured front of the 3D WGF (``steadyseg postprocess wgf --strength NAME``): guide, spatial
#: radius (px), temporal radius (frames) and eps of each. Measured on the 8 DAVIS 2016 sequences with OSVOS teacher
#: masks (``benchmarks/eval_postprocess_davis.py --sweep``; numbers in docs/postprocess.md, "Choosing the strength"):
#: every preset has J above the teacher's and lies on the front of (E_raw, J, delay = 2 rt frames); "medium" and
#: "strong" are on the E_raw / J front itself. Stronger = a longer temporal window (more delay). Explicit
#: parameters override the preset's.
WGF_PRESETS: dict[str, dict[str, Any]] = {
    "light": dict(guide="color", radius=8, temporal_radius=1, eps=1e-3),    # delay 2: E_raw -36 %, J +1.9 pt
    "medium": dict(guide="color", radius=8, temporal_radius=2, eps=1e-2),   # delay 4: E_raw -44 %, J +1.3 pt
    "strong": dict(guide="color", radius=8, temporal_radius=3, eps=1e-3),   # delay 6: E_raw -42 %, J +2.4 pt
}
#: The preset the defaults come from.
DEFAULT_STRENGTH = "medium"
#: Parameters of the 3D weighted guided filter: strength (a :data:`WGF_PRESETS` name), spatial radius (px), temporal
#: radius (frames), eps (guide variance, guide in [0, 1]), guide "color" | "gray", weighted (confidence weights on),
#: low / high / floor of :func:`confidence_weights`. radius, temporal_radius, eps and guide are those of
#: ``WGF_PRESETS[DEFAULT_STRENGTH]``.
WGF_DEFAULTS: dict[str, Any] = dict(strength=DEFAULT_STRENGTH, **WGF_PRESETS[DEFAULT_STRENGTH], weighted=True,
                                    **_keyword_defaults(confidence_weights, ("low", "high", "floor")))
#: Parameters of the temporal Gaussian: sigma (frames) and truncate (kernel radius in sigmas).
GAUSS_DEFAULTS: dict[str, Any] = dict(sigma=1.0, **_keyword_defaults(TemporalGaussian, ("truncate",)))

__all__ = ["WGF_DEFAULTS", "WGF_PRESETS", "DEFAULT_STRENGTH", "GAUSS_DEFAULTS", "resolve_params",
           "filter_probabilities", "postprocess_video", "write_mask"]


def _guide_of(frame: np.ndarray, guide: str) -> np.ndarray:
    import cv2

    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8 RGB frames, got {frame.dtype} {frame.shape}")
    if guide == "color":
        return frame.astype(np.float32) * np.float32(1.0 / 255.0)
    if guide == "gray":
        return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32) * np.float32(1.0 / 255.0)
    raise ValueError(f"guide must be 'color' or 'gray', got {guide!r}")


def resolve_params(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """The full parameter set of ``method`` (``"wgf"`` | ``"gauss"``) for the given ``params`` (None = unset).

    wgf: :data:`WGF_DEFAULTS`, then the preset ``params["strength"]`` (default :data:`DEFAULT_STRENGTH`) of
    :data:`WGF_PRESETS`, then the other params given. gauss: :data:`GAUSS_DEFAULTS`, then the params given.
    Unknown names or an unknown strength raise ValueError.
    """
    defaults = {"wgf": WGF_DEFAULTS, "gauss": GAUSS_DEFAULTS}.get(method)
    if defaults is None:
        raise ValueError(f"method must be 'wgf' or 'gauss', got {method!r}")
    given = {k: v for k, v in params.items() if v is not None}
    unknown = set(given) - set(defaults)
    if unknown:
        raise ValueError(f"unknown {method} parameter(s): {sorted(unknown)}; expected some of {sorted(defaults)}")
    if method == "gauss":
        return {**defaults, **given}
    strength = given.get("strength", DEFAULT_STRENGTH)
    if strength not in WGF_PRESETS:
        raise ValueError(f"unknown wgf strength {strength!r}; expected one of {sorted(WGF_PRESETS)}")
    return {**defaults, **WGF_PRESETS[strength], **given, "strength": strength}


def filter_probabilities(probs: Iterator[np.ndarray] | Sequence[np.ndarray], *, method: str,
                         frames: Sequence[np.ndarray] | None = None, **params: Any) -> Iterator[np.ndarray]:
    """Filter a video of per-class probabilities, streaming; yields the filtered frames in order.

    Args:
        probs: iterable of ``(C, H, W)`` float32 probabilities in [0, 1] (one-hot for hard masks).
        method: ``"wgf"`` (3D weighted guided filter) or ``"gauss"`` (temporal Gaussian).
        frames: ``(H, W, 3) uint8`` RGB frames, same count and size (needed by ``"wgf"`` only).
        params: for ``wgf`` any of :data:`WGF_DEFAULTS` (strength, radius, temporal_radius, eps, guide, weighted,
            low, high, floor); for ``gauss`` any of :data:`GAUSS_DEFAULTS` (sigma, truncate). Unknown names raise;
            None values are unset (see :func:`resolve_params`).

    Yields:
        ``(C, H, W)`` float32 filtered probabilities (WGF output is not clipped; the argmax is the label).
    """
    p = resolve_params(method, params)

    if method == "gauss":
        smoother = TemporalGaussian(sigma=p["sigma"], truncate=p["truncate"])
        for x in probs:
            y = smoother.step(x)
            if y is not None:
                yield y
        yield from smoother.flush()
        return

    if frames is None:
        raise ValueError("the weighted guided filter needs the video frames as its guide (--frames)")
    gf = GuidedFilter3d(radius=p["radius"], eps=p["eps"], temporal_radius=p["temporal_radius"])
    n_frames = len(frames)
    binary = None
    t = -1
    for t, x in enumerate(probs):
        if t >= n_frames:
            raise ValueError(f"more masks than frames ({n_frames})")
        x = np.asarray(x, dtype=np.float32)
        if binary is None:
            binary = x.shape[0] == 2
        src = x[1:2] if binary else x
        w = confidence_weights(src, low=p["low"], high=p["high"], floor=p["floor"]) if p["weighted"] else None
        guide = _guide_of(np.asarray(frames[t]), p["guide"])
        q = gf.step(guide, src, weights=w)
        if q is not None:
            yield _binary_back(q) if binary else q
    if t + 1 != n_frames:
        raise ValueError(f"{t + 1} masks but {n_frames} frames")
    for q in gf.flush():
        yield _binary_back(q) if binary else q


def _binary_back(q: np.ndarray) -> np.ndarray:
    return np.concatenate([1.0 - q, q], axis=0).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------
# Writing masks in the input's format
# ----------------------------------------------------------------------------------------------------------------
def write_mask(path: str | os.PathLike, probs: np.ndarray, *, reading: str, void: np.ndarray | None = None,
               palette: list[int] | None = None) -> Path:
    """Write one filtered frame atomically in the format of ``reading`` (see the module docstring).

    Args:
        path: output file; its suffix is replaced by ``.png`` or ``.npy`` as the format requires.
        probs: ``(C, H, W)`` float32 filtered probabilities.
        reading: a :data:`steadyseg.datasets.masks.READINGS` value.
        void: optional ``(H, W)`` bool, pixels written as ``VOID`` (255; label formats only).
        palette: the palette of a ``palette-ids`` input (``PIL.Image.getpalette()``).
    """
    from steadyseg.files import atomic_path

    path = Path(path)
    if reading == "soft-probs":
        q = np.clip(probs, 0.0, 1.0)
        q /= np.maximum(q.sum(0, keepdims=True), 1e-12)
        out = path.with_suffix(".npy")
        with atomic_path(out) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, q.astype(np.float32))
        return out
    from steadyseg.datasets.masks import write_label_png

    labels = np.argmax(probs, axis=0)
    if void is not None:
        labels = np.where(void, VOID, labels)
    return write_label_png(path.with_suffix(".png"), labels, reading=reading, palette=palette)


def postprocess_video(masks_path: str | os.PathLike, out_dir: str | os.PathLike, *, method: str,
                      frames_path: str | os.PathLike | None = None, binary: bool = False,
                      max_frames: int | None = None, progress: bool = True, **params: Any) -> dict[str, Any]:
    """Read a mask video, filter it, write it in the input's format to ``out_dir`` plus ``config.yaml``.

    Args:
        masks_path: masks or probabilities (anything :func:`~steadyseg.datasets.masks.open_masks` reads).
        out_dir: output folder (created); files keep the input's names.
        method: ``"wgf"`` or ``"gauss"``; params as in :func:`filter_probabilities`.
        frames_path: the video (a frame folder or a video file); required for ``wgf``, checked against the masks.
        binary: collapse object ids 1..254 to one foreground class.
        max_frames: only the first N frames.

    Returns:
        the resolved configuration (also saved as ``out_dir/config.yaml``).
    """
    from tqdm.auto import tqdm
    from PIL import Image

    from steadyseg.datasets.masks import check_matching, open_masks
    from steadyseg.datasets.video import open_video
    from steadyseg.files import atomic_dir, save_resolved_config

    masks = open_masks(masks_path, binary=binary, max_frames=max_frames)
    n = len(masks)
    frames = None
    if frames_path is not None:
        frames = open_video(frames_path, max_frames=max_frames)
        check_matching(frames, masks)
    elif method == "wgf":
        raise ValueError("postprocess wgf: --frames is required (the frames are the filter's guide)")
    if masks.reading != "soft-probs" and masks.num_classes is None:
        masks = masks.with_num_classes(max(masks.class_count(), 2))
    palette = None
    if masks.reading == "palette-ids":
        with Image.open(masks.mask_path(0)) as im:
            palette = im.getpalette()
    hard = masks.reading != "soft-probs"
    out_dir = Path(out_dir)
    resolved = resolve_params(method, params)
    config = dict(command=f"postprocess {method}", method=method, params=resolved, masks=str(masks_path),
                  frames=None if frames_path is None else str(frames_path), out=str(out_dir), binary=binary,
                  reading=masks.reading, num_classes=masks.num_classes, frames_processed=n)

    def probs_iter():
        for i in range(n):
            yield masks.probs(i)

    stream = filter_probabilities(probs_iter(), method=method,
                                  frames=frames, **params)
    with atomic_dir(out_dir) as tmp_out:  # the folder appears complete, or not at all (a corrupt mask mid-video)
        for i, q in enumerate(tqdm(stream, total=n, desc=f"postprocess {method}", unit="frame",
                                   disable=not progress)):
            void = (masks[i] == VOID) if hard else None
            write_mask(tmp_out / masks.names[i], q, reading=masks.reading, void=void, palette=palette)
        save_resolved_config(tmp_out, config)
    return config
