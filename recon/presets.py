"""Named quality presets: the knobs a user should not have to know about.

``fast`` serves tests and previews (seconds), ``balanced`` is the default and aims at the
quality bar of screened Poisson in Poisson's time, ``quality`` spends minutes for detail.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from recon.classic import PoissonConfig
from recon.encodings.hash_grid import HashGridConfig
from recon.fields.hash_sdf import HashSDFConfig
from recon.multiview import NeusConfig
from recon.pointcloud import DigsConfig


@dataclass(frozen=True)
class Preset:
    """Settings of one preset for every method."""

    digs: DigsConfig
    """Fitting configuration of the ``digs`` method."""
    poisson: PoissonConfig
    """Configuration of the ``poisson`` method."""
    resolution: int
    """Marching-cubes resolution over the normalised cube."""
    neus: NeusConfig
    """Fitting configuration of the ``neus`` method (posed images)."""


def _digs(steps: int, levels: int, finest: int, log2_table: int, batch: int, hidden: int) -> DigsConfig:
    """Half of each batch on the input points, a quarter jittered near them, a quarter uniform."""
    grid = HashGridConfig(n_levels=levels, n_features_per_level=2, log2_hashmap_size=log2_table,
                          base_resolution=16, finest_resolution=finest)
    return DigsConfig(field=HashSDFConfig(encoding=grid, hidden_dim=hidden, n_hidden_layers=2), steps=steps,
                      surface_batch=batch // 2, near_batch=batch // 4, space_batch=batch // 4)


def _neus(steps: int, levels: int, finest: int, log2_table: int, rays: int, march_step: float) -> NeusConfig:
    """One hidden layer of 64 for the SDF (its output also feeds the colour network)."""
    grid = HashGridConfig(n_levels=levels, n_features_per_level=2, log2_hashmap_size=log2_table,
                          base_resolution=16, finest_resolution=finest)
    sdf = HashSDFConfig(encoding=grid, hidden_dim=64, n_hidden_layers=1, sphere_radius=0.5, start_levels=4,
                        full_levels_at=0.4)
    return NeusConfig(field=sdf, steps=steps, rays_per_batch=rays, march_step=march_step)


# Chosen by measurement on 50k-point clouds (bench/pointcloud.py): two hidden layers matter more
# than their width, and a finest level of 512 beats 192/256 at this density. A wider MLP with a
# 2048 finest level and 1200 steps made armadillo worse (ghost sheets), hence the narrow MLP in
# ``quality`` too.
PRESETS: dict[str, Preset] = {
    "fast": Preset(digs=_digs(150, 8, 128, 15, 4096, 32), poisson=PoissonConfig(depth=7), resolution=128,
                   neus=_neus(500, 10, 256, 16, 1024, 2.0 / 128)),
    "balanced": Preset(digs=_digs(300, 12, 512, 17, 8192, 32), poisson=PoissonConfig(depth=9), resolution=256,
                       neus=_neus(2000, 12, 512, 17, 1024, 2.0 / 192)),
    "quality": Preset(digs=_digs(800, 14, 1024, 19, 8192, 32), poisson=PoissonConfig(depth=10), resolution=384,
                      neus=_neus(3000, 14, 1024, 19, 2048, 2.0 / 256)),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (ValueError naming the choices otherwise)."""
    from recon.registry import lookup

    return lookup(PRESETS, name, "preset")


def with_seed(preset: Preset, seed: int) -> Preset:
    """A copy of ``preset`` whose fits use ``seed``."""
    return replace(preset, digs=replace(preset.digs, seed=seed), neus=replace(preset.neus, seed=seed))
