"""SIREN SDF with DiGS's geometric initialisation, kept for comparison with the hash grid.

Sine layers ``sin(30 (W h + b))``. The geometric initialisation (DiGS, Ben-Shabat et al. 2022)
scales the weights so that the first layers act almost linearly, sets the penultimate layer
near the sine's peak and the last layer to a negative sum, and maps the raw output ``o`` to
``sign(o) sqrt(|o|) - radius``: at initialisation the field is then close to a sphere SDF. The
multi-frequency variant (MFGI) gives a quarter of the first layer's units a low frequency and
decouples the high-frequency ones in the second layer, so that detail can grow later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from recon.fields.base import DistanceField

_OMEGA = 30.0


@dataclass(frozen=True)
class SirenSDFConfig:
    """Configuration of :class:`SirenSDF`."""

    hidden_dim: int = 128
    """Width of each hidden layer."""
    n_hidden_layers: int = 4
    """Number of hidden sine layers."""
    sphere_radius: float = 1.6
    """Offset subtracted after the square-root output map (DiGS uses 1.6)."""
    output_scale: float = 0.1
    """Scale of the output after the offset (DiGS uses 0.1 for surface reconstruction)."""
    multi_frequency: bool = True
    """Use the multi-frequency geometric initialisation (MFGI)."""

    def build(self) -> SirenSDF:
        return SirenSDF(self)


class SirenSDF(DistanceField):
    """SIREN signed distance field (negative inside)."""

    def __init__(self, config: SirenSDFConfig) -> None:
        super().__init__()
        self.config = config
        dims = [3] + [config.hidden_dim] * (config.n_hidden_layers + 1) + [1]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self._init()

    def _init(self) -> None:
        cfg = self.config
        with torch.no_grad():
            for layer in self.layers[:-2]:
                n_out = layer.weight.shape[0]
                bound = math.sqrt(3.0 / n_out)
                layer.weight.uniform_(-bound / _OMEGA, bound / _OMEGA)
                layer.bias.uniform_(-1.0 / (n_out * 1000 * _OMEGA), 1.0 / (n_out * 1000 * _OMEGA))
            penultimate, last = self.layers[-2], self.layers[-1]
            n = penultimate.weight.shape[0]
            penultimate.weight.copy_((0.5 * math.pi * torch.eye(n) + 1e-3 * torch.randn(n, n)) / _OMEGA)
            penultimate.bias.copy_((0.5 * math.pi * torch.ones(n) + 1e-3 * torch.randn(n)) / _OMEGA)
            last.weight.copy_(-torch.ones(1, n) + 1e-5 * torch.randn(1, n))
            last.bias.fill_(float(n))
            if cfg.multi_frequency and len(self.layers) > 3:
                first, second = self.layers[0], self.layers[1]
                n_out, n_in = first.weight.shape
                n_low = n_out // 4
                bound = math.sqrt(3.0 / n_in)
                # Low-frequency quarter: one period over the domain; the rest: thirty.
                first.weight[:n_low].uniform_(-bound / _OMEGA, bound / _OMEGA)
                first.weight[n_low:].uniform_(-bound, bound)
                m = second.weight.shape[1]
                b2 = math.sqrt(3.0 / m)
                second.weight.uniform_(-b2, b2 / _OMEGA).mul_(5e-4)
                second.weight[:n_low, :n_low].uniform_(-b2 / _OMEGA, b2 / _OMEGA)

    def forward(self, x: Tensor) -> Tensor:
        h = x
        for layer in self.layers[:-1]:
            h = torch.sin(_OMEGA * layer(h))
        out = self.layers[-1](h).squeeze(-1)
        out = torch.sign(out) * torch.sqrt(out.abs() + 1e-8)
        return (out - self.config.sphere_radius) * self.config.output_scale

    def forward_with_gradient(self, x: Tensor, create_graph: bool = True) -> tuple[Tensor, Tensor]:
        x_in = x.detach().requires_grad_(True)
        with torch.enable_grad():
            sdf = self.forward(x_in)
            (grad,) = torch.autograd.grad(sdf.sum(), x_in, create_graph=create_graph)
        if not create_graph:
            sdf, grad = sdf.detach(), grad.detach()
        return sdf, grad
