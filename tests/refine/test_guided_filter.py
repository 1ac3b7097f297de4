"""Guided filter: closed forms, an independent brute-force reference, OpenCV-contrib, streaming vs offline."""

from __future__ import annotations

import numpy as np
import pytest

import cv2

from steadyseg.refine import confidence_weights, guided_filter
from steadyseg.refine.postprocess.guided_filter import (GuidedFilter3d, box_mean, box_mean_3d, guided_filter_3d,
                                                        schlick_bias)


def _smooth_random(rng, shape, sigma=1.5):
    """Random float32 image(s) in [0, 1] with some spatial structure."""
    x = rng.random(shape).astype(np.float32)
    if x.ndim == 2 or (x.ndim == 3 and x.shape[-1] == 3):
        x = cv2.GaussianBlur(x, (0, 0), sigma)
    else:
        x = np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in x])
    x -= x.min()
    x /= x.max()
    return x.astype(np.float32)


# ------------------------------------------------------------------------------------------------ brute force
def _ref_box(x, r, rt, w=None):
    """Independent (slow) weighted box mean of a (T, H, W) float64 volume: numpy 'symmetric' padding in space
    (== cv2.BORDER_REFLECT), windows truncated in time; explicit sums over every window."""
    T, H, W = x.shape
    w = np.ones_like(x) if w is None else w
    xp = np.pad(x * w, ((0, 0), (r, r), (r, r)), mode="symmetric")
    wp = np.pad(w, ((0, 0), (r, r), (r, r)), mode="symmetric")
    out = np.empty_like(x)
    for t in range(T):
        t0, t1 = max(0, t - rt), min(T, t + rt + 1)
        for i in range(H):
            for j in range(W):
                out[t, i, j] = xp[t0:t1, i:i + 2 * r + 1, j:j + 2 * r + 1].sum() / wp[t0:t1, i:i + 2 * r + 1,
                                                                                      j:j + 2 * r + 1].sum()
    return out


def _ref_guided(guide, src, r, eps, rt, w=None):
    """Reference guided filter in float64 with np.linalg.solve per pixel. guide (T,H,W) or (T,H,W,3)."""
    guide = guide.astype(np.float64)
    src = src.astype(np.float64)
    w = None if w is None else w.astype(np.float64)
    m = lambda x: _ref_box(x, r, rt, w)  # noqa: E731
    if guide.ndim == 3:
        mi, mp = m(guide), m(src)
        a = (m(guide * src) - mi * mp) / (m(guide * guide) - mi * mi + eps)
        b = mp - a * mi
        return m(a) * guide + m(b)
    chans = [guide[..., k] for k in range(3)]
    mi = np.stack([m(c) for c in chans], -1)
    mp = m(src)
    sigma = np.empty(src.shape + (3, 3))
    for i in range(3):
        for j in range(3):
            sigma[..., i, j] = m(chans[i] * chans[j]) - mi[..., i] * mi[..., j]
    sigma += eps * np.eye(3)
    cov = np.stack([m(c * src) for c in chans], -1) - mi * mp[..., None]
    a = np.linalg.solve(sigma, cov[..., None])[..., 0]
    b = mp - (a * mi).sum(-1)
    ma = np.stack([m(a[..., k]) for k in range(3)], -1)
    return (ma * guide).sum(-1) + m(b)


# ------------------------------------------------------------------------------------------------ box means
def test_box_mean_constant_and_reference():
    rng = np.random.default_rng(0)
    c = np.full((9, 11), 0.25, np.float32)
    np.testing.assert_allclose(box_mean(c, 3), c, atol=1e-7)
    x = rng.random((4, 9, 11)).astype(np.float32)
    got = box_mean_3d(x, 2, 1)
    np.testing.assert_allclose(got, _ref_box(x.astype(np.float64), 2, 1), atol=1e-5)
    # radius 0 in space and time is the identity
    np.testing.assert_array_equal(box_mean_3d(x, 0, 0), x)


