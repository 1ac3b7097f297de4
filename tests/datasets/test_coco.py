"""steadyseg.datasets.coco: RLE/polygon conversions, round trips through pycocotools, clear errors."""

import json

import numpy as np
import pytest

from steadyseg.datasets import coco


def _donut(h=40, w=50):
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy - 20, xx - 25)
    return (r < 15) & (r > 6)


def test_mask_rle_json_roundtrip(tmp_path):
    mask = _donut()
    rle = coco.mask_to_rle(mask)
    assert isinstance(rle["counts"], str) and rle["size"] == [40, 50]
    path = tmp_path / "rle.json"
    path.write_text(json.dumps(rle))
    back = coco.rle_to_mask(json.loads(path.read_text()))
    assert back.dtype == bool and np.array_equal(back, mask)
    assert coco.rle_area(rle) == int(mask.sum())


def test_bbox_and_iou_by_hand():
    m = np.zeros((20, 30), bool)
    m[5:15, 10:20] = True  # 10x10 square at x=10, y=5
    rle = coco.mask_to_rle(m)
    assert coco.rle_bbox(rle) == [10.0, 5.0, 10.0, 10.0]
    shifted = np.roll(m, 2, axis=1)  # overlap 10x8 = 80, union 120
    assert coco.rle_iou(rle, coco.mask_to_rle(shifted)) == pytest.approx(80 / 120)
    empty = coco.mask_to_rle(np.zeros((20, 30), bool))
    assert coco.rle_iou(empty, empty) == 1.0
    assert coco.rle_bbox(empty) == [0.0, 0.0, 0.0, 0.0]


def test_polygon_to_mask_square():
    # polygon of the closed square [2,8]x[3,9]; pycocotools rasterises it to a 6x6 block
    ann = {"id": 7, "segmentation": [[2, 3, 8, 3, 8, 9, 2, 9]]}
    m = coco.annotation_to_mask(ann, 12, 12)
    assert m.sum() == 36 and m[3:9, 2:8].all()


def test_uncompressed_rle_is_accepted():
    m = np.zeros((6, 4), bool)
    m[1:3, 1:3] = True
    # column-major run lengths of m
    counts, cur, run = [], False, 0
    for v in m.T.ravel():
        if v != cur:
            counts.append(run)
            cur, run = v, 0
        run += 1
    counts.append(run)
    rle = coco.segmentation_to_rle({"size": [6, 4], "counts": counts}, 6, 4, ann_id=1)
    assert np.array_equal(coco.rle_to_mask(rle), m)


@pytest.mark.parametrize("segm, message", [
    ([[1, 1, 5, 1]], "fewer than 3 points"),
    ([[1, 1, 5, 1, 3]], "odd number"),
    ([], "empty polygon"),
    ("nonsense", "unknown segmentation"),
])
def test_bad_segmentations_name_the_annotation(segm, message):
    with pytest.raises(coco.CocoFormatError, match=rf"annotation 42: .*{message}"):
        coco.segmentation_to_rle(segm, 10, 10, ann_id=42)


def test_rle_size_mismatch():
    rle = coco.mask_to_rle(np.ones((5, 5), bool))
    with pytest.raises(coco.CocoFormatError, match="annotation 3: RLE size"):
        coco.segmentation_to_rle(rle, 6, 5, ann_id=3)


def test_load_coco_json_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        coco.load_coco_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [1,]')
    with pytest.raises(coco.CocoFormatError, match=r"bad.json: malformed JSON at line 1"):
        coco.load_coco_json(bad)
    partial = tmp_path / "partial.json"
    partial.write_text('{"images": [], "annotations": []}')
    with pytest.raises(coco.CocoFormatError, match="'categories'"):
        coco.load_coco_json(partial)


def test_cocoeval_identity_is_perfect():
    m1 = np.zeros((40, 50), bool)
    m1[5:25, 5:30] = True
    m2 = _donut()
    data = {
        "images": [{"id": 1, "width": 50, "height": 40, "file_name": "a.png"}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [
            {"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": coco.mask_to_rle(m),
             "area": float(m.sum()), "bbox": coco.rle_bbox(coco.mask_to_rle(m))}
            for i, m in enumerate([m1, m2])
        ],
    }
    dets = [{"image_id": 1, "category_id": 1, "segmentation": a["segmentation"], "score": 1.0}
            for a in data["annotations"]]
    stats = coco.evaluate_segm(data, dets)
    assert stats["AP"] == pytest.approx(1.0)
    api = coco.coco_api(data)
    assert np.array_equal(api.annToMask(api.anns[2]).astype(bool), m2)


def test_geometry_helpers_agree_with_full_decoding():
    """crop_to_rle equals mask_to_rle of the pasted crop; annotation_mask_in_box equals the full mask cut."""
    h, w = 40, 50
    donut = _donut(h, w)
    crop = donut[8:33, 12:39]
    pasted = np.zeros((h, w), bool)
    pasted[8:33, 12:39] = crop
    assert coco.crop_to_rle(crop, h, w, 12, 8) == coco.mask_to_rle(pasted)
    assert coco.crop_to_rle(np.ones((3, 4), bool), h, w, 0, 0) == coco.mask_to_rle(np.pad(np.ones((3, 4), bool),
                                                                                       ((0, h - 3), (0, w - 4))))
    ann = {"id": 1, "segmentation": [[10.3, 5.0, 30.0, 5.0, 30.0, 20.7, 10.3, 20.7]]}
    box = coco.polygon_pixel_box(ann["segmentation"], h, w, where="annotation 1")
    assert box == (9, 4, 32, 23)  # floor(x) - 1, floor(y) - 1, ceil(x) + 2, ceil(y) + 2
    full = coco.annotation_to_mask(ann, h, w)
    np.testing.assert_array_equal(coco.annotation_mask_in_box(ann, h, w, box), full[4:23, 9:32])
    assert full[4:23, 9:32].sum() == full.sum()  # the box holds every pixel
    rle_ann = {"id": 2, "segmentation": coco.mask_to_rle(donut)}
    np.testing.assert_array_equal(coco.annotation_mask_in_box(rle_ann, h, w, (5, 6, 30, 20)), donut[6:20, 5:30])
    with pytest.raises(coco.CocoFormatError, match="annotation 1: polygon lies outside"):
        coco.polygon_pixel_box([[60.0, 50.0, 70.0, 50.0, 70.0, 60.0]], h, w, where="annotation 1")


@pytest.mark.parametrize("bbox,match", [([1, 2, 3], "4 finite numbers"), ([0, 0, -1, 5], "negative size"),
                                        ([60, 0, 5, 5], "outside the image"), ([0, float("nan"), 1, 1], "finite")])
def test_check_bbox_names_the_annotation(bbox, match):
    with pytest.raises(coco.CocoFormatError, match=f"annotation 7: .*{match}"):
        coco.check_bbox({"bbox": bbox}, 40, 50, where="annotation 7")
    coco.check_bbox({}, 40, 50, where="annotation 7")  # no box: nothing to check
