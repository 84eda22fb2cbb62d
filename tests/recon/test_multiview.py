"""NeuS fitter on an analytic textured sphere: geometry, held-out PSNR, colours, resume, cancel.

The scene helpers (`sphere_scene`, `look_at`) are shared with the pipeline tests.
"""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from recon.encodings.hash_grid import HashGridConfig
from recon.fields.hash_sdf import HashSDFConfig
from recon.io.dataset import MultiviewDataset, split_views
from recon.io.normalize import Normalization
from recon.multiview import NeusConfig, extract_mesh, fit_neus, render_views
from recon.progress import Cancelled, CancelToken

RADIUS = 0.5


def look_at(eye: np.ndarray, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """4x4 camera-to-world with OpenCV axes (x right, y down, z toward ``target``)."""
    z = np.asarray(target, float) - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([x, y, z], axis=1)
    c2w[:3, 3] = eye
    return c2w


def sphere_color(normal: np.ndarray) -> np.ndarray:
    """Smooth texture of the test sphere: a colour per outward normal, in [0.1, 0.9]."""
    return 0.5 + 0.4 * normal


def sphere_scene(n_views: int = 12, size: int = 32, radius: float = 0.5, distance: float = 2.5,
                 focal: float | None = None, scale: float = 2.0, center=(1.0, -2.0, 0.5)) -> MultiviewDataset:
    """A sphere of ``radius`` (normalised units) at the origin, ray-cast from an orbit of views.

    Views alternate between 20 degrees above and below the equator; the background is white and
    the masks are exact. ``scale``/``center`` is the normalisation back to a world frame, so a
    world-frame mesh of the sphere has radius ``radius * scale`` around ``center``.
    """
    focal = focal or 1.2 * size
    k = np.array([[focal, 0, size / 2], [0, focal, size / 2], [0, 0, 1.0]])
    c2ws, images, masks = [], [], []
    v, u = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5, indexing="ij")
    cam_dirs = np.stack([(u - size / 2) / focal, (v - size / 2) / focal, np.ones_like(u)], -1)
    for i in range(n_views):
        az, el = 2 * np.pi * i / n_views, np.deg2rad(20.0 if i % 2 == 0 else -20.0)
        eye = distance * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        c2w = look_at(eye)
        d = cam_dirs @ c2w[:3, :3].T
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        b = d @ eye
        disc = b * b - (eye @ eye - radius**2)
        hit = disc > 0
        t = -b - np.sqrt(np.where(hit, disc, 0.0))
        n = (eye + t[..., None] * d) / radius
        img = np.where(hit[..., None], sphere_color(n), 1.0)
        c2ws.append(c2w)
        images.append(img.astype(np.float32))
        masks.append(hit.astype(np.float32))
    return MultiviewDataset(images=np.stack(images), intrinsics=np.repeat(k[None], n_views, 0), c2w=np.stack(c2ws),
                            normalization=Normalization(np.asarray(center, float), scale), masks=np.stack(masks),
                            names=[f"view{i:03d}" for i in range(n_views)])


def tiny_config(steps: int = 150, **kw) -> NeusConfig:
    """A model small enough for a test: 6 levels up to 64 cells, 2^14 rows, 512 rays a step."""
    grid = HashGridConfig(n_levels=6, log2_hashmap_size=14, base_resolution=8, finest_resolution=64)
    sdf = HashSDFConfig(encoding=grid, hidden_dim=32, n_hidden_layers=1, sphere_radius=0.3, start_levels=2,
                        full_levels_at=0.4)
    return NeusConfig(field=sdf, steps=steps, rays_per_batch=512, march_step=2 / 96, grid_resolution=32,
                      lr_variance=3e-3, log_every=10, **kw)


@pytest.fixture(scope="module")
def fitted():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train, test = split_views(sphere_scene(n_views=14, size=32, radius=RADIUS), 7)
        events = []
        model = fit_neus(train, tiny_config(), progress=events.append)
    finally:
        torch.set_num_threads(before)
    return model, train, test, events


def test_split_views_holds_out_every_kth_view():
    ds = sphere_scene(n_views=14, size=8)
    train, test = split_views(ds, 7)
    assert test.n_views == 2 and train.n_views == 12
    assert test.names == ["view000", "view007"]
    assert np.array_equal(test.c2w[1], ds.c2w[7]) and np.array_equal(train.masks[0], ds.masks[1])
    assert split_views(ds, 0)[1] is None


