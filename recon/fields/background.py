"""A cheap radiance field for everything outside the foreground sphere (photos without masks).

Without masks every pixel must be explained. With only a constant background colour the SDF
explains the table, floor and walls by filling the unit sphere with a ball. This field takes
them instead: a density and a colour on a small hash grid under the Mip-NeRF 360 contraction

    contract(x) = x                      for |x| <= 1
                  (2 - 1/|x|) x / |x|    otherwise

(the unit sphere is the foreground sphere, so everything outside it lands in the shell
1 < |contract(x)| < 2, and infinity on its outer face), as instant-nsr-pl does. Samples are
taken along each ray beyond the foreground sphere, evenly in inverse distance (NeRF++), and
composited behind the foreground: ``rgb = rgb_fg + T_fg * rgb_bg`` (:func:`render_background`).
The last sample of every ray is opaque (the sky at infinity), so ``rgb_bg`` is always a colour.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recon.encodings.hash_grid import HashGridConfig
from recon.rendering import composite


def _default_grid() -> HashGridConfig:
    return HashGridConfig(n_levels=8, n_features_per_level=2, log2_hashmap_size=15, base_resolution=8,
                          finest_resolution=256)


@dataclass(frozen=True)
class BackgroundConfig:
    """The background field and its ray samples."""

    encoding: HashGridConfig = dc_field(default_factory=_default_grid)
    """Hash grid over the contracted space (the ball of radius 2, scaled into [-1, 1]^3)."""
    hidden_dim: int = 32
    """Width of the one hidden layer."""
    n_samples: int = 16
    """Samples per ray beyond the foreground sphere, evenly spaced in inverse distance."""
    density_bias: float = -1.0
    """Added to the raw density before the softplus: the field starts nearly empty."""
    start_levels: int = 0
    """Hash levels active at the start of training, coarsest first; the others are switched on
    one by one, evenly, until ``full_levels_at`` of training (0: all from the start). A coarse
    background early cannot paint the fine parts of the object (DTU's roofs) view by view
    before the foreground has grown to them."""
    full_levels_at: float = 0.6
    """Fraction of training by which every level is active (with ``start_levels``)."""

    def __post_init__(self) -> None:
        if self.start_levels < 0 or not 0.0 <= self.full_levels_at <= 1.0:
            raise ValueError(f"expected start_levels >= 0 and 0 <= full_levels_at <= 1, got {self.start_levels} "
                             f"and {self.full_levels_at}")

    def build(self) -> BackgroundField:
        return BackgroundField(self)


def contract(x: Tensor) -> Tensor:
    """Mip-NeRF 360 contraction of (n, 3) points: identity in the unit ball, the rest into radius 2."""
    r = x.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    return torch.where(r <= 1.0, x, (2.0 - 1.0 / r) * x / r)


class BackgroundField(nn.Module):
    """(n, 3) points -> density (n,) >= 0 (per unit of contracted length) and RGB (n, 3) in [0, 1]."""

    def __init__(self, config: BackgroundConfig = BackgroundConfig()) -> None:
        super().__init__()
        self.config = config
        self.encoding = config.encoding.build()
        self.mlp = nn.Sequential(nn.Linear(self.encoding.out_dim, config.hidden_dim), nn.ReLU(),
                                 nn.Linear(config.hidden_dim, 4))

    def set_progress(self, fraction: float) -> None:
        """Training progress in [0, 1]: the active hash levels (see ``start_levels``)."""
        cfg, n = self.config, self.encoding.n_levels
        if cfg.start_levels <= 0 or cfg.full_levels_at <= 0:
            self.encoding.set_active_levels(n)
            return
        start = min(cfg.start_levels, n)
        self.encoding.set_active_levels(int(start + (n - start) * min(1.0, max(0.0, fraction) / cfg.full_levels_at)))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.mlp(self.encoding(contract(x) * 0.5))
        return F.softplus(h[:, 0] + self.config.density_bias), torch.sigmoid(h[:, 1:])


def background_samples(origins: Tensor, dirs: Tensor, t_start: Tensor, n: int,
                       jitter: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Points (rays, n, 3) along unit-direction rays beyond ``t_start`` (rays,), evenly spaced in
    inverse distance from the origin of the frame: radii ``1 / s`` for ``s`` from ``1 / r0`` towards
    0, with ``r0`` the distance at ``t_start``. Returns the points and their ``t`` (rays, n)."""
    b = (origins * dirs).sum(-1)
    start = origins + t_start[:, None] * dirs
    r0 = start.norm(dim=-1).clamp_min(1.0)
    u = torch.full_like(t_start, 0.5) if jitter is None else jitter
    k = torch.arange(n, dtype=origins.dtype, device=origins.device)[None, :]
    s = (1.0 - (k + u[:, None]) / n) / r0[:, None]  # in (0, 1 / r0]
    r = 1.0 / s.clamp_min(1e-4)
    c = (origins * origins).sum(-1)
    t = -b[:, None] + (b[:, None] ** 2 - c[:, None] + r * r).clamp_min(0).sqrt()
    t = torch.maximum(t, t_start[:, None])
    return origins[:, None, :] + t[..., None] * dirs[:, None, :], t


def render_background(field: BackgroundField, origins: Tensor, dirs: Tensor, t_start: Tensor,
                      jitter: Tensor | None = None, far_color: Tensor | None = None) -> Tensor:
    """(rays, 3) colour of the background seen along each ray from ``t_start`` on.

    Opacities come from the density times the sample spacing in contracted space; the last
    sample is opaque, so the weights sum to one. ``far_color`` (rays, 3), when given, replaces
    the field's colour at that last sample (a random colour there in training asks the field to
    become opaque before infinity, as instant-nsr-pl's random background does).
    """
    n = field.config.n_samples
    pts, _ = background_samples(origins, dirs, t_start, n, jitter)
    density, rgb = field(pts.reshape(-1, 3))
    density, rgb = density.reshape(-1, n), rgb.reshape(-1, n, 3)
    if far_color is not None:
        rgb = torch.cat([rgb[:, :-1], far_color[:, None, :]], dim=1)
    cpts = contract(pts.reshape(-1, 3)).reshape(-1, n, 3)
    delta = torch.cat([(cpts[:, 1:] - cpts[:, :-1]).norm(dim=-1), cpts.new_zeros(cpts.shape[0], 1)], dim=1)
    alpha = 1.0 - torch.exp(-density * delta)
    alpha = torch.cat([alpha[:, :-1], torch.ones_like(alpha[:, -1:])], dim=1)
    weights, _ = composite(alpha)
    return (weights[..., None] * rgb).sum(1)
