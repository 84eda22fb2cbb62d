"""The background field: the contraction, its samples beyond the foreground sphere, and compositing
behind the foreground (analytic: an opaque foreground hides it, an empty one shows it)."""

import math

import numpy as np
import pytest
import torch

from recon.fields.background import (
    BackgroundConfig,
    background_samples,
    contract,
    render_background,
)
from recon.multiview import NeusConfig, NeusModel


def test_contraction():
    x = torch.tensor([[0.3, -0.2, 0.1], [1.0, 0.0, 0.0], [0.0, 4.0, 0.0], [1e6, 0.0, 0.0]])
    y = contract(x)
    np.testing.assert_allclose(y[:2].numpy(), x[:2].numpy())  # identity inside the unit ball
    np.testing.assert_allclose(y[2].numpy(), [0.0, 1.75, 0.0], atol=1e-6)  # (2 - 1/4) along x / |x|
    assert y.norm(dim=-1).max() < 2.0 and y[3, 0] > 1.999


def test_samples_lie_beyond_the_start_in_inverse_distance():
    o = torch.tensor([[0.0, 0.0, -3.0], [0.0, 2.0, -3.0]])
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    t0 = torch.tensor([4.0, 3.0])  # exit of the unit sphere; closest approach of the ray that misses it
    pts, t = background_samples(o, d, t0, 8)
    assert (t >= t0[:, None] - 1e-6).all() and (t[:, 1:] > t[:, :-1]).all()
    r = pts.norm(dim=-1)
    s = 1.0 / r  # even steps in inverse distance, from 1 / r0 towards 0
    np.testing.assert_allclose((s[:, :-1] - s[:, 1:]).numpy(), (np.array([[1.0], [0.5]]) / 8).repeat(7, 1), atol=1e-5)
    assert math.isclose(float(r[1, 0]), 2.0 / (1 - 0.5 / 8), rel_tol=1e-5)


def constant_background(field, rgb, density=50.0):
    """Make ``field`` a uniform fog of colour ``rgb``: the last layer ignores its input."""
    last = field.mlp[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([math.log(math.expm1(density)) - field.config.density_bias,
                                      *torch.logit(torch.tensor(rgb)).tolist()]))


def test_render_background_weights_sum_to_one():
    field = BackgroundConfig(n_samples=6).build()
    constant_background(field, [0.2, 0.5, 0.7], density=1e-3)  # nearly empty: the opaque last sample shows
    o, d = torch.tensor([[0.0, 0.0, -3.0]]), torch.tensor([[0.0, 0.0, 1.0]])
    np.testing.assert_allclose(render_background(field, o, d, torch.tensor([4.0])).detach().numpy(), [[0.2, 0.5, 0.7]], atol=1e-5)


def test_composite_opaque_foreground_hides_background_empty_shows_it():
    cfg = NeusConfig(init_variance=0.9)  # s = e^9: a sharp surface
    model = NeusModel(cfg, background_field=True)  # SDF starts as the sphere of radius 0.5
    model.grid.occupied.fill_(True)
    o = torch.tensor([[0.0, 0.0, -3.0], [0.0, 0.8, -3.0], [0.0, 2.0, -3.0]])
    d = torch.tensor([[0.0, 0.0, 1.0]] * 3)  # through the sphere; inside |x| < 1 but past it; outside
    with torch.no_grad():
        constant_background(model.background_field, [0.9, 0.1, 0.1])
        red = model.render(o, d)
        constant_background(model.background_field, [0.1, 0.1, 0.9])
        blue = model.render(o, d)
    assert red["opacity"][0] > 0.999 and red["opacity"][1:].max() < 5e-3
    np.testing.assert_allclose(red["rgb"][0].numpy(), blue["rgb"][0].numpy(), atol=2e-3)  # hidden
    np.testing.assert_allclose(red["rgb"][1:].numpy(), [[0.9, 0.1, 0.1]] * 2, atol=5e-3)  # shown
    np.testing.assert_allclose(blue["rgb"][1:].numpy(), [[0.1, 0.1, 0.9]] * 2, atol=5e-3)


def test_far_color_replaces_the_last_sample():
    field = BackgroundConfig(n_samples=6).build()
    o, d, t0 = torch.tensor([[0.0, 0.0, -3.0]] * 2), torch.tensor([[0.0, 0.0, 1.0]] * 2), torch.tensor([4.0, 4.0])
    far = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    constant_background(field, [0.2, 0.5, 0.7], density=1e-3)  # empty: infinity shows
    np.testing.assert_allclose(render_background(field, o, d, t0, far_color=far).detach().numpy(), far.numpy(),
                               atol=2e-3)
    constant_background(field, [0.2, 0.5, 0.7], density=50.0)  # opaque fog: infinity hidden
    np.testing.assert_allclose(render_background(field, o, d, t0, far_color=far).detach().numpy(),
                               [[0.2, 0.5, 0.7]] * 2, atol=2e-3)


def test_background_levels_switch_on_coarse_to_fine():
    field = BackgroundConfig(start_levels=2, full_levels_at=0.6).build()  # 8 levels by default
    active = []
    for fraction in (0.0, 0.15, 0.3, 0.59, 0.6, 1.0):
        field.set_progress(fraction)
        active.append(field.encoding.n_active_levels)
    assert active == [2, 3, 5, 7, 8, 8]
    x = torch.rand(64, 3) * 4 - 2
    field.set_progress(0.0)
    coarse = field.encoding(contract(x) * 0.5)
    assert (coarse[:, 4:] == 0).all()  # the levels not yet on give nothing
    everything = BackgroundConfig().build()  # start_levels 0: every level from the start
    everything.set_progress(0.0)
    assert everything.encoding.n_active_levels == 8
    model = NeusModel(NeusConfig(background_field=BackgroundConfig(start_levels=2)), background_field=True)
    model.set_progress(0.1)  # the model passes its progress on to the field
    assert model.background_field.encoding.n_active_levels == 3
    with pytest.raises(ValueError, match="start_levels"):
        BackgroundConfig(start_levels=-1)
    with pytest.raises(ValueError, match="full_levels_at"):
        BackgroundConfig(start_levels=2, full_levels_at=1.5)
