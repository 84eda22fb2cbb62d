"""The colour network's view dependence: spherical harmonics up to the configured degree."""

from __future__ import annotations

import pytest
import torch

from recon.fields.color import ColorConfig, ColorNetwork, sh_encode


def test_sh_bands_are_orthonormal_on_the_sphere():
    # Monte Carlo over uniform directions: E[Y_i Y_j] = delta_ij / (4 pi).
    d = torch.nn.functional.normalize(torch.randn(400_000, 3, generator=torch.Generator().manual_seed(0),
                                                  dtype=torch.float64), dim=-1)
    y = sh_encode(d)
    gram = (y.T @ y) / len(d) * 4 * torch.pi
    assert torch.allclose(gram, torch.eye(16, dtype=torch.float64), atol=0.02)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_view_degree_sets_what_the_colour_sees_of_the_direction(degree):
    torch.manual_seed(0)
    net = ColorNetwork(ColorConfig(feature_dim=8, view_degree=degree))
    assert net.mlp[0].in_features == 8 + 3 + (degree + 1) ** 2
    feature, normal = torch.randn(64, 8), torch.randn(64, 3)
    dirs = torch.nn.functional.normalize(torch.randn(2, 64, 3), dim=-1)
    a, b = net(feature, normal, dirs[0]), net(feature, normal, dirs[1])
    if degree == 0:
        assert torch.equal(a, b)  # a diffuse colour: the same from every side
    else:
        assert (a - b).abs().max() > 1e-4


def test_view_degree_out_of_range_is_refused():
    with pytest.raises(ValueError, match="view_degree"):
        ColorConfig(view_degree=4)
