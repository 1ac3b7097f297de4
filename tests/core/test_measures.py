"""The inconsistency / smoothness measures: closed-form cases, streaming, synthetic exact flow, real DAVIS data."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

from steadyseg.measures import (InconsistencyResult, boundary_count, boundary_map, direction_inconsistency,
                                flicker_map, inconsistency, median_boundary, opencv_threads, pair_inconsistency,
                                smoothness)

H, W = 40, 40
X0, Y0 = 10, 15


def _square(x0, y0=Y0, size=10, h=H, w=W):
    m = np.zeros((h, w), np.uint8)
    m[y0:y0 + size, x0:x0 + size] = 1
    return m


class PanFlows:
    """Whole-frame translation by +1 px in x per frame: F[p→q] = (q − p, 0) everywhere."""

    def __init__(self, h=H, w=W):
        self.h, self.w = h, w
        self.calls = 0

    def __call__(self, p, q):
        self.calls += 1
        f = np.zeros((self.h, self.w, 2), np.float32)
        f[..., 0] = q - p
        return f


# ------------------------------------------------------------------------------------------------------ boundary
@pytest.mark.parametrize("a,b", [(10, 10), (3, 7), (1, 1), (1, 5)])
def test_boundary_count_rectangle_closed_form(a, b):
    m = np.zeros((30, 30), np.int32)
    m[5:5 + a, 8:8 + b] = 3
    inner = 2 * a + 2 * b - 4 if a > 1 and b > 1 else a * b
    outer = 2 * a + 2 * b
    assert boundary_count(m) == inner + outer


def test_boundary_count_conventions():
    assert boundary_count(np.zeros((8, 8), np.uint8)) == 0
    assert boundary_count(np.full((8, 8), 4, np.uint8)) == 0
    # touching the image border: the border is not an edge (square in the corner: 2·10−1 inner + 2·10 outer)
    m = np.zeros((20, 20), np.uint8)
    m[:10, :10] = 1
    assert boundary_count(m) == 19 + 20
    # two labels side by side: the shared edge counts on both sides
    m = np.zeros((6, 8), np.uint8)
    m[:, 4:] = 2
    assert boundary_count(m) == 12
    # void: a pixel beside void only is not a boundary pixel and void pixels never are
    m = np.zeros((9, 9), np.uint8)
    m[4, 4] = 255
    assert boundary_count(m) == 0
    # the moving-square frame with a void column to its left (used below): 76 − 8 − 10 = 58
    m = _square(X0 + 2)
    m[Y0:Y0 + 10, X0 + 1] = 255
    assert boundary_count(m) == 58
    assert boundary_map(m)[Y0, X0 + 2] and not boundary_map(m)[Y0 + 5, X0 + 2]
    assert median_boundary([_square(3), _square(5, size=2), _square(5, size=4)]) == 28  # 76, 12, 28


# ------------------------------------------------------------------------------------------------- inconsistency
def test_identical_masks_zero():
    rng = np.random.default_rng(0)
    m = (rng.random((H, W)) > 0.5).astype(np.uint8)
    zero = lambda p, q: np.zeros((H, W, 2), np.float32)  # noqa: E731
    r = inconsistency([m] * 6, zero, window=3)
    assert isinstance(r, InconsistencyResult)
    assert r.e_raw == 0.0 and r.e_cons == 0.0
    assert len(r.per_pair) == 3 + 3 + 3 + 2 + 1
    assert r.per_frame.shape == (6,) and np.all(r.per_frame == 0)


def test_moving_square_exact_flow():
    flows = PanFlows()
    consistent = [_square(X0 + t) for t in range(3)]
    r = inconsistency(consistent, flows, window=1)
    assert r.e_raw == 0.0 and r.e_cons == 0.0 and r.normalizer == 76

    # frame 1 jittered one pixel to the right. e(0→1): the valid pixels of frame 1 are the 40·39 whose source
    # x − 1 is inside; warped O_0 is the square at X0+1, O_1 at X0+2: columns X0+1 and X0+11 differ, 20 pixels.
    # Every direction of pairs (0,1) and (1,2) is the same: e = 20/1560, E_pair = 40/1560 = 1/39.
    jittered = [_square(X0), _square(X0 + 2), _square(X0 + 2)]
    r = inconsistency(jittered, flows, window=1)
    assert r.per_pair[(0, 1)] == pytest.approx(40 / 1560)
    assert r.per_pair[(1, 2)] == pytest.approx(40 / 1560)
    assert r.e_raw == pytest.approx(1 / 39)
    assert r.e_cons == pytest.approx(1 / 39 * H * W / 76)
    np.testing.assert_allclose(r.per_frame, [1 / 39] * 3)
    # with K = 2 the pair (0, 2) is consistent (0/1520 in both directions)
    r2 = inconsistency(jittered, flows, window=2)
    assert r2.per_pair[(0, 2)] == 0.0
    assert r2.e_raw == pytest.approx(2 / (3 * 39))
    np.testing.assert_allclose(r2.per_frame, [1 / 78, 1 / 39, 1 / 78])
    # the GT-style normaliser: a fixed number, or a reference stack (its median boundary)
    assert inconsistency(jittered, flows, window=1, normalizer=100).e_cons == pytest.approx(1 / 39 * 1600 / 100)
    ref = [_square(X0, size=4)] * 3  # boundary 12 + 16 = 28
    assert inconsistency(jittered, flows, window=1, normalizer=ref).e_cons == pytest.approx(1 / 39 * 1600 / 28)


def test_void_is_excluded():
    # a void column left of the jittered square: in e(0→1) it removes 10 of the 20 differing pixels (and 10 valid
    # pixels); in e(1→0) the 10 pixels warped from it are removed: each direction 10/1550.
    flows = PanFlows()
    m1 = _square(X0 + 2)
    m1[Y0:Y0 + 10, X0 + 1] = 255
    r = inconsistency([_square(X0), m1], flows, window=1)
    assert r.per_pair[(0, 1)] == pytest.approx(20 / 1550)


def test_empty_directions_and_nan_normaliser():
    # flow that sends everything out of the frame: no valid pixel in either direction → pair skipped, NaN
    far = lambda p, q: np.full((H, W, 2), 100.0 * (q - p), np.float32)  # noqa: E731
    with pytest.warns(RuntimeWarning, match="no frame pair"):
        r = inconsistency([_square(X0), _square(X0)], far, window=1)
    assert np.isnan(r.e_raw) and np.isnan(r.per_pair[(0, 1)]) and r.skipped_pairs == 1
    assert r.skipped_directions == 2
    # empty masks: E_raw 0 but no boundary → E_cons NaN with a warning
    empty = [np.zeros((H, W), np.uint8)] * 3
    with pytest.warns(RuntimeWarning, match="median boundary"):
        r = inconsistency(empty, PanFlows(), window=1)
    assert r.e_raw == 0.0 and np.isnan(r.e_cons)


def test_streaming_bounded_and_equal_to_list():
    flows = PanFlows()
    rng = np.random.default_rng(4)
    masks = [_square(X0 + t + int(rng.integers(0, 2))) for t in range(12)]
    seen = []

    def gen():
        for i, m in enumerate(masks):
            seen.append(i)
            yield m

    a = inconsistency(masks, flows, window=3)
    b = inconsistency(gen(), flows, window=3, progress=True)
    assert a.e_raw == b.e_raw and a.per_pair == b.per_pair
    c = inconsistency(masks, flows, window=3, threads=2)   # threaded directions: the same numbers
    assert c.per_pair == a.per_pair and np.array_equal(c.per_frame, a.per_frame)
    flows.calls -= 2 * (3 * 12 - 6)
    assert seen == list(range(12))               # each mask read once, in order
    assert flows.calls == 2 * 2 * (3 * 12 - 6)   # two flows per unordered pair, both runs
    d = a.to_dict()
    assert d["per_pair"]["0-1"] == a.per_pair[(0, 1)] and len(d["per_frame"]) == 12


def test_shape_errors():
    flows = PanFlows()
    with pytest.raises(ValueError, match="mask 1 has shape"):
        inconsistency([_square(X0), np.zeros((5, 5), np.uint8)], flows)
    with pytest.raises(ValueError, match="integer labels"):
        inconsistency([np.zeros((H, W), np.float32)] * 2, flows)
    with pytest.raises(ValueError, match="window"):
        inconsistency([_square(X0)] * 2, flows, window=0)
    with pytest.raises(ValueError, match="flow"):
        inconsistency([_square(X0)] * 2, lambda p, q: np.zeros((H, W, 3), np.float32))


def test_synthetic_video_exact_flow():
    from steadyseg.datasets.synthetic import make_moving_shapes_video

    v = make_moving_shapes_video(num_frames=8, height=64, width=80, seed=0, integer_motion=True, flicker_px=2)
    exact = inconsistency(list(v.labels), v.flows, window=3)
    flick = inconsistency(list(v.flicker_labels), v.flows, window=3)
    assert exact.e_raw == 0.0
    assert flick.e_raw > 0.01
    fm = flicker_map(v.flicker_labels, v.flows, 4, window=3)
    assert fm.shape == (64, 80) and fm.dtype == np.float32 and 0 <= fm.min() and fm.max() <= 1
    assert fm.max() > 0 and np.all(flicker_map(v.labels, v.flows, 4) == 0)
    # flicker lives near the object boundaries (jitter ≤ 2 px per axis + 1 px radius in each of the two frames)
    near = cv2.dilate(boundary_map(v.flicker_labels[4]).astype(np.uint8), np.ones((17, 17), np.uint8)).astype(bool)
    assert fm[~near].sum() == 0


# ---------------------------------------------------------------------------------------------------- smoothness
def test_smoothness_closed_form():
    # static square, frame 2 of 5 shifted right by one pixel. σ = 1: at frame 2, column X0 has class-1 weight
    # 2(e^-1/2 + e^-2) = 1.48 > 1 (its own frame) → flips; column X0+10 likewise → 20 changed pixels in frame 2,
    # none elsewhere: mean 4 per frame, median boundary 76.
    masks = [_square(X0)] * 5
    masks[2] = _square(X0 + 1)
    assert smoothness(masks, sigma=1.0) == pytest.approx(4 / 76)
    onehot = np.stack([np.stack([1 - m, m]).astype(np.float32) for m in masks])  # (T, C, H, W)
    assert smoothness(onehot, sigma=1.0) == pytest.approx(4 / 76)
    assert smoothness(iter(masks), sigma=1.0, normalizer=38) == pytest.approx(4 / 38)
    assert smoothness([_square(X0)] * 4) == 0.0
    assert smoothness([_square(X0)]) == 0.0
    with pytest.raises(ValueError, match="sigma"):
        smoothness(masks, sigma=0)
    with pytest.warns(RuntimeWarning):
        assert np.isnan(smoothness([np.zeros((H, W), np.uint8)] * 3))


def test_smoothness_void_and_multiclass():
    masks = [_square(X0)] * 5
    masks[2] = _square(X0 + 1) * 2       # label 2 in frame 2: its pixels flip to 0 or 1 under smoothing
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = smoothness(masks)
    # frame 2: its 100 label-2 pixels change, and column X0 (background there) flips to 1 as in the binary case
    assert s == pytest.approx(110 / 5 / 76)
    voided = [m.copy() for m in masks]
    voided[2][:] = 255                              # a fully void frame counts nothing and adds to no class
    assert smoothness(voided, normalizer=76) == 0.0


def test_direction_and_pair_take_the_flows_by_keyword_only():
    pan = PanFlows()
    a, b = _square(X0), _square(X0 + 1)          # the square moves with the pan: perfectly consistent
    with pytest.raises(TypeError):
        direction_inconsistency(a, b, pan(1, 0), pan(0, 1))  # the old positional order is refused
    e, n = direction_inconsistency(a, b, flow_p_to_q=pan(0, 1), flow_q_to_p=pan(1, 0))
    assert e == 0.0 and n > 0
    jittered = _square(X0 + 3)                    # 2 px off the panned position: 20 of the valid pixels differ
    e_pq, _ = direction_inconsistency(a, jittered, flow_p_to_q=pan(0, 1), flow_q_to_p=pan(1, 0))
    e_qp, _ = direction_inconsistency(jittered, a, flow_p_to_q=pan(1, 0), flow_q_to_p=pan(0, 1))
    e_pair, dirs = pair_inconsistency(a, jittered, flow_p_to_q=pan(0, 1), flow_q_to_p=pan(1, 0))
    assert dirs == 2 and e_pair == pytest.approx(e_pq + e_qp) and e_pq > 0


def test_opencv_threads_restores_the_previous_setting():
    before = cv2.getNumThreads()
    with opencv_threads(1):
        assert cv2.getNumThreads() == 1
    assert cv2.getNumThreads() == before
    with opencv_threads(None):
        assert cv2.getNumThreads() == before
    masks = [_square(X0 + t) for t in range(4)]
    serial = inconsistency(masks, PanFlows(), window=2)
    threaded = inconsistency(masks, PanFlows(), window=2, threads=2, cv_threads=1)
    assert threaded.per_pair == serial.per_pair and cv2.getNumThreads() == before


# ------------------------------------------------------------------------------------------------------ real data
def _half(img, interp):
    return cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=interp)


from steadyseg.datasets.davis import DAVIS2016_SEQUENCES as SEQUENCES  # noqa: E402 - one list for all


def test_osvos_less_consistent_than_ground_truth(davis2016, davis_osvos):
    """On the first 15 frames (half resolution, DIS ultrafast) OSVOS flickers more than the ground truth."""
    from steadyseg.datasets.flow import compute_flow
    from steadyseg.datasets.masks import open_masks
    from steadyseg.datasets.video import open_video

    n = 15
    wins = []
    for seq in SEQUENCES:
        frames = open_video(davis2016 / "JPEGImages" / "480p" / seq, max_frames=n)
        gt = open_masks(davis2016 / "Annotations" / "480p" / seq, binary=True)
        pred = open_masks(davis_osvos / seq, binary=True)
        small = [_half(frames[i], cv2.INTER_AREA) for i in range(n)]
        cache: dict = {}

        def flows(p, q):
            if (p, q) not in cache:
                cache[(p, q)] = compute_flow(small[p], small[q], backend="dis", preset="ultrafast")
            return cache[(p, q)]

        gt_small = [_half(gt[i].astype(np.uint8), cv2.INTER_NEAREST) for i in range(n)]
        pred_small = [_half(pred[i].astype(np.uint8), cv2.INTER_NEAREST) for i in range(n)]
        r_gt = inconsistency(gt_small, flows, window=3)
        r_pred = inconsistency(pred_small, flows, window=3, normalizer=gt_small)
        assert r_gt.e_raw > 0                     # flow errors: the ground truth is never perfectly consistent
        assert r_pred.normalizer == r_gt.normalizer
        wins.append(r_pred.e_raw > r_gt.e_raw)
    assert sum(wins) >= 6, f"OSVOS more inconsistent than GT on only {sum(wins)} of 8 sequences"


def test_threaded_pipeline_equals_serial_and_reads_flows_in_order():
    """threads > 1 overlaps flow requests with the previous frame's directions: same numbers, same request order."""
    rng = np.random.default_rng(3)
    h, w, n = 36, 44, 9
    masks = [cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 3) > 0.5 for _ in range(n)]
    masks = [m.astype(np.uint8) for m in masks]
    masks[4][:5, :5] = 255  # some void
    flows = {(p, q): cv2.GaussianBlur(rng.normal(0, 2, (h, w, 2)).astype(np.float32), (0, 0), 4)
             for p in range(n) for q in range(n) if p != q}

    class Recorder:
        def __init__(self):
            self.calls, self.thread = [], []

        def __call__(self, p, q):
            import threading

            self.calls.append((p, q))
            self.thread.append(threading.get_ident())
            return flows[(p, q)].copy()

    serial, threaded = Recorder(), Recorder()
    r1 = inconsistency(masks, serial, window=3, threads=1)
    r2 = inconsistency(masks, threaded, window=3, threads=2)
    assert r1.e_raw == r2.e_raw and r1.to_dict() == r2.to_dict() and np.isfinite(r1.e_raw)
    assert serial.calls == threaded.calls
    import threading

    assert set(threaded.thread) == {threading.get_ident()}  # the flow callable is only used from this thread


