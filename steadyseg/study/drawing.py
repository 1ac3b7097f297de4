"""Drawing for the qualification grid: a mask overlaid on its frame and a labelled montage of every grid cell.

Images are OpenCV BGR ``(H, W, 3) uint8``; masks are ``(H, W)`` integer label maps (0 = background, 255 = void).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from steadyseg.labels import VOID

__all__ = ["overlay", "preview_montage", "encode_png"]


def overlay(frame: np.ndarray, mask: np.ndarray, *, alpha: float = 0.5) -> np.ndarray:
    """An ``(H, W, 3) uint8`` frame with objects tinted red and their boundaries drawn in yellow.

    ``frame`` and the result are BGR (OpenCV order); pass RGB frames through ``frame[..., ::-1]`` first.
    """
    import cv2

    out = frame.astype(np.float32).copy()
    fg = (mask != 0) & (mask != VOID)
    out[fg] = (1 - alpha) * out[fg] + alpha * np.array([0, 0, 255], np.float32)
    out = out.astype(np.uint8)
    edges = cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    out[edges] = (0, 255, 255)
    return out


def preview_montage(frame: np.ndarray, cells: Mapping[tuple[int, int], np.ndarray],
                    erosion_levels: Sequence[int], displacement_levels: Sequence[float], *,
                    tile_width: int = 320) -> np.ndarray:
    """A montage of one frame: rows = consistency level, columns = accuracy level, each tile labelled."""
    import cv2

    h, w = frame.shape[:2]
    th = max(1, int(round(h * tile_width / w)))
    n_acc, n_cons = len(erosion_levels), len(displacement_levels)
    canvas = np.full((n_cons * th, n_acc * tile_width, 3), 255, np.uint8)
    for (i, j), mask in cells.items():
        tile = cv2.resize(overlay(frame, mask), (tile_width, th), interpolation=cv2.INTER_AREA)
        text = f"erode {erosion_levels[i]}px / displace {displacement_levels[j]:g}px"
        cv2.putText(tile, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(tile, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        canvas[j * th:(j + 1) * th, i * tile_width:(i + 1) * tile_width] = tile
    return canvas


def encode_png(image: np.ndarray) -> bytes:
    """PNG file bytes of an ``(H, W)`` or ``(H, W, 3)`` BGR image (``cv2.imencode``)."""
    import cv2

    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"could not encode a PNG of shape {image.shape} dtype {image.dtype}")
    return buf.tobytes()
