import torch

from recon.fields import SirenSDFConfig


def test_geometric_init_is_close_to_a_sphere_sdf():
    torch.manual_seed(0)
    field = SirenSDFConfig(hidden_dim=64, n_hidden_layers=3).build()
    x = torch.nn.functional.normalize(torch.randn(200, 3), dim=-1)
    inner = field(0.05 * x)
    outer = field(0.95 * x)
    # Negative near the centre, larger far out, and radially increasing on average.
    assert (inner < outer).float().mean() > 0.95
    assert inner.mean() < 0


def test_gradient_matches_finite_differences():
    torch.manual_seed(1)
    field = SirenSDFConfig(hidden_dim=32, n_hidden_layers=2, multi_frequency=False).build().double()
    x = torch.rand(20, 3, dtype=torch.float64) * 1.6 - 0.8
    _, grad = field.forward_with_gradient(x, create_graph=False)
    h = 1e-6
    fd = torch.stack([(field(x + h * e) - field(x - h * e)) / (2 * h) for e in torch.eye(3, dtype=torch.float64)], -1)
    assert torch.allclose(grad, fd, atol=1e-5)
