"""The curation workflow of docs/curate.md on the real 80-image COCO sample, through the command line:
refine-coco (guided) -> curate build -> curate tag -> curate export -> pycocotools reads the curated file."""

from __future__ import annotations

import json

import numpy as np

from steadyseg.cli import main


def test_refine_build_tag_export_coco80(fo_env, coco80, dataset_name, tmp_path, capsys):
    from steadyseg.datasets.coco import annotation_to_mask, coco_api, load_coco_json

    ann_file = coco80 / "annotations" / "instances_val2017.json"
    images = coco80 / "val2017"
    assert main(["refine-coco", "--annotations", str(ann_file), "--images", str(images), "--out",
                 str(tmp_path / "refined"), "--refiner", "guided", "--workers", "2", "--no-progress"]) == 0
    refined = tmp_path / "refined" / "instances.json"
    assert main(["curate", "build", "--original", str(ann_file), "--refined", str(refined), "--images", str(images),
                 "--name", dataset_name, "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "80 samples" in out and "changed_masks" in out

    ds = fo_env.load_dataset(dataset_name)
    original = load_coco_json(ann_file)
    assert len(ds) == 80 and ds.count("ground_truth.detections") == len(original["annotations"]) == 815
    ious = [v for v in ds.values("refined.detections.iou", unwind=True) if v is not None]
    assert len(ious) > 700 and 0.5 < float(np.mean(ious)) <= 1.0
    changed = ds.load_saved_view("changed_masks")
    worst = changed.values("refined.detections.iou")
    assert all(min(w) < 0.9 for w in worst) and [min(w) for w in worst] == sorted(min(w) for w in worst)

    # accept the three most changed instances, then export
    ids = [c for c, _ in sorted(zip(changed.values("refined.detections.coco_id", unwind=True),
                                    changed.values("refined.detections.iou", unwind=True)), key=lambda t: t[1])[:3]]
    assert main(["curate", "tag", dataset_name, "accept", *map(str, ids)]) == 0
    curated = tmp_path / "curated" / "instances.json"
    assert main(["curate", "export", dataset_name, "--out", str(curated)]) == 0
    api = coco_api(curated)
    assert sorted(api.getAnnIds()) == sorted(a["id"] for a in original["annotations"])
    assert sorted(api.getImgIds()) == sorted(im["id"] for im in original["images"])
    ref_by_id = {a["id"]: a for a in load_coco_json(refined)["annotations"]}
    orig_by_id = {a["id"]: a for a in original["annotations"]}
    imgs = {im["id"]: im for im in original["images"]}
    for ann_id in ids + [a["id"] for a in original["annotations"][:40]]:
        ann = api.loadAnns([ann_id])[0]
        im = imgs[ann["image_id"]]
        src = ref_by_id[ann_id] if ann_id in ids else orig_by_id[ann_id]
        want = annotation_to_mask(src, im["height"], im["width"])
        assert np.array_equal(api.annToMask(ann).astype(bool), want), ann_id
    decisions = json.loads((tmp_path / "curated" / "instances.decisions.json").read_text())
    assert decisions["summary"]["from_refined"] == 3
