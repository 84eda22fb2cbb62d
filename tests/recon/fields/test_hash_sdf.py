"""The hash-grid SDF's gradient in closed form against autograd, and against finite differences."""

from __future__ import annotations

import pytest
import torch

from recon.encodings.hash_grid import HashGridConfig
from recon.fields.hash_sdf import HashSDF, HashSDFConfig


class _ThroughAutograd(HashSDF):
    """The same field, its head overridden (unchanged), so the gradient goes through autograd.grad."""

    def _head(self, feature):
        return super()._head(feature)


def _fields(layers: int, backend: str) -> tuple[HashSDF, HashSDF]:
    grid = HashGridConfig(n_levels=6, n_features_per_level=2, log2_hashmap_size=12, base_resolution=4,
                          finest_resolution=64, backend=backend)
    cfg = HashSDFConfig(encoding=grid, hidden_dim=16, n_hidden_layers=layers, softplus_beta=100.0)
    torch.manual_seed(0)
    a = HashSDF(cfg)
    with torch.no_grad():  # a field with structure: non-zero table and encoding weights
        a.encoding.table.normal_(0.0, 0.05)
        a.layers[0].weight.normal_(0.0, 0.3)
    b = _ThroughAutograd(cfg)
    b.load_state_dict(a.state_dict())
    a.set_progress(1.0)
    b.set_progress(1.0)
    return a, b


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("backend", ["cpp", "torch"])
def test_closed_form_gradient_matches_autograd_in_values_and_parameter_gradients(layers, backend):
    closed, auto = _fields(layers, backend)
    x = torch.rand(500, 3, generator=torch.Generator().manual_seed(1)) * 1.6 - 0.8
    outs, grads = [], []
    for field in (closed, auto):
        sdf, g, feat = field.forward_with_gradient_and_feature(x, create_graph=True)
        # The losses a NeuS fit puts on these: colour through the feature, eikonal through g.
        loss = sdf.abs().mean() + ((g.norm(dim=-1) - 1.0) ** 2).mean() + feat.square().mean()
        field.zero_grad()
        loss.backward()
        outs.append((sdf.detach(), g.detach(), feat.detach()))
        grads.append({k: p.grad.clone() for k, p in field.named_parameters()})
    for u, v in zip(*outs, strict=True):
        assert torch.allclose(u, v, rtol=1e-5, atol=1e-6)
    assert grads[0].keys() == grads[1].keys()
    for k in grads[0]:
        assert torch.allclose(grads[0][k], grads[1][k], rtol=1e-4, atol=1e-6), k
        assert grads[0][k].abs().max() > 0, k  # every parameter is reached


def test_closed_form_gradient_matches_finite_differences_and_detaches_without_graph():
    closed, _ = _fields(2, "cpp")
    closed.double()
    x = torch.rand(64, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 1.6 - 0.8
    sdf, g, feat = closed.forward_with_gradient_and_feature(x, create_graph=False)
    assert not (sdf.requires_grad or g.requires_grad or feat.requires_grad)
    h = 1e-6
    fd = torch.stack([(closed(x + h * e) - closed(x - h * e)) / (2 * h) for e in torch.eye(3, dtype=x.dtype)], -1)
    assert torch.allclose(g, fd, rtol=1e-4, atol=1e-6)
    assert torch.allclose(sdf, closed(x), atol=1e-12)
