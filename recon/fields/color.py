"""View-dependent colour network of a NeuS-style model, with a spherical-harmonics direction encoding.

The colour at a surface point depends on a geometry feature of the SDF network there (its last
hidden layer), the normal (the SDF gradient, as NeuS's "IDR" rendering network takes it) and
the viewing direction encoded by real spherical harmonics up to degree 3 (16 values, as
instant-ngp encodes directions).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor, nn

# Real spherical-harmonics normalisation constants for degrees 0..3.
_C0 = 0.28209479177387814
_C1 = 0.4886025119029199
_C2 = (1.0925484305920792, 0.31539156525252005, 0.5462742152960396)
_C3 = (0.5900435899266435, 2.890611442640554, 0.4570457994644658, 0.3731763325901154, 1.445305721320277)


def sh_encode(d: Tensor) -> Tensor:
    """(..., 3) unit directions -> (..., 16) real spherical harmonics of degrees 0 to 3."""
    x, y, z = d.unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    return torch.stack([
        torch.full_like(x, _C0),
        -_C1 * y, _C1 * z, -_C1 * x,
        _C2[0] * x * y, -_C2[0] * y * z, _C2[1] * (3.0 * zz - 1.0), -_C2[0] * x * z, _C2[2] * (xx - yy),
        _C3[0] * y * (yy - 3.0 * xx), _C3[1] * x * y * z, _C3[2] * y * (5.0 * zz - 1.0) * -1.0,
        _C3[3] * z * (5.0 * zz - 3.0), _C3[2] * x * (5.0 * zz - 1.0) * -1.0, _C3[4] * z * (xx - yy),
        _C3[0] * x * (3.0 * yy - xx),
    ], dim=-1)  # fmt: skip


@dataclass(frozen=True)
class ColorConfig:
    """Configuration of :class:`ColorNetwork`."""

    feature_dim: int = 32
    """Width of the geometry feature coming from the SDF network."""
    hidden_dim: int = 64
    """Width of each hidden layer."""
    n_hidden_layers: int = 2
    """Number of hidden (ReLU) layers."""
    view_degree: int = 3
    """Highest spherical-harmonics degree of the view direction (0-3; (degree + 1)^2 values, 0:
    no view dependence beyond the constant)."""

    def __post_init__(self) -> None:
        if not 0 <= self.view_degree <= 3:
            raise ValueError(f"expected 0 <= view_degree <= 3, got {self.view_degree}")

    def build(self) -> ColorNetwork:
        return ColorNetwork(self)


class ColorNetwork(nn.Module):
    """c = sigmoid(MLP([feature, normal, SH(view direction)])), RGB in [0, 1]."""

    def __init__(self, config: ColorConfig) -> None:
        super().__init__()
        self.config = config
        self.n_view = (config.view_degree + 1) ** 2
        dims = [config.feature_dim + 3 + self.n_view] + [config.hidden_dim] * config.n_hidden_layers + [3]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(dims)):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                layers.append(nn.ReLU(inplace=True))
        self.mlp = nn.Sequential(*layers)

    def forward(self, feature: Tensor, normal: Tensor, view_dir: Tensor) -> Tensor:
        """(n, feature_dim), (n, 3) normals (any length), (n, 3) unit directions -> (n, 3) RGB."""
        view = sh_encode(view_dir)[..., : self.n_view]
        return torch.sigmoid(self.mlp(torch.cat([feature, normal, view], dim=-1)))