# ------------------------------------------------------------------------------------------------ closed forms
def test_constant_source_is_preserved_and_guide_reproduced():
    rng = np.random.default_rng(1)
    guide = _smooth_random(rng, (20, 24, 3))
    np.testing.assert_allclose(guided_filter(guide, np.full((20, 24), 0.7, np.float32), 3, 1e-3), 0.7, atol=1e-4)
    # src = guide (gray): with tiny eps the filter reproduces the guide (a = 1, b = 0)
    g = _smooth_random(rng, (20, 24))
    np.testing.assert_allclose(guided_filter(g, g, 3, 1e-8), g, atol=1e-3)
    # huge eps -> a = 0 -> double box mean of src
    p = rng.random((20, 24)).astype(np.float32)
    np.testing.assert_allclose(guided_filter(g, p, 2, 1e6), box_mean(box_mean(p, 2), 2), atol=1e-5)


def test_confidence_weights_values():
    p = np.array([0.0, 0.15, 0.3, 0.4, 0.5, 0.75, 1.0], np.float32)
    c = confidence_weights(p)
    bias = lambda x: x / (0.25 + 0.75 * x)  # noqa: E731
    expected = [1.0, bias(0.5), 0.01, 0.01, 0.01, bias(0.5), 1.0]
    np.testing.assert_allclose(c, expected, rtol=1e-6)
    np.testing.assert_allclose(bias(0.5), 0.8, rtol=1e-6)
    np.testing.assert_allclose(schlick_bias(np.float32(0.5), 0.8), 0.8, rtol=1e-6)
    # thresholds are parameters
    c2 = confidence_weights(np.array([0.45], np.float32), low=0.5, high=0.6)
    np.testing.assert_allclose(c2, [bias(0.1)], rtol=1e-6)
    with pytest.raises(ValueError, match="low <= high"):
        confidence_weights(p, low=0.6, high=0.5)
    # hard masks get full confidence everywhere
    assert np.all(confidence_weights(np.array([0.0, 1.0])) == 1.0)


# ------------------------------------------------------------------------------------------------ references
@pytest.mark.parametrize("colour", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_bruteforce_reference_3d(colour, weighted):
    rng = np.random.default_rng(2)
    T, H, W, r, rt, eps = 6, 13, 15, 2, 1, 1e-2
    guide = _smooth_random(rng, (T, H, W) + ((3,) if colour else ()), sigma=1.0)
    src = _smooth_random(rng, (T, H, W), sigma=1.0)
    w = confidence_weights(src) if weighted else None
    got = guided_filter(guide, src, r, eps, weights=w, temporal_radius=rt)
    ref = _ref_guided(guide, src, r, eps, rt, w)
    assert got.shape == src.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=2e-4)


def test_matches_bruteforce_reference_2d_colour():
    rng = np.random.default_rng(3)
    guide = _smooth_random(rng, (14, 17, 3), sigma=1.0)
    src = (rng.random((14, 17)) > 0.5).astype(np.float32)
    got = guided_filter(guide, src, 3, 1e-3)
    ref = _ref_guided(guide[None], src[None], 3, 1e-3, 0)[0]
    np.testing.assert_allclose(got, ref, atol=5e-4)


def test_matches_opencv_contrib_ximgproc():
    if not hasattr(cv2, "ximgproc"):
        pytest.fail("cv2.ximgproc is missing: the test environment needs opencv-contrib-python-headless of the same "
                    "version as opencv-python-headless (`make venv` installs it)")
    rng = np.random.default_rng(4)
    guide = _smooth_random(rng, (96, 128))
    src = (_smooth_random(rng, (96, 128), sigma=4.0) > 0.5).astype(np.float32)
    for r, eps in [(2, 1e-2), (8, 1e-3), (5, 0.1)]:
        ours = guided_filter(guide, src, r, eps)
        theirs = cv2.ximgproc.guidedFilter(guide, src, r, eps, -1)
        m = 2 * r
        np.testing.assert_allclose(ours[m:-m, m:-m], theirs[m:-m, m:-m], atol=1e-4)


