"""Build -> views -> tags -> export on a synthetic pair whose numbers are known (one mongod per session)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from steadyseg.curation.build import build_curation_dataset, detection_to_full_mask
from steadyseg.curation.export import export_curated_coco
from steadyseg.curation.views import set_review_tags


def _labels(ds, field):
    out = {}
    for s in ds.select_fields(["metadata", field]).iter_samples():
        for d in s[field].detections:
            out[d.coco_id] = (d, s.metadata.height, s.metadata.width)
    return out


def test_build_metrics_views_and_idempotent_update(fo_env, synthetic_pair, dataset_name):
    p = synthetic_pair
    ds = build_curation_dataset(p["original"], p["refined"], p["images"], dataset_name, progress=False)
    assert len(ds) == 2 and ds.persistent
    # the App draws original and refined masks in two unmistakable colours, both switched on
    from steadyseg.curation.appearance import ORIGINAL_COLOR, REFINED_COLOR

    assert {f["path"]: f["fieldColor"] for f in ds.app_config.color_scheme.fields} == {
        "ground_truth": ORIGINAL_COLOR, "refined": REFINED_COLOR}
    assert ds.app_config.color_scheme.color_by == "field"
    assert ds.app_config.active_fields.paths == ["ground_truth", "refined"]
    gt, ref = _labels(ds, "ground_truth"), _labels(ds, "refined")
    assert sorted(gt) == [11, 12, 13, 21, 22, 23] and sorted(ref) == [11, 13, 21, 22, 23]
    # stored masks give back the exact full-image masks
    for cid, (d, h, w) in gt.items():
        assert np.array_equal(detection_to_full_mask(d.bounding_box, d.mask, h, w), p["orig_masks"][cid])
    for cid, (d, h, w) in ref.items():
        assert np.array_equal(detection_to_full_mask(d.bounding_box, d.mask, h, w), p["refined_masks"][cid])
    assert ref[11][0].iou == pytest.approx(9 / 11) and ref[11][0].centroid_shift == pytest.approx(2.0)
    assert ref[21][0].area_ratio == pytest.approx(0.25) and ref[21][0].original_area == 400
    assert ref[13][0].iou == 1.0 and ref[13][0].boundary_f == 1.0
    assert ref[22][0].guard == "vanished" and ref[22][0].kept_original is True
    assert gt[12][0].removed is True and gt[22][0].vanished is True and gt[11][0].removed is False
    assert gt[11][0].label == "thing" and gt[12][0].label == "other"  # names from the COCO categories
    s1 = ds.match({"coco_image_id": 1}).first()
    assert (s1.n_original, s1.n_refined, s1.n_removed, s1.n_changed) == (3, 2, 1, 1)
    assert s1.min_iou == pytest.approx(9 / 11)

    views = set(ds.list_saved_views())
    assert {"changed_masks", "removed_or_vanished", "small_shrunk", "boundary_moves", "guard_flags"} <= views
    changed = ds.load_saved_view("changed_masks")
    assert sorted(changed.values("refined.detections.coco_id", unwind=True)) == [11, 21]
    assert changed.values("min_iou") == sorted(changed.values("min_iou"))  # worst first
    # counterparts: only the originals of the changed instances are shown beside them
    assert sorted(changed.values("ground_truth.detections.coco_id", unwind=True)) == [11, 21]
    removed = ds.load_saved_view("removed_or_vanished")
    assert sorted(removed.values("ground_truth.detections.coco_id", unwind=True)) == [12, 22]
    assert ds.load_saved_view("small_shrunk").values("refined.detections.coco_id", unwind=True) == [21]
    assert ds.load_saved_view("guard_flags").values("refined.detections.coco_id", unwind=True) == [22]

    # review tags survive an idempotent rebuild
    assert set_review_tags(ds, [11], "accept") == 1
    set_review_tags(ds, [21], "reject")
    with pytest.raises(ValueError, match="no refined label with coco_id"):
        set_review_tags(ds, [12], "accept")
    ds2 = build_curation_dataset(p["original"], p["refined"], p["images"], dataset_name, progress=False)
    assert len(ds2) == 2
    assert ds2.load_saved_view("accepted").values("refined.detections.coco_id", unwind=True) == [11]
    assert ds2.load_saved_view("rejected").values("refined.detections.coco_id", unwind=True) == [21]
    assert ds2.count("ground_truth.detections") == 6


def test_rebuild_interrupted_after_clearing_loses_no_review_tag(fo_env, synthetic_pair, dataset_name, monkeypatch):
    """A rebuild killed between clearing the samples and re-inserting them: the next build restores every tag."""
    import steadyseg.curation.build as B

    p = synthetic_pair
    ds = build_curation_dataset(p["original"], p["refined"], p["images"], dataset_name, progress=False)
    set_review_tags(ds, [11], "accept")
    set_review_tags(ds, [21], "reject")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # stands for SIGKILL: nothing after this point runs
    monkeypatch.setattr(B, "_insert", killed)
    with pytest.raises(KeyboardInterrupt):
        build_curation_dataset(p["original"], p["refined"], p["images"], dataset_name, progress=False)
    monkeypatch.undo()
    assert len(fo_env.load_dataset(dataset_name)) == 0  # the samples were cleared, the review is in info

    ds3 = build_curation_dataset(p["original"], p["refined"], p["images"], dataset_name, progress=False)
    assert ds3.load_saved_view("accepted").values("refined.detections.coco_id", unwind=True) == [11]
    assert ds3.load_saved_view("rejected").values("refined.detections.coco_id", unwind=True) == [21]
    assert B.PENDING_REVIEW_KEY not in ds3.info


def test_export_accepted_and_refined_unless_rejected(fo_env, synthetic_pair, dataset_name, tmp_path):
    from steadyseg.datasets.coco import annotation_to_mask, coco_api

    p = synthetic_pair
    ds = build_curation_dataset(p["original"], p["refined"], p["images"], dataset_name, progress=False)
    set_review_tags(ds, [11], "accept")
    set_review_tags(ds, [21], "reject")

    out = tmp_path / "out" / "curated.json"
    summary = export_curated_coco(dataset_name, out, progress=False)
    assert summary["from_refined"] == 1 and summary["annotations"] == 6
    api = coco_api(out)  # pycocotools reads it
    original = json.loads(p["original"].read_text())
    assert sorted(api.getImgIds()) == [1, 2] and sorted(api.getAnnIds()) == [11, 12, 13, 21, 22, 23]
    assert api.loadCats([5])[0]["name"] == "other"
    for ann_id in api.getAnnIds():
        ann = api.loadAnns([ann_id])[0]
        want = p["refined_masks"][11] if ann_id == 11 else p["orig_masks"][ann_id]
        assert np.array_equal(api.annToMask(ann).astype(bool), want), ann_id
    a11 = api.loadAnns([11])[0]
    assert a11["area"] == 400.0 and a11["bbox"] == [12.0, 10.0, 20.0, 20.0]
    a23 = api.loadAnns([23])[0]
    orig23 = next(a for a in original["annotations"] if a["id"] == 23)
    assert a23["area"] == orig23["area"] and a23["bbox"] == orig23["bbox"]  # original values kept
    record = json.loads((tmp_path / "out" / "curated.decisions.json").read_text())
    by_id = {d["id"]: d for d in record["decisions"]}
    assert by_id[11]["source"] == "refined" and by_id[11]["tag"] == "accept"
    assert by_id[12]["source"] == "original" and "removed" in by_id[12]["reason"]
    assert by_id[21]["tag"] == "reject"
    assert (tmp_path / "out" / "curated.config.yaml").is_file()

    summary = export_curated_coco(ds, tmp_path / "lenient.json", rule="refined-unless-rejected", progress=False)
    api = coco_api(tmp_path / "lenient.json")
    sources = {d["id"]: d["source"] for d in json.loads((tmp_path / "lenient.decisions.json").read_text())["decisions"]}
    assert sources == {11: "refined", 12: "original", 13: "refined", 21: "original", 22: "refined", 23: "refined"}
    img2 = {"height": 50, "width": 70}
    assert np.array_equal(annotation_to_mask(api.loadAnns([21])[0], **img2), p["orig_masks"][21])
    with pytest.raises(ValueError, match="unknown export rule"):
        export_curated_coco(ds, tmp_path / "x.json", rule="everything")


def test_raw_writer_matches_fiftyone_documents(fo_env, synthetic_pair, dataset_name):
    """The fast writer's documents equal FiftyOne's own serialisation (guards against FiftyOne changes)."""
    import fiftyone.core.utils as fou

    from steadyseg.curation import build as B
    from steadyseg.datasets.coco import load_coco_json

    p = synthetic_pair
    orig, ref = load_coco_json(p["original"]), load_coco_json(p["refined"])
    cats = {c["id"]: c["name"] for c in orig["categories"]}
    anns = [a for a in orig["annotations"] if a["image_id"] == 2]
    refs = {a["id"]: a for a in ref["annotations"] if a["image_id"] == 2}
    payload = B._image_payload(orig["images"][1], anns, refs, cats, images_dir=str(p["images"]),
                               boundary_tolerance=None, change_threshold=0.9)
    tags = {"sample": {2: ["s"]}, "refined": {21: ["accept"]}}
    raw = B._payload_to_doc(payload, tags)
    ds = fo_env.Dataset(dataset_name)
    ds.media_type = "image"
    B.declare_schema(ds)
    ours = ds._make_dict(B._payload_to_sample(fo_env, payload, tags), include_id=False)

    def strip(d):
        if isinstance(d, dict):
            return {k: strip(v) for k, v in d.items() if k not in ("_id", "_rand", "_dataset_id", "created_at",
                                                                     "last_modified_at")}
        if isinstance(d, list):
            return [strip(v) for v in d]
        if isinstance(d, (bytes, bytearray)):  # masks: same array (the zlib level may differ)
            arr = fou.deserialize_numpy_array(bytes(d))
            return {"dtype": str(arr.dtype), "shape": list(arr.shape), "values": arr.tolist()}
        return d

    assert json.loads(json.dumps(strip(raw), default=repr)) == json.loads(json.dumps(strip(ours), default=repr))
    # and both writers build datasets with equal values
    other = build_curation_dataset(p["original"], p["refined"], p["images"], dataset_name + "-fo",
                                   writer="fiftyone", progress=False, save_views=False, persistent=False)
    raw_ds = build_curation_dataset(p["original"], p["refined"], p["images"], dataset_name + "-raw",
                                    progress=False, save_views=False, persistent=False, workers=2, chunk_size=1)
    for field in ("refined.detections.iou", "ground_truth.detections.removed", "n_changed", "mean_iou"):
        assert other.sort_by("coco_image_id").values(field) == raw_ds.sort_by("coco_image_id").values(field)
    fo_env.delete_datasets(dataset_name + "-*")


def test_mismatched_refined_file_is_rejected(fo_env, synthetic_pair, dataset_name, tmp_path):
    p = synthetic_pair
    bad = json.loads(p["refined"].read_text())
    bad["annotations"][0]["id"] = 999
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="annotation id 999 is not in"):
        build_curation_dataset(p["original"], tmp_path / "bad.json", p["images"], dataset_name, progress=False)
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        build_curation_dataset(p["original"], p["refined"], tmp_path / "nope", dataset_name, progress=False)


def test_cli_views_rethreshold(fo_env, synthetic_pair, dataset_name, capsys):
    from steadyseg.cli import main

    p = synthetic_pair
    build_curation_dataset(p["original"], p["refined"], p["images"], dataset_name, progress=False)
    assert main(["curate", "views", dataset_name, "--change-threshold", "0.5"]) == 0
    assert "changed_masks" in capsys.readouterr().out
    ds = fo_env.load_dataset(dataset_name)
    assert ds.load_saved_view("changed_masks").values("refined.detections.coco_id", unwind=True) == [21]
    assert ds.info["steadyseg"]["views"]["change_threshold"] == 0.5
    assert main(["curate", "export", "no-such-dataset", "--out", "x.json"]) == 1  # clear error, no traceback


def test_layout_check_passes_on_the_installed_fiftyone(fo_env, dataset_name):
    """The raw writer's runtime check accepts the installed FiftyOne (the version pyproject.toml allows)."""
    from importlib.metadata import version

    from steadyseg.curation import build as B

    ds = fo_env.Dataset(dataset_name)
    ds.media_type = "image"
    B.declare_schema(ds)
    assert B.raw_writer_problem(ds) is None
    lo, hi = B.RAW_WRITER_TESTED_FIFTYONE
    major, minor = (int(v) for v in version("fiftyone").split(".")[:2])
    assert lo <= (major, minor) < hi


