"""The benchmark's degradations on small analytic clouds: sizes, spreads, gaps, determinism."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from bench import degrade as D


def sphere(n=4000, seed=0):
    """n points on the unit sphere (bbox diagonal 2 sqrt(3), up to sampling)."""
    d = np.random.default_rng(seed).normal(size=(n, 3))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def box(n=4000, seed=0):
    """n points uniform in [0, 4] x [0, 1] x [0, 1]: the longest axis is x, the centroid x ~ 2."""
    return np.random.default_rng(seed).uniform([0, 0, 0], [4, 1, 1], size=(n, 3))


def test_noise_std_matches_request():
    p = sphere(20_000)
    diag = D.bbox_diagonal(p)
    for sigma in (0.0025, 0.005, 0.01):
        q = D.add_noise(p, sigma, np.random.default_rng(1))
        # 60,000 samples of one normal: the sample std is within 1% of the true one (~0.3%).
        assert (q - p).std() == pytest.approx(sigma * diag, rel=0.01)
        assert q.shape == p.shape
    assert np.array_equal(D.add_noise(p, 0.0, np.random.default_rng(1)), p)


def test_outliers_count_and_box():
    p = box(5000)
    q = D.add_outliers(p, 0.10, np.random.default_rng(2), pad=0.05)
    assert len(q) == 5500
    assert np.array_equal(q[:5000], p)
    extra = q[5000:]
    lo, hi = p.min(axis=0), p.max(axis=0)
    pad = 0.05 * (hi - lo)
    assert np.all(extra >= lo - pad) and np.all(extra <= hi + pad)
    # Some outliers fall in the padding, outside the points' own box.
    assert np.any((extra < lo) | (extra > hi))


def test_subsample_count_and_membership():
    p = sphere(5000)
    q = D.subsample(p, 3000, np.random.default_rng(3))
    assert q.shape == (3000, 3)
    assert len(np.unique(q, axis=0)) == 3000
    assert cKDTree(p).query(q)[0].max() == 0.0
    assert len(D.subsample(p[:100], 3000, np.random.default_rng(3))) == 100


def test_holes_remove_15_percent_and_leave_gaps():
    p = sphere(6000)
    keep, centres = D.hole_mask(p, 3, 0.05, np.random.default_rng(4))
    assert (~keep).sum() == 3 * 300  # exactly 15%
    q = D.remove_holes(p, 3, 0.05, np.random.default_rng(4))
    assert np.array_equal(q, p[keep])
    # A 5% cap of the unit sphere has a chordal radius of about sqrt(4 * 0.05) = 0.45 (less where
    # holes touch): around every centre no kept point lies closer than a good part of that, far
    # beyond the typical spacing between points (~0.03).
    spacing = cKDTree(p).query(p, k=2)[0][:, 1].mean()
    gap = cKDTree(q).query(centres)[0]
    assert np.all(gap > 0.2) and np.all(gap > 5 * spacing)


def test_half_density_ratio():
    p = box(10_000)
    axis, c = D.half_axis(p)
    assert axis == 0 and c == pytest.approx(2.0, abs=0.05)
    q = D.thin_half(p, 0.1, np.random.default_rng(5))
    upper_before, upper_after = (p[:, 0] > c).sum(), (q[:, 0] > c).sum()
    assert upper_after == round(0.1 * upper_before)
    assert np.array_equal(q[q[:, 0] <= c], p[p[:, 0] <= c])  # the other half untouched, in order


def test_cases_are_deterministic_per_shape_and_case():
    p = sphere(3000)
    for case in D.CASES:
        a, b = D.degrade(p, "bunny", case), D.degrade(p, "bunny", case)
        assert np.array_equal(a, b), case
    assert np.array_equal(D.degrade(p, "bunny", "clean"), p)
    assert not np.array_equal(D.degrade(p, "bunny", "noise1"), D.degrade(p, "spot", "noise1"))
    assert not np.array_equal(D.degrade(p, "bunny", "noise1"), D.degrade(p, "bunny", "noise1", seed=1))
    # Generators come from the names' CRC-32, not hash(): the same in every process (pinned).
    assert D.case_rng("bunny", "noise1").integers(1 << 30) == 363106072


def test_case_sizes():
    p = sphere(10_000)
    sizes = {case: len(D.degrade(p, "s", case)) for case in D.CASES}
    assert sizes["clean"] == sizes["noise1"] == 10_000
    assert sizes["outliers10"] == 11_000
    assert sizes["sparse3k"] == 3000
    assert sizes["holes3"] == 8500
    assert 5000 < sizes["halfdensity"] < 6000


def test_errors():
    with pytest.raises(ValueError, match="expected a case"):
        D.degrade(sphere(10), "s", "fog")
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        D.add_noise(np.zeros((0, 3)), 0.01, np.random.default_rng())
    with pytest.raises(ValueError, match="fit in"):
        D.hole_mask(sphere(10), 3, 0.5, np.random.default_rng())
