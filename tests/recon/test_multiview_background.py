"""Photos without masks: the background field takes the ground and the backdrop, the SDF keeps the
object (a box standing on a checkered ground in a textured backdrop, rendered without masks); with
masks of the object, the field draws what the masks leave out."""

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_multiview import tiny_config

from meshing.metrics import psnr
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


def small_config() -> NeusConfig:
    """80 steps of the sphere tests' model (:func:`test_multiview.tiny_config`) with the default
    learning rate of the sharpness."""
    return replace(tiny_config(steps=80), lr_variance=NeusConfig.lr_variance)


def test_unmasked_fit_does_not_fill_the_region(scene, one_thread):
    ds, obj = scene
    cfg = small_config()
    assert uses_background_field(cfg, ds)
    region = find_region(ds)
    assert region.source == "cameras"
    views, _, radius, _ = foreground_views(ViewSplit(ds, None), region, cfg)
    assert radius < 1.0  # a foreground sphere tighter than the unit sphere
    model = fit_neus(views.train, cfg)
    _, opacity = render_views(model, views.train)
    # Measured: opacity 0.03 on the ground and backdrop, 0.85 on the object; 9% of the sphere inside.
    assert opacity[obj < 0.5].mean() < 0.1 and opacity[obj > 0.5].mean() > 0.6
    u = torch.randn(20000, 3, generator=torch.Generator().manual_seed(0))
    u = u / u.norm(dim=-1, keepdim=True) * torch.rand(20000, 1, generator=torch.Generator().manual_seed(1)) ** (1 / 3)
    with torch.no_grad():
        assert float((model.sdf(u) < 0).float().mean()) < 0.3


def test_masks_choose_the_field_only_when_what_they_leave_out_is_not_one_colour(scene):
    from recon.multiview import uniform_background
    from tests.support.render import render_dataset

    ds, obj = scene
    cfg = NeusConfig()
    studio = render_dataset(box_mesh(), 4, 16, 16)  # masks, and a constant colour around the object
    assert studio.masks is not None and uniform_background(studio) and not uses_background_field(cfg, studio)
    masked_scene = replace(ds, masks=obj)  # masks, and the ground and backdrop around the object
    assert not uniform_background(masked_scene) and uses_background_field(cfg, masked_scene)
    assert uses_background_field(cfg, ds)  # no masks
    assert not uses_background_field(replace(cfg, background_model="none"), masked_scene)
    assert uses_background_field(replace(cfg, background_model="grid"), studio)


def test_masked_fit_draws_a_textured_background_better_than_any_constant_colour(scene, one_thread):
    ds, obj = scene
    ds = replace(ds, masks=obj)
    cfg = small_config()
    views, _, _, _ = foreground_views(ViewSplit(ds, None), find_region(ds), cfg)
    model = fit_neus(views.train, cfg)
    rgb, opacity = render_views(model, views.train)
    assert model.background_field is not None
    # The masks still decide what the foreground covers (measured: opacity 0.86 on the object, 0.03 off it).
    assert opacity[obj > 0.5].mean() > 0.7 and opacity[obj < 0.5].mean() < 0.1
    # Around the object, the field beats the best a constant colour can do (the pixels' mean colour):
    # measured 18.4 dB against 15.3 dB (a learned constant colour: 14.1 dB).
    out = obj < 0.5
    best_constant = psnr(np.broadcast_to(ds.images[out].mean(0), ds.images[out].shape), ds.images[out])
    assert psnr(rgb[out], ds.images[out]) > best_constant + 2.0
