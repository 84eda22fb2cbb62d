import math

import pytest
import torch

from recon import losses


def test_laplacian_fd_exact_on_quadratic():
    # f = |x|^2 has Laplacian 6 everywhere; central differences are exact on quadratics.
    x = torch.rand(50, 3, dtype=torch.float64) * 2 - 1
    lap = losses.laplacian_fd(lambda p: (p * p).sum(-1), x, h=0.05)
    assert torch.allclose(lap, torch.full_like(lap, 6.0), atol=1e-8)


def test_laplacian_fd_of_sphere_sdf():
    # Laplacian of |x| - r in 3D is 2/|x| (mean-curvature of the level sets).
    torch.manual_seed(0)
    d = torch.nn.functional.normalize(torch.randn(100, 3, dtype=torch.float64), dim=-1)
    radius = torch.rand(100, 1, dtype=torch.float64) * 0.5 + 0.5
    x = d * radius
    lap = losses.laplacian_fd(lambda p: p.norm(dim=-1) - 0.3, x, h=1e-3)
    assert torch.allclose(lap, 2.0 / radius.squeeze(-1), rtol=1e-4)


def test_eikonal_zero_for_unit_gradients_and_positive_otherwise():
    g = torch.nn.functional.normalize(torch.randn(64, 3), dim=-1)
    assert losses.eikonal_term(g).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.eikonal_term(2 * g).item() == pytest.approx(1.0, abs=1e-5)


def test_normal_term_sign_handling():
    n = torch.nn.functional.normalize(torch.randn(32, 3), dim=-1)
    assert losses.normal_term(-n, n, oriented=False).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.normal_term(-n, n, oriented=True).item() == pytest.approx(2.0, abs=1e-6)
    assert losses.normal_term(n, n, oriented=True).item() == pytest.approx(0.0, abs=1e-6)


def test_off_surface_term_values():
    assert losses.off_surface_term(torch.zeros(4)).item() == pytest.approx(1.0)
    assert losses.off_surface_term(torch.full((4,), 0.01), alpha=100).item() == pytest.approx(math.exp(-1))


def test_divergence_term_clamps():
    lap = torch.tensor([0.0, 1.0, 1000.0, -2.0])
    assert losses.divergence_term(lap).item() == pytest.approx((0.1 + 1.0 + 50.0 + 2.0) / 4)


def test_anneal_digs_linear_schedule():
    knots = ((0.0, 100.0), (0.2, 100.0), (0.4, 0.0))
    assert losses.anneal(0.0, knots) == 100.0
    assert losses.anneal(0.2, knots) == 100.0
    assert losses.anneal(0.3, knots) == pytest.approx(50.0)
    assert losses.anneal(0.4, knots) == 0.0
    assert losses.anneal(0.9, knots) == 0.0
    with pytest.raises(ValueError, match="sorted"):
        losses.anneal(0.5, ((0.5, 1.0), (0.1, 0.0)))
    with pytest.raises(ValueError, match="at least one"):
        losses.anneal(0.5, ())
