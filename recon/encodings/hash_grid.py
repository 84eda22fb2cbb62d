"""Multi-resolution hash encoding (Mueller et al. 2022, "instant-ngp"), CPU-first.

Level ``l`` has resolution ``N_l = floor(base * b**l)`` with ``b = (finest / base)**(1/(L-1))``:
a point ``u = clamp((x + 1) / 2, 0, 1)`` falls in the cell ``floor(u * N_l)`` of an
``(N_l + 1)**3``-vertex lattice. Small levels index that lattice densely; once it has more
vertices than ``2**log2_hashmap_size`` the vertex ``(i, j, k)`` is hashed to
``(i * 1 ^ j * 2654435761 ^ k * 805459861) mod 2**log2_hashmap_size`` (collisions are left to
the optimiser, as in the paper). Features of the 8 cell corners are blended trilinearly and the
levels are concatenated: ``out_dim = n_levels * n_features_per_level``.

Backends: ``"cpp"`` (compiled OpenMP kernel, see ``csrc/hash_grid_cpu.cpp``) and ``"torch"``
(:func:`encode_torch`, the vectorised reference, also used on non-CPU devices). Both give the
analytic Jacobian ``d enc / d x`` per unit of ``x`` in [-1, 1]. The C++ backward is first order:
gradients of a loss on the Jacobian reach the table, but ``d jac / d x`` is *not* propagated to
``x`` (callers use finite differences for divergence-type terms). The kernel evaluates ``enc``
with shared corner weights in ``forward`` and as a lerp tree in ``forward_with_jacobian``; the two
agree to float32 rounding (~1e-7 relative), not bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from recon.encodings import _ext
from recon.encodings.base import Encoding

Backend = Literal["auto", "cpp", "torch", "tcnn"]
PRIMES = (1, 2654435761, 805459861)
"""Per-axis hash multipliers from the instant-ngp paper (the first is 1 for cache coherence)."""


@dataclass(frozen=True)
class HashGridConfig:
    n_levels: int = 16
    """Number of resolution levels L (output has L * n_features_per_level features)."""
    n_features_per_level: int = 2
    """Feature channels F stored per lattice vertex and level."""
    log2_hashmap_size: int = 19
    """log2 of the maximum number of table rows per level T (rows of F float32 each)."""
    base_resolution: int = 16
    """Cells per axis of the coarsest level, across the [-1, 1] cube."""
    finest_resolution: int = 2048
    """Cells per axis of the finest level; intermediate levels are spaced geometrically."""
    init_scale: float = 1e-4
    """Table entries start uniform in [-init_scale, init_scale] (feature units)."""
    backend: Backend = "auto"
    """'cpp' compiled CPU kernel, 'torch' reference, 'tcnn' tiny-cuda-nn, 'auto' = best available."""

    def __post_init__(self) -> None:
        if self.n_levels < 1:
            raise ValueError("n_levels must be >= 1")
        if not 1 <= self.n_features_per_level <= 32:
            raise ValueError("n_features_per_level must be in 1..32")
        if not 4 <= self.log2_hashmap_size <= 30:
            raise ValueError("log2_hashmap_size must be in 4..30")
        if not 1 <= self.base_resolution <= self.finest_resolution:
            raise ValueError("need 1 <= base_resolution <= finest_resolution")
        if self.backend not in ("auto", "cpp", "torch", "tcnn"):
            raise ValueError(f"unknown backend {self.backend!r}")

    @property
    def per_level_scale(self) -> float:
        """Resolution growth factor b between consecutive levels."""
        if self.n_levels == 1:
            return 1.0
        return math.exp(
            math.log(self.finest_resolution / self.base_resolution) / (self.n_levels - 1)
        )

    def build(self) -> Encoding:
        """Instantiate the encoding: a :class:`HashGrid`, or the accelerated backend named by
        ``backend`` (with 'auto': the first one usable here, e.g. tiny-cuda-nn on CUDA)."""
        if self.backend in ACCELERATED:
            return ACCELERATED[self.backend].build(self)
        if self.backend == "auto":
            for accel in ACCELERATED.values():
                if accel.usable():
                    return accel.build(self)
        return HashGrid(self)


@dataclass(frozen=True)
class AcceleratedBackend:
    """An optional hash-grid implementation behind the :class:`HashGridConfig` interface."""

    usable: Callable[[], bool]
    """Whether it can run on this machine (checked by backend 'auto'; cheap, imports nothing heavy)."""
    build: Callable[[HashGridConfig], Encoding]
    """Construct it from a config (raises a clear error when it cannot run here)."""


ACCELERATED: dict[str, AcceleratedBackend] = {}
"""Backend name -> accelerated backend. ``recon.encodings.tcnn`` adds 'tcnn' (the package's
``__init__`` imports it, so it is registered before any config is built); the backend depends on
this module, never the other way round."""


@dataclass(frozen=True)
class LevelLayout:
    """Per-level resolution and the level's row range in the shared table."""

    resolutions: tuple[int, ...]
    offsets: tuple[int, ...]
    sizes: tuple[int, ...]

    @property
    def n_rows(self) -> int:
        return self.offsets[-1] + self.sizes[-1]

    def hashed(self, level: int) -> bool:
        return self.sizes[level] < (self.resolutions[level] + 1) ** 3

    @classmethod
    def from_config(cls, cfg: HashGridConfig) -> LevelLayout:
        b = cfg.per_level_scale
        # The epsilon keeps float error from turning e.g. 2048.0 into 2047 at the finest level.
        res = tuple(
            max(1, math.floor(cfg.base_resolution * b**level + 1e-6))
            for level in range(cfg.n_levels)
        )
        cap = 2**cfg.log2_hashmap_size
        sizes = tuple(min((r + 1) ** 3, cap) for r in res)
        offsets = tuple(sum(sizes[:level]) for level in range(cfg.n_levels))
        return cls(res, offsets, sizes)


