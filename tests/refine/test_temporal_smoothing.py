"""Temporal Gaussian smoothing: scipy reference away from the ends, renormalised ends, streaming == offline."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from steadyseg.refine.postprocess.temporal_smoothing import TemporalGaussian, gaussian_radius, temporal_gaussian


def test_matches_scipy_in_the_interior():
    rng = np.random.default_rng(0)
    x = rng.random((30, 2, 5, 6)).astype(np.float32)
    for sigma in (0.5, 1.0, 2.0):
        r = gaussian_radius(sigma)
        ours = temporal_gaussian(x, sigma)
        ref = gaussian_filter1d(x.astype(np.float64), sigma, axis=0, truncate=3.0, mode="constant")
        np.testing.assert_allclose(ours[r:-r], ref[r:-r], atol=1e-6)


def test_ends_are_renormalised_and_probabilities_preserved():
    rng = np.random.default_rng(1)
    p = rng.random((6, 3, 4, 5)).astype(np.float32)
    p /= p.sum(1, keepdims=True)
    out = temporal_gaussian(p, 1.5)
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-5)
    # a constant video stays constant, including the first and last frames
    c = np.full((5, 4, 4), 0.3, np.float32)
    np.testing.assert_allclose(temporal_gaussian(c, 2.0), 0.3, atol=1e-7)
    # frame 0 by hand: weights of offsets 0, 1, 2, 3 (radius 3 at sigma 1)
    x = np.arange(6, dtype=np.float32)[:, None]
    w = np.exp(-0.5 * np.arange(4) ** 2)
    np.testing.assert_allclose(temporal_gaussian(x, 1.0)[0, 0], (w * np.arange(4)).sum() / w.sum(), rtol=1e-6)


@pytest.mark.parametrize("sigma", [0.4, 1.0, 2.5])
def test_streaming_equals_offline(sigma):
    rng = np.random.default_rng(2)
    x = rng.random((9, 2, 3, 4)).astype(np.float32)
    sm = TemporalGaussian(sigma=sigma)
    outs = []
    for t, f in enumerate(x):
        y = sm.step(f)
        assert (y is None) == (t < sm.delay)
        if y is not None:
            outs.append(y)
    outs += sm.flush()
    np.testing.assert_array_equal(np.stack(outs), temporal_gaussian(x, sigma))
    assert len(sm._frames) <= 2 * sm.radius + 1  # noqa: SLF001 - memory bounded by the window


def test_errors():
    with pytest.raises(ValueError, match="sigma"):
        TemporalGaussian(sigma=0)
    sm = TemporalGaussian(sigma=1)
    sm.step(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="reset"):
        sm.step(np.zeros((3, 2)))
