"""Change metrics with answers computed by hand (no fiftyone, no database)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from steadyseg.curation.metrics import boundary_f_score, davis_tolerance, instance_change_metrics, mask_boundary


def square(h=60, w=80, y0=10, x0=10, size=20):
    m = np.zeros((h, w), dtype=bool)
    m[y0:y0 + size, x0:x0 + size] = True
    return m


def test_shift_by_two_pixels_has_known_numbers():
    a = square()
    b = np.roll(a, 2, axis=1)
    m = instance_change_metrics(a, b, boundary_tolerance=0)
    assert m["iou"] == pytest.approx(360 / 440)  # 20x18 overlap, 20x22 union
    assert m["area_ratio"] == 1.0
    assert m["centroid_shift"] == pytest.approx(2.0)
    # 80 boundary pixels each (DAVIS seg2bmap: the row above and the column left of the square, its last row and
    # last column); the row above and the last row overlap on 19 columns each -> P = R = 38/80
    assert m["boundary_f"] == pytest.approx(38 / 80)
    assert instance_change_metrics(a, b, boundary_tolerance=2)["boundary_f"] == 1.0


def test_identical_empty_and_vanished():
    a = square()
    same = instance_change_metrics(a, a.copy())
    assert (same["iou"], same["area_ratio"], same["boundary_f"], same["centroid_shift"]) == (1.0, 1.0, 1.0, 0.0)
    gone = instance_change_metrics(a, np.zeros_like(a))
    assert gone["iou"] == 0.0 and gone["area_ratio"] == 0.0 and gone["boundary_f"] == 0.0
    assert math.isnan(gone["centroid_shift"])
    both = instance_change_metrics(np.zeros_like(a), np.zeros_like(a))
    assert both["iou"] == 1.0 and both["area_ratio"] == 1.0
    assert instance_change_metrics(np.zeros_like(a), a)["area_ratio"] == math.inf


def test_erosion_area_ratio_and_davis_tolerance():
    a, b = square(size=20), square(y0=15, x0=15, size=10)
    m = instance_change_metrics(a, b)
    assert m["area_ratio"] == pytest.approx(0.25) and m["iou"] == pytest.approx(0.25)
    assert m["centroid_shift"] == pytest.approx(0.0)
    assert davis_tolerance(480, 854) == math.ceil(0.008 * math.hypot(480, 854)) == 8


def _full_image_boundary_f(p, r, tol):
    """Reference without cropping: brute-force distances between boundary pixels."""
    bp, br = np.argwhere(mask_boundary(p)), np.argwhere(mask_boundary(r))
    if len(bp) == 0 and len(br) == 0:
        return 1.0
    if len(bp) == 0 or len(br) == 0:
        return 0.0
    d = np.sqrt(((bp[:, None, :] - br[None, :, :]) ** 2).sum(-1))
    prec, rec = (d.min(1) <= tol + 1e-9).mean(), (d.min(0) <= tol + 1e-9).mean()
    return 0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cropped_metrics_equal_full_image_reference(seed):
    """Random blobs touching the image border: crop-based numbers equal full-image ones."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = 40, 50
    a = np.zeros((h, w), np.uint8)
    b = np.zeros((h, w), np.uint8)
    cv2.circle(a, (int(rng.integers(0, 12)), int(rng.integers(10, 30))), 9, 1, -1)
    cv2.circle(b, (int(rng.integers(0, 12)), int(rng.integers(10, 30))), 8, 1, -1)
    a, b = a.astype(bool), b.astype(bool)
    tol = 1  # with radius 1 the ellipse kernel is the 3x3 cross: distance <= 1
    m = instance_change_metrics(a, b, boundary_tolerance=tol)
    assert m["boundary_f"] == pytest.approx(boundary_f_score(b, a, tolerance=tol))
    assert m["boundary_f"] == pytest.approx(_full_image_boundary_f(b, a, tol))
    inter, union = (a & b).sum(), (a | b).sum()
    assert m["iou"] == pytest.approx(inter / union)


def test_shape_errors_name_the_problem():
    with pytest.raises(ValueError, match="shapes differ"):
        instance_change_metrics(np.zeros((4, 5), bool), np.zeros((5, 4), bool))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        instance_change_metrics(np.zeros((4, 5, 1), bool), np.zeros((4, 5, 1), bool))


def _real_coco_pairs(coco80, every: int = 3):
    """(original, refined, tolerance) full-image masks from the real COCO sample: every ``every``-th annotation
    (plus all that touch the image border) with five kinds of refinement: unchanged, shifted 2 px, eroded, dilated
    by the boundary tolerance, and vanished."""
    import cv2

    from steadyseg.datasets.coco import annotation_to_mask, load_coco_json

    data = load_coco_json(coco80 / "annotations" / "instances_val2017.json")
    images = {im["id"]: im for im in data["images"]}
    kernel = np.ones((3, 3), np.uint8)
    for k, ann in enumerate(data["annotations"]):
        im = images[ann["image_id"]]
        h, w = im["height"], im["width"]
        o = annotation_to_mask(ann, h, w)
        x, y, bw, bh = ann["bbox"]
        if k % every and not (x < 1 or y < 1 or x + bw > w - 1 or y + bh > h - 1):
            continue
        tol = davis_tolerance(h, w)
        variant = k % 5
        if variant == 0:
            r = o.copy()
        elif variant == 1:
            r = np.roll(o, 2, axis=1)
        elif variant == 2:
            r = cv2.erode(o.astype(np.uint8), kernel).astype(bool)
        elif variant == 3:
            r = cv2.dilate(o.astype(np.uint8), np.ones((2 * tol + 1, 2 * tol + 1), np.uint8)).astype(bool)
        else:
            r = np.zeros_like(o)
        yield o, r, tol