def test_layout_check_names_the_version_and_the_differing_keys(fo_env, dataset_name, monkeypatch):
    from steadyseg.curation import build as B

    ds = fo_env.Dataset(dataset_name)
    ds.media_type = "image"
    B.declare_schema(ds)
    monkeypatch.setattr(B, "RAW_WRITER_TESTED_FIFTYONE", ((0, 1), (0, 2)))
    assert "outside the versions the raw writer was tested on (>=0.1,<0.2)" in B.raw_writer_problem(ds)
    monkeypatch.undo()
    real = B._payload_to_doc
    monkeypatch.setattr(B, "_payload_to_doc", lambda p, tags: {**real(p, tags), "surprise": 1})
    assert "only ours ['surprise']" in B.raw_writer_problem(ds)


def test_failed_layout_check_falls_back_to_the_public_writer(fo_env, synthetic_pair, dataset_name, monkeypatch):
    """A failing check gives a warning, the public writer, and the same dataset content as the raw writer."""
    from steadyseg.curation import build as B

    p = synthetic_pair
    raw_ds = build_curation_dataset(p["original"], p["refined"], p["images"], dataset_name + "-raw",
                                    progress=False, save_views=False, persistent=False)
    assert raw_ds.info["steadyseg"]["ingest"]["writer"] == "raw"
    assert raw_ds.info["steadyseg"]["ingest"]["writer_fallback"] is None

    monkeypatch.setattr(B, "raw_writer_problem", lambda dataset: "simulated layout change")
    used = []
    real_insert = B._insert
    monkeypatch.setattr(B, "_insert", lambda ds, items, tags, *, writer: (used.append(writer),
                                                                          real_insert(ds, items, tags, writer=writer)))
    with pytest.warns(RuntimeWarning, match=r"not using the fast raw writer \(simulated layout change\); "
                                            r"falling back to FiftyOne's public writer"):
        fb_ds = build_curation_dataset(p["original"], p["refined"], p["images"], dataset_name + "-fallback",
                                       progress=False, save_views=False, persistent=False)
    assert used and set(used) == {"fiftyone"}
    ingest = fb_ds.info["steadyseg"]["ingest"]
    assert ingest["writer"] == "fiftyone" and ingest["writer_fallback"] == "simulated layout change"
    fields = ["coco_image_id", "filepath", "n_original", "n_refined", "n_changed", "mean_iou", "min_boundary_f",
              "ground_truth.detections.coco_id", "ground_truth.detections.removed",
              "ground_truth.detections.vanished", "refined.detections.coco_id", "refined.detections.iou",
              "refined.detections.area_ratio", "refined.detections.guard", "refined.detections.bounding_box"]
    for field in fields:
        assert fb_ds.sort_by("coco_image_id").values(field) == raw_ds.sort_by("coco_image_id").values(field), field
    fb_labels, raw_labels = _labels(fb_ds, "refined"), _labels(raw_ds, "refined")
    assert fb_labels.keys() == raw_labels.keys()
    for coco_id, (det, _, _) in fb_labels.items():
        assert np.array_equal(det.mask, raw_labels[coco_id][0].mask), coco_id
    fo_env.delete_datasets(dataset_name + "-*")