def test_fit_recovers_the_sphere_and_renders_held_out_views(fitted, one_thread):
    model, _train, test, events = fitted
    mesh = extract_mesh(model, resolution=64)
    r = np.linalg.norm(mesh.vertices, axis=1)
    # The exact distance of each vertex to the true sphere; a 64-cell finest level on 32-pixel
    # views reaches about 1% of the radius.
    assert np.abs(r - RADIUS).mean() < 0.015 and np.abs(r - RADIUS).max() < 0.05
    rgb, opacity = render_views(model, test)
    psnr = -10 * math.log10(float(((rgb - test.images) ** 2).mean()))
    assert psnr > 25.0
    assert np.abs(opacity - test.masks).mean() < 0.05
    # Progress carries the loss terms, the batch PSNR and a sharpening density.
    assert events[-1].step == events[-1].total == 150
    assert {"color", "eikonal", "mask", "psnr", "inv_s"} <= set(events[-1].losses)
    assert events[-1].losses["inv_s"] > 2 * events[0].losses["inv_s"]


def test_vertex_colors_match_the_texture(fitted, one_thread):
    model = fitted[0]
    mesh = extract_mesh(model, resolution=48)
    assert mesh.vertex_colors.dtype == np.uint8 and mesh.vertex_colors.shape == (mesh.n_vertices, 3)
    expected = sphere_color(mesh.vertices / np.linalg.norm(mesh.vertices, axis=1, keepdims=True)) * 255
    assert np.abs(mesh.vertex_colors - expected).mean() < 0.06 * 255


def test_occupancy_grid_ends_on_a_thin_shell(fitted):
    model = fitted[0]
    grid = model.grid
    assert grid.fraction < 0.2
    centre = torch.zeros(1, 3)
    assert not bool(grid.lookup(centre)[0])  # the sphere's inside is skipped
    surface = torch.tensor([[RADIUS, 0.0, 0.0], [0.0, -RADIUS, 0.0], [0.0, 0.0, RADIUS]])
    assert bool(grid.lookup(surface).all())


def test_checkpoint_resume_matches_uninterrupted_run(tmp_path, one_thread):
    ds = sphere_scene(n_views=6, size=16)
    cfg = tiny_config(steps=24, checkpoint_every=12)
    reference = fit_neus(ds, cfg)
    ckpt = tmp_path / "neus.pt"
    token = CancelToken()

    def stop_after_15(ev):
        if ev.step >= 15:
            token.cancel()

    with pytest.raises(Cancelled):
        fit_neus(ds, cfg, checkpoint_path=ckpt, cancel=token, progress=stop_after_15)
    assert ckpt.exists()
    steps = []
    resumed = fit_neus(ds, cfg, checkpoint_path=ckpt, progress=lambda ev: steps.append(ev.step))
    assert steps[0] == 20  # resumed at 12, first report at 20
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), name


def test_cancel_stops_the_fit(one_thread):
    token = CancelToken()
    seen = []

    def cancel_at_10(ev):
        seen.append(ev.step)
        if ev.step == 10:
            token.cancel()

    with pytest.raises(Cancelled):
        fit_neus(sphere_scene(n_views=4, size=8), tiny_config(steps=100), cancel=token, progress=cancel_at_10)
    assert seen == [10]


def test_bad_datasets_are_rejected():
    ds = sphere_scene(n_views=4, size=8)
    with pytest.raises(ValueError, match="masks"):
        fit_neus(replace(ds, masks=ds.masks[:, :4]), tiny_config(steps=1))
    with pytest.raises(ValueError, match="images"):
        fit_neus(replace(ds, images=ds.images[..., :2]), tiny_config(steps=1))
    with pytest.raises(ValueError, match="background"):
        NeusConfig(background="green")


APPEARANCE = HashGridConfig(n_levels=6, log2_hashmap_size=14, base_resolution=8, finest_resolution=64)


