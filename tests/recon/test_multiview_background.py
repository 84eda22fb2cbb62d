"""Photos without masks: the background field takes the ground and the backdrop, the SDF keeps the
object (a box standing on a checkered ground in a textured backdrop, rendered without masks)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from recon.encodings.hash_grid import HashGridConfig
from recon.fields.hash_sdf import HashSDFConfig
from recon.io.dataset import ViewSplit
from recon.methods.neus import foreground_views
from recon.multiview import NeusConfig, fit_neus, render_views, uses_background_field
from recon.region import find_region
from tests.support.render import render_scene_dataset


def box_mesh(size=(1.0, 0.8, 0.6)):
    x, y, z = size
    v = np.array([[0, 0, 0], [x, 0, 0], [x, y, 0], [0, y, 0], [0, 0, z], [x, 0, z], [x, y, z], [0, y, z]], float)
    f = np.array([[0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4], [1, 2, 6], [1, 6, 5],
                  [2, 3, 7], [2, 7, 6], [3, 0, 4], [3, 4, 7]])
    return SimpleNamespace(vertices=v, faces=f)


@pytest.fixture(scope="module")
def scene():
    return render_scene_dataset(box_mesh(), 16, 24, 24, with_object_masks=True)


def test_scene_renderer_has_no_masks_and_shows_the_ground(scene):
    ds, obj = scene
    assert ds.masks is None and ds.images.shape == (16, 24, 24, 3)
    assert 0.05 < obj.mean() < 0.6  # the object covers part of each view; ground and backdrop the rest
    assert ds.images[obj < 0.5].std() > 0.1  # textured, not a flat colour


def test_unmasked_fit_does_not_fill_the_region(scene):
    ds, obj = scene
    grid = HashGridConfig(n_levels=6, log2_hashmap_size=14, base_resolution=8, finest_resolution=64)
    sdf = HashSDFConfig(encoding=grid, hidden_dim=32, n_hidden_layers=1, sphere_radius=0.3, start_levels=2,
                        full_levels_at=0.4)
    cfg = NeusConfig(field=sdf, steps=80, rays_per_batch=512, march_step=2 / 96, grid_resolution=32)
    assert uses_background_field(cfg, ds)
    region = find_region(ds)
    assert region.source == "cameras"
    views, _, radius = foreground_views(ViewSplit(ds, None), region, cfg)
    assert radius < 1.0  # a foreground sphere tighter than the unit sphere
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = fit_neus(views.train, cfg)
        _, opacity = render_views(model, views.train)
    finally:
        torch.set_num_threads(before)
    # Measured: opacity 0.03 on the ground and backdrop, 0.85 on the object; 9% of the sphere inside.
    assert opacity[obj < 0.5].mean() < 0.1 and opacity[obj > 0.5].mean() > 0.6
    u = torch.randn(20000, 3, generator=torch.Generator().manual_seed(0))
    u = u / u.norm(dim=-1, keepdim=True) * torch.rand(20000, 1, generator=torch.Generator().manual_seed(1)) ** (1 / 3)
    with torch.no_grad():
        assert float((model.sdf(u) < 0).float().mean()) < 0.3