def encode_torch(
    x: Tensor, table: Tensor, layout: LevelLayout, n_active: int, with_jac: bool
) -> tuple[Tensor, Tensor | None]:
    """Reference encoding in plain PyTorch ops (autograd-differentiable to any order).

    ``x`` (n, 3) and ``table`` (rows, F) share a dtype. Returns ``enc`` (n, L*F) and, if
    ``with_jac``, ``jac`` (n, L*F, 3) computed by the explicit trilinear-derivative formula.
    Levels ``>= n_active`` are zero. Loops over the 8 corners to keep memory at O(n * L).
    """
    n, F, L = x.shape[0], table.shape[1], len(layout.resolutions)
    k = max(0, min(n_active, L))
    dev, dt = x.device, table.dtype
    enc = x.new_zeros(n, k, F)
    jac = x.new_zeros(n, k, F, 3) if with_jac else None
    if k > 0:
        res_i = torch.tensor(layout.resolutions[:k], device=dev)
        size_i = torch.tensor(layout.sizes[:k], device=dev)
        off_i = torch.tensor(layout.offsets[:k], device=dev)
        hashed = torch.tensor([layout.hashed(lv) for lv in range(k)], device=dev)
        res_f = res_i.to(dt)
        u_raw = (x + 1) * 0.5
        u = u_raw.clamp(0, 1)
        pos = u[:, None, :] * res_f[None, :, None]  # (n, k, 3)
        # Points at u == 1 belong to the last cell (with f == 1), as in the kernel.
        i0 = torch.minimum(pos.detach().floor().long(), (res_i - 1)[None, :, None])
        f = pos - i0.to(dt)
        # Per-axis index parts for both corner offsets; a corner combines one part per axis
        # (sum for dense levels, xor then mask for hashed ones, whose sizes are powers of two).
        stride = res_i + 1
        axis_i = [[i0[..., d] + b for b in (0, 1)] for d in range(3)]
        dense_p = [axis_i[0], [v * stride for v in axis_i[1]], [v * stride**2 for v in axis_i[2]]]
        hash_p = [axis_i[0], [v * PRIMES[1] for v in axis_i[1]], [v * PRIMES[2] for v in axis_i[2]]]
        w_axis = [[1 - f[..., d], f[..., d]] for d in range(3)]  # per-axis lerp weights
        for c in range(8):
            bx, by, bz = c & 1, (c >> 1) & 1, c >> 2
            dense = dense_p[0][bx] + dense_p[1][by] + dense_p[2][bz]
            hashed_idx = (hash_p[0][bx] ^ hash_p[1][by] ^ hash_p[2][bz]) & (size_i - 1)
            row = torch.where(hashed, hashed_idx, dense) + off_i  # (n, k)
            wx, wy, wz = w_axis[0][bx], w_axis[1][by], w_axis[2][bz]
            t = table[row]  # (n, k, F)
            enc = enc + (wx * wy * wz)[..., None] * t
            if jac is not None:
                sx, sy, sz = (1.0 if bx else -1.0), (1.0 if by else -1.0), (1.0 if bz else -1.0)
                dw = torch.stack([sx * wy * wz, sy * wx * wz, sz * wx * wy], dim=-1)  # d w / d pos
                jac = jac + t[..., None] * dw[:, :, None, :]
        if jac is not None:
            # d pos / d x = N_l / 2 inside the cube and 0 where the clamp is active (as autograd).
            inside = ((u_raw >= 0) & (u_raw <= 1)).to(dt)  # (n, 3)
            jac = jac * (res_f * 0.5)[None, :, None, None] * inside[:, None, None, :]
    if k < L:  # inactive levels contribute zeros (and hence zero gradients)
        enc = torch.cat([enc, x.new_zeros(n, L - k, F)], dim=1)
        if jac is not None:
            jac = torch.cat([jac, x.new_zeros(n, L - k, F, 3)], dim=1)
    enc = enc.reshape(n, L * F)
    return enc, (jac.reshape(n, L * F, 3) if jac is not None else None)


