"""Synthetic videos and COCO sets with exact answers, for tests and the demo (no downloads, no data sets needed).

* :func:`make_moving_shapes_video`: textured shapes (squares, discs) translating at constant velocity over a
  textured background that translates too. Everything is rendered from continuous procedural textures, so the
  ground-truth labels and the optical flow between ANY two frames are exact: the flow ``p→q`` at pixel ``x`` is the
  velocity of the layer visible at ``x`` in frame ``p`` times ``q - p``.
* :func:`write_video_folder`: the video on disk in the DAVIS layout (lossless PNG frames, palette PNG masks).
* :func:`make_synthetic_coco`: a small COCO instances set whose polygons are slightly misaligned with the true
  object edges (something for a refiner to fix), plus a second file with the exact masks.

Coordinates: pixel ``(row, col)`` has its centre at ``(x, y) = (col, row)`` for videos; COCO files use COCO's
convention (pixel ``(row, col)`` covers ``[col, col+1) × [row, row+1)``, centre at ``(col + 0.5, row + 0.5)``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from steadyseg.files import atomic_path, atomic_write_bytes, atomic_write_json

__all__ = ["SyntheticVideo", "ExactFlows", "make_moving_shapes_video", "write_video_folder", "make_synthetic_coco",
           "PALETTE"]


def _palette() -> list[int]:
    pal = np.zeros((256, 3), dtype=np.uint8)
    base = [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128), (0, 128, 128),
            (128, 128, 128)]
    rng = np.random.default_rng(1234)
    pal[:] = rng.integers(0, 256, size=(256, 3))
    pal[: len(base)] = base
    pal[255] = (224, 224, 192)  # void, as in the VOC/DAVIS palettes
    return pal.reshape(-1).tolist()


PALETTE = _palette()  # flat 768-entry palette: index 0 black, 1.. object colours, 255 void


class _Texture:
    """A smooth RGB texture ``tex(x, y) -> (..., 3)`` in [0, 255]: a base colour plus random sinusoids."""

    def __init__(self, rng: np.random.Generator, *, base: np.ndarray, contrast: float = 60.0, waves: int = 5):
        self.base = np.asarray(base, dtype=np.float64)
        wavelength = rng.uniform(5.0, 24.0, size=waves)
        angle = rng.uniform(0, np.pi, size=waves)
        self.kx = 2 * np.pi * np.cos(angle) / wavelength
        self.ky = 2 * np.pi * np.sin(angle) / wavelength
        self.phase = rng.uniform(0, 2 * np.pi, size=waves)
        self.amp = rng.uniform(0.4, 1.0, size=(waves, 3)) * contrast / waves * 2

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = np.broadcast_to(self.base, x.shape + (3,)).astype(np.float64)
        for k in range(len(self.kx)):
            s = np.sin(self.kx[k] * x + self.ky[k] * y + self.phase[k])
            out = out + s[..., None] * self.amp[k]
        return out


@dataclass
class _Shape:
    kind: str            # "square" | "disc"
    radius: float        # half side or radius, pixels
    start: np.ndarray    # centre (x, y) at frame 0
    velocity: np.ndarray  # (vx, vy) pixels per frame
    texture: _Texture

    def centre(self, t: float) -> np.ndarray:
        return self.start + self.velocity * t

    def inside(self, x: np.ndarray, y: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
        dx, dy = x - centre[0], y - centre[1]
        if self.kind == "square":
            return (np.abs(dx) <= radius) & (np.abs(dy) <= radius)
        return dx * dx + dy * dy <= radius * radius


class ExactFlows:
    """Exact flow of a :class:`SyntheticVideo`: ``flows(p, q)`` or ``flows[p, q]`` → ``(H, W, 2) float32``.

    Channel 0 = dx, 1 = dy, pixels, direction ``p→q``: the velocity of the layer (object or background) visible
    at each pixel in frame ``p``, times ``q - p``. Points may leave the frame or become occluded in ``q``.
    """

    def __init__(self, labels: np.ndarray, velocities: np.ndarray):
        self._labels = labels          # (T, H, W) int32, exact
        self._velocities = velocities  # (num_objects + 1, 2): row 0 = background, row k = object k

    def __call__(self, p: int, q: int) -> np.ndarray:
        t = self._labels.shape[0]
        if not (0 <= p < t and 0 <= q < t):
            raise IndexError(f"frame pair ({p}, {q}) out of range for {t} frames")
        return (self._velocities[self._labels[p]] * float(q - p)).astype(np.float32)

    def __getitem__(self, pq: tuple[int, int]) -> np.ndarray:
        p, q = pq
        return self(p, q)


@dataclass
class SyntheticVideo:
    """A synthetic video with exact answers.

    Attributes:
        frames: ``(T, H, W, 3) uint8`` RGB.
        labels: ``(T, H, W) int32`` exact, temporally consistent labels (0 background, k = object k).
        flicker_labels: ``(T, H, W) int32`` a "per-frame model": every object drawn with its centre jittered by up
            to ``flicker_px`` and its size by up to ``flicker_px / 2`` per frame, independently (seeded).
        flows: :class:`ExactFlows`, the exact flow ``p→q`` for any pair (callable and indexable).
        probs: ``(T, C, H, W) float32`` soft version of ``flicker_labels`` (C = num_objects + 1, sums to 1,
            ``argmax == flicker_labels``): 0.7 one-hot + 0.3 Gaussian-blurred one-hot (σ = 1.5 px).
        velocities: ``(C, 2) float64`` (vx, vy) per label, row 0 = background.
        kinds: shape kind per object (``"square"``/``"disc"``).
    """

    frames: np.ndarray
    labels: np.ndarray
    flicker_labels: np.ndarray
    flows: ExactFlows
    probs: np.ndarray
    velocities: np.ndarray
    kinds: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return int(self.velocities.shape[0])

    def __len__(self) -> int:
        return int(self.frames.shape[0])


def _soft(labels: np.ndarray, num_classes: int, sigma: float = 1.5) -> np.ndarray:
    onehot = (labels[None] == np.arange(num_classes)[:, None, None]).astype(np.float32)
    blurred = np.stack([cv2.GaussianBlur(c, (0, 0), sigma, borderType=cv2.BORDER_REFLECT) for c in onehot])
    p = 0.7 * onehot + 0.3 * blurred
    return (p / p.sum(axis=0, keepdims=True)).astype(np.float32)


def make_moving_shapes_video(*, num_frames: int = 12, height: int = 96, width: int = 128, num_objects: int = 2,
                             max_speed: float = 2.0, flicker_px: float = 2, seed: int = 0,
                             background_motion: bool = True, integer_motion: bool = False) -> SyntheticVideo:
    """Textured squares and discs translating over a translating textured background, with exact labels/flow.

    Args:
        num_frames, height, width: video size ``T, H, W``.
        num_objects: objects 1..num_objects (even index → square, odd → disc); later objects occlude earlier ones.
        max_speed: object speed bound in pixels/frame (per-object speed uniform in [0.3, 1] × max_speed, clipped
            so the object stays inside the frame); the background moves at up to half of it.
        flicker_px: jitter amplitude of ``flicker_labels`` (0 → identical to ``labels``).
        seed: everything random is drawn from ``numpy.random.default_rng(seed)``.
        background_motion: whether the background translates.
        integer_motion: round every velocity to whole pixels (then shifts equal ``np.roll`` away from edges).
    """
    if num_frames < 1 or height < 16 or width < 16:
        raise ValueError(f"need num_frames >= 1 and height, width >= 16, got {num_frames}, {height}, {width}")
    if num_objects < 0 or num_objects > 254:
        raise ValueError(f"num_objects must be in 0..254, got {num_objects}")
    rng = np.random.default_rng(seed)
    t_last = max(num_frames - 1, 1)
    bg_tex = _Texture(rng, base=rng.uniform(80, 170, size=3), contrast=70.0)
    bg_vel = np.zeros(2)
    if background_motion and max_speed > 0:
        a = rng.uniform(0, 2 * np.pi)
        bg_vel = rng.uniform(0.2, 0.5) * max_speed * np.array([np.cos(a), np.sin(a)])
    if integer_motion:
        bg_vel = np.round(bg_vel)
    shapes: list[_Shape] = []
    for k in range(num_objects):
        kind = "square" if k % 2 == 0 else "disc"
        r = rng.uniform(0.10, 0.18) * min(height, width)
        a = rng.uniform(0, 2 * np.pi)
        vel = rng.uniform(0.3, 1.0) * max_speed * np.array([np.cos(a), np.sin(a)])
        # keep the whole trajectory inside the frame (margin 2 px): shrink the velocity if needed
        span = np.array([width - 1 - 2 * (r + 2), height - 1 - 2 * (r + 2)])
        scale = min(1.0, *(span[i] / (abs(vel[i]) * t_last) if vel[i] != 0 else 1.0 for i in range(2)))
        vel = vel * scale
        if integer_motion:
            vel = np.trunc(vel)
        lo = np.array([r + 2, r + 2]) - np.minimum(vel * t_last, 0)
        hi = np.array([width - 1 - r - 2, height - 1 - r - 2]) - np.maximum(vel * t_last, 0)
        start = rng.uniform(lo, np.maximum(hi, lo))
        tex = _Texture(rng, base=rng.uniform(30, 225, size=3), contrast=50.0)
        shapes.append(_Shape(kind, float(r), start, vel, tex))

    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    labels = np.zeros((num_frames, height, width), dtype=np.int32)
    flicker = np.zeros((num_frames, height, width), dtype=np.int32)
    for t in range(num_frames):
        img = bg_tex(xs - bg_vel[0] * t, ys - bg_vel[1] * t)
        for k, s in enumerate(shapes):
            c = s.centre(t)
            m = s.inside(xs, ys, c, s.radius)
            img[m] = s.texture(xs[m] - c[0], ys[m] - c[1])
            labels[t][m] = k + 1
            jitter = rng.uniform(-flicker_px, flicker_px, size=2) if flicker_px > 0 else np.zeros(2)
            dr = rng.uniform(-flicker_px / 2, flicker_px / 2) if flicker_px > 0 else 0.0
            flicker[t][s.inside(xs, ys, c + jitter, max(1.0, s.radius + dr))] = k + 1
        frames[t] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    velocities = np.vstack([bg_vel[None]] + [s.velocity[None] for s in shapes])
    num_classes = num_objects + 1
    probs = np.stack([_soft(flicker[t], num_classes) for t in range(num_frames)])
    return SyntheticVideo(frames=frames, labels=labels, flicker_labels=flicker, flows=ExactFlows(labels, velocities),
                          probs=probs, velocities=velocities, kinds=[s.kind for s in shapes])


def _save_png(path: Path, image: np.ndarray, *, palette: bool = False) -> Path:
    from PIL import Image

    im = Image.fromarray(image)
    if palette:
        if image.dtype != np.uint8 and image.max() > 255:
            raise ValueError(f"{path}: labels above 255 cannot be stored in a palette PNG")
        im = Image.fromarray(image.astype(np.uint8), mode="P") if im.mode != "P" else im
        im.putpalette(PALETTE)
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")
    return path


def write_video_folder(video: SyntheticVideo, out_dir: str | os.PathLike, *, masks: str = "labels",
                       sequence: str = "synthetic") -> dict[str, Path]:
    """Write a synthetic video in the DAVIS layout (lossless PNG frames, palette PNG masks).

    Layout under ``out_dir``::

        JPEGImages/480p/<sequence>/%05d.png   frames (PNG so the data stay lossless; the name follows DAVIS)
        Annotations/480p/<sequence>/%05d.png  palette masks: ``video.labels`` (masks="labels") or flicker_labels
        Predictions/<sequence>/%05d.png       palette masks of ``video.flicker_labels`` (a per-frame model)
        Probabilities/<sequence>.npy          ``video.probs`` (T, C, H, W) float32

    Returns ``{"root", "frames", "annotations", "predictions", "probs"}`` paths.
    """
    if masks not in ("labels", "flicker"):
        raise ValueError(f"masks must be 'labels' or 'flicker', got {masks!r}")
    root = Path(out_dir)
    paths = {"root": root, "frames": root / "JPEGImages" / "480p" / sequence,
             "annotations": root / "Annotations" / "480p" / sequence, "predictions": root / "Predictions" / sequence,
             "probs": root / "Probabilities" / f"{sequence}.npy"}
    ann = video.labels if masks == "labels" else video.flicker_labels
    for t in range(len(video)):
        name = f"{t:05d}.png"
        _save_png(paths["frames"] / name, video.frames[t])
        _save_png(paths["annotations"] / name, ann[t].astype(np.uint8), palette=True)
        _save_png(paths["predictions"] / name, video.flicker_labels[t].astype(np.uint8), palette=True)
    import io

    buf = io.BytesIO()
    np.save(buf, video.probs.astype(np.float32))
    atomic_write_bytes(paths["probs"], buf.getvalue())
    return paths


# ---------------------------------------------------------------------------------------------------------------
# COCO
# ---------------------------------------------------------------------------------------------------------------
# Real COCO ids/names (they map to VOC person/car/dog), each drawn as one shape kind.
COCO_CATEGORIES = [
    {"id": 1, "name": "person", "supercategory": "person", "shape": "disc"},
    {"id": 3, "name": "car", "supercategory": "vehicle", "shape": "square"},
    {"id": 18, "name": "dog", "supercategory": "animal", "shape": "triangle"},
]


def _shape_polygon(kind: str, cx: float, cy: float, r: float, angle: float, n_disc: int) -> np.ndarray:
    """Vertices ``(N, 2)`` (x, y) of a shape in COCO coordinates."""
    if kind == "square":
        a = angle + np.pi / 4 + np.arange(4) * np.pi / 2
        rr = r * np.sqrt(2)
    elif kind == "triangle":
        a = angle + np.arange(3) * 2 * np.pi / 3
        rr = r * 1.3
    else:
        a = angle + np.arange(n_disc) * 2 * np.pi / n_disc
        rr = r
    return np.stack([cx + rr * np.cos(a), cy + rr * np.sin(a)], axis=1)


def _inside_polygon(x: np.ndarray, y: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Points inside a convex counter-clockwise polygon (half-plane test)."""
    inside = np.ones(x.shape, dtype=bool)
    n = len(poly)
    for i in range(n):
        x0, y0 = poly[i]
        x1, y1 = poly[(i + 1) % n]
        inside &= (x1 - x0) * (y - y0) - (y1 - y0) * (x - x0) >= 0
    return inside


