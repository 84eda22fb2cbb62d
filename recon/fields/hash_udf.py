"""Hash-grid UDF: the :class:`HashSDF` network with a non-negative output, f(x) = |s(x)|.

Why ``abs`` rather than softplus or ReLU on the output: |s| has gradient norm |grad s|
everywhere, so the eikonal and gradient-direction terms stay meaningful right up to the
surface and f reaches exactly 0 on it, whereas softplus(s) only approaches 0 as s -> -inf, where
its gradient vanishes, and ReLU(s) has no gradient at all wherever s < 0. The kink of |s| at the
surface is the kink every UDF has there. The price of ``abs`` is that s may change sign anywhere,
and every sign change is a zero sheet of f; the fit therefore keeps s >= 0 with a penalty on the
raw output, which training mode exposes as ``last_raw``.

Initialisation: the geometric initialisation of HashSDF with bias ``-sphere_radius`` gives
roughly s ~ |x| - r (coarsely, for a small MLP), so f starts near the UDF of a sphere of radius r; the default r = 0 starts from the
distance to the origin, a smooth positive field with no zero sheet that training has to remove
(a sphere's sheet would have to be folded away on open surfaces such as a disc).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from recon.fields.hash_sdf import HashSDF, HashSDFConfig


@dataclass(frozen=True)
class HashUDFConfig(HashSDFConfig):
    """Configuration of :class:`HashUDF` (the fields of :class:`HashSDFConfig`)."""

    sphere_radius: float = 0.0
    """Radius r of the initial field ||x| - r|, in normalised units (0: distance to the origin)."""

    def build(self) -> HashUDF:
        return HashUDF(self)


class HashUDF(HashSDF):
    """Unsigned distance field f(x) = |MLP([x, hash_grid(x)])| >= 0, zero on the surface."""

    def _head(self, feature: Tensor) -> Tensor:
        # forward and forward_with_gradient both go through here, so the gradient is that of |s|.
        s = super()._head(feature)
        if self.training:
            self.last_raw = s  # the fit penalises s < 0 (see UdfConfig.w_sign)
        return s.abs()
