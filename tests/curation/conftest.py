"""Curation test data. The private mongod (``fo_env``) and ``dataset_name`` fixtures live in tests/conftest.py,
shared with tests/reliability (one mongod per test session)."""

from __future__ import annotations

import pytest


def _square(h, w, y0, x0, size):
    import numpy as np

    m = np.zeros((h, w), dtype=bool)
    m[y0:y0 + size, x0:x0 + size] = True
    return m


@pytest.fixture
def synthetic_pair(tmp_path):
    """Two images; original instances as RLE and a refined file with known changes.

    image 1 (60x80): id 11 square 20x20 shifted by +2 px in x (IoU 9/11); id 12 removed; id 13 unchanged.
    image 2 (50x70): id 21 small 20x20 square eroded to 10x10 (area ratio 0.25); id 22 vanished, guard put the
    original back (guard "vanished", kept_original); id 23 polygon original, refined unchanged.
    """
    import json

    import numpy as np

    from steadyseg.datasets.coco import annotation_to_mask, mask_to_rle, rle_area, rle_bbox

    images = [{"id": 1, "file_name": "a.jpg", "height": 60, "width": 80, "license": 1},
              {"id": 2, "file_name": "b.jpg", "height": 50, "width": 70, "license": 1}]
    cats = [{"id": 1, "name": "thing", "supercategory": "x"}, {"id": 5, "name": "other", "supercategory": "x"}]
    orig_masks = {11: (1, _square(60, 80, 10, 10, 20)), 12: (1, _square(60, 80, 35, 50, 15)),
                  13: (1, _square(60, 80, 5, 45, 12)), 21: (2, _square(50, 70, 5, 5, 20)),
                  22: (2, _square(50, 70, 30, 40, 8))}
    anns = []
    for ann_id, (image_id, m) in orig_masks.items():
        rle = mask_to_rle(m)
        anns.append({"id": ann_id, "image_id": image_id, "category_id": 1 if ann_id % 2 else 5, "iscrowd": 0,
                     "segmentation": rle, "area": float(rle_area(rle)), "bbox": rle_bbox(rle)})
    anns.append({"id": 23, "image_id": 2, "category_id": 1, "iscrowd": 0,
                 "segmentation": [[40.0, 2.0, 60.0, 2.0, 60.0, 20.0, 40.0, 20.0]], "area": 360.0,
                 "bbox": [40.0, 2.0, 20.0, 18.0]})
    orig_masks[23] = (2, annotation_to_mask(anns[-1], 50, 70))
    original = {"info": {"description": "synthetic"}, "licenses": [{"id": 1, "name": "x"}], "images": images,
                "annotations": anns, "categories": cats}
    refined_masks = {11: np.roll(orig_masks[11][1], 2, axis=1), 13: orig_masks[13][1],
                     21: _square(50, 70, 10, 10, 10), 22: orig_masks[22][1], 23: orig_masks[23][1]}
    records = {22: {"guard": "vanished", "kept_original": True}}
    ref_anns = []
    for a in anns:
        if a["id"] not in refined_masks:
            continue
        rle = mask_to_rle(refined_masks[a["id"]])
        rec = {"iou_with_original": 0.0, "area_ratio": 0.0, "guard": None, "kept_original": False,
               "refiner": "synthetic", **records.get(a["id"], {})}
        ref_anns.append({**a, "segmentation": rle, "area": float(rle_area(rle)), "bbox": rle_bbox(rle),
                         "original_bbox": a["bbox"], "refine": rec})
    refined = {**original, "annotations": ref_anns}
    (tmp_path / "images").mkdir()
    for im in images:  # tiny real images so the App can show them
        import cv2

        cv2.imwrite(str(tmp_path / "images" / im["file_name"]),
                    np.full((im["height"], im["width"], 3), 128, np.uint8))
    (tmp_path / "original.json").write_text(json.dumps(original))
    (tmp_path / "refined.json").write_text(json.dumps(refined))
    return {"original": tmp_path / "original.json", "refined": tmp_path / "refined.json",
            "images": tmp_path / "images", "orig_masks": {k: v[1] for k, v in orig_masks.items()},
            "refined_masks": refined_masks, "root": tmp_path}