def _crop_reference(o, r, tol):
    """The metrics as computed before window decoding: the crop of both boxes grown by tol + 1 px, cv2.moments
    centroids, accuracy.boundary_f."""
    import cv2

    from steadyseg.accuracy import boundary_f
    from steadyseg.curation.metrics import mask_bbox

    boxes = [b for b in (mask_bbox(o), mask_bbox(r)) if b is not None]
    h, w = o.shape
    y0, y1 = max(min(b[0] for b in boxes) - tol - 1, 0), min(max(b[1] for b in boxes) + tol + 1, h)
    x0, x1 = max(min(b[2] for b in boxes) - tol - 1, 0), min(max(b[3] for b in boxes) + tol + 1, w)
    oc, rc = o[y0:y1, x0:x1], r[y0:y1, x0:x1]

    def centroid(m):
        mo = cv2.moments(m.astype(np.uint8), binaryImage=True)
        return None if mo["m00"] == 0 else (mo["m10"] / mo["m00"], mo["m01"] / mo["m00"])

    a_o, a_r, inter = int(oc.sum()), int(rc.sum()), int((oc & rc).sum())
    co, cr = centroid(oc), centroid(rc)
    return {"iou": inter / (a_o + a_r - inter), "area_ratio": a_r / a_o if a_o else math.inf,
            "boundary_f": boundary_f(rc, oc, bound_th=tol, void=None),
            "centroid_shift": math.hypot(co[0] - cr[0], co[1] - cr[1]) if co and cr else math.nan,
            "area_original": a_o, "area_refined": a_r}


def _exact_centroid_shift(o, r):
    """Centroid distance of two full-image masks from exact rational centroids, each component rounded once."""
    from fractions import Fraction

    ys, xs = np.nonzero(o)
    ys2, xs2 = np.nonzero(r)
    if not len(ys) or not len(ys2):
        return math.nan
    dx = Fraction(int(xs.sum()), len(xs)) - Fraction(int(xs2.sum()), len(xs2))
    dy = Fraction(int(ys.sum()), len(ys)) - Fraction(int(ys2.sum()), len(ys2))
    return math.hypot(float(dx), float(dy))


def _same(a, b):
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def test_window_metrics_equal_the_crop_and_full_image_references_on_real_coco(coco80):
    """On real COCO masks the window metrics (numpy moments, cached disk, fast path for unchanged masks) equal the
    former cv2.moments / accuracy.boundary_f computation bit for bit, and the full-image numbers (no crop at all)."""
    from steadyseg.accuracy import boundary_f
    from steadyseg.curation.metrics import mask_bbox, metric_window, window_change_metrics

    n = 0
    for o, r, tol in _real_coco_pairs(coco80):
        got = instance_change_metrics(o, r)  # default tolerance = the DAVIS one
        ref = _crop_reference(o, r, tol)
        assert all(_same(got[k], ref[k]) for k in ref if k != "centroid_shift"), (got, ref)
        # the former crop-coordinate centroids were each rounded: equal up to those roundings
        assert _same(got["centroid_shift"], ref["centroid_shift"]) or abs(
            got["centroid_shift"] - ref["centroid_shift"]) < 1e-9
        assert _same(got["centroid_shift"], _exact_centroid_shift(o, r))
        y0, y1, x0, x1 = metric_window(mask_bbox(o), mask_bbox(r), *o.shape)
        direct = window_change_metrics(o[y0:y1, x0:x1], r[y0:y1, x0:x1], tolerance=tol)
        assert direct.keys() == got.keys() and all(_same(direct[k], got[k]) for k in got)
        if n % 4 == 0:  # the full image, no window (slow: a subset)
            assert got["boundary_f"] == boundary_f(r, o, bound_th=tol, void=None)
        n += 1
    assert n > 250


def test_window_metrics_of_empty_and_identical_crops():
    from steadyseg.curation.metrics import empty_pair_metrics, window_change_metrics

    z = np.zeros((5, 6), bool)
    got = window_change_metrics(z, z.copy(), tolerance=2)
    assert got.keys() == empty_pair_metrics().keys() and math.isnan(got["centroid_shift"])
    assert {k: v for k, v in got.items() if k != "centroid_shift"} == {
        k: v for k, v in empty_pair_metrics().items() if k != "centroid_shift"}
    full = np.ones((5, 6), bool)  # fills the window: no boundary pixel at all
    assert window_change_metrics(full, full.copy(), tolerance=0) == {
        "iou": 1.0, "area_ratio": 1.0, "boundary_f": 1.0, "centroid_shift": 0.0, "area_original": 30,
        "area_refined": 30}
    with pytest.raises(ValueError, match="boundary_tolerance must be >= 0"):
        instance_change_metrics(full, full, boundary_tolerance=-1)
