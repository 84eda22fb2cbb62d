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


# ---- every term on an analytic field, against a value computed by hand ----------------------

R = 0.5


def sphere_sdf(x):
    """Signed distance to the sphere of radius R at the origin (negative inside)."""
    return x.norm(dim=-1) - R


def plane_udf(x):
    """Unsigned distance to the plane z = 0."""
    return x[:, 2].abs()


def value_and_grad(field, x):
    x = x.clone().requires_grad_(True)
    f = field(x)
    (g,) = torch.autograd.grad(f.sum(), x)
    return f.detach(), g


def directions(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=torch.float64), dim=-1)


def test_surface_term_on_a_sphere():
    d = directions(100)
    assert losses.surface_term(sphere_sdf(R * d)).item() == pytest.approx(0.0, abs=1e-12)
    # Half the points 0.1 outside, half 0.3 inside: mean |f| = (0.1 + 0.3) / 2.
    x = torch.cat([(R + 0.1) * d[:50], (R - 0.3) * d[50:]])
    assert losses.surface_term(sphere_sdf(x)).item() == pytest.approx(0.2)


def test_off_surface_term_on_a_sphere():
    # Points at distances 0.01 and 0.02 from the sphere: exp(-100 * 0.01) and exp(-100 * 0.02).
    d = directions(2)
    x = torch.stack([(R + 0.01) * d[0], (R - 0.02) * d[1]])
    expected = (math.exp(-1.0) + math.exp(-2.0)) / 2
    assert losses.off_surface_term(sphere_sdf(x), alpha=100.0).item() == pytest.approx(expected)


def test_eikonal_terms_on_scaled_sphere_sdfs():
    x = directions(64) * 0.7
    _, g = value_and_grad(sphere_sdf, x)  # a distance function: |grad| = 1
    assert losses.eikonal_term(g).item() == pytest.approx(0.0, abs=1e-12)
    assert losses.eikonal_l2_term(g).item() == pytest.approx(0.0, abs=1e-12)
    _, g3 = value_and_grad(lambda p: 3.0 * sphere_sdf(p), x)  # |grad| = 3: |3 - 1| = 2, (3 - 1)^2 = 4
    assert losses.eikonal_term(g3).item() == pytest.approx(2.0)
    assert losses.eikonal_l2_term(g3).item() == pytest.approx(4.0)
    _, g_half = value_and_grad(lambda p: 0.5 * sphere_sdf(p), x)  # |grad| = 1/2: 1/2 and 1/4
    assert losses.eikonal_term(g_half).item() == pytest.approx(0.5)
    assert losses.eikonal_l2_term(g_half).item() == pytest.approx(0.25)
    assert losses.eikonal_term(g[:0]).item() == 0.0  # no sample selected


def test_normal_term_on_a_sphere():
    d = directions(40)
    _, g = value_and_grad(sphere_sdf, R * d)  # grad = the outward normal d
    assert losses.normal_term(g, d, oriented=True).item() == pytest.approx(0.0, abs=1e-12)
    assert losses.normal_term(g, -d, oriented=True).item() == pytest.approx(2.0)  # inside out
    assert losses.normal_term(g, -d, oriented=False).item() == pytest.approx(0.0, abs=1e-12)
    # Normals turned by 60 degrees about a tangent: cos = 1/2 either way.
    t = torch.nn.functional.normalize(torch.cross(d, torch.tensor([[0.0, 0.0, 1.0]], dtype=d.dtype).expand_as(d),
                                                  dim=-1), dim=-1)
    tilted = 0.5 * d + math.sqrt(3) / 2 * t
    assert losses.normal_term(g, tilted, oriented=True).item() == pytest.approx(0.5)


