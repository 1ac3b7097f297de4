"""Semantic-segmentation targets from COCO instance annotations, as torchvision's ``references/segmentation``.

The conversion reproduces the behaviour of torchvision's reference training scripts (``coco_utils.py``), so a
teacher trained here learns exactly what a teacher trained there would learn:

1. keep only the annotations whose ``category_id`` is in the label set's category list and remap each to its
   index in that list (index 0 is background; no COCO category has id 0);
2. decode every kept annotation (polygons, uncompressed or compressed RLE; crowd annotations too — the reference
   loads them with ``iscrowd=None`` and treats them like any other instance) to an ``(H, W)`` mask;
3. merge the masks into one label map by the per-pixel maximum class index;
4. pixels covered by more than one kept instance (of any classes) become :data:`~steadyseg.labels.VOID` (255);
5. for the ``train`` split only, drop the images without kept annotations or whose kept annotations' ``area``
   fields (as written in the file, crowd included) sum to ≤ 1000.

Label sets (:data:`LABEL_SETS`): ``voc21`` (the reference's ``CAT_LIST``: background + the 20 PASCAL VOC
classes), ``coco81`` (background + the 80 COCO categories in id order), ``file`` (background + the file's own
categories in id order, for COCO files made from other data, e.g. by ``coco-from-masks``).

Targets are ``(H, W) uint8`` label maps: 0 background, ``1 … C-1`` classes, 255 void. The sizes come from the
file's ``images[].height/width`` (checked against the image file's header by :func:`write_coco_targets`).

Example::

    from steadyseg.datasets.coco_targets import CocoSemanticTargets
    ds = CocoSemanticTargets("instances_val2017.json", "val2017", labels="voc21", split="train")
    ds.image_ids[:3], ds.label_set.names[:3]   # kept images, ("background", "aeroplane", "bicycle")
    ds.target(ds.image_ids[0])                 # (H, W) uint8
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from steadyseg.datasets.coco import CocoFormatError, annotation_to_mask, load_coco_json
from steadyseg.labels import VOID

__all__ = ["LabelSet", "LABEL_SETS", "VOC21_CATEGORY_IDS", "VOC21_NAMES", "COCO80", "SPLITS", "resolve_label_set",
           "semantic_target", "has_valid_annotation", "CocoSemanticTargets", "write_coco_targets", "voc_palette",
           "MIN_TRAIN_AREA"]

#: torchvision's ``CAT_LIST`` (``references/segmentation/coco_utils.py``): COCO ids of the 20 VOC classes.
VOC21_CATEGORY_IDS: tuple[int, ...] = (0, 5, 2, 16, 9, 44, 6, 3, 17, 62, 21, 67, 18, 19, 4, 1, 64, 20, 63, 7, 72)
#: PASCAL VOC class names in the order of :data:`VOC21_CATEGORY_IDS` (torchvision's model metadata names).
VOC21_NAMES: tuple[str, ...] = (
    "__background__", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
#: The 80 COCO 2017 categories ``(id, name)`` in id order.
COCO80: tuple[tuple[int, str], ...] = tuple(enumerate([
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", None, "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", None, "backpack", "umbrella", None, None, "handbag", "tie", "suitcase",
    "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard",
    "surfboard", "tennis racket", "bottle", None, "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana",
    "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", None, "dining table", None, None, "toilet", None, "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", None, "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush"], start=1))
COCO80 = tuple((i, n) for i, n in COCO80 if n is not None)

LABEL_SETS: tuple[str, ...] = ("voc21", "coco81", "file")
SPLITS: tuple[str, ...] = ("train", "val")
#: Train split: images whose kept annotations' areas sum to at most this are dropped (torchvision's rule).
MIN_TRAIN_AREA: float = 1000.0


@dataclass(frozen=True)
class LabelSet:
    """Which COCO categories become which class index.

    Attributes:
        name: ``"voc21"``, ``"coco81"`` or ``"file"``.
        category_ids: ``category_ids[k]`` is the COCO id of class ``k``; ``category_ids[0] == 0`` (background).
        names: class names, ``names[0] == "__background__"``.
    """

    name: str
    category_ids: tuple[int, ...]
    names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)

    def class_of(self) -> dict[int, int]:
        """``{COCO category id: class index}`` for the kept categories (background excluded)."""
        return {cid: k for k, cid in enumerate(self.category_ids) if k > 0}


def resolve_label_set(labels: str, categories: list[dict[str, Any]] | None = None) -> LabelSet:
    """The :class:`LabelSet` called ``labels``; ``categories`` (a COCO file's list) is needed for ``"file"``."""
    if labels == "voc21":
        return LabelSet("voc21", VOC21_CATEGORY_IDS, VOC21_NAMES)
    if labels == "coco81":
        return LabelSet("coco81", (0,) + tuple(i for i, _ in COCO80), ("__background__",) + tuple(n for _, n in COCO80))
    if labels == "file":
        if not categories:
            raise ValueError("label set 'file' needs the COCO file's categories (none given)")
        cats = sorted(categories, key=lambda c: int(c["id"]))
        if any(int(c["id"]) == 0 for c in cats):
            raise ValueError("label set 'file': category id 0 is reserved for the background")
        if len(cats) > 254:
            raise ValueError(f"label set 'file': {len(cats)} categories do not fit a uint8 label map with 255 void")
        return LabelSet("file", (0,) + tuple(int(c["id"]) for c in cats),
                        ("__background__",) + tuple(str(c.get("name", c["id"])) for c in cats))
    raise ValueError(f"unknown label set {labels!r}; expected one of {LABEL_SETS}")


def semantic_target(annotations: list[dict[str, Any]], height: int, width: int, label_set: LabelSet) -> np.ndarray:
    """One image's semantic target from its COCO annotations (torchvision's conversion).

    Args:
        annotations: the image's annotations (any categories; crowd included — filtering happens here).
        height, width: the image size ``H, W``.
        label_set: which categories are kept and their class indices.

    Returns:
        ``(H, W) uint8``: 0 background, the maximum class index of the kept instances covering each pixel, and
        255 where two or more kept instances overlap.
    """
    class_of = label_set.class_of()
    target = np.zeros((height, width), dtype=np.uint8)
    count = np.zeros((height, width), dtype=np.uint8)
    for ann in annotations:
        k = class_of.get(int(ann["category_id"]))
        if k is None:
            continue
        mask = annotation_to_mask(ann, height, width)
        np.maximum(target, np.where(mask, np.uint8(k), np.uint8(0)), out=target)
        count += mask  # saturates only past 255 instances on one pixel; > 1 is all that matters
        np.minimum(count, 2, out=count)
    target[count > 1] = VOID
    return target


def has_valid_annotation(annotations: list[dict[str, Any]], label_set: LabelSet) -> bool:
    """torchvision's train-split rule: the kept annotations exist and their ``area`` fields sum to > 1000."""
    class_of = label_set.class_of()
    kept = [a for a in annotations if int(a["category_id"]) in class_of]
    return bool(kept) and sum(float(a.get("area", 0.0)) for a in kept) > MIN_TRAIN_AREA


class CocoSemanticTargets:
    """The images of a COCO file and their semantic targets (decoded on demand, never held).

    Args:
        annotations: a COCO instances file (or an already loaded dict).
        images: the folder that holds ``images[].file_name``.
        labels: a label-set name (:data:`LABEL_SETS`).
        split: ``"train"`` drops images that fail :func:`has_valid_annotation`; ``"val"`` keeps every image.

    Attributes:
        image_ids: the kept image ids, in the file's order.
        label_set: the resolved :class:`LabelSet`.
        source: the annotation file (``None`` for a dict).
    """

    def __init__(self, annotations: str | os.PathLike | dict[str, Any], images: str | os.PathLike, *,
                 labels: str = "voc21", split: str = "val"):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.source = None if isinstance(annotations, dict) else Path(annotations)
        data = annotations if isinstance(annotations, dict) else load_coco_json(annotations)
        self.images_dir = Path(images)
        self.label_set = resolve_label_set(labels, data["categories"])
        self.split = split
        self._images = {int(im["id"]): im for im in data["images"]}
        self._anns: dict[int, list[dict[str, Any]]] = {i: [] for i in self._images}
        for ann in data["annotations"]:
            img_id = int(ann["image_id"])
            if img_id not in self._anns:
                raise CocoFormatError(f"{self.source or 'COCO dict'}: annotation {ann.get('id')} refers to unknown "
                                      f"image id {img_id}")
            self._anns[img_id].append(ann)
        ids = [int(im["id"]) for im in data["images"]]
        if split == "train":
            ids = [i for i in ids if has_valid_annotation(self._anns[i], self.label_set)]
        self.image_ids: list[int] = ids

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_info(self, image_id: int) -> dict[str, Any]:
        return self._images[int(image_id)]

    def image_path(self, image_id: int) -> Path:
        return self.images_dir / self._images[int(image_id)]["file_name"]

    def annotations(self, image_id: int) -> list[dict[str, Any]]:
        return self._anns[int(image_id)]

    def target(self, image_id: int) -> np.ndarray:
        """``(H, W) uint8`` target of one image (0 background, classes, 255 void)."""
        info = self._images[int(image_id)]
        return semantic_target(self._anns[int(image_id)], int(info["height"]), int(info["width"]), self.label_set)


def voc_palette() -> list[int]:
    """The PASCAL VOC colour map as a flat 768-entry palette (index 255 = (224, 224, 192), the VOC void colour)."""
    pal = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    pal[VOID] = (224, 224, 192)
    return pal.reshape(-1).tolist()


def _check_image_size(path: Path, info: dict[str, Any]) -> None:
    from PIL import Image

    if not path.is_file():
        raise FileNotFoundError(f"{path}: image file of image id {info['id']} not found")
    with Image.open(path) as im:
        w, h = im.size
    if (h, w) != (int(info["height"]), int(info["width"])):
        raise ValueError(f"{path}: image is {w}x{h} (WxH) but the annotation file says "
                         f"{info['width']}x{info['height']}")


def write_coco_targets(annotations: str | os.PathLike, images: str | os.PathLike, out: str | os.PathLike, *,
                       labels: str = "voc21", split: str = "val", progress: bool = True) -> dict[str, Any]:
    """Write the semantic targets of a COCO file as palette PNGs plus ``targets.json``.

    Outputs under ``out``: ``<image file stem>.png`` (mode P, VOC palette, index = class, 255 void) for every kept
    image, ``targets.json`` (``label_set``, ``names``, ``category_ids``, ``split``, ``image_ids``, ``files``,
    ``dropped`` image ids, class ``pixel_counts``) and the resolved ``config.yaml``. Each image file must exist
    and match the size in the annotation file (checked from its header).

    Returns:
        the ``targets.json`` record.
    """
    from PIL import Image

    from steadyseg.files import atomic_path, atomic_write_json, save_resolved_config

    ds = CocoSemanticTargets(annotations, images, labels=labels, split=split)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    palette = voc_palette()
    counts = np.zeros(256, dtype=np.int64)
    files: list[str] = []
    stems: dict[str, int] = {}
    it = ds.image_ids
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="coco-targets", unit="img")
    for img_id in it:
        info = ds.image_info(img_id)
        path = ds.image_path(img_id)
        _check_image_size(path, info)
        stem = Path(info["file_name"]).stem
        if stem in stems:
            raise ValueError(f"{ds.source}: images {stems[stem]} and {img_id} share the file stem {stem!r}")
        stems[stem] = img_id
        target = ds.target(img_id)
        counts += np.bincount(target.reshape(-1), minlength=256)
        im = Image.fromarray(target, mode="P")
        im.putpalette(palette)
        with atomic_path(out / f"{stem}.png") as tmp:
            im.save(tmp, format="PNG")
        files.append(f"{stem}.png")
    kept = set(ds.image_ids)
    record = {
        "annotations": str(ds.source), "images": str(ds.images_dir), "label_set": ds.label_set.name,
        "names": list(ds.label_set.names), "category_ids": list(ds.label_set.category_ids), "split": split,
        "image_ids": ds.image_ids, "files": files,
        "dropped": [i for i in ds._images if i not in kept],  # noqa: SLF001 - same module
        "pixel_counts": {**{ds.label_set.names[k]: int(counts[k]) for k in range(ds.label_set.num_classes)},
                         "void": int(counts[VOID])},
    }
    atomic_write_json(out / "targets.json", record)
    save_resolved_config(out, {"annotations": str(ds.source), "images": str(ds.images_dir), "labels": labels,
                               "split": split})
    return record
