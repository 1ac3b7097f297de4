"""steadyseg coco-from-masks: mask videos → COCO polygons (approxPolyDP), images copied, usable as targets."""

import json

import numpy as np
import pytest

from steadyseg.accuracy import iou
from steadyseg.cli import main as cli_main
from steadyseg.datasets.coco import annotation_to_mask
from steadyseg.datasets.coco_from_masks import coco_from_masks, mask_to_polygons
from steadyseg.datasets.coco_targets import CocoSemanticTargets
from steadyseg.datasets.masks import open_masks
from steadyseg.datasets.synthetic import make_moving_shapes_video, write_video_folder


def test_mask_to_polygons_square_by_hand():
    m = np.zeros((10, 12), bool)
    m[2:6, 3:9] = True  # rows 2..5, cols 3..8: edges x = 3 and 9, y = 2 and 6, traced 1/8 px inside
    (poly,) = mask_to_polygons(m, tolerance=0.5)
    pts = np.array(poly).reshape(-1, 2)
    assert sorted(map(tuple, pts)) == sorted([(3.12, 2.12), (3.12, 5.88), (8.88, 5.88), (8.88, 2.12)])
    np.testing.assert_array_equal(annotation_to_mask({"segmentation": [poly]}, 10, 12), m)
    disc = np.hypot(*np.mgrid[-8:9, -8:9]) <= 6.5
    assert iou(annotation_to_mask({"segmentation": mask_to_polygons(disc, tolerance=0)}, 17, 17), disc) == 1.0
    assert mask_to_polygons(np.zeros((4, 4), bool)) == []
    with pytest.raises(ValueError, match="tolerance"):
        mask_to_polygons(m, tolerance=-1)


@pytest.fixture()
def two_videos(tmp_path):
    a = write_video_folder(make_moving_shapes_video(num_frames=6, height=48, width=64, num_objects=2, seed=2),
                           tmp_path / "a", sequence="alpha")
    b = write_video_folder(make_moving_shapes_video(num_frames=4, height=48, width=64, num_objects=1, seed=5),
                           tmp_path / "b", sequence="beta")
    return [(a["frames"], a["annotations"]), (b["frames"], b["annotations"])]


def test_cli_every_per_id_and_fidelity(two_videos, tmp_path):
    out = tmp_path / "coco"
    args = ["coco-from-masks", "--out", str(out), "--every", "2", "--polygon-tolerance", "1", "--per-id", "--quiet"]
    for f, m in two_videos:
        args += ["--frames", str(f), "--masks", str(m)]
    assert cli_main(args) == 0
    data = json.loads((out / "instances.json").read_text())
    names = [im["file_name"] for im in data["images"]]
    assert names == ["alpha_00000.png", "alpha_00002.png", "alpha_00004.png", "beta_00000.png", "beta_00002.png"]
    assert (out / "images" / "alpha_00002.png").read_bytes() == (two_videos[0][0] / "00002.png").read_bytes()
    assert [c["id"] for c in data["categories"]] == [1, 2] and data["categories"][0]["name"] == "object 1"
    masks = {("alpha", k): v for k, v in enumerate(open_masks(two_videos[0][1]))}
    for ann in data["annotations"]:
        im = data["images"][ann["image_id"] - 1]
        folder, stem = im["file_name"][:-4].split("_")
        if folder != "alpha":
            continue
        truth = masks[("alpha", int(stem))] == ann["category_id"]
        poly = annotation_to_mask(ann, im["height"], im["width"])
        assert iou(poly, truth) > 0.85  # tolerance 1 px on objects of radius 5-9 px
        assert ann["area"] == poly.sum() and ann["iscrowd"] == 0
    # a COCO file made from other data trains with --labels file
    ds = CocoSemanticTargets(out / "instances.json", out / "images", labels="file")
    assert ds.label_set.names == ("__background__", "object 1", "object 2") and len(ds) == 5


def test_one_category_and_errors(two_videos, tmp_path):
    s = coco_from_masks(two_videos, tmp_path / "c", polygon_tolerance=3, progress=False)
    data = json.loads((tmp_path / "c" / "instances.json").read_text())
    assert data["categories"] == [{"id": 1, "name": "object", "supercategory": "object"}]
    assert s["images"] == 10 and {a["category_id"] for a in data["annotations"]} == {1}
    with pytest.raises(ValueError, match="both named"):
        coco_from_masks([two_videos[0], two_videos[0]], tmp_path / "d", progress=False)
    with pytest.raises(ValueError, match="every"):
        coco_from_masks(two_videos, tmp_path / "e", every=0, progress=False)


def test_davis_blackswan_polygons_are_close(davis2016, tmp_path):
    f, m = davis2016 / "JPEGImages" / "480p" / "blackswan", davis2016 / "Annotations" / "480p" / "blackswan"
    s = coco_from_masks([(f, m)], tmp_path / "bs", every=5, polygon_tolerance=3, progress=False)
    assert s["images"] == 10
    data = json.loads((tmp_path / "bs" / "instances.json").read_text())
    gt = open_masks(m)
    ious = []
    for ann in data["annotations"]:
        im = data["images"][ann["image_id"] - 1]
        t = int(im["source"]["frame"])
        ious.append(iou(annotation_to_mask(ann, 480, 854), gt[t] == 1))
    assert len(ious) == 10 and 0.9 < np.mean(ious) < 1.0  # coarse (tolerance 3 px) but close
