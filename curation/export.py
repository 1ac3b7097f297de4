"""Export a curated COCO variant from a reviewed curation dataset.

For every original annotation the export picks the refined or the original mask by a rule over the label tags
set in the App or with :func:`steadyseg.curation.views.set_review_tags`:

- ``accepted`` (default): the refined mask where the refined label is tagged ``accept``, the original elsewhere;
- ``refined-unless-rejected``: the refined mask unless the refined label is tagged ``reject``.

The original is always used where no refined mask exists (annotation removed by the refiner, or refined mask
empty); such cases are named in the decision record. Image ids, annotation ids, category ids, ``iscrowd`` and the
images/categories/info/licenses of the original file are kept. Segmentations are compressed RLE encoded from
the masks stored in the dataset (exact; FiftyOne's own COCO exporter would renumber ids and approximate masks by
polygons). ``area``/``bbox``: recomputed from the mask for refined masks; the original COCO values for originals
(so COCO's area ranges are unchanged where nothing changed).

Outputs: the curated ``instances.json``, ``<stem>.decisions.json`` (one record per annotation: ``id``,
``image_id``, ``tag``, ``source``, ``reason``, ``iou``) and ``<stem>.config.yaml`` (resolved settings).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from steadyseg.curation.build import GT_FIELD, INFO_KEY, REFINED_FIELD, detection_to_full_mask
from steadyseg.curation.views import ACCEPT_TAG, REJECT_TAG

RULES = ("accepted", "refined-unless-rejected")


def decide(rule: str, tags: list[str] | None) -> tuple[bool, str]:
    """(use the refined mask?, reason) for one refined label with label tags ``tags`` under ``rule``."""
    tags = tags or []
    if ACCEPT_TAG in tags and REJECT_TAG in tags:
        return False, "both accept and reject tags: original kept"
    if rule == "accepted":
        return (True, "accepted") if ACCEPT_TAG in tags else (False, "not accepted")
    if rule == "refined-unless-rejected":
        return (False, "rejected") if REJECT_TAG in tags else (True, "not rejected")
    raise ValueError(f"unknown export rule {rule!r}; choose one of {', '.join(RULES)}")


def _load(dataset_or_name):
    if isinstance(dataset_or_name, str):
        from steadyseg.curation.app import _load_dataset

        return _load_dataset(dataset_or_name)
    return dataset_or_name


def export_curated_coco(dataset_or_name, out_path: str | os.PathLike, *, rule: str = "accepted",
                        chunk_size: int = 256, progress: bool = True) -> dict[str, Any]:
    """Write the curated COCO file ``out_path`` (+ decision record and config); returns a summary dict.

    Args:
        dataset_or_name: a curation dataset (from :func:`~steadyseg.curation.build.build_curation_dataset`) or its
            name.
        out_path: the curated COCO instances JSON to write (atomically).
        rule: ``accepted`` or ``refined-unless-rejected`` (see the module docstring).
        chunk_size: samples read from the database at a time.
        progress: show a tqdm bar.
    """
    from tqdm import tqdm

    from steadyseg.datasets.coco import mask_to_rle, rle_area, rle_bbox
    from steadyseg.files import atomic_write_json, save_resolved_config

    if rule not in RULES:
        raise ValueError(f"unknown export rule {rule!r}; choose one of {', '.join(RULES)}")
    dataset = _load(dataset_or_name)
    info = dataset.info.get(INFO_KEY)
    if not info or "categories" not in info:
        raise ValueError(f"dataset {dataset.name!r} was not built by `steadyseg curate build` (no info[{INFO_KEY!r}])")
    out_path = Path(out_path)
    gt_keys = ["coco_id", "category_id", "iscrowd", "area", "coco_bbox", "bounding_box", "mask"]
    ref_keys = ["coco_id", "bounding_box", "mask", "mask_area", "tags", "iou"]
    fields = (["coco_image_id", "coco_image", "metadata.width", "metadata.height"]
              + [f"{GT_FIELD}.detections.{k}" for k in gt_keys] + [f"{REFINED_FIELD}.detections.{k}" for k in ref_keys])
    sample_ids = dataset.sort_by("coco_image_id").values("id")
    images, annotations, decisions = [], [], []
    counts = {"refined": 0, "original": 0}
    bar = tqdm(total=len(sample_ids), desc=f"curate export {dataset.name}", unit="img", disable=not progress)
    for start in range(0, len(sample_ids), chunk_size):
        view = dataset.select(sample_ids[start: start + chunk_size], ordered=True)
        cols = dict(zip(fields, view.values(fields)))
        for i in range(len(cols["coco_image_id"])):
            image_id = int(cols["coco_image_id"][i])
            h, w = int(cols["metadata.height"][i]), int(cols["metadata.width"][i])
            images.append({"id": image_id, **(cols["coco_image"][i] or {})})
            gt = {k: cols[f"{GT_FIELD}.detections.{k}"][i] or [] for k in gt_keys}
            rf = {k: cols[f"{REFINED_FIELD}.detections.{k}"][i] or [] for k in ref_keys}
            ref_index = {cid: j for j, cid in enumerate(rf["coco_id"])}
            for j, ann_id in enumerate(gt["coco_id"]):
                k = ref_index.get(ann_id)
                tags = list(rf["tags"][k] or []) if k is not None else []
                if k is None:
                    use_refined, reason = False, "removed by the refiner: original kept"
                elif not rf["mask_area"][k]:
                    use_refined, reason = False, "refined mask is empty: original kept"
                else:
                    use_refined, reason = decide(rule, tags)
                ann = {"id": int(ann_id), "image_id": image_id, "category_id": int(gt["category_id"][j]),
                       "iscrowd": int(bool(gt["iscrowd"][j]))}
                if use_refined:
                    rle = mask_to_rle(detection_to_full_mask(rf["bounding_box"][k], rf["mask"][k], h, w))
                    ann.update(segmentation=rle, area=float(rle_area(rle)), bbox=rle_bbox(rle))
                else:
                    rle = mask_to_rle(detection_to_full_mask(gt["bounding_box"][j], gt["mask"][j], h, w))
                    bbox = list(gt["coco_bbox"][j] or []) or rle_bbox(rle)
                    area = gt["area"][j] if gt["area"][j] is not None else rle_area(rle)
                    ann.update(segmentation=rle, area=float(area), bbox=[float(v) for v in bbox])
                annotations.append(ann)
                source = "refined" if use_refined else "original"
                counts[source] += 1
                tag = ACCEPT_TAG if ACCEPT_TAG in tags else REJECT_TAG if REJECT_TAG in tags else None
                decisions.append({"id": int(ann_id), "image_id": image_id, "tag": tag,
                                  "source": source, "reason": reason,
                                  "iou": float(rf["iou"][k]) if k is not None and rf["iou"][k] is not None else None})
            bar.update(1)
    bar.close()
    annotations.sort(key=lambda a: a["id"])
    decisions.sort(key=lambda d: d["id"])
    coco = {"images": images, "annotations": annotations, "categories": info["categories"]}
    if info.get("coco_info") is not None:
        coco["info"] = info["coco_info"]
    if info.get("licenses") is not None:
        coco["licenses"] = info["licenses"]
    atomic_write_json(out_path, coco, indent=None)
    stem = out_path.name[: -len(".json")] if out_path.name.endswith(".json") else out_path.name
    decisions_path = out_path.with_name(f"{stem}.decisions.json")
    summary = {"dataset": dataset.name, "rule": rule, "output": str(out_path), "decisions": str(decisions_path),
               "images": len(images), "annotations": len(annotations), "from_refined": counts["refined"],
               "from_original": counts["original"], "original_file": info.get("original"),
               "refined_file": info.get("refined")}
    atomic_write_json(decisions_path, {"summary": summary, "decisions": decisions})
    save_resolved_config(out_path.parent, summary, name=f"{stem}.config.yaml")
    return summary
