"""Label-map conventions shared by every stage of steadyseg.

A mask is an ``(H, W)`` integer label map: ``0`` is background, ``1 … C-1`` are classes or object ids, and
:data:`VOID` (255) marks pixels that no measure, loss or metric counts (DAVIS and COCO-semantic convention).
Soft masks are ``(C, H, W)`` float probabilities with the class axis first. Every module imports ``VOID`` from
here; none defines its own.
"""

from __future__ import annotations

__all__ = ["VOID"]

#: Label value ignored everywhere (uint8 palette index 255 in DAVIS / VOC / torchvision's COCO targets).
VOID: int = 255