def test_unit_weights_equal_plain_filter_and_weights_matter():
    rng = np.random.default_rng(5)
    guide = _smooth_random(rng, (5, 20, 22, 3))
    src = _smooth_random(rng, (5, 20, 22))
    plain = guided_filter(guide, src, 3, 1e-3, temporal_radius=1)
    ones = guided_filter(guide, src, 3, 1e-3, temporal_radius=1, weights=np.ones_like(src))
    np.testing.assert_allclose(ones, plain, atol=1e-5)
    w = confidence_weights(src)
    weighted = guided_filter(guide, src, 3, 1e-3, temporal_radius=1, weights=w)
    assert np.abs(weighted - plain).max() > 1e-2


# ------------------------------------------------------------------------------------------------ 3D behaviour
def test_temporal_radius_zero_is_per_frame_2d():
    rng = np.random.default_rng(6)
    guide = _smooth_random(rng, (4, 16, 18, 3))
    src = _smooth_random(rng, (4, 16, 18))
    vol = guided_filter(guide, src, 2, 1e-2, temporal_radius=0)
    for t in range(4):
        np.testing.assert_allclose(vol[t], guided_filter(guide[t], src[t], 2, 1e-2), atol=1e-6)


def test_static_video_equals_2d_filter():
    """A video of identical frames: the truncated temporal means are means of equal frames -> 2D result."""
    rng = np.random.default_rng(7)
    g = _smooth_random(rng, (16, 18, 3))
    p = _smooth_random(rng, (16, 18))
    vol = guided_filter(np.repeat(g[None], 5, 0), np.repeat(p[None], 5, 0), 2, 1e-2, temporal_radius=2)
    np.testing.assert_allclose(vol, np.repeat(guided_filter(g, p, 2, 1e-2)[None], 5, 0), atol=1e-5)


def test_temporal_filter_removes_single_frame_flicker():
    T, H, W = 9, 24, 24
    guide = np.full((T, H, W), 0.5, np.float32)
    src = np.zeros((T, H, W), np.float32)
    src[:, :, 12:] = 1.0
    src[4, :, :] = 1.0  # one frame flickers to all-foreground
    out = guided_filter(guide, src, 2, 1e-2, temporal_radius=2)
    assert (out[4][:, :8] > 0.5).sum() == 0  # the flicker is voted away by its neighbours
    assert np.all(out[4][:, 16:] > 0.5)


@pytest.mark.parametrize("rt", [0, 1, 2, 3])
@pytest.mark.parametrize("weighted", [False, True])
def test_streaming_equals_offline_and_delay(rt, weighted):
    rng = np.random.default_rng(8)
    T, H, W, C = 7, 12, 14, 2
    frames = _smooth_random(rng, (T, H, W, 3))
    probs = rng.random((T, C, H, W)).astype(np.float32)
    probs /= probs.sum(1, keepdims=True)
    w = confidence_weights(probs) if weighted else None
    gf = GuidedFilter3d(radius=2, eps=1e-3, temporal_radius=rt)
    assert gf.delay == 2 * rt
    outs = []
    for t in range(T):
        q = gf.step(frames[t], probs[t], weights=None if w is None else w[t])
        if t < gf.delay:
            assert q is None
        else:
            assert q is not None and q.shape == (C, H, W)
            outs.append(q)
    outs += gf.flush()
    assert len(outs) == T
    streamed = np.stack(outs)
    for c in range(C):
        offline = guided_filter(frames, probs[:, c], 2, 1e-3, temporal_radius=rt,
                                weights=None if w is None else w[:, c])
        np.testing.assert_allclose(streamed[:, c], offline, atol=1e-6)
    # state is bounded by the window, not by the video length
    state = gf._classes[0]  # noqa: SLF001
    assert len(state.stage1.items) <= 2 * rt + 1 and len(gf._guides) <= 2 * rt + 1  # noqa: SLF001
    # reset -> a new video gives the same output again
    gf.reset()
    again = [gf.step(frames[t], probs[t], weights=None if w is None else w[t]) for t in range(T)]
    again = [q for q in again if q is not None] + gf.flush()
    np.testing.assert_array_equal(np.stack(again), streamed)