# ------------------------------------------------------------------------------ cached validity masks, many videos
def _random_case(seed=5, h=70, w=90, n=8, classes=3):
    """Blobby multi-class label maps with some void, and smooth random flows between every two frames."""
    rng = np.random.default_rng(seed)
    masks = []
    for _ in range(n):
        noise = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 4)
        lab = np.digitize(noise, np.quantile(noise, np.linspace(0, 1, classes + 1)[1:-1])).astype(np.uint8)
        lab[rng.random((h, w)) < 0.01] = 255
        masks.append(lab)
    flows = {(p, q): cv2.GaussianBlur(rng.normal(0, 3, (h, w, 2)).astype(np.float32), (0, 0), 5) * (q - p)
             for p in range(n) for q in range(n) if p != q}
    return masks, flows


class DictValidCache:
    """A validity-mask store with the FlowProvider protocol, counting gets, hits and puts."""

    def __init__(self):
        self.store, self.gets, self.hits, self.puts = {}, 0, 0, 0

    def get_valid(self, p, q, *, check_motion_boundary, thresholds):
        self.gets += 1
        got = self.store.get((p, q, check_motion_boundary, thresholds))
        self.hits += got is not None
        return None if got is None else np.unpackbits(got[0], count=got[1][0] * got[1][1]).reshape(got[1])

    def put_valid(self, p, q, mask, *, check_motion_boundary, thresholds):
        self.puts += 1
        self.store[(p, q, check_motion_boundary, thresholds)] = (np.packbits(mask.reshape(-1) != 0), mask.shape)


