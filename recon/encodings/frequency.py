"""NeRF-style frequency (Fourier feature) encoding with an analytic Jacobian.

``gamma(x) = [x, sin(2^0 pi x), cos(2^0 pi x), ..., sin(2^(K-1) pi x), cos(2^(K-1) pi x)]``
applied per coordinate. Frequency bands play the role of levels for coarse-to-fine training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from recon.encodings.base import Encoding


@dataclass(frozen=True)
class FrequencyConfig:
    n_frequencies: int = 6
    """Number of octave bands K; band k has angular frequency 2^k * pi per unit of x."""
    include_input: bool = True
    """Prepend the raw coordinates (3 features) to the sin/cos features."""

    def build(self) -> FrequencyEncoding:
        """Instantiate the encoding."""
        return FrequencyEncoding(self)


class FrequencyEncoding(Encoding):
    """Output layout: [x (3, optional)] then per band k: sin (3), cos (3)."""

    def __init__(self, config: FrequencyConfig = FrequencyConfig()) -> None:
        super().__init__()
        if config.n_frequencies < 0:
            raise ValueError("n_frequencies must be >= 0")
        self.config = config
        freqs = torch.tensor([(2.0**k) * math.pi for k in range(config.n_frequencies)])
        self.register_buffer("freqs", freqs, persistent=False)
        self._n_active = config.n_frequencies

    @property
    def out_dim(self) -> int:
        return 3 * int(self.config.include_input) + 6 * self.config.n_frequencies

    @property
    def n_levels(self) -> int:
        return self.config.n_frequencies

    def set_active_levels(self, n_active: int) -> None:
        """Bands >= n_active output zeros (the raw input, if included, always passes)."""
        self._n_active = max(0, min(int(n_active), self.n_levels))

    def _mask(self, x: Tensor) -> Tensor:
        m = (torch.arange(self.n_levels, device=x.device) < self._n_active).to(x.dtype)
        return m[:, None]  # (K, 1), broadcast over the 3 coordinates

    def forward(self, x: Tensor) -> Tensor:
        """(..., 3) -> (..., out_dim)."""
        return self.forward_with_jacobian(x, _with_jac=False)[0]

    def forward_with_jacobian(self, x: Tensor, _with_jac: bool = True) -> tuple[Tensor, Tensor]:
        """(..., 3) -> ((..., out_dim), (..., out_dim, 3)); the Jacobian is diagonal per band."""
        # Points outside the cube are clamped (zero derivative there, like autograd of clamp).
        inside = ((x >= -1) & (x <= 1)).to(x.dtype)
        x = x.clamp(-1, 1)
        lead = x.shape[:-1]
        w = self.freqs.to(x.dtype)[:, None]  # (K, 1)
        arg = x[..., None, :] * w  # (..., K, 3)
        mask = self._mask(x)
        s, c = torch.sin(arg) * mask, torch.cos(arg) * mask
        parts = [x] if self.config.include_input else []
        parts.append(torch.stack([s, c], dim=-2).reshape(*lead, -1))  # per band: sin xyz, cos xyz
        enc = torch.cat(parts, dim=-1)
        if not _with_jac:
            return enc, enc.new_empty(0)
        # d sin(w x_d) / d x_d = w cos(w x_d); d cos / d x_d = -w sin; zero off the diagonal.
        eye = torch.eye(3, dtype=x.dtype, device=x.device)
        dvals = torch.stack([w * c, -w * s], dim=-2)  # (..., K, 2, 3)
        band_jac = (dvals[..., None] * eye).reshape(*lead, -1, 3)  # (..., 6K, 3)
        jparts = [eye.expand(*lead, 3, 3)] if self.config.include_input else []
        jparts.append(band_jac)
        jac = torch.cat(jparts, dim=-2) * inside[..., None, :]
        return enc, jac
