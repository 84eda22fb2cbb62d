"""Abstract distance field: an ``nn.Module`` mapping points to signed or unsigned distances."""

from __future__ import annotations

import abc

import torch
from torch import Tensor, nn


class DistanceField(nn.Module, abc.ABC):
    """f: R^3 -> R on the normalised cube [-1, 1]^3.

    For an SDF the value is negative inside the surface and positive outside; the unit is the
    normalised cube's (multiply by ``Normalization.scale`` for input units).
    """

    @abc.abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """(n, 3) points -> (n,) distances."""

    @abc.abstractmethod
    def forward_with_gradient(self, x: Tensor, create_graph: bool = True) -> tuple[Tensor, Tensor]:
        """(n, 3) -> ((n,) distances, (n, 3) spatial gradient df/dx).

        With ``create_graph`` the gradient is differentiable with respect to the parameters,
        as the eikonal and normal terms need.
        """

    def set_progress(self, fraction: float) -> None:
        """Training progress in [0, 1]; fields with coarse-to-fine schedules override this."""

    @torch.no_grad()
    def evaluate(self, x: Tensor, chunk_size: int = 1 << 18) -> Tensor:
        """Chunked, gradient-free evaluation for meshing and metrics."""
        if x.shape[0] <= chunk_size:
            return self.forward(x)
        return torch.cat([self.forward(c) for c in x.split(chunk_size)])
