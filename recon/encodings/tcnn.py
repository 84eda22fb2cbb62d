"""Optional tiny-cuda-nn backend for the hash grid (CUDA only, imported lazily).

tiny-cuda-nn is not a dependency: ``import recon.encodings`` never imports it, and
:class:`TcnnHashGrid` raises a clear ``ImportError`` only when constructed without it.
It registers itself as the hash grid's accelerated backend 'tcnn' (``recon.encodings.__init__``
imports this module), so ``HashGridConfig(backend="auto").build()`` picks it when a CUDA device
is present and ``tinycudann`` is importable.

Its parameterisation follows tiny-cuda-nn (vertex offsets, table alignment), so its parameters
are not interchangeable with :class:`~recon.encodings.hash_grid.HashGrid`'s ``table``.
"""

from __future__ import annotations

import importlib.util

import torch
from torch import Tensor

from recon.encodings.base import Encoding
from recon.encodings.hash_grid import ACCELERATED, AcceleratedBackend, HashGridConfig

INSTALL_HINT = (
    "backend 'tcnn' needs tiny-cuda-nn's PyTorch bindings and a CUDA GPU: "
    "pip install git+https://github.com/NVlabs/tiny-cuda-nn/#subdirectory=bindings/torch "
    "(or use backend='cpp' / 'torch')"
)


def tcnn_usable() -> bool:
    """True when a CUDA device is available and ``tinycudann`` can be imported."""
    return torch.cuda.is_available() and importlib.util.find_spec("tinycudann") is not None


class TcnnHashGrid(Encoding):
    """Hash grid evaluated by tiny-cuda-nn on CUDA; same config and interface as ``HashGrid``."""

    def __init__(self, config: HashGridConfig) -> None:
        super().__init__()
        try:
            import tinycudann
        except ImportError as exc:
            raise ImportError(INSTALL_HINT) from exc
        if not torch.cuda.is_available():
            raise RuntimeError(INSTALL_HINT)
        self.config = config
        enc_cfg = {
            "otype": "HashGrid",
            "n_levels": config.n_levels,
            "n_features_per_level": config.n_features_per_level,
            "log2_hashmap_size": config.log2_hashmap_size,
            "base_resolution": config.base_resolution,
            "per_level_scale": config.per_level_scale,
        }
        try:  # float32 parameters where the bindings support choosing (half by default)
            self.encoding = tinycudann.Encoding(3, enc_cfg, dtype=torch.float32)
        except TypeError:
            self.encoding = tinycudann.Encoding(3, enc_cfg)
        with torch.no_grad():
            self.encoding.params.uniform_(-config.init_scale, config.init_scale)
        self._n_active = config.n_levels
        self.register_buffer("_mask", torch.ones(self.out_dim), persistent=False)

    @property
    def out_dim(self) -> int:
        return self.config.n_levels * self.config.n_features_per_level

    @property
    def n_levels(self) -> int:
        return self.config.n_levels

    def set_active_levels(self, n_active: int) -> None:
        """Levels >= n_active are masked to zero (tiny-cuda-nn still evaluates them)."""
        self._n_active = max(0, min(int(n_active), self.n_levels))
        self._mask.zero_()
        self._mask[: self._n_active * self.config.n_features_per_level] = 1

    def forward(self, x: Tensor) -> Tensor:
        """(..., 3) in [-1, 1]^3 -> (..., out_dim) float32."""
        lead = x.shape[:-1]
        u = ((x.reshape(-1, 3) + 1) * 0.5).clamp(0, 1)
        enc = self.encoding(u).float() * self._mask
        return enc.reshape(*lead, self.out_dim)

    def forward_with_jacobian(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Jacobian via ``out_dim`` double-backward passes (tiny-cuda-nn has no direct kernel).

        Slow compared to the encoding itself; acceptable on GPU for the eikonal term.
        """
        xin = x if x.requires_grad else x.detach().requires_grad_(True)
        enc = self.forward(xin)
        flat = enc.reshape(-1, self.out_dim)
        ones = torch.ones_like(flat[:, 0])
        rows = []
        for k in range(self.out_dim):
            (g,) = torch.autograd.grad(flat[:, k], xin, ones, create_graph=True, retain_graph=True)
            rows.append(g.reshape(-1, 3))
        jac = torch.stack(rows, dim=1)
        return enc, jac.reshape(*x.shape[:-1], self.out_dim, 3)


if "tcnn" in ACCELERATED:
    raise KeyError("hash-grid backend 'tcnn' is already registered")
ACCELERATED["tcnn"] = AcceleratedBackend(usable=tcnn_usable, build=TcnnHashGrid)