def make_synthetic_coco(out_dir: str | os.PathLike, *, num_images: int = 6, height: int = 120, width: int = 160,
                        seed: int = 0, shift_px: float = 2.0) -> dict[str, Path]:
    """A small COCO instances set of textured shapes with slightly wrong polygons and a file of exact masks.

    Each image holds 1–3 non-overlapping textured shapes (disc = "person", square = "car", triangle = "dog") on a
    textured background; image 0 also holds a crowd region (a cluster of small discs, ``iscrowd=1``, compressed RLE,
    identical in both files).

    * ``instances.json``: every object as a polygon whose vertices are shifted by up to ``shift_px`` as a whole and
      jittered by up to 1 px each (discs as coarse 10-gons), so masks are misaligned with the true edges.
    * ``instances_true.json``: the same annotation ids with the EXACT visible masks as compressed RLE.

    Layout: ``out_dir/images/%012d.png`` (lossless), ``out_dir/annotations/instances.json``,
    ``out_dir/annotations/instances_true.json``. Returns ``{"root", "images", "instances", "instances_true"}``.
    """
    from steadyseg.datasets.coco import mask_to_rle, rle_area, rle_bbox, segmentation_to_rle

    rng = np.random.default_rng(seed)
    root = Path(out_dir)
    img_dir = root / "images"
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5  # COCO pixel centres
    cats = [{k: c[k] for k in ("id", "name", "supercategory")} for c in COCO_CATEGORIES]
    images, anns_wrong, anns_true = [], [], []
    ann_id = 1
    for i in range(num_images):
        img_id = i + 1
        bg = _Texture(rng, base=rng.uniform(70, 180, size=3), contrast=60.0)
        img = bg(xs, ys)
        placed: list[tuple[float, float, float]] = []
        objects = []
        for _ in range(int(rng.integers(1, 4))):
            for _try in range(50):
                r = rng.uniform(0.10, 0.2) * min(height, width)
                cx, cy = rng.uniform(r * 1.4 + 2, width - r * 1.4 - 2), rng.uniform(r * 1.4 + 2, height - r * 1.4 - 2)
                if all(np.hypot(cx - px, cy - py) > 1.4 * (r + pr) + 3 for px, py, pr in placed):
                    break
            else:
                continue
            placed.append((cx, cy, r))
            cat = COCO_CATEGORIES[int(rng.integers(len(COCO_CATEGORIES)))]
            angle = rng.uniform(0, 2 * np.pi)
            if cat["shape"] == "disc":
                mask = (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r
            else:
                mask = _inside_polygon(xs, ys, _shape_polygon(cat["shape"], cx, cy, r, angle, 10))
            tex = _Texture(rng, base=rng.uniform(20, 235, size=3), contrast=40.0)
            img[mask] = tex(xs[mask] - cx, ys[mask] - cy)
            poly = _shape_polygon(cat["shape"], cx, cy, r, angle, 10)
            poly = poly + rng.uniform(-shift_px, shift_px, size=2) + rng.uniform(-1, 1, size=poly.shape)
            poly[:, 0] = np.clip(poly[:, 0], 0, width)
            poly[:, 1] = np.clip(poly[:, 1], 0, height)
            objects.append((cat["id"], mask, poly))
        crowd = None
        if i == 0:  # a crowd region: a cluster of small dark discs in a corner
            crowd = np.zeros((height, width), dtype=bool)
            for _ in range(6):
                cx, cy = rng.uniform(4, width * 0.25), rng.uniform(4, height * 0.25)
                crowd |= (xs - cx) ** 2 + (ys - cy) ** 2 <= rng.uniform(2, 4) ** 2
            for _id, mask, _p in objects:
                crowd &= ~mask
            img[crowd] = img[crowd] * 0.3
        image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        file_name = f"{img_id:012d}.png"
        _save_png(img_dir / file_name, image)
        images.append({"id": img_id, "file_name": file_name, "height": height, "width": width})
        for cat_id, mask, poly in objects:
            segm = [np.round(poly.reshape(-1), 2).tolist()]
            rle_wrong = segmentation_to_rle(segm, height, width, ann_id=ann_id)
            anns_wrong.append({"id": ann_id, "image_id": img_id, "category_id": cat_id, "iscrowd": 0,
                               "segmentation": segm, "area": float(rle_area(rle_wrong)),
                               "bbox": [float(v) for v in rle_bbox(rle_wrong)]})
            rle_true = mask_to_rle(mask)
            anns_true.append({"id": ann_id, "image_id": img_id, "category_id": cat_id, "iscrowd": 0,
                              "segmentation": rle_true, "area": float(rle_area(rle_true)),
                              "bbox": [float(v) for v in rle_bbox(rle_true)]})
            ann_id += 1
        if crowd is not None and crowd.any():
            rle = mask_to_rle(crowd)
            for lst in (anns_wrong, anns_true):
                lst.append({"id": ann_id, "image_id": img_id, "category_id": 1, "iscrowd": 1, "segmentation": rle,
                            "area": float(rle_area(rle)), "bbox": [float(v) for v in rle_bbox(rle)]})
            ann_id += 1
    info = {"description": f"steadyseg synthetic COCO (seed {seed})"}
    paths = {"root": root, "images": img_dir, "instances": root / "annotations" / "instances.json",
             "instances_true": root / "annotations" / "instances_true.json"}
    atomic_write_json(paths["instances"], {"info": info, "images": images, "annotations": anns_wrong,
                                           "categories": cats})
    atomic_write_json(paths["instances_true"], {"info": {**info, "description": info["description"] + ", exact"},
                                                "images": images, "annotations": anns_true, "categories": cats})
    return paths