class DictMapCache(DictValidCache):
    """DictValidCache that also keeps nearest sampling maps (the FlowProvider protocol), counting them."""

    def __init__(self):
        super().__init__()
        self.maps, self.map_hits, self.map_puts = {}, 0, 0

    def get_nearest_map(self, p, q):
        got = self.maps.get((p, q))
        self.map_hits += got is not None
        return None if got is None else got.copy()

    def put_nearest_map(self, p, q, nmap):
        self.map_puts += 1
        self.maps[(p, q)] = nmap.copy()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("check_mb", [True, False])
def test_direction_counts_valid_equals_direction_counts(dtype, check_mb):
    """Counting with M[p→q] given (valid_mask_u8, bit-packed and back) gives direction_counts' numbers exactly."""
    from steadyseg.warp import (WarpWorkspace, direction_counts, direction_counts_valid, nearest_sampling_map,
                                valid_mask_u8)

    masks, flows = _random_case(h=150, w=60)  # 150 rows: several 64-row bands and a short one
    ws = WarpWorkspace(150, 60)
    for p, q in [(0, 1), (1, 0), (2, 5), (6, 3)]:
        mp, mq = masks[p].astype(dtype), masks[q].astype(dtype)
        m = valid_mask_u8(flows[(q, p)], flows[(p, q)], check_motion_boundary=check_mb, workspace=ws)
        assert set(np.unique(m)) <= {0, 255}
        packed = np.unpackbits(np.packbits(m.reshape(-1) != 0), count=m.size).reshape(m.shape)
        (got,), _ = direction_counts_valid([mp], [mq], flows[(q, p)], packed, workspace=ws)
        want = direction_counts(mp, mq, flows[(q, p)], flows[(p, q)], check_motion_boundary=check_mb)
        assert got == want and want[1] > 0
        # without void in either map the void tests may be skipped (void_free): same counts
        fp, fq = np.where(mp == 255, 0, mp).astype(dtype), np.where(mq == 255, 0, mq).astype(dtype)
        want = direction_counts(fp, fq, flows[(q, p)], flows[(p, q)], check_motion_boundary=check_mb)
        for free in (False, True):
            (got,), _ = direction_counts_valid([fp], [fq], flows[(q, p)], m, workspace=ws, void_free=[free])
            assert got == want
        # the int16 nearest sampling map instead of the flow: the same samples, so the same counts and histograms
        nmap = nearest_sampling_map(flows[(q, p)], workspace=ws)
        assert nmap.dtype == np.int16 and nmap.shape == (150, 60, 2)
        want = direction_counts_valid([mp, fp], [mq, fq], flows[(q, p)], m, workspace=ws, histograms=(0, 1))
        got = direction_counts_valid([mp, fp], [mq, fq], None, m, workspace=ws, histograms=(0, 1), sampling_map=nmap)
        assert got[0] == want[0] and all(np.array_equal(got[1][i], want[1][i]) for i in (0, 1))
    with pytest.raises(ValueError, match="exactly one"):
        direction_counts_valid([mp], [mq], flows[(1, 0)], m, sampling_map=nmap)
    with pytest.raises(ValueError, match="int16"):
        direction_counts_valid([mp], [mq], None, m, sampling_map=nmap.astype(np.int32))


