"""NeuS volume rendering and the occupancy grid against analytic planes and spheres."""

import math

import numpy as np
import pytest
import torch

from recon.rendering import (
    OccupancyGrid,
    camera_rays,
    composite,
    march,
    neus_alpha,
    ray_sphere_bounds,
)


def _render_analytic(sdf_fn, grad_fn, origins, dirs, step, inv_s, grid=None):
    """Composite NeuS weights of an analytic SDF along rays (the fitter's path, minus networks)."""
    near, far, _ = ray_sphere_bounds(origins, dirs)
    t, keep, pos = march(origins, dirs, near, far, step, grid)
    ray_of = keep.nonzero()[:, 0]
    cos = (dirs[ray_of] * grad_fn(pos)).sum(-1)
    alpha = neus_alpha(sdf_fn(pos), cos, step, torch.tensor(inv_s))
    dense = torch.zeros(keep.shape).masked_scatter(keep, alpha)
    weights, opacity = composite(dense)
    return t, keep, weights, opacity


def test_camera_rays_follow_opencv_axes():
    c2w = torch.eye(4, dtype=torch.float64)[None]
    k = torch.tensor([[[10.0, 0, 2.0], [0, 10.0, 2.0], [0, 0, 1]]], dtype=torch.float64)
    o, d = camera_rays(c2w, k, 4, 4)
    assert torch.allclose(d.norm(dim=-1), torch.ones(1, 4, 4, dtype=torch.float64))
    # Pixel (row 0, col 3) has centre (3.5, 0.5): right of and above the principal point (2, 2).
    expected = torch.tensor([1.5, -1.5, 10.0], dtype=torch.float64)
    assert torch.allclose(d[0, 0, 3], expected / expected.norm())
    assert torch.equal(o[0, 0, 0], torch.zeros(3, dtype=torch.float64))


def test_ray_sphere_bounds_match_the_analytic_chord():
    o = torch.tensor([[0.0, 0.0, -3.0], [0.0, 0.6, -3.0], [0.0, 2.0, -3.0], [0.0, 0.0, 0.0]])
    d = torch.tensor([[0.0, 0.0, 1.0]] * 4)
    near, far, hit = ray_sphere_bounds(o, d)
    assert hit.tolist() == [True, True, False, True]
    half = math.sqrt(1 - 0.36)
    assert torch.allclose(near, torch.tensor([2.0, 3 - half, 0.0, 0.0]), atol=1e-6)
    assert torch.allclose(far, torch.tensor([4.0, 3 + half, 0.0, 1.0]), atol=1e-6)


@pytest.mark.parametrize("inv_s", [50.0, 800.0])
def test_plane_opacity_telescopes_to_the_logistic_cdf(inv_s):
    """For a planar SDF the NeuS alphas are exact: transmittance telescopes to Phi(f_end)/Phi(f_start)."""
    plane_z = 0.1
    o = torch.tensor([[0.0, 0.0, -3.0], [0.2, -0.1, -3.0]])
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    step = 2.0 / 128
    # The SDF decreases along +z (positive below the plane), so the rays enter from outside.
    t, keep, w, opacity = _render_analytic(lambda x: plane_z - x[:, 2], lambda x: torch.tensor([0.0, 0.0, -1.0]).expand_as(x),
                                           o, d, step, inv_s)
    for r in range(2):
        ts = t[r, keep[r]]
        f_start = plane_z - (o[r, 2] + ts[0] - step / 2)
        f_end = plane_z - (o[r, 2] + ts[-1] + step / 2)
        expected = 1 - torch.sigmoid(f_end * inv_s) / torch.sigmoid(f_start * inv_s)
        assert abs(float(opacity[r]) - float(expected)) < 1e-3
        # The weights peak at the sample nearest the crossing (z = plane_z).
        z = o[r, 2] + t[r]
        peak = int(torch.argmax(w[r]))
        assert abs(float(z[peak]) - plane_z) <= step
    assert torch.all(opacity > 0.999) if inv_s > 100 else torch.all(opacity > 0.99)


def test_sphere_depth_matches_the_analytic_intersection():
    radius, inv_s, step = 0.5, 2000.0, 2.0 / 256
    torch.manual_seed(0)
    target = torch.randn(64, 3) * 0.15
    o = torch.tensor([0.3, -0.2, -2.5]).expand(64, 3)
    d = target - o
    d = d / d.norm(dim=-1, keepdim=True)
    t, _keep, w, opacity = _render_analytic(lambda x: x.norm(dim=-1) - radius, lambda x: x / x.norm(dim=-1, keepdim=True),
                                           o, d, step, inv_s)
    depth = (w * t).sum(-1) / opacity
    b = (o * d).sum(-1)
    hit_t = -b - torch.sqrt(b * b - ((o * o).sum(-1) - radius**2))
    assert torch.all(opacity > 0.99)
    # A sharp density puts nearly all weight on the section holding the crossing, whose sample
    # lies within half a step of it.
    assert torch.max((depth - hit_t).abs()) < 0.5 * step + 2.0 / inv_s


def test_occupancy_grid_keeps_the_shell_and_skips_empty_space():
    radius = 0.5
    grid = OccupancyGrid(32)
    grid.update(lambda x: x.norm(dim=-1) - radius, band=0.0)
    occ = grid.occupied.view(32, 32, 32)
    # No false negatives: every point of the surface lies in an occupied cell.
    rng = np.random.default_rng(0)
    s = torch.as_tensor(rng.normal(size=(20000, 3)), dtype=torch.float32)
    s = s / s.norm(dim=-1, keepdim=True) * radius
    assert bool(grid.lookup(s).all())
    # The centre and the corners are empty; the shell is a small fraction of the cube.
    assert not bool(occ[16, 16, 16]) and not bool(occ[0, 0, 0])
    assert 0.02 < grid.fraction < 0.15

    o = torch.tensor([[0.0, 0.0, -3.0], [0.0, 0.8, -3.0]])  # through the sphere; past it, inside the unit sphere
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    near, far, _ = ray_sphere_bounds(o, d)
    step = 2.0 / 256
    _t, keep, pos = march(o, d, near, far, step, grid)
    assert bool(grid.lookup(pos).all())  # no sample outside occupied cells
    assert int(keep[0].sum()) < 0.25 * (far[0] - near[0]) / step  # most of the chord skipped
    assert int(keep[1].sum()) == 0  # the second ray crosses only empty cells
    _, _, w, opacity = _render_analytic(lambda x: x.norm(dim=-1) - radius, lambda x: x / x.norm(dim=-1, keepdim=True),
                                        o, d, step, 500.0, grid)
    assert float(opacity[1]) == 0.0 and float(w[1].abs().sum()) == 0.0
    assert float(opacity[0]) > 0.99


def test_occupancy_band_widens_the_shell():
    grid = OccupancyGrid(32)
    grid.update(lambda x: x.norm(dim=-1) - 0.5, band=0.0)
    thin = grid.fraction
    grid.update(lambda x: x.norm(dim=-1) - 0.5, band=0.2)
    assert grid.fraction > 2 * thin


def test_composite_weights_and_opacity():
    alpha = torch.tensor([[0.5, 0.5, 1.0, 0.3], [0.0, 0.0, 0.0, 0.0]])
    w, acc = composite(alpha)
    assert torch.allclose(w[0, :3], torch.tensor([0.5, 0.25, 0.25]), atol=1e-5)
    assert float(w[0, 3]) < 1e-5
    assert torch.allclose(acc, torch.tensor([1.0, 0.0]), atol=1e-5)
