"""Abstract positional encoding: a module mapping points in [-1, 1]^3 to feature vectors."""

from __future__ import annotations

import abc

from torch import Tensor, nn


class Encoding(nn.Module, abc.ABC):
    """Maps (n, 3) points in [-1, 1]^3 to (n, out_dim) features.

    Points outside the cube are clamped to it. ``forward_with_jacobian`` also returns the
    Jacobian d(features)/d(x), differentiable with respect to the encoding's parameters; the
    fields use it for the analytic SDF gradient needed by the eikonal and normal terms.
    """

    in_dim: int = 3

    @property
    @abc.abstractmethod
    def out_dim(self) -> int:
        """Number of output features."""

    @abc.abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """(n, 3) -> (n, out_dim)."""

    @abc.abstractmethod
    def forward_with_jacobian(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(n, 3) -> ((n, out_dim), (n, out_dim, 3))."""

    def set_active_levels(self, n_active: int) -> None:
        """Coarse-to-fine training: only the first ``n_active`` levels contribute (others 0)."""

    @property
    def n_levels(self) -> int:
        return 1