def test_nearest_sampling_map_rounds_like_remap():
    """The stored int16 map picks exactly the pixels that cv2.remap picks with the float map x + F(x): at half-pixel
    ties, negative and far-out coordinates (which must stay outside the frame, not wrap)."""
    from steadyseg.warp import nearest_sampling_map

    h, w = 24, 24
    src = np.arange(h * w, dtype=np.uint16).reshape(h, w)
    grid = np.dstack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)))
    for shift in (0.0, 0.5, -0.5, 1.5, 2.49, -2.51, 1e6, -1e6, 40000.0):
        flow = np.full((h, w, 2), shift, np.float32)
        flow[..., 1] *= -1
        want = cv2.remap(src, cv2.add(flow, grid), None, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=65535)
        got = cv2.remap(src, nearest_sampling_map(flow), None, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                        borderValue=65535)
        assert np.array_equal(got, want), shift
    with pytest.raises(ValueError, match="int16"):
        nearest_sampling_map(np.zeros((2, 40000, 2), np.float32))


@pytest.mark.parametrize("threads", [1, 2])
def test_valid_cache_and_several_videos_equal_separate_runs(threads):
    """inconsistency with a validity-mask cache (filled, then read) and inconsistency_many over several mask videos
    give exactly the numbers of the plain per-pair computation; in-pass TC equals temporal_consistency_tc."""
    from steadyseg.consistency_scores import temporal_consistency_tc
    from steadyseg.measures import inconsistency_many

    masks, flows = _random_case()
    other = [np.where(m == 1, 2, np.where(m == 2, 1, m)).astype(np.uint8) for m in masks]  # classes swapped
    other[3] = np.roll(other[3], 4, axis=1)  # and one frame shifted: flickers
    flow = lambda p, q: flows[(p, q)].copy()  # noqa: E731
    window = 3
    # reference: the per-pair functions (direction_counts with the flows, no cache)
    ref = {(p, q): pair_inconsistency(masks[p], masks[q], flow_p_to_q=flows[(p, q)], flow_q_to_p=flows[(q, p)])[0]
           for q in range(len(masks)) for p in range(max(0, q - window), q)}
    plain = inconsistency(masks, flow, window=window, threads=threads)
    assert plain.per_pair == ref and plain.e_raw == float(np.mean(list(ref.values())))
    cache = DictValidCache()
    cold = inconsistency(masks, flow, window=window, threads=threads, valid_cache=cache)
    assert cache.puts == 2 * len(ref) and cache.hits == 0
    warm = inconsistency(masks, flow, window=window, threads=threads, valid_cache=cache)
    assert cache.hits == 2 * len(ref) and cache.puts == 2 * len(ref)
    assert cold.to_dict() == plain.to_dict() == warm.to_dict()

    norm = median_boundary(masks)
    many = inconsistency_many([masks, other, masks], flow, window=window, normalizers=[norm, norm, None],
                              threads=threads, valid_cache=cache, tc=[True, True, False])
    assert cache.puts == 2 * len(ref)  # the masks were all cached: none computed again
    assert many[0].to_dict() == inconsistency(masks, flow, window=window, normalizer=norm).to_dict()
    assert many[1].to_dict() == inconsistency(other, flow, window=window, normalizer=norm).to_dict()
    assert many[2].to_dict() == plain.to_dict() and many[2].tc is None
    for res, vid in ((many[0], masks), (many[1], other)):
        assert res.tc == temporal_consistency_tc(vid, flow) and 0 < res.tc < 1
    # uint16 labels (the numpy histograms), void kept
    wide = [np.where(m == 255, 255, m.astype(np.uint16) * 300 % 1000).astype(np.uint16) for m in masks]
    (r16,) = inconsistency_many([wide], flow, window=window, threads=threads, valid_cache=cache, tc=True)
    assert r16.tc == temporal_consistency_tc(wide, flow) and r16.per_pair == plain.per_pair
    # with sampling maps cached beside M, a warm pass reads no flow at all and gives the same numbers
    mcache, calls = DictMapCache(), []

    def counted_flow(p, q):
        calls.append((p, q))
        return flows[(p, q)].copy()

    cold = inconsistency_many([masks, wide], counted_flow, window=window, threads=threads, valid_cache=mcache,
                              tc=True)
    assert mcache.map_puts == 2 * len(ref) and len(calls) == 2 * len(ref)
    warm = inconsistency_many([masks, wide], counted_flow, window=window, threads=threads, valid_cache=mcache,
                              tc=True)
    assert len(calls) == 2 * len(ref) and mcache.map_hits == 2 * len(ref)  # no flow read
    for got in (cold, warm):
        assert got[0].to_dict() == plain.to_dict() and got[0].tc == many[0].tc
        assert got[1].per_pair == plain.per_pair and got[1].tc == r16.tc
    # a void that the labels' dtype cannot hold takes the general path, which needs the flows even when warm
    n_calls = len(calls)
    (odd,) = inconsistency_many([masks], counted_flow, window=window, threads=threads, valid_cache=mcache, void=1000)
    assert len(calls) == n_calls + 2 * len(ref)
    assert odd.per_pair == inconsistency(masks, flow, window=window, void=1000).per_pair
    with pytest.raises(ValueError, match="differ in length"):
        inconsistency_many([masks, masks[:-1]], flow, window=1)
    with pytest.raises(ValueError, match="check_motion_boundary"):
        inconsistency_many([masks], flow, tc=True, check_motion_boundary=False)