def _real_and_edge_rles(coco80):
    """(compressed RLE, H, W) of every real COCO annotation (polygons and crowd RLEs) and of edge-case masks: empty,
    full, one pixel in each corner, a column and a row along the borders."""
    from steadyseg.datasets.coco import load_coco_json, mask_to_rle, segmentation_to_rle

    data = load_coco_json(coco80 / "annotations" / "instances_val2017.json")
    images = {im["id"]: im for im in data["images"]}
    for ann in data["annotations"]:
        im = images[ann["image_id"]]
        yield segmentation_to_rle(ann["segmentation"], im["height"], im["width"]), im["height"], im["width"]
    h, w = 7, 9
    masks = [np.zeros((h, w), bool), np.ones((h, w), bool)]
    for y, x in ((0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1)):
        m = np.zeros((h, w), bool)
        m[y, x] = True
        masks.append(m)
    masks.append(np.pad(np.ones((h, 1), bool), ((0, 0), (w - 1, 0))))
    masks.append(np.pad(np.ones((1, w), bool), ((h - 1, 0), (0, 0))))
    for m in masks:
        yield mask_to_rle(m), h, w


def test_rle_window_decode_equals_pycocotools_full_decode(coco80):
    """Run ends parsed from the compressed string, and masks decoded inside windows (tight box, box grown past the
    image borders, the whole image), equal the crops of pycocotools' full-image decode."""
    from steadyseg.curation.metrics import mask_bbox
    from steadyseg.datasets.coco import decode_rle_window, rle_run_ends, rle_to_mask

    n = 0
    for rle, h, w in _real_and_edge_rles(coco80):
        full = rle_to_mask(rle)
        ends = rle_run_ends(rle["counts"])
        assert ends[-1] == h * w and np.all(np.diff(ends) >= 0)
        flat = np.zeros(h * w, bool)
        for start, stop in zip(ends[0::2], ends[1::2]):
            flat[start:stop] = True
        assert np.array_equal(flat.reshape(w, h).T, full)
        box = mask_bbox(full)
        grown = (max(box[0] - 9, 0), min(box[1] + 9, h), max(box[2] - 9, 0), min(box[3] + 9, w)) if box else None
        for window in ([box, grown] if box else []) + [(0, h, 0, w)]:
            y0, y1, x0, x1 = window
            crop = decode_rle_window(ends, h, window)
            assert crop.flags.c_contiguous and crop.dtype == bool
            assert np.array_equal(crop, full[y0:y1, x0:x1]), window
        n += 1
    assert n > 800
    with pytest.raises(ValueError, match="middle of a number"):
        rle_run_ends("0`")  # '`' = 48 + 0x30: a continuation bit and nothing after it


