"""Cloud statistics and cleaning on clouds whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from recon.cleaning import estimate_noise, jet_fit, jet_smooth, outlier_mask, spacing
from tests.support.analytic import unit_sphere_points


def grid_plane(step: float, m: int = 60) -> np.ndarray:
    g = np.arange(m) * step
    x, y = np.meshgrid(g, g)
    return np.stack([x.ravel(), y.ravel(), np.zeros(m * m)], 1)


def test_spacing_of_a_square_grid():
    # The 6 nearest of a grid point: 4 at one step, 2 at sqrt(2) steps.
    assert spacing(grid_plane(0.01)) == pytest.approx(0.01 * (4 + 2 * np.sqrt(2)) / 6, rel=1e-6)


def test_jet_fits_a_paraboloid_exactly_and_projects_onto_it():
    rng = np.random.default_rng(1)
    uv = rng.uniform(-1, 1, size=(3000, 2))
    z = 0.3 * uv[:, 0] ** 2 - 0.2 * uv[:, 0] * uv[:, 1] + 0.1 * uv[:, 1] ** 2
    pts = np.column_stack([uv, z])
    fit = jet_fit(pts, 20)
    # In each neighbourhood's tilted PCA frame the paraboloid is a quadric only to first order.
    assert np.median(fit.residual) < 1e-4 * spacing(pts)  # noise-free: nothing left over
    noisy = pts + np.array([0, 0, 1.0]) * rng.normal(scale=0.01, size=(3000, 1))
    smoothed = jet_smooth(noisy, 40)
    inner = np.abs(uv).max(axis=1) < 0.8  # away from the border, where jets extrapolate
    err_before = np.abs(noisy[inner, 2] - z[inner]).mean()
    err_after = np.abs(smoothed[inner, 2] - (0.3 * smoothed[inner, 0] ** 2 - 0.2 * smoothed[inner, 0]
                                              * smoothed[inner, 1] + 0.1 * smoothed[inner, 1] ** 2)).mean()
    assert err_after < 0.35 * err_before


@pytest.mark.parametrize("sigma", [0.005, 0.01, 0.02])
def test_noise_estimate_follows_the_noise(sigma):
    pts = unit_sphere_points(20000)
    noisy = pts + np.random.default_rng(2).normal(scale=sigma, size=pts.shape)
    assert estimate_noise(noisy) == pytest.approx(sigma, rel=0.35)
    assert estimate_noise(pts) < 0.1 * spacing(pts)


def test_outliers_in_the_box_are_found_and_a_clean_cloud_keeps_every_point():
    pts = unit_sphere_points(20000)
    outliers = np.random.default_rng(3).uniform(-1.1, 1.1, size=(2000, 3))
    mask = outlier_mask(np.concatenate([pts, outliers]))
    off_surface = np.abs(np.linalg.norm(outliers, axis=1) - 1) > 0.05
    assert mask[20000:][off_surface].mean() > 0.9
    assert mask[:20000].mean() < 0.002
    # Sharp edges are not outliers: a cube's surface, clean.
    rng = np.random.default_rng(4)
    cube = rng.uniform(-1, 1, size=(20000, 3))
    axis = rng.integers(0, 3, 20000)
    cube[np.arange(20000), axis] = np.sign(rng.uniform(-1, 1, 20000))
    assert not outlier_mask(cube).any()
    assert not outlier_mask(pts).any()