def _smoothness_reference(masks, sigma, void=255):
    """The full-frame E_smooth changed-pixel counts (the definition, no shortcut)."""
    from steadyseg.kernels import gaussian_kernel

    weights = gaussian_kernel(float(sigma), normalize=True)
    r = (len(weights) - 1) // 2
    out = []
    for t, own in enumerate(masks):
        items = [(i, masks[i]) for i in range(max(0, t - r), min(len(masks), t + r + 1))]
        classes = np.unique(np.concatenate([np.unique(d) for _, d in items]))
        classes = classes[classes != void]
        best = np.full(own.shape, -1.0, dtype=np.float32)
        best_label = np.zeros(own.shape, dtype=own.dtype)
        for c in classes:
            score = np.zeros(own.shape, dtype=np.float32)
            for i, d in items:
                score += np.float32(weights[i - t + r]) * (d == c)
            better = score > best
            best[better] = score[better]
            best_label[better] = c
        out.append(int(np.count_nonzero((best_label != own) & (own != void))))
    return out


@pytest.mark.parametrize("sigma", [0.7, 1.0, 2.0])
def test_smoothness_equals_full_frame_definition(sigma):
    """E_smooth scores only the pixels where the window varies: the same number as scoring every pixel."""
    masks, _ = _random_case(seed=9, n=11, classes=4)
    masks[4] = np.roll(masks[4], 3, axis=0)
    masks[7][10:30, 10:30] = 255
    wide = [np.where(m == 255, 255, m.astype(np.uint16) * 300 % 1000).astype(np.uint16) for m in masks]  # uint16
    for video in (masks, wide):
        want = float(np.mean(_smoothness_reference(video, sigma))) / median_boundary(video)
        assert smoothness(video, sigma=sigma) == want
