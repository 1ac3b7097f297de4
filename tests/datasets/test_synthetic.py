"""Synthetic generators: exact labels and flow, DAVIS-like folders, a misaligned COCO set."""

from __future__ import annotations

import numpy as np
import pytest

from steadyseg.datasets.coco import annotation_to_mask, coco_api, load_coco_json, rle_iou, segmentation_to_rle
from steadyseg.datasets.flow import compute_flow
from steadyseg.datasets.masks import check_matching, open_masks
from steadyseg.datasets.synthetic import make_moving_shapes_video, make_synthetic_coco, write_video_folder
from steadyseg.datasets.video import open_video


def test_video_shapes_and_determinism():
    v = make_moving_shapes_video(num_frames=8, height=64, width=80, num_objects=3, seed=5)
    assert v.frames.shape == (8, 64, 80, 3) and v.frames.dtype == np.uint8
    assert v.labels.shape == v.flicker_labels.shape == (8, 64, 80) and v.labels.dtype == np.int32
    assert v.probs.shape == (8, 4, 64, 80) and v.probs.dtype == np.float32 and v.num_classes == 4
    np.testing.assert_allclose(v.probs.sum(1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(v.probs.argmax(1), v.flicker_labels)
    assert set(np.unique(v.labels)) <= {0, 1, 2, 3} and 0 in np.unique(v.labels)
    w = make_moving_shapes_video(num_frames=8, height=64, width=80, num_objects=3, seed=5)
    np.testing.assert_array_equal(v.frames, w.frames)
    np.testing.assert_array_equal(v.flicker_labels, w.flicker_labels)
    assert not np.array_equal(v.frames, make_moving_shapes_video(num_frames=8, height=64, width=80, seed=6).frames)


def test_flicker_is_small_and_zero_flicker_is_exact():
    v = make_moving_shapes_video(seed=1, flicker_px=2)
    changed = (v.labels != v.flicker_labels).mean()
    assert 0.002 < changed < 0.1
    still = make_moving_shapes_video(seed=1, flicker_px=0)
    np.testing.assert_array_equal(still.labels, still.flicker_labels)


def test_exact_flow_maps_labels_between_frames():
    v = make_moving_shapes_video(num_frames=6, seed=2, integer_motion=True)
    assert np.all(v.velocities == np.round(v.velocities))
    h, w = v.labels.shape[1:]
    ys, xs = np.mgrid[0:h, 0:w]
    for p, q in [(0, 1), (1, 0), (0, 5), (4, 2)]:
        flow = v.flows(p, q)
        np.testing.assert_array_equal(flow, v.flows[p, q])
        assert flow.shape == (h, w, 2) and flow.dtype == np.float32
        tx = (xs + flow[..., 0]).astype(int)
        ty = (ys + flow[..., 1]).astype(int)
        inside = (tx >= 0) & (tx < w) & (ty >= 0) & (ty < h)
        # integer motion: the moved pixel has exactly the same colour wherever it is not occluded in frame q
        same_label = inside.copy()
        same_label[inside] = v.labels[q][ty[inside], tx[inside]] == v.labels[p][inside]
        assert same_label.mean() > 0.8
        np.testing.assert_array_equal(v.frames[q][ty[same_label], tx[same_label]], v.frames[p][same_label])


def test_background_is_np_roll_with_integer_motion():
    v = make_moving_shapes_video(num_frames=3, num_objects=0, seed=4, integer_motion=True, max_speed=4)
    dx, dy = v.velocities[0].astype(int)
    assert (dx, dy) != (0, 0)
    rolled = np.roll(v.frames[0], shift=(dy, dx), axis=(0, 1))
    m = 8
    np.testing.assert_array_equal(v.frames[1][m:-m, m:-m], rolled[m:-m, m:-m])


def test_dis_agrees_with_exact_flow():
    v = make_moving_shapes_video(num_frames=3, seed=0)
    exact = v.flows(0, 1)
    est = compute_flow(v.frames[0], v.frames[1], backend="dis", preset="medium")
    err = np.hypot(*(est - exact).transpose(2, 0, 1))[8:-8, 8:-8]
    assert np.median(err) < 0.3 and np.mean(err < 1.0) > 0.85


def test_write_video_folder_roundtrip(tmp_path):
    v = make_moving_shapes_video(num_frames=5, height=48, width=64, seed=3)
    paths = write_video_folder(v, tmp_path, masks="flicker", sequence="toy")
    assert paths["frames"] == tmp_path / "JPEGImages" / "480p" / "toy"
    frames = open_video(paths["frames"])
    np.testing.assert_array_equal(np.stack([frames[i] for i in range(5)]), v.frames)  # lossless
    ann = open_masks(paths["annotations"])
    assert ann.reading == "palette-ids"
    np.testing.assert_array_equal(ann[2], v.flicker_labels[2])
    pred = open_masks(paths["predictions"])
    np.testing.assert_array_equal(pred[4], v.flicker_labels[4])
    soft = open_masks(paths["probs"])
    np.testing.assert_array_equal(soft.probs(1), v.probs[1])
    check_matching(frames, ann)
    exact = write_video_folder(v, tmp_path / "b", masks="labels")
    np.testing.assert_array_equal(open_masks(exact["annotations"])[3], v.labels[3])
    with pytest.raises(ValueError, match="masks must be"):
        write_video_folder(v, tmp_path / "c", masks="gt")


def test_synthetic_coco(tmp_path):
    paths = make_synthetic_coco(tmp_path, num_images=4, seed=0)
    wrong, true = load_coco_json(paths["instances"]), load_coco_json(paths["instances_true"])
    assert [im["id"] for im in wrong["images"]] == [1, 2, 3, 4]
    assert {c["name"] for c in wrong["categories"]} == {"person", "car", "dog"}
    assert [a["id"] for a in wrong["annotations"]] == [a["id"] for a in true["annotations"]]
    crowd = [a for a in wrong["annotations"] if a["iscrowd"]]
    assert len(crowd) == 1 and isinstance(crowd[0]["segmentation"], dict)
    polys = [a for a in wrong["annotations"] if not a["iscrowd"]]
    assert polys and all(isinstance(a["segmentation"], list) for a in polys)
    ious = []
    by_id = {a["id"]: a for a in true["annotations"]}
    for a in polys:
        t = by_id[a["id"]]
        ious.append(rle_iou(segmentation_to_rle(a["segmentation"], 120, 160), t["segmentation"]))
        assert t["area"] == annotation_to_mask(t, 120, 160).sum() > 50
    assert 0.5 < min(ious) and max(ious) < 0.999 and 0.7 < np.mean(ious) < 0.97  # slightly misaligned
    for im in wrong["images"]:
        from PIL import Image

        assert Image.open(paths["images"] / im["file_name"]).size == (160, 120)
    api = coco_api(paths["instances"])
    assert len(api.getAnnIds()) == len(wrong["annotations"])