def test_short_video_shorter_than_delay():
    rng = np.random.default_rng(9)
    frames = _smooth_random(rng, (2, 10, 12))
    src = _smooth_random(rng, (2, 10, 12))
    out = guided_filter(frames, src, 1, 1e-2, temporal_radius=4)
    ref = _ref_guided(frames, src, 1, 1e-2, 4)
    np.testing.assert_allclose(out, ref, atol=2e-4)


def test_long_video_no_drift():
    """Running temporal sums stay exact over many frames (periodic exact re-summation)."""
    rng = np.random.default_rng(10)
    T = 150
    base_g = _smooth_random(rng, (8, 10, 12))
    base_p = _smooth_random(rng, (8, 10, 12))
    guide = base_g[np.arange(T) % 8]
    src = base_p[np.arange(T) % 8]
    out = guided_filter(guide, src, 1, 1e-2, temporal_radius=2)
    # frame t and t + 8*k see the same window contents once away from the ends
    np.testing.assert_allclose(out[16:24], out[128:136], atol=2e-5)


def test_input_errors():
    g = np.zeros((8, 9), np.float32)
    with pytest.raises(ValueError, match="uint8"):
        guided_filter(np.zeros((8, 9), np.uint8), g, 1, 1e-2)
    with pytest.raises(ValueError, match="guide must be"):
        guided_filter(np.zeros((8, 10), np.float32), g, 1, 1e-2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        guided_filter(np.full((8, 9), 255.0, np.float32), g, 1, 1e-2)
    with pytest.raises(ValueError, match="eps"):
        guided_filter(g, g, 1, 0.0)
    with pytest.raises(ValueError, match="radius"):
        guided_filter(g, g, -1, 1e-2)
    with pytest.raises(ValueError, match="weights"):
        guided_filter(g, g, 1, 1e-2, weights=np.zeros_like(g))
    gf = GuidedFilter3d(radius=1, eps=1e-2, temporal_radius=1)
    gf.step(g, g)
    with pytest.raises(ValueError, match="reset"):
        gf.step(np.zeros((8, 9, 3), np.float32), g)


def test_reused_object_new_shape_and_outputs_not_aliased():
    """Work buffers are recycled between frames and videos: a reset object fed a video of another size / guide
    type must give exactly what a fresh object gives, and returned frames must not change afterwards."""
    rng = np.random.default_rng(12)

    def video(T, H, W, colour):
        frames = _smooth_random(rng, (T, H, W, 3) if colour else (T, H, W))
        probs = rng.random((T, 2, H, W)).astype(np.float32)
        return frames, probs, confidence_weights(probs)

    def run(gf, frames, probs, w):
        outs = [gf.step(frames[t], probs[t], weights=w[t]) for t in range(len(frames))]
        outs = [q for q in outs if q is not None] + gf.flush()
        return outs, [q.copy() for q in outs]

    reused = GuidedFilter3d(radius=2, eps=1e-3, temporal_radius=1)
    run(reused, *video(9, 16, 18, colour=True))
    for T, H, W, colour in [(11, 13, 21, False), (10, 15, 12, True)]:
        v = video(T, H, W, colour)
        reused.reset()
        outs, copies = run(reused, *v)
        fresh, _ = run(GuidedFilter3d(radius=2, eps=1e-3, temporal_radius=1), *v)
        for q, q_copy, f in zip(outs, copies, fresh):
            np.testing.assert_array_equal(q, q_copy)  # not overwritten by later frames
            np.testing.assert_array_equal(q, f)


# ------------------------------------------------------------------------------------------------ float64 reference
def _ref_guided_fast(guide, src, r, eps, rt, w=None):
    """Float64 guided filter with OpenCV's float64 box sums (the same windows and borders as `_ref_box`), fast
    enough for r = 8 on video: checks the float32 filter tightly where the brute force would take minutes."""
    guide = guide.astype(np.float64)
    src = src.astype(np.float64)
    w = np.ones_like(src) if w is None else w.astype(np.float64)
    T = src.shape[0]
    k = (2 * r + 1, 2 * r + 1)

    def wsum(x):
        b = np.stack([cv2.boxFilter(f, -1, k, normalize=False, borderType=cv2.BORDER_REFLECT) for f in x * w])
        return np.stack([b[max(0, t - rt):t + rt + 1].sum(0) for t in range(T)])

    norm = wsum(np.ones_like(src))
    m = lambda x: wsum(x) / norm  # noqa: E731
    if guide.ndim == 3:
        mi, mp = m(guide), m(src)
        a = (m(guide * src) - mi * mp) / (m(guide * guide) - mi * mi + eps)
        return m(a) * guide + m(mp - a * mi)
    ch = [guide[..., c] for c in range(3)]
    mi = np.stack([m(c) for c in ch], -1)
    mp = m(src)
    sigma = np.stack([np.stack([m(ch[i] * ch[j]) - mi[..., i] * mi[..., j] for j in range(3)], -1)
                      for i in range(3)], -2) + eps * np.eye(3)
    cov = np.stack([m(c * src) for c in ch], -1) - mi * mp[..., None]
    a = np.linalg.solve(sigma, cov[..., None])[..., 0]
    b = mp - (a * mi).sum(-1)
    return (np.stack([m(a[..., c]) for c in range(3)], -1) * guide).sum(-1) + m(b)


def test_fast_reference_agrees_with_bruteforce():
    rng = np.random.default_rng(13)
    guide = _smooth_random(rng, (5, 11, 13, 3), sigma=1.0)
    src = _smooth_random(rng, (5, 11, 13), sigma=1.0)
    w = confidence_weights(src)
    np.testing.assert_allclose(_ref_guided_fast(guide, src, 2, 1e-2, 1, w), _ref_guided(guide, src, 2, 1e-2, 1, w),
                               atol=1e-10)


@pytest.mark.parametrize("colour", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("rt", [0, 2])
def test_float32_rounding_only_at_paper_kernels(colour, weighted, rt):
    """r = 8 (the paper's kernel) on a 40 x 48 x 64 video: the float32 filter is within float32 rounding of the
    float64 one (max error ~2e-6 at eps 1e-3; a wrong sum or solve shows as >= 1e-3)."""
    rng = np.random.default_rng(14)
    T, H, W = 40, 48, 64
    guide = _smooth_random(rng, (T, H, W) + ((3,) if colour else ()), sigma=2.0)
    src = _smooth_random(rng, (T, H, W), sigma=3.0)
    w = confidence_weights(src) if weighted else None
    got = guided_filter(guide, src, 8, 1e-3, weights=w, temporal_radius=rt)
    np.testing.assert_allclose(got, _ref_guided_fast(guide, src, 8, 1e-3, rt, w), atol=1e-5)


def test_inputs_are_copied_callers_may_reuse_their_buffers():
    """The filter keeps frames for up to 2 rt steps: it must own copies, so a caller that overwrites one buffer in
    place every frame gets the same output as one passing fresh arrays."""
    rng = np.random.default_rng(15)
    T, H, W = 9, 14, 16
    frames = _smooth_random(rng, (T, H, W, 3))
    probs = rng.random((T, 2, H, W)).astype(np.float32)
    w = confidence_weights(probs)
    fresh = guided_filter_3d(frames, probs[:, 1], 2, 1e-3, weights=w[:, 1], temporal_radius=2)
    gf = GuidedFilter3d(radius=2, eps=1e-3, temporal_radius=2)
    g_buf, p_buf, w_buf = np.empty((H, W, 3), np.float32), np.empty((H, W), np.float32), np.empty((H, W), np.float32)
    outs = []
    for t in range(T):
        g_buf[:], p_buf[:], w_buf[:] = frames[t], probs[t, 1], w[t, 1]
        q = gf.step(g_buf, p_buf, weights=w_buf)
        if q is not None:
            outs.append(q.copy())
    outs += gf.flush()
    np.testing.assert_array_equal(np.stack(outs), fresh)