def test_distance_terms_on_a_sphere():
    x = directions(64, seed=1) * torch.linspace(0.1, 0.9, 64, dtype=torch.float64)[:, None]
    f = sphere_sdf(x)
    exact = x.norm(dim=-1) - R
    assert losses.distance_term(f, exact).item() == pytest.approx(0.0, abs=1e-12)
    assert losses.distance_term(f, exact + 0.05).item() == pytest.approx(0.05)
    # Regressing |f| onto the unsigned distance: exact for the SDF and for its negation, while the
    # signed regression of -f is off by 2 |f| (the mean of 2 | |x| - R | over the samples).
    assert losses.unsigned_distance_term(f, exact.abs()).item() == pytest.approx(0.0, abs=1e-12)
    assert losses.unsigned_distance_term(-f, exact.abs()).item() == pytest.approx(0.0, abs=1e-12)
    assert losses.distance_term(-f, exact).item() == pytest.approx(2 * exact.abs().mean().item())


def test_direction_term_on_a_plane_udf():
    g0 = torch.Generator().manual_seed(2)
    x = torch.rand(50, 3, generator=g0, dtype=torch.float64) * 2 - 1
    x[:, 2] = torch.where(x[:, 2].abs() < 0.05, 0.1, x[:, 2])  # off the plane, where the UDF has a gradient
    _, g = value_and_grad(plane_udf, x)
    away = torch.zeros_like(x)
    away[:, 2] = torch.sign(x[:, 2])  # from the nearest point of the plane towards x
    assert losses.direction_term(g, away).item() == pytest.approx(0.0, abs=1e-12)
    assert losses.direction_term(g, -away).item() == pytest.approx(2.0)
    along = torch.zeros_like(x)
    along[:, 0] = 1.0  # in the plane: cos = 0
    assert losses.direction_term(g, along).item() == pytest.approx(1.0)
    assert losses.direction_term(g[:0], away[:0]).item() == 0.0


def test_sign_term_on_a_plane():
    # The raw output s = z of a plane's SDF at z = -0.5, -0.1, 0.2, 0.4: relu(-s) = 0.5, 0.1, 0, 0.
    x = torch.tensor([[0.3, 0.1, -0.5], [0.0, 0.0, -0.1], [0.2, -0.4, 0.2], [0.9, 0.9, 0.4]])
    assert losses.sign_term(x[:, 2]).item() == pytest.approx(0.15)
    assert losses.sign_term(plane_udf(x)).item() == 0.0  # |s| is never negative


def test_divergence_term_on_a_sphere_sdf():
    # div grad (|x| - R) = 2 / |x|: 4 at |x| = 0.5, 2 at |x| = 1 (inside the clamp [0.1, 50]).
    d = directions(2, seed=3)
    x = torch.stack([0.5 * d[0], 1.0 * d[1]])
    lap = losses.laplacian_fd(sphere_sdf, x, h=1e-3)
    assert losses.divergence_term(lap).item() == pytest.approx(3.0, rel=1e-4)


def test_color_and_mask_terms():
    rgb = torch.tensor([[0.2, 0.4, 0.6], [1.0, 1.0, 1.0]])
    target = torch.tensor([[0.3, 0.4, 0.4], [1.0, 0.5, 1.0]])
    assert losses.color_l1_term(rgb, target).item() == pytest.approx((0.1 + 0.0 + 0.2 + 0.0 + 0.5 + 0.0) / 6)
    # BCE of opacity 1/2 is ln 2 for either mask value; fully opaque against an empty mask is
    # clamped to -ln(eps) instead of infinity.
    assert losses.mask_bce_term(torch.tensor([0.5, 0.5]), torch.tensor([0.0, 1.0])).item() == pytest.approx(math.log(2))
    assert losses.mask_bce_term(torch.tensor([1.0]), torch.tensor([0.0])).item() == pytest.approx(-math.log(1e-3), rel=1e-4)


def test_normal_smoothness_term():
    a = torch.tensor([[0.0, 0.0, 2.0], [1.0, 0.0, 0.0]])
    # Parallel normals cost nothing whatever the gradients' lengths; opposite ones cost |2n|^2 = 4;
    # perpendicular ones |n1 - n2|^2 = 2.
    assert losses.normal_smoothness_term(a, 0.5 * a).item() == pytest.approx(0.0, abs=1e-12)
    assert losses.normal_smoothness_term(a, -a).item() == pytest.approx(4.0)
    b = torch.tensor([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert losses.normal_smoothness_term(a, b).item() == pytest.approx(2.0)