def test_appearance_grid_widens_the_colour_input_and_follows_the_coarse_to_fine_schedule():
    from recon.multiview import NeusModel

    cfg = tiny_config(appearance=APPEARANCE)
    model = NeusModel(cfg)
    first = model.color.mlp[0]
    # The SDF network's feature, the grid's features, the normal and the SH view terms.
    assert first.in_features == 32 + 6 * 2 + 3 + (cfg.color.view_degree + 1) ** 2
    model.set_progress(0.0)
    assert model.appearance.n_active_levels == 2  # as many levels as the SDF's share (2 of 6)
    model.set_progress(1.0)
    assert model.appearance.n_active_levels == 6
    # Colour gradients reach the appearance table.
    o = torch.tensor([[0.0, 0.0, -2.5]]).repeat(64, 1)
    d = torch.nn.functional.normalize(torch.randn(64, 3) * 0.05 + torch.tensor([0.0, 0.0, 1.0]), dim=-1)
    model.grid.update(model.sdf, 1.0)
    model.render(o, d, train=True)["rgb"].sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.appearance.parameters())


def test_fit_with_an_appearance_grid_recovers_the_sphere_and_its_colours(one_thread):
    train, test = split_views(sphere_scene(n_views=14, size=32, radius=RADIUS), 7)
    model = fit_neus(train, tiny_config(appearance=APPEARANCE))
    rgb, _ = render_views(model, test)
    assert -10 * math.log10(float(((rgb - test.images) ** 2).mean())) > 25.0
    mesh = extract_mesh(model, resolution=48)
    r = np.linalg.norm(mesh.vertices, axis=1)
    assert np.abs(r - RADIUS).mean() < 0.015
    expected = sphere_color(mesh.vertices / r[:, None]) * 255
    assert np.abs(mesh.vertex_colors - expected).mean() < 0.06 * 255


def test_early_max_s_holds_the_sharpness_then_releases_it(one_thread):
    train, _ = split_views(sphere_scene(n_views=14, size=32, radius=RADIUS), 7)

    def sharpness(**kw) -> dict[int, float]:
        events = []
        cfg = replace(tiny_config(steps=60, **kw), lr_variance=2e-2, log_every=5)
        fit_neus(train, cfg, progress=events.append)
        return {e.step: e.losses["inv_s"] for e in events}

    free = sharpness()
    held = sharpness(early_max_s=25.0, early_until=0.5)
    assert max(v for k, v in free.items() if k <= 30) > 30.0  # without the cap, s passes 25 early on
    assert max(v for k, v in held.items() if k <= 30) <= 25.0 + 1e-3  # steps 0-29: fraction below one half
    assert held[60] > 30.0  # released afterwards
    with pytest.raises(ValueError, match="early_max_s"):
        NeusConfig(early_max_s=-1.0)


def test_normal_smoothness_term_pairs_surface_samples_with_neighbours(one_thread):
    from recon.multiview import NeusFitter

    ds = sphere_scene(n_views=4, size=16)
    fitter = NeusFitter(ds, tiny_config(steps=10, w_smooth=0.1, smooth_points=64, smooth_radius=0.02))
    torch.manual_seed(0)
    fitter.prepare(np.random.default_rng(0), torch.device("cpu"))
    model = fitter.build()
    model.set_progress(1.0)
    model.update_grid()
    terms, weights = fitter.loss_terms(model, torch.Generator().manual_seed(0), 1.0)
    assert weights["smooth"] == 0.1
    # The model starts as a sphere of radius 0.3 (geometric initialisation): the normals at a
    # point and at a Gaussian offset of 0.02 per axis differ by the offset's tangential part over
    # the radius, so the term is about 2 (0.02 / 0.3)^2 = 0.0089 (measured 0.0082).
    assert terms["smooth"].item() == pytest.approx(2 * (0.02 / 0.3) ** 2, rel=0.3)
    terms["smooth"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.sdf.parameters())
    # Off: no term.
    fitter = NeusFitter(ds, tiny_config(steps=10))
    fitter.prepare(np.random.default_rng(0), torch.device("cpu"))
    model = fitter.build()
    terms, _ = fitter.loss_terms(model, torch.Generator().manual_seed(0), 1.0)
    assert "smooth" not in terms
    for bad in ({"w_smooth": -0.1}, {"smooth_points": 0}, {"smooth_radius": 0.0}):
        with pytest.raises(ValueError, match="smooth"):
            NeusConfig(**bad)