def _layout_args(layout: LevelLayout) -> tuple[Sequence[int], Sequence[int], Sequence[int]]:
    return layout.resolutions, layout.offsets, layout.sizes


class _CppEncode(torch.autograd.Function):
    """enc = kernel(x, table); backward gives grad_table and grad_x (first order)."""

    @staticmethod
    def forward(ctx, x: Tensor, table: Tensor, layout: LevelLayout, n_active: int) -> Tensor:
        enc, _ = _ext.load(strict=True).forward(x, table, *_layout_args(layout), n_active, False)
        ctx.save_for_backward(x, table)
        ctx.layout, ctx.n_active = layout, n_active
        return enc

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_enc: Tensor):
        x, table = ctx.saved_tensors
        need_x, need_table = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        g_table, g_x = _ext.load(strict=True).backward(
            x, table, grad_enc.contiguous(), grad_enc.new_empty(0),
            *_layout_args(ctx.layout), ctx.n_active, need_table, need_x,
        )  # fmt: skip
        return (g_x if need_x else None), (g_table if need_table else None), None, None


class _CppEncodeWithJacobian(torch.autograd.Function):
    """(enc, jac) = kernel(x, table), jac axis-major (n, 3, L*F). Loss gradients on jac reach the
    table but not x."""

    @staticmethod
    def forward(ctx, x: Tensor, table: Tensor, layout: LevelLayout, n_active: int):
        enc, jac = _ext.load(strict=True).forward(x, table, *_layout_args(layout), n_active, True)
        ctx.save_for_backward(x, table)
        ctx.layout, ctx.n_active = layout, n_active
        # Unused outputs then arrive as None instead of a materialised (n, 3, L*F) zero tensor.
        ctx.set_materialize_grads(False)
        return enc, jac

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_enc: Tensor | None, grad_jac: Tensor | None):
        x, table = ctx.saved_tensors
        need_x = ctx.needs_input_grad[0] and grad_enc is not None
        need_table = ctx.needs_input_grad[1] and (grad_enc is not None or grad_jac is not None)
        if not (need_x or need_table):
            return None, None, None, None
        empty = table.new_empty(0)
        g_table, g_x = _ext.load(strict=True).backward(
            x, table,
            grad_enc.contiguous() if grad_enc is not None else empty,
            grad_jac.contiguous() if grad_jac is not None else empty,
            *_layout_args(ctx.layout), ctx.n_active, need_table, need_x,
        )  # fmt: skip
        return (g_x if need_x else None), (g_table if need_table else None), None, None


