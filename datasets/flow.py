"""Optical flow between video frames (OpenCV DIS / Farneback, torchvision RAFT) with an on-disk cache.

Convention everywhere in steadyseg: a flow ``F[a→b]`` is an ``(H, W, 2) float32`` array in pixels, channel 0 = dx
(along columns), channel 1 = dy (along rows); pixel ``x`` of frame ``a`` maps to ``x + F(x)`` in frame ``b``.
Validity/occlusion masks and warping live in :mod:`steadyseg.warp`, not here.

Example::

    from steadyseg.datasets.video import open_video
    from steadyseg.datasets.flow import FlowProvider, window_pairs
    frames = open_video("data/davis2016/JPEGImages/480p/blackswan")   # e.g. a DAVIS folder
    flow = FlowProvider(frames, backend="dis", preset="medium", cache_dir="cache/flow", n_jobs=2)
    flow.precompute(window_pairs(len(frames), window=3))
    f01 = flow(0, 1)           # (480, 854, 2) float32, frame 0 → frame 1, from the cache
    m01 = flow.valid(0, 1)     # (480, 854) uint8 M[0→1] (1 = valid), cached beside the flows

The default cache folder of ``steadyseg measure`` is :func:`default_flow_cache_dir` (``<cache root>/flow``, the
root being ``$STEADYSEG_CACHE_DIR``, else ``$XDG_CACHE_HOME/steadyseg``, else ``~/.cache/steadyseg``);
:func:`cache_info` and :func:`clear_cache` are the library behind ``steadyseg cache info|clear``.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import struct
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from steadyseg.datasets.video import frame_hash
from steadyseg.files import atomic_path, remove_orphan_temporaries, sha256_file
from steadyseg.pairs import window_pairs  # re-exported: the flows a window of pairs needs

BACKENDS = ("dis", "farneback", "raft")
DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
# Farneback parameters (OpenCV's sample values); part of the cache key.
FARNEBACK_PARAMS = {"pyr_scale": 0.5, "levels": 4, "winsize": 15, "iterations": 3, "poly_n": 5, "poly_sigma": 1.2}
RAFT_MODELS = ("raft_small", "raft_large")
CACHE_FORMAT_VERSION = 2  # 1: .npz entries; 2: raw array + CRC-32 header (.flow)
VALID_FORMAT_VERSION = 1  # validity masks M[p→q]: bit-packed, CRC-32 header (.valid)
NEAREST_MAP_FORMAT_VERSION = 1  # nearest sampling maps x + F(x): int16 (H, W, 2), CRC-32 header (.nnmap)
CACHE_DIR_ENV = "STEADYSEG_CACHE_DIR"  # overrides the cache root (tests point it at a temporary folder)

__all__ = ["compute_flow", "flow_params", "flow_cache_key", "valid_cache_key", "FlowCache", "FlowProvider",
           "window_pairs", "precompute_video_flows", "default_cache_root", "default_flow_cache_dir", "cache_info",
           "clear_cache", "CACHE_DIR_ENV",
           "BACKENDS", "DIS_PRESETS", "RAFT_MODELS"]


# ---------------------------------------------------------------------------------------------------------------
# backends
# ---------------------------------------------------------------------------------------------------------------
def _check_frames(frame_a: np.ndarray, frame_b: np.ndarray) -> None:
    for name, f in (("frame_a", frame_a), ("frame_b", frame_b)):
        if not isinstance(f, np.ndarray) or f.dtype != np.uint8 or f.ndim not in (2, 3) or (
                f.ndim == 3 and f.shape[2] != 3):
            raise ValueError(f"{name}: expected (H, W, 3) uint8 RGB (or (H, W) uint8 gray), got "
                             f"{getattr(f, 'shape', None)} {getattr(f, 'dtype', type(f).__name__)}")
    if frame_a.shape[:2] != frame_b.shape[:2]:
        raise ValueError(f"frames differ in size: {frame_a.shape[:2]} vs {frame_b.shape[:2]}")


def _gray(frame: np.ndarray) -> np.ndarray:
    return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


_dis_local = threading.local()


def _dis_flow(a: np.ndarray, b: np.ndarray, preset: str) -> np.ndarray:
    if preset not in DIS_PRESETS:
        raise ValueError(f"unknown DIS preset {preset!r}; expected one of {tuple(DIS_PRESETS)}")
    cache = getattr(_dis_local, "objs", None)
    if cache is None:
        cache = _dis_local.objs = {}
    dis = cache.get(preset)
    if dis is None:  # one DIS object per thread and preset (they hold scratch buffers)
        dis = cache[preset] = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])
    return dis.calc(_gray(a), _gray(b), None)


def _farneback_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    p = FARNEBACK_PARAMS
    return cv2.calcOpticalFlowFarneback(_gray(a), _gray(b), None, p["pyr_scale"], p["levels"], p["winsize"],
                                        p["iterations"], p["poly_n"], p["poly_sigma"], 0)


_raft_models: dict[tuple, Any] = {}
_raft_lock = threading.Lock()

RAFT_HELP = ("RAFT weights are never downloaded by steadyseg. On a machine with network access run\n"
             "  python -c \"import torch, torchvision.models.optical_flow as m; "
             "torch.save(m.Raft_Small_Weights.DEFAULT.get_state_dict(progress=True), 'raft_small.pth')\"\n"
             "(Raft_Large_Weights for raft_large) and copy the file here, then pass --raft-weights FILE.")


def load_raft(weights: str | os.PathLike | None, *, model: str = "raft_small", device: str = "cpu"):
    """A torchvision RAFT model in eval mode with weights from a LOCAL state-dict file (cached per process).

    The file is a plain torchvision state dict (or a dict with key ``"model"`` holding one, as torchvision's
    training reference saves); it is loaded with ``torch.load(weights_only=True)`` and ``strict=True``.
    Raises ``FileNotFoundError`` naming the file and how to get it, ``ValueError`` on a key/shape mismatch.
    """
    if model not in RAFT_MODELS:
        raise ValueError(f"unknown RAFT model {model!r}; expected one of {RAFT_MODELS}")
    if weights is None:
        raise FileNotFoundError(f"RAFT needs a local weights file (raft_weights=None given).\n{RAFT_HELP}")
    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: RAFT weights file not found.\n{RAFT_HELP}")
    key = (str(weights.resolve()), weights.stat().st_mtime_ns, model, str(device))
    with _raft_lock:
        net = _raft_models.get(key)
        if net is not None:
            return net
        import torch
        from torchvision.models import optical_flow

        net = getattr(optical_flow, model)(weights=None, progress=False)
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
            raise ValueError(f"{weights}: cannot load RAFT weights ({type(exc).__name__}: {exc})") from None
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]
        if not isinstance(state, dict):
            raise ValueError(f"{weights}: expected a state dict, got {type(state).__name__}")
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0:3]
            raise ValueError(f"{weights}: not a torchvision {model} state dict ({' '.join(first)}). Keys with a "
                             "'module.' prefix come from DataParallel; re-save model.module.state_dict().") from None
        net = net.eval().to(device)
        _raft_models[key] = net
        return net


def _raft_flow(a: np.ndarray, b: np.ndarray, *, weights, model: str, device: str, num_flow_updates: int) -> np.ndarray:
    net = load_raft(weights, model=model, device=device)  # checks the file before importing torch
    import torch
    import torch.nn.functional as F

    if a.ndim == 2:
        a, b = np.repeat(a[..., None], 3, axis=2), np.repeat(b[..., None], 3, axis=2)
    h, w = a.shape[:2]
    # RAFT needs sizes divisible by 8 and at least 128 (its correlation pyramid downsamples 8 x 2**3):
    # replicate-pad at the bottom/right, then crop the flow back to (h, w).
    ph, pw = max(128, h + (-h) % 8) - h, max(128, w + (-w) % 8) - w

    def prep(img: np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float().div(127.5).sub(1.0)
        return F.pad(t, (0, pw, 0, ph), mode="replicate").to(device)

    with torch.inference_mode():
        preds = net(prep(a), prep(b), num_flow_updates=num_flow_updates)
    flow = preds[-1][0, :, :h, :w].permute(1, 2, 0).float().cpu().numpy()  # channel 0 = dx, 1 = dy
    return np.ascontiguousarray(flow, dtype=np.float32)


def compute_flow(frame_a: np.ndarray, frame_b: np.ndarray, *, backend: str = "dis", preset: str = "medium",
                 raft_weights: str | os.PathLike | None = None, raft_model: str = "raft_small",
                 device: str = "cpu", raft_updates: int = 12) -> np.ndarray:
    """Optical flow from ``frame_a`` to ``frame_b``.

    Args:
        frame_a, frame_b: ``(H, W, 3) uint8`` RGB frames (``(H, W) uint8`` gray is accepted), same size.
        backend: ``"dis"`` (OpenCV DIS, default), ``"farneback"`` (OpenCV, :data:`FARNEBACK_PARAMS`) or ``"raft"``
            (torchvision RAFT, weights from a local file).
        preset: DIS preset, ``"ultrafast" | "fast" | "medium"`` (ignored by the other backends).
        raft_weights: local torchvision RAFT state-dict file (required for ``"raft"``; never downloaded).
        raft_model: ``"raft_small"`` or ``"raft_large"``.
        device: torch device for RAFT.
        raft_updates: number of RAFT recurrent updates (torchvision's ``num_flow_updates``; 12 by default).

    Returns:
        ``(H, W, 2) float32`` flow in pixels, channel 0 = dx, 1 = dy: pixel x of ``frame_a`` maps to
        ``x + F(x)`` in ``frame_b``.
    """
    _check_frames(frame_a, frame_b)
    if backend == "dis":
        flow = _dis_flow(frame_a, frame_b, preset)
    elif backend == "farneback":
        flow = _farneback_flow(frame_a, frame_b)
    elif backend == "raft":
        flow = _raft_flow(frame_a, frame_b, weights=raft_weights, model=raft_model, device=device,
                          num_flow_updates=raft_updates)
    else:
        raise ValueError(f"unknown flow backend {backend!r}; expected one of {BACKENDS}")
    return np.ascontiguousarray(flow, dtype=np.float32)


# ---------------------------------------------------------------------------------------------------------------
# cache
# ---------------------------------------------------------------------------------------------------------------
def flow_params(*, backend: str = "dis", preset: str = "medium", raft_weights=None, raft_model: str = "raft_small",
                raft_updates: int = 12) -> dict[str, Any]:
    """The parameters that determine a flow result (the cache key's content), validated.

    RAFT weights enter by their file's sha256, so replacing the file invalidates its cached flow.
    """
    if backend == "dis":
        if preset not in DIS_PRESETS:
            raise ValueError(f"unknown DIS preset {preset!r}; expected one of {tuple(DIS_PRESETS)}")
        return {"backend": "dis", "preset": preset, "opencv": cv2.__version__}
    if backend == "farneback":
        return {"backend": "farneback", **FARNEBACK_PARAMS, "opencv": cv2.__version__}
    if backend == "raft":
        if raft_model not in RAFT_MODELS:
            raise ValueError(f"unknown RAFT model {raft_model!r}; expected one of {RAFT_MODELS}")
        if raft_weights is None:
            raise FileNotFoundError(f"RAFT needs a local weights file (raft_weights / --raft-weights).\n{RAFT_HELP}")
        if not Path(raft_weights).is_file():
            raise FileNotFoundError(f"{raft_weights}: RAFT weights file not found.\n{RAFT_HELP}")
        return {"backend": "raft", "model": raft_model, "weights_sha256": sha256_file(raft_weights),
                "updates": int(raft_updates)}
    raise ValueError(f"unknown flow backend {backend!r}; expected one of {BACKENDS}")


def flow_cache_key(hash_a: str, hash_b: str, params: dict[str, Any]) -> str:
    """sha256 hex key of (content hash of frame a, content hash of frame b, backend parameters, format version)."""
    blob = json.dumps({"a": hash_a, "b": hash_b, "params": params, "format": CACHE_FORMAT_VERSION},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def valid_cache_key(key_q_to_p: str, key_p_to_q: str, *, thresholds: Any, check_motion_boundary: bool) -> str:
    """sha256 hex key of the validity mask ``M[p→q]``: the cache keys of ``F[q→p]`` and ``F[p→q]``, the four
    :class:`steadyseg.warp.ValidityThresholds` constants, ``check_motion_boundary``, the OpenCV version (the
    checks use ``cv2.remap``) and :data:`VALID_FORMAT_VERSION`."""
    th = [float(getattr(thresholds, k)) for k in ("fb_alpha", "fb_beta", "mb_alpha", "mb_beta")]
    blob = json.dumps({"kind": "valid", "q_to_p": key_q_to_p, "p_to_q": key_p_to_q, "thresholds": th,
                       "motion_boundary": bool(check_motion_boundary), "opencv": cv2.__version__,
                       "format": VALID_FORMAT_VERSION}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def nearest_map_cache_key(flow_key: str) -> str:
    """sha256 hex key of the nearest-neighbour sampling map of the flow cached under ``flow_key``
    (:func:`steadyseg.warp.nearest_sampling_map`; the OpenCV version, whose rounding it stores, is part of it)."""
    blob = json.dumps({"kind": "nearest-map", "flow": flow_key, "opencv": cv2.__version__,
                       "format": NEAREST_MAP_FORMAT_VERSION}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def default_cache_root() -> Path:
    """steadyseg's persistent cache root: ``$STEADYSEG_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/steadyseg``
    (when that variable holds an absolute path, as the XDG spec asks), else ``~/.cache/steadyseg``."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "steadyseg"


def default_flow_cache_dir() -> Path:
    """The flow cache used when none is given (``steadyseg measure`` without ``--cache``): ``<root>/flow`` of
    :func:`default_cache_root`. Nothing is created here."""
    return default_cache_root() / "flow"


_HEADER = struct.Struct("<8sBBxxIIQI")  # magic, dtype code, compressed, (pad), H, W, payload bytes, crc32


_MAGIC = b"SSFLOW" + bytes([CACHE_FORMAT_VERSION, 0])
_DTYPES = {0: np.dtype("<f4"), 1: np.dtype("<f2")}
_DTYPE_CODES = {"float32": 0, "float16": 1}
_VALID_HEADER = struct.Struct("<8sIIQI4x")  # magic, H, W, payload bytes, crc32, (pad): 32 bytes
_VALID_MAGIC = b"SSVALID" + bytes([VALID_FORMAT_VERSION])
_NNMAP_MAGIC = b"SSNNMAP" + bytes([NEAREST_MAP_FORMAT_VERSION])  # same 32-byte header layout as .valid


class FlowCache:
    """Flow fields on disk, one ``<root>/<key[:2]>/<key>.flow`` per pair, written atomically.

    Format (version :data:`CACHE_FORMAT_VERSION`, also part of every key, so entries of an older format are
    never read): a 32-byte little-endian header — magic ``b"SSFLOW"`` + version byte + 0, dtype code (0 =
    float32, 1 = float16), compressed flag, 2 pad bytes, ``H``, ``W`` (uint32), payload length (uint64) and the
    zlib CRC-32 of the payload (uint32) — followed by the raw C-order ``(H, W, 2)`` array (zlib level 1 when
    ``compress``). A read is one ``readinto`` into a fresh array plus the CRC-32, with no zip to unpack (the
    format-1 ``.npz`` entries were slower to read). The CRC-32 costs about 2 ms per 854×480 flow; a cheaper
    word-sum checksum was tried and dropped: it misses some multi-byte corruptions, and a new format would have
    invalidated every cache on disk.

    ``get`` validates the entry (magic, header fields, file size, CRC-32 over the payload, optionally the
    expected ``(H, W)``); a bad entry is deleted and reported as a miss (``corrupt`` counts them). ``put`` refuses
    NaN/inf. Writes are atomic (temporary file + rename) but not fsync'ed: an entry torn by a crash (a short file,
    or blocks of zeros) fails the size check or its CRC-32 and is recomputed. float16 halves
    the size but quantises the flow (≤ 0.008 px at DAVIS motion, 0.25 px above 256 px displacement) and so changes
    results slightly.

    Validity masks ``M[p→q]`` (:func:`steadyseg.warp.valid_mask_u8`, which depend only on the two flows) live
    beside the flows as ``<root>/<key[:2]>/<key>.valid`` (key: :func:`valid_cache_key`): a 32-byte header — magic
    ``b"SSVALID"`` + :data:`VALID_FORMAT_VERSION`, ``H``, ``W`` (uint32), payload length (uint64), zlib CRC-32
    (uint32), 4 pad bytes — and the ``numpy.packbits`` of the C-order mask (1 bit per pixel, 1 = valid), 51 KB at 854×480 against
    3.3 MB for a flow. ``get_valid`` / ``put_valid`` follow the rules of ``get`` / ``put``.

    Nearest-neighbour sampling maps (:func:`steadyseg.warp.nearest_sampling_map`: ``x + F(x)`` rounded as
    ``cv2.remap`` rounds, the ``CV_16SC2`` map that warps label maps bit-identically to the float flow) live as
    ``<key>.nnmap`` (key: :func:`nearest_map_cache_key` of the flow's key) with the header layout of ``.valid``
    (magic ``b"SSNNMAP"`` + :data:`NEAREST_MAP_FORMAT_VERSION`) and the raw C-order ``(H, W, 2)`` little-endian
    int16 array: 1.6 MB at 854×480, half a flow, and no arithmetic before the warp. With a map and ``M`` cached, a
    warm measure reads no flow at all.
    """

    SUFFIX = ".flow"
    VALID_SUFFIX = ".valid"
    NNMAP_SUFFIX = ".nnmap"

    def __init__(self, root: str | os.PathLike, *, dtype: str = "float32", compress: bool = False):
        if dtype not in _DTYPE_CODES:
            raise ValueError(f"FlowCache dtype must be 'float32' or 'float16', got {dtype!r}")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.dtype = dtype
        self.compress = bool(compress)
        self.corrupt = 0

    def path(self, key: str) -> Path:
        if len(key) < 8 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"flow cache key must be a lowercase hex digest, got {key!r}")
        return self.root / key[:2] / f"{key}{self.SUFFIX}"

    def __contains__(self, key: str) -> bool:
        return self.path(key).is_file()

    def valid_path(self, key: str) -> Path:
        return self.path(key).with_suffix(self.VALID_SUFFIX)

    def _drop(self, path: Path) -> None:
        self.corrupt += 1
        try:
            path.unlink()
        except FileNotFoundError:
            pass

    def _read_small(self, path: Path, magic: bytes, payload_bytes, shape: tuple[int, int] | None):
        """``(h, w, payload)`` of a ``.valid`` / ``.nnmap`` entry when its magic, sizes (``payload_bytes(h, w)``),
        expected ``shape`` and CRC-32 hold; else None, and the file (if any) is deleted and counted in ``corrupt``.
        ``FileNotFoundError`` is raised when there is no entry."""
        try:
            with open(path, "rb", buffering=0) as fh:
                data = fh.read()
        except FileNotFoundError:
            raise
        except OSError:
            data = b""
        if len(data) >= _VALID_HEADER.size:
            got_magic, h, w, nbytes, crc = _VALID_HEADER.unpack_from(data)
            payload = memoryview(data)[_VALID_HEADER.size:]
            if (got_magic == magic and h > 0 and w > 0 and nbytes == payload_bytes(h, w) == len(payload)
                    and (shape is None or (h, w) == tuple(shape)) and zlib.crc32(payload) == crc):
                return h, w, payload
        self._drop(path)
        return None

    def _write_small(self, path: Path, magic: bytes, h: int, w: int, payload: bytes) -> Path:
        head = _VALID_HEADER.pack(magic, h, w, len(payload), zlib.crc32(payload))
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(head)
                fh.write(payload)
        return path

    def get_valid(self, key: str, *, shape: tuple[int, int] | None = None) -> np.ndarray | None:
        """The cached validity mask as ``(H, W) uint8`` (1 = valid, 0 = not), or ``None`` when absent or corrupt
        (a corrupt file is deleted and counted in ``corrupt``)."""
        try:
            entry = self._read_small(self.valid_path(key), _VALID_MAGIC, lambda h, w: (h * w + 7) // 8, shape)
        except FileNotFoundError:
            return None
        if entry is None:
            return None
        h, w, payload = entry
        return np.unpackbits(np.frombuffer(payload, np.uint8), count=h * w).reshape(h, w)

    def put_valid(self, key: str, mask: np.ndarray) -> Path:
        """Store an ``(H, W)`` validity mask (nonzero = valid) bit-packed and atomically; returns the file path."""
        if not isinstance(mask, np.ndarray) or mask.ndim != 2 or 0 in mask.shape:
            raise ValueError(f"expected an (H, W) mask, got {getattr(mask, 'shape', type(mask).__name__)}")
        h, w = mask.shape
        payload = np.packbits(np.asarray(mask).reshape(-1) != 0).tobytes()
        return self._write_small(self.valid_path(key), _VALID_MAGIC, h, w, payload)

    def nearest_map_path(self, key: str) -> Path:
        return self.path(key).with_suffix(self.NNMAP_SUFFIX)

    def get_nearest_map(self, key: str, *, shape: tuple[int, int] | None = None) -> np.ndarray | None:
        """The cached ``(H, W, 2) int16`` sampling map, or ``None`` when absent or corrupt (then deleted)."""
        try:
            entry = self._read_small(self.nearest_map_path(key), _NNMAP_MAGIC, lambda h, w: h * w * 4, shape)
        except FileNotFoundError:
            return None
        if entry is None:
            return None
        h, w, payload = entry
        return np.frombuffer(payload, "<i2").reshape(h, w, 2).astype(np.int16, copy=False)

    def put_nearest_map(self, key: str, nmap: np.ndarray) -> Path:
        """Store an ``(H, W, 2) int16`` sampling map atomically; returns the file path."""
        if not isinstance(nmap, np.ndarray) or nmap.ndim != 3 or nmap.shape[2] != 2 or nmap.dtype != np.int16 \
                or 0 in nmap.shape:
            raise ValueError(f"expected an (H, W, 2) int16 sampling map, got "
                             f"{getattr(nmap, 'shape', type(nmap).__name__)} {getattr(nmap, 'dtype', '')}")
        h, w = nmap.shape[:2]
        payload = np.ascontiguousarray(nmap, dtype="<i2").tobytes()
        return self._write_small(self.nearest_map_path(key), _NNMAP_MAGIC, h, w, payload)

    def _header_ok(self, fh, shape: tuple[int, int] | None):
        """The parsed header ``(code, compressed, h, w, nbytes, crc)`` when it and the file size are consistent."""
        head = fh.read(_HEADER.size)
        if len(head) != _HEADER.size:
            return None
        magic, code, compressed, h, w, nbytes, crc = _HEADER.unpack(head)
        dtype = _DTYPES.get(code)
        if magic != _MAGIC or dtype is None or compressed not in (0, 1) or h == 0 or w == 0:
            return None
        if shape is not None and (h, w) != tuple(shape):
            return None
        raw_bytes = h * w * 2 * dtype.itemsize
        if os.fstat(fh.fileno()).st_size != _HEADER.size + nbytes or (not compressed and nbytes != raw_bytes):
            return None
        return code, compressed, h, w, nbytes, crc

    def looks_complete(self, key: str, *, shape: tuple[int, int] | None = None) -> bool:
        """Whether the entry exists with a valid header and the file size it announces (no CRC, no payload read).

        A file truncated mid-write (or of another size, or foreign) is deleted and counted in ``corrupt``, so the
        pair is recomputed; used by :meth:`FlowProvider.precompute` to decide what is already cached.
        """
        path = self.path(key)
        try:
            with open(path, "rb", buffering=0) as fh:
                ok = self._header_ok(fh, shape) is not None
        except FileNotFoundError:
            return False
        except (OSError, struct.error):
            ok = False
        if not ok:
            self.corrupt += 1
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        return ok

    def _read(self, path: Path, shape: tuple[int, int] | None) -> np.ndarray | None:
        """The stored array (its own dtype) or None when anything about the file is wrong."""
        with open(path, "rb", buffering=0) as fh:
            header = self._header_ok(fh, shape)
            if header is None:
                return None
            code, compressed, h, w, nbytes, crc = header
            dtype = _DTYPES[code]
            raw_bytes = h * w * 2 * dtype.itemsize
            if compressed:
                payload = fh.read(nbytes)
                if len(payload) != nbytes or zlib.crc32(payload) != crc:
                    return None
                data = zlib.decompress(payload)
                if len(data) != raw_bytes:
                    return None
                return np.frombuffer(data, dtype=dtype).reshape(h, w, 2).copy()
            flow = np.empty((h, w, 2), dtype=dtype)
            view = memoryview(flow).cast("B")
            got = 0
            while got < nbytes:  # readinto may return less than asked
                n = fh.readinto(view[got:])
                if not n:
                    return None
                got += n
            if zlib.crc32(view) != crc:
                return None
            return flow

    def get(self, key: str, *, shape: tuple[int, int] | None = None) -> np.ndarray | None:
        """The cached ``(H, W, 2) float32`` flow, or ``None`` when absent or corrupt (a corrupt file is deleted)."""
        path = self.path(key)
        try:
            flow = self._read(path, shape)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, zlib.error, struct.error):
            flow = None
        if flow is None:
            self.corrupt += 1
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            return None
        return flow.astype(np.float32, copy=False)

    def put(self, key: str, flow: np.ndarray) -> Path:
        """Store ``flow`` (``(H, W, 2)`` finite floats) atomically; returns the file path."""
        if not isinstance(flow, np.ndarray) or flow.ndim != 3 or flow.shape[2] != 2:
            raise ValueError(f"expected an (H, W, 2) flow, got {getattr(flow, 'shape', type(flow).__name__)}")
        if not np.isfinite(flow).all():
            raise ValueError("refusing to cache a flow with NaN or inf values")
        h, w = flow.shape[:2]
        data = np.ascontiguousarray(flow, dtype=_DTYPES[_DTYPE_CODES[self.dtype]])
        payload: Any = memoryview(data).cast("B")
        if self.compress:
            payload = zlib.compress(payload, 1)
        head = _HEADER.pack(_MAGIC, _DTYPE_CODES[self.dtype], int(self.compress), h, w, len(payload),
                            zlib.crc32(payload))
        path = self.path(key)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(head)
                fh.write(payload)
        return path

_ENTRY_KINDS = {FlowCache.SUFFIX: "flow", FlowCache.VALID_SUFFIX: "valid", FlowCache.NNMAP_SUFFIX: "nearest-map"}


def _cache_entries(root: Path) -> Iterable[tuple[str, Path]]:
    """``(kind, path)`` of every cache entry under ``root``: ``<2 hex>/<hex key><suffix>`` files only."""
    if not root.is_dir():
        return
    for shard in sorted(root.iterdir()):
        if len(shard.name) != 2 or not all(c in "0123456789abcdef" for c in shard.name) or not shard.is_dir() \
                or shard.is_symlink():
            continue
        for f in sorted(shard.iterdir()):
            kind = _ENTRY_KINDS.get(f.suffix)
            if kind is None or not f.stem.startswith(shard.name) or len(f.stem) < 8 \
                    or not all(c in "0123456789abcdef" for c in f.stem) or not f.is_file() or f.is_symlink():
                continue
            yield kind, f


def cache_info(root: str | os.PathLike | None = None) -> dict[str, Any]:
    """What a flow cache folder holds (the library behind ``steadyseg cache info``).

    Args:
        root: the :class:`FlowCache` folder (None: :func:`default_flow_cache_dir`).

    Returns:
        ``{"location": str, "exists": bool, "entries": int, "bytes": int, "disk_bytes": int, "kinds": {kind:
        {"entries", "bytes", "disk_bytes"}}}`` with kinds ``"flow"``, ``"valid"`` and ``"nearest-map"``; ``bytes``
        is the file
        size, ``disk_bytes`` the space allocated on disk (``st_blocks`` × 512).
    """
    root = Path(root) if root is not None else default_flow_cache_dir()
    kinds = {k: {"entries": 0, "bytes": 0, "disk_bytes": 0} for k in _ENTRY_KINDS.values()}
    for kind, f in _cache_entries(root):
        try:
            st = f.stat()
        except FileNotFoundError:  # removed by a concurrent clear
            continue
        kinds[kind]["entries"] += 1
        kinds[kind]["bytes"] += st.st_size
        kinds[kind]["disk_bytes"] += getattr(st, "st_blocks", 0) * 512 or st.st_size
    return {"location": str(root), "exists": root.is_dir(),
            "entries": sum(k["entries"] for k in kinds.values()), "bytes": sum(k["bytes"] for k in kinds.values()),
            "disk_bytes": sum(k["disk_bytes"] for k in kinds.values()), "kinds": kinds}


def clear_cache(root: str | os.PathLike | None = None) -> dict[str, Any]:
    """Remove every cache entry (``.flow``, ``.valid`` and ``.nnmap`` files in the ``<2 hex>/`` shards) of a flow
    cache folder, the temporaries that killed writers left there, and the shards left empty; any other file (e.g.
    the ``flow-run-*.yaml`` records of ``steadyseg flow``) stays. Returns :func:`cache_info` of what was removed."""
    root = Path(root) if root is not None else default_flow_cache_dir()
    removed = cache_info(root)
    for _, f in _cache_entries(root):
        f.unlink(missing_ok=True)
    if root.is_dir():
        for shard in root.iterdir():
            if len(shard.name) == 2 and shard.is_dir() and not shard.is_symlink():
                remove_orphan_temporaries(shard)
                try:
                    shard.rmdir()  # only when empty
                except OSError:
                    pass
    return removed



# ---------------------------------------------------------------------------------------------------------------
# provider
# ---------------------------------------------------------------------------------------------------------------
def _compute_chunk(frames, pairs: list[tuple[int, int]], keys: list[str], cache_root: str | None,
                   cache_dtype: str, cache_compress: bool, flow_kwargs: dict[str, Any],
                   single_thread_cv: bool) -> tuple[int, float, list, float]:
    """Worker: compute the flows of ``pairs`` and write them to the cache (or return them when no cache).

    Returns ``(number of pairs, wall seconds inside compute_flow, flows (no cache), CPU seconds of the chunk)``.
    """
    if single_thread_cv:
        cv2.setNumThreads(1)
    cache = FlowCache(cache_root, dtype=cache_dtype, compress=cache_compress) if cache_root else None
    local: OrderedDict[int, np.ndarray] = OrderedDict()

    def frame(i: int) -> np.ndarray:
        if i not in local:
            local[i] = frames[i]
            if len(local) > 16:
                local.popitem(last=False)
        return local[i]

    seconds, out = 0.0, []
    cpu0 = time.process_time()
    for (p, q), key in zip(pairs, keys):
        fa, fb = frame(p), frame(q)
        t0 = time.perf_counter()
        flow = compute_flow(fa, fb, **flow_kwargs)
        seconds += time.perf_counter() - t0
        if cache is not None:
            cache.put(key, flow)
        else:
            out.append(flow)
    return len(pairs), seconds, out, time.process_time() - cpu0


class FlowProvider:
    """Flow between any two frames of one video, through the disk cache: ``provider(p, q)`` → ``F[p→q]``.

    Args:
        frames: the video (:class:`~steadyseg.datasets.video.VideoFrames` or any sequence of ``(H, W, 3) uint8``
            frames with ``content_hash(i)``; a plain sequence is hashed here).
        backend, preset, raft_weights, raft_model, device, raft_updates: see :func:`compute_flow`.
        cache_dir: folder of the :class:`FlowCache` (``None``: no disk cache; ``precompute`` then needs one).
        n_jobs: parallel workers for :meth:`precompute` (joblib; ``-1`` = all cores).
        prefer: joblib's ``"processes"`` (default for DIS/Farneback; OpenCV then runs single-threaded per worker) or
            ``"threads"`` (default for RAFT, which keeps one model in memory).
        memory_items: flows computed by ``__call__`` kept in an in-memory LRU (returned as copies); flows read
            from the disk cache are returned as they are read (a fresh array each call) and not kept.
        cache_dtype: ``"float32"`` (default) or ``"float16"`` on disk.

    ``stats`` counts ``hits`` (memory or disk), ``misses`` (computed in ``__call__``), ``computed`` (in
    ``precompute``), ``corrupt`` (bad cache files replaced), ``seconds_computing`` (flow time only),
    ``valid_hits`` and ``valid_stored`` (validity masks read from / written to the cache), ``map_hits`` and
    ``map_stored`` (nearest sampling maps, likewise).

    Validity masks ``M[p→q]``: :meth:`valid` (read from the cache, or computed from the two flows by
    :func:`steadyseg.warp.valid_mask_u8` and stored), or :meth:`get_valid` / :meth:`put_valid` for a caller that
    computes them itself (:func:`steadyseg.measures.inconsistency` does, in its worker threads).
    """

    def __init__(self, frames, *, backend: str = "dis", preset: str = "medium",
                 cache_dir: str | os.PathLike | None = None, n_jobs: int = 1, raft_weights=None,
                 raft_model: str = "raft_small", device: str = "cpu", raft_updates: int = 12,
                 prefer: str | None = None, memory_items: int = 8, cache_dtype: str = "float32"):
        self.frames = frames
        self.params = flow_params(backend=backend, preset=preset, raft_weights=raft_weights, raft_model=raft_model,
                                  raft_updates=raft_updates)
        if backend == "raft":  # fail now, not in a worker
            load_raft(raft_weights, model=raft_model, device=device)
        self.flow_kwargs = {"backend": backend, "preset": preset, "raft_weights": raft_weights,
                            "raft_model": raft_model, "device": device, "raft_updates": raft_updates}
        self.cache = FlowCache(cache_dir, dtype=cache_dtype) if cache_dir is not None else None
        self.n_jobs = int(n_jobs)
        if prefer not in (None, "processes", "threads"):
            raise ValueError(f"prefer must be 'processes', 'threads' or None, got {prefer!r}")
        self.prefer = prefer or ("threads" if backend == "raft" else "processes")
        self.memory_items = int(memory_items)
        self._memory: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._hashes: dict[int, str] = {}
        self._keys: dict[tuple[int, int], str] = {}
        self.stats: dict[str, float] = {"hits": 0, "misses": 0, "computed": 0, "corrupt": 0,
                                        "seconds_computing": 0.0, "valid_hits": 0, "valid_stored": 0,
                                        "map_hits": 0, "map_stored": 0}
        self._stats_lock = threading.Lock()
        if isinstance(getattr(frames, "size", None), tuple):  # VideoFrames; a numpy array's .size is an int
            self.size = tuple(frames.size)
        else:  # a plain sequence of arrays
            self.size = tuple(frames[0].shape[:2]) if len(frames) else (0, 0)

    def __len__(self) -> int:
        return len(self.frames)

    def _hash(self, i: int) -> str:
        if hasattr(self.frames, "content_hash"):
            return self.frames.content_hash(i)
        h = self._hashes.get(i)
        if h is None:
            h = self._hashes[i] = frame_hash(np.asarray(self.frames[i]))
        return h

    def key(self, p: int, q: int) -> str:
        """Cache key of ``F[p→q]`` (content hashes of both frames + backend parameters; kept per pair)."""
        k = self._keys.get((p, q))
        if k is None:
            k = self._keys[(p, q)] = flow_cache_key(self._hash(p), self._hash(q), self.params)
        return k

    def valid_key(self, p: int, q: int, *, check_motion_boundary: bool = True, thresholds: Any = None) -> str:
        """Cache key of ``M[p→q]`` (:func:`valid_cache_key` of the keys of ``F[q→p]`` and ``F[p→q]``)."""
        from steadyseg.warp import DEFAULT_THRESHOLDS

        return valid_cache_key(self.key(q, p), self.key(p, q),
                               thresholds=DEFAULT_THRESHOLDS if thresholds is None else thresholds,
                               check_motion_boundary=check_motion_boundary)

    def get_valid(self, p: int, q: int, *, check_motion_boundary: bool = True,
                  thresholds: Any = None) -> np.ndarray | None:
        """``M[p→q]`` from the disk cache as ``(H, W) uint8`` (1 = valid), or None (no cache, absent or corrupt)."""
        p, q = self._check_index(p, q)
        if self.cache is None or p == q:
            return None
        before = self.cache.corrupt
        mask = self.cache.get_valid(self.valid_key(p, q, check_motion_boundary=check_motion_boundary,
                                                   thresholds=thresholds), shape=self.size)
        with self._stats_lock:
            self.stats["corrupt"] += self.cache.corrupt - before
            self.stats["valid_hits"] += mask is not None
        return mask

    def put_valid(self, p: int, q: int, mask: np.ndarray, *, check_motion_boundary: bool = True,
                  thresholds: Any = None) -> None:
        """Store ``M[p→q]`` (``(H, W)``, nonzero = valid) in the disk cache (nothing without a cache). Thread-safe."""
        p, q = self._check_index(p, q)
        if self.cache is None or p == q:
            return
        if tuple(mask.shape) != tuple(self.size):
            raise ValueError(f"put_valid: mask of shape {mask.shape} for frames of size {self.size}")
        self.cache.put_valid(self.valid_key(p, q, check_motion_boundary=check_motion_boundary,
                                            thresholds=thresholds), mask)
        with self._stats_lock:
            self.stats["valid_stored"] += 1

    def get_nearest_map(self, p: int, q: int) -> np.ndarray | None:
        """The nearest sampling map of ``F[p→q]`` (:func:`steadyseg.warp.nearest_sampling_map`, ``(H, W, 2)
        int16``) from the disk cache, or None (no cache, absent or corrupt)."""
        p, q = self._check_index(p, q)
        if self.cache is None or p == q:
            return None
        before = self.cache.corrupt
        nmap = self.cache.get_nearest_map(nearest_map_cache_key(self.key(p, q)), shape=self.size)
        with self._stats_lock:
            self.stats["corrupt"] += self.cache.corrupt - before
            self.stats["map_hits"] += nmap is not None
        return nmap

    def put_nearest_map(self, p: int, q: int, nmap: np.ndarray) -> None:
        """Store the nearest sampling map of ``F[p→q]`` in the disk cache (nothing without a cache). Thread-safe."""
        p, q = self._check_index(p, q)
        if self.cache is None or p == q:
            return
        if tuple(nmap.shape[:2]) != tuple(self.size):
            raise ValueError(f"put_nearest_map: map of shape {nmap.shape} for frames of size {self.size}")
        self.cache.put_nearest_map(nearest_map_cache_key(self.key(p, q)), nmap)
        with self._stats_lock:
            self.stats["map_stored"] += 1

    def valid(self, p: int, q: int, *, check_motion_boundary: bool = True, thresholds: Any = None) -> np.ndarray:
        """``M[p→q]`` as ``(H, W) uint8``, nonzero where valid: from the cache, else computed from ``F[q→p]`` and
        ``F[p→q]`` (:func:`steadyseg.warp.valid_mask_u8`, 0/255) and stored. ``p == q``: all valid."""
        from steadyseg.warp import DEFAULT_THRESHOLDS, valid_mask_u8

        p, q = self._check_index(p, q)
        if p == q:
            return np.ones(self.size, np.uint8)
        th = DEFAULT_THRESHOLDS if thresholds is None else thresholds
        mask = self.get_valid(p, q, check_motion_boundary=check_motion_boundary, thresholds=th)
        if mask is None:
            mask = valid_mask_u8(self(q, p), self(p, q), check_motion_boundary=check_motion_boundary, thresholds=th)
            self.put_valid(p, q, mask, check_motion_boundary=check_motion_boundary, thresholds=th)
        return mask

    def _check_index(self, p: int, q: int) -> tuple[int, int]:
        n = len(self.frames)
        for i in (p, q):
            if not isinstance(i, (int, np.integer)) or not 0 <= int(i) < n:
                raise IndexError(f"frame index {i!r} out of range for a video of {n} frames")
        return int(p), int(q)

    def __call__(self, p: int, q: int) -> np.ndarray:
        """``F[p→q]``: ``(H, W, 2) float32``, channel 0 = dx, 1 = dy, pixels; zeros when ``p == q``."""
        p, q = self._check_index(p, q)
        if p == q:
            return np.zeros(self.size + (2,), dtype=np.float32)
        mem = self._memory.get((p, q))
        if mem is not None:
            self._memory.move_to_end((p, q))
            self.stats["hits"] += 1
            return mem.copy()
        flow = None
        if self.cache is not None:
            key = self.key(p, q)
            before = self.cache.corrupt
            flow = self.cache.get(key, shape=self.size)
            self.stats["corrupt"] += self.cache.corrupt - before
        if flow is not None:  # a fresh array, not kept: a disk read is cheap enough to repeat
            self.stats["hits"] += 1
            return flow
        t0 = time.perf_counter()
        flow = compute_flow(self.frames[p], self.frames[q], **self.flow_kwargs)
        self.stats["seconds_computing"] += time.perf_counter() - t0
        self.stats["misses"] += 1
        if self.cache is not None:
            self.cache.put(key, flow)
        if self.memory_items > 0:
            self._memory[(p, q)] = flow
            while len(self._memory) > self.memory_items:
                self._memory.popitem(last=False)
            return flow.copy()
        return flow

    def precompute(self, pairs: Iterable[tuple[int, int]], *, progress: bool = True) -> dict[str, float]:
        """Compute every pair missing from the cache, in parallel (``n_jobs`` joblib workers), with a progress bar.

        Pairs already on disk are skipped (validated later by ``get``); duplicates and ``p == q`` are dropped.
        Workers write the cache files themselves (atomic), so nothing large travels between processes.
        Returns ``{"pairs", "cached", "computed", "seconds_computing", "cpu_seconds_workers", "seconds_wall"}``
        (``cpu_seconds_workers``: CPU time of the chunks, flow + cache write, summed over the workers).
        """
        from joblib import Parallel, delayed
        from tqdm.auto import tqdm

        if self.cache is None:
            raise ValueError("FlowProvider.precompute needs cache_dir (the flows are written to the disk cache)")
        t_wall = time.perf_counter()
        todo, keys, seen, cached = [], [], set(), 0
        for p, q in pairs:
            p, q = self._check_index(p, q)
            if p == q or (p, q) in seen:
                continue
            seen.add((p, q))
            k = self.key(p, q)
            before = self.cache.corrupt
            if self.cache.looks_complete(k, shape=self.size):  # a file truncated mid-write is recomputed
                cached += 1
            else:
                self.stats["corrupt"] += self.cache.corrupt - before
                todo.append((p, q))
                keys.append(k)
        n_workers = (os.cpu_count() or 1) if self.n_jobs < 0 else max(1, self.n_jobs)
        chunk = max(1, min(16, -(-len(todo) // (n_workers * 4)))) if todo else 1
        chunks = [(todo[i:i + chunk], keys[i:i + chunk]) for i in range(0, len(todo), chunk)]
        seconds = cpu = 0.0
        bar = tqdm(total=len(todo), desc=f"flow {self.params['backend']}", unit="pair", disable=not progress)
        single_cv = self.prefer == "processes" and n_workers > 1
        args = (str(self.cache.root), self.cache.dtype, self.cache.compress, self.flow_kwargs, single_cv)
        try:
            if n_workers == 1 or len(chunks) <= 1:
                for c_pairs, c_keys in chunks:
                    n, sec, _, c = _compute_chunk(self.frames, c_pairs, c_keys, *args[:4], False)
                    seconds += sec
                    cpu += c
                    bar.update(n)
            else:
                par = Parallel(n_jobs=n_workers, prefer=self.prefer, return_as="generator_unordered")
                for n, sec, _, c in par(delayed(_compute_chunk)(self.frames, c_pairs, c_keys, *args)
                                        for c_pairs, c_keys in chunks):
                    seconds += sec
                    cpu += c
                    bar.update(n)
        finally:
            bar.close()
        self.stats["computed"] += len(todo)
        self.stats["seconds_computing"] += seconds
        return {"pairs": len(seen), "cached": cached, "computed": len(todo), "seconds_computing": seconds,
                "cpu_seconds_workers": cpu, "seconds_wall": time.perf_counter() - t_wall}


def _unreadable_frames(video, *, strict: bool) -> tuple[list[dict[str, Any]], set[int]]:
    """Decode (and hash) every frame once; the ones that fail, as failure records and a set of indices.

    ``strict`` re-raises the first error instead (an :class:`~steadyseg.errors.InputError` naming the file).
    """
    from steadyseg.errors import user_error_message

    failures, bad = [], set()
    for i in range(len(video)):
        try:
            video.content_hash(i)
        except (ValueError, OSError) as exc:
            if strict:
                raise
            bad.add(i)
            path = video.frame_path(i) if hasattr(video, "frame_path") else None
            failures.append({"frame": i, "file": str(path or video.source), "error": user_error_message(exc)})
    return failures, bad


def precompute_video_flows(frames: str | os.PathLike, cache_dir: str | os.PathLike, *, window: int = 3,
                           max_frames: int | None = None, backend: str = "dis", preset: str = "medium",
                           n_jobs: int = 1, raft_weights: str | os.PathLike | None = None,
                           raft_model: str = "raft_small", raft_updates: int = 12, device: str = "cpu",
                           cache_dtype: str = "float32", strict: bool = False, progress: bool = True
                           ) -> dict[str, Any]:
    """Compute every flow of a window of frame pairs of one video into the disk cache, and record the run.

    The library behind ``steadyseg flow``: opens the video (:func:`steadyseg.datasets.video.open_video`), builds a
    :class:`FlowProvider` and runs :meth:`FlowProvider.precompute` on :func:`window_pairs` ``(T, window)``; the
    resolved configuration (with the result) is written to ``<cache_dir>/flow-run-<video name>.yaml``.

    Args:
        frames: folder of frames or a video file.
        cache_dir: the :class:`FlowCache` folder (created if missing).
        window: K ≥ 1, every ordered pair with ``1 ≤ |p − q| ≤ K``.
        max_frames: use only the first N frames.
        backend, preset, raft_weights, raft_model, raft_updates, device: see :func:`compute_flow`.
        n_jobs: parallel joblib workers (-1 = all cores).
        cache_dtype: ``"float32"`` or ``"float16"`` on disk.
        strict: stop at the first frame that cannot be read (corrupt, truncated, another size) with its error;
            by default such a frame is recorded in ``failures`` and the pairs that need it are skipped.
        progress: show a progress bar.

    Returns:
        The run record: ``frames`` (source), ``num_frames``, ``size_hw``, ``cache``, ``window``, ``flow_params``,
        ``n_jobs``, ``prefer``, ``result`` (:meth:`FlowProvider.precompute`'s counts and seconds, plus
        ``skipped_pairs``) and ``failures`` (``[{"frame", "file", "error"}]``, the frames that could not be read).
    """
    from steadyseg.datasets.video import open_video
    from steadyseg.files import save_resolved_config

    if int(window) < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    video = open_video(frames, max_frames=max_frames)
    failures, bad = _unreadable_frames(video, strict=strict)
    remove_orphan_temporaries(cache_dir, recursive=True)  # entries a killed run was writing
    provider = FlowProvider(video, backend=backend, preset=preset, cache_dir=cache_dir, n_jobs=n_jobs,
                            raft_weights=raft_weights, raft_model=raft_model, raft_updates=raft_updates,
                            device=device, cache_dtype=cache_dtype)
    pairs = [(p, q) for p, q in window_pairs(len(video), window=int(window)) if p not in bad and q not in bad]
    result = provider.precompute(pairs, progress=progress)
    result["skipped_pairs"] = len(window_pairs(len(video), window=int(window))) - len(pairs)
    record = {"frames": str(video.source), "num_frames": len(video), "size_hw": list(video.size),
              "cache": str(Path(cache_dir)), "window": int(window), "flow_params": provider.params,
              "n_jobs": provider.n_jobs, "prefer": provider.prefer, "result": result, "failures": failures}
    save_resolved_config(cache_dir, record, name=f"flow-run-{video.source.stem}.yaml")
    return record