def test_npy_header_and_serialized_masks_equal_np_save():
    import io
    import zlib

    from steadyseg.curation import build as B

    for shape in [(1, 1), (7, 9), (9, 7), (480, 640), (12345, 3), (3, 1234567)]:
        mask = np.random.default_rng(sum(shape)).random(shape) < 0.5
        buf = io.BytesIO()
        np.save(buf, mask, allow_pickle=False)
        assert B.npy_bool_header(*shape) + mask.tobytes() == buf.getvalue(), shape
        assert zlib.decompress(B.serialize_mask(mask)) == buf.getvalue()
        strided = io.BytesIO()  # a non-contiguous view is stored as its C-ordered copy
        np.save(strided, np.ascontiguousarray(mask[:, ::2]), allow_pickle=False)
        assert zlib.decompress(B.serialize_mask(mask[:, ::2])) == strided.getvalue()
    other = np.arange(6, dtype=np.uint8).reshape(2, 3)  # not a bool crop: numpy's writer
    buf = io.BytesIO()
    np.save(buf, other, allow_pickle=False)
    assert zlib.decompress(B.serialize_mask(other)) == buf.getvalue()


def test_payload_of_real_coco_equals_the_full_image_computation(coco80):
    """The builder's window decoding gives the payload of the full-image path: pycocotools decode of each whole
    mask, crops cut from it, metrics from full-image masks (instance_change_metrics). Refined masks: shifted,
    eroded, unchanged, given as polygons or RLE, empty, or missing (removed)."""
    import math

    import cv2

    from steadyseg.curation import build as B
    from steadyseg.curation.metrics import instance_change_metrics
    from steadyseg.datasets.coco import annotation_to_mask, load_coco_json, mask_to_rle

    data = load_coco_json(coco80 / "annotations" / "instances_val2017.json")
    cats = {c["id"]: c["name"] for c in data["categories"]}
    by_image = B._index_annotations(data)
    for image in data["images"][::4]:
        h, w = image["height"], image["width"]
        anns = by_image.get(image["id"], [])
        refs, full_refined = {}, {}
        for k, ann in enumerate(anns):
            o = annotation_to_mask(ann, h, w)
            r = [np.roll(o, 3, axis=0), cv2.erode(o.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool),
                 o, np.zeros_like(o), None][k % 5]
            if r is None:
                continue  # removed
            full_refined[ann["id"]] = r
            seg = ann["segmentation"] if r is o else mask_to_rle(r)
            refs[ann["id"]] = {**ann, "segmentation": seg, "refine": {"refiner": "test"}}
        p = B._image_payload(image, anns, refs, cats, images_dir="/images", boundary_tolerance=None,
                             change_threshold=0.9)
        gts = {g["coco_id"]: g for g in p["ground_truth"]}
        for ann in anns:
            o = annotation_to_mask(ann, h, w)
            bbox, crop = B.crop_mask(o)
            assert gts[ann["id"]]["bounding_box"] == bbox and np.array_equal(gts[ann["id"]]["mask"], crop)
            assert gts[ann["id"]]["mask_area"] == int(o.sum())
        for r in p["refined"]:
            full = full_refined[r["coco_id"]]
            want = instance_change_metrics(annotation_to_mask(next(a for a in anns if a["id"] == r["coco_id"]), h, w),
                                           full)
            for key in ("iou", "area_ratio", "boundary_f", "centroid_shift"):
                assert r[key] == want[key] or (math.isnan(r[key]) and math.isnan(want[key])), (key, r, want)
            assert r["mask_area"] == want["area_refined"] and r["original_area"] == want["area_original"]
            cropped = B.crop_mask(full)
            if cropped is None:
                assert r["mask"] is None and r["bounding_box"] == [0.0, 0.0, 0.0, 0.0]
            else:
                assert r["bounding_box"] == cropped[0] and np.array_equal(r["mask"], cropped[1])
                assert r["mask"].flags.c_contiguous and r["mask"].dtype == bool
        assert p["n_refined"] == len(refs) and p["n_removed"] == len(anns) - len(refs)