class HashGrid(Encoding):
    """Multi-resolution hash encoding with a single float32 parameter ``table`` (rows, F).

    ``forward(x)`` maps (..., 3) points in [-1, 1]^3 to (..., L*F) features;
    ``forward_with_jacobian(x)`` also returns d features / d x, shape (..., L*F, 3).
    """

    def __init__(self, config: HashGridConfig = HashGridConfig()) -> None:
        super().__init__()
        if config.backend in ACCELERATED:
            raise ValueError(f"backend={config.backend!r} is provided by another module; use config.build()")
        self.config = config
        self.layout = LevelLayout.from_config(config)
        table = torch.empty(self.layout.n_rows, config.n_features_per_level)
        nn.init.uniform_(table, -config.init_scale, config.init_scale)
        self.table = nn.Parameter(table)
        self._n_active = config.n_levels

    @property
    def out_dim(self) -> int:
        return self.config.n_levels * self.config.n_features_per_level

    @property
    def n_levels(self) -> int:
        return self.config.n_levels

    @property
    def n_active_levels(self) -> int:
        """Levels currently contributing (see :meth:`set_active_levels`)."""
        return self._n_active

    def set_active_levels(self, n_active: int) -> None:
        """Only the first ``n_active`` levels contribute; the rest output zeros (and get zero
        gradient). The C++ kernel skips inactive levels entirely, so early steps are cheaper."""
        self._n_active = max(0, min(int(n_active), self.n_levels))

    @property
    def backend(self) -> str:
        """Backend used for CPU inputs: 'cpp', or 'torch' if requested or the build failed."""
        if self.config.backend == "torch":
            return "torch"
        return "cpp" if _ext.load() is not None else "torch"

    def _use_cpp(self, x: Tensor) -> bool:
        if x.device.type != "cpu" or self.table.device.type != "cpu":
            return False
        if self.table.dtype not in (torch.float32, torch.float64):
            return False
        return self.backend == "cpp"

    def _prepare(self, x: Tensor) -> Tensor:
        if x.shape[-1] != 3:
            raise ValueError(f"expected (..., 3) points, got {tuple(x.shape)}")
        return x.reshape(-1, 3).to(self.table.dtype).contiguous()

    def forward(self, x: Tensor) -> Tensor:
        """(..., 3) -> (..., out_dim). No Jacobian is computed."""
        lead, xf = x.shape[:-1], self._prepare(x)
        if self._use_cpp(xf):
            enc = _CppEncode.apply(xf, self.table, self.layout, self._n_active)
        else:
            enc, _ = encode_torch(xf, self.table, self.layout, self._n_active, with_jac=False)
        return enc.reshape(*lead, self.out_dim)

    def forward_with_jacobian(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(..., 3) -> ((..., out_dim), (..., out_dim, 3)), jac = d enc / d x.

        With the C++ backend ``jac`` is a transposed view of an axis-major (n, 3, out_dim)
        tensor, so that ``jac.transpose(-1, -2)`` is contiguous for contractions over the features.

        With the C++ backend, a loss on ``jac`` back-propagates into ``table`` only: the second
        derivative d jac / d x is not implemented (it is piecewise linear and rarely useful).
        """
        lead, xf = x.shape[:-1], self._prepare(x)
        if self._use_cpp(xf):
            enc, jac_t = _CppEncodeWithJacobian.apply(xf, self.table, self.layout, self._n_active)
            jac = jac_t.transpose(1, 2)  # a view: jac.transpose(-1, -2) is contiguous again
        else:
            enc, jac = encode_torch(xf, self.table, self.layout, self._n_active, with_jac=True)
        return enc.reshape(*lead, self.out_dim), jac.reshape(*lead, self.out_dim, 3)

    def extra_repr(self) -> str:
        c = self.config
        n_hashed = sum(self.layout.hashed(lv) for lv in range(c.n_levels))
        return (
            f"levels={c.n_levels} ({n_hashed} hashed), F={c.n_features_per_level}, "
            f"T=2^{c.log2_hashmap_size}, res={self.layout.resolutions[0]}.."
            f"{self.layout.resolutions[-1]}, rows={self.layout.n_rows}, "
            f"backend={c.backend}, active={self._n_active}"
        )
