"""The region of interest of posed views: from a box, sparse points, masks, the cameras' overlap;
cropping meshes to it and dropping floating fragments."""

import numpy as np
import pytest
import torch

from meshing.mesh import Mesh
from recon.io import MultiviewDataset, Normalization
from recon.region import (
    Region,
    camera_pull,
    crop_mesh,
    find_region,
    grown_toward_cameras,
    keep_main_components,
    region_from_bbox,
    region_from_cameras,
    region_from_points,
)
from tests.support.render import intrinsics_from_fov, look_at


def views(target=(0.0, 0.0, 0.0), n=12, distance=3.0, masks=False, source="given", fov=40.0,
          arc=360.0) -> MultiviewDataset:
    """``n`` 40x40 cameras on a ring (30 degrees up) at ``distance`` from ``target``, looking at it
    with a field of view of ``fov`` degrees; with ``arc`` below 360, on that arc of the ring
    (degrees, centred on the x axis: views from one side)."""
    t = np.asarray(target, dtype=np.float64)
    if arc < 360.0:
        a = np.radians(np.linspace(-arc / 2, arc / 2, n))
    else:
        a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    eyes = t + distance * np.stack([np.cos(a) * 0.87, np.sin(a) * 0.87, np.full(n, 0.5)], 1)
    c2w = np.stack([look_at(e, t) for e in eyes])
    K = intrinsics_from_fov(40, 40, fov)
    m = None
    if masks:  # a disc of radius 6 pixels in the image centre: an object around the target
        j, i = np.meshgrid(np.arange(40) + 0.5, np.arange(40) + 0.5)
        m = np.broadcast_to(((i - 20) ** 2 + (j - 20) ** 2 <= 36).astype(np.float32), (n, 40, 40)).copy()
    return MultiviewDataset(images=np.zeros((n, 40, 40, 3), np.float32), intrinsics=np.tile(K, (n, 1, 1)), c2w=c2w,
                            normalization=Normalization(np.array([1.0, 2.0, 3.0]), 2.0), masks=m,
                            normalization_source=source)


def test_region_box_sdf_and_sphere():
    r = Region([-1, -1, -1], [1, 1, 3], "bbox")
    x = torch.tensor([[0.0, 0.0, 1.0], [2.0, 0.0, 1.0], [0.0, 0.0, 4.0], [2.0, 2.0, 1.0], [0.0, 0.5, 0.0]])
    np.testing.assert_allclose(r.box_sdf(x).numpy(), [-1.0, 1.0, 1.0, np.sqrt(2.0), -0.5], atol=1e-6)
    c, rad = r.sphere()
    np.testing.assert_allclose(c, [0, 0, 1]) and pytest.approx(rad) == np.sqrt(6.0)
    with pytest.raises(ValueError, match="lo < hi"):
        Region([0, 0, 0], [1, 0, 1], "bbox")


def test_region_from_bbox_is_in_the_normalised_frame():
    norm = Normalization(np.array([1.0, 2.0, 3.0]), 2.0)
    r = region_from_bbox([1, 2, 3, 3, 4, 5], norm)
    np.testing.assert_allclose(r.lo, [0, 0, 0]) and np.testing.assert_allclose(r.hi, [1, 1, 1])
    assert r.describe(norm)["bbox"] == [1, 2, 3, 3, 4, 5]


def test_region_from_points_ignores_stray_points():
    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.uniform(-0.3, 0.3, (500, 3)), [[0.95, 0.95, 0.95], [-0.9, 0.9, -0.9]]])
    r = region_from_points(pts)
    assert r.source == "sparse_points"
    assert (r.hi < 0.4).all() and (r.lo > -0.4).all() and (r.hi > 0.25).all()


@pytest.mark.parametrize("target", [(0.0, 0.0, 0.0), (0.3, -0.2, 0.1)])
def test_region_from_cameras_is_where_the_views_overlap(target):
    r = region_from_cameras(views(target), min_seen=1.0)
    c, rad = r.sphere()
    np.testing.assert_allclose(c, target, atol=0.05)
    # 40 degree field of view at distance 3: every view sees a ball of about 3 sin(20) = 1.03 around
    # the target; the grid over the cube and the padding leave it between 0.6 and 1.2.
    assert 0.6 < rad < 1.2, rad
    assert (r.lo >= -1).all() and (r.hi <= 1).all()
    assert region_from_cameras(views(target)).sphere()[1] > rad  # seen by half the views: larger


def test_find_region_order():
    ds = views()
    assert find_region(ds).source == "cameras"
    ds.normalization_source = "scale_mat"
    assert find_region(ds).source == "scale_mat"  # the views see more than the declared sphere
    narrow = views(fov=20.0, source="scale_mat")  # they see a ball of radius about 3 sin(10) = 0.52
    tight = find_region(narrow)
    assert tight.source == "cameras" and 0.4 < tight.sphere()[1] < 0.8, tight.sphere()
    ds.points = np.random.default_rng(0).uniform(-0.2, 0.2, (50, 3))
    assert find_region(ds).source == "sparse_points"
    hull = find_region(views(masks=True))
    assert hull.source == "masks" and (hull.hi[:2] < 0.5).all()  # the disc: a small object at the centre
    assert find_region(ds, bbox=[0, 0, 0, 2, 2, 2]).source == "bbox"


def test_crop_and_floaters():
    # Two triangles inside [-1, 1]^3, one straddling its face, a tiny fragment far away.
    v = np.array([[0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0.5, 0.5, 0], [0.9, 0, 0], [1.5, 0, 0], [0.9, 0.2, 0]], float)
    f = np.array([[0, 1, 2], [1, 3, 2], [4, 5, 6]])
    cropped = crop_mesh(Mesh(v, f), Region(-np.ones(3), np.ones(3), "bbox"))
    assert cropped.n_faces == 2 and cropped.n_vertices == 4
    big = Mesh(np.concatenate([v[:4], v[:4] + [5, 0, 0]]), np.concatenate([f[:2]] * 19 + [f[:1] + 4]))
    assert keep_main_components(big, 0.1).n_faces == 38


def test_the_views_overlap_narrows_a_loose_declared_sphere(shared_data, tmp_path):
    """DTU scan24's scale_mat sphere holds much of the table; its real cameras (an arc over the
    houses, 12 degree field of view at 2.7 units) overlap in a ball of about 0.6 about its centre."""
    from recon.io.multiview import load_multiview
    from tests.support.dtu import write_dtu_subset

    ds = load_multiview(write_dtu_subset(shared_data, tmp_path / "dtu", views=tuple(range(0, 49, 4)), size=32))
    assert ds.normalization_source == "scale_mat"
    region = find_region(ds)
    c, r = region.sphere()
    assert region.source == "cameras" and 0.5 < r < 0.75 and np.linalg.norm(c) < 0.05, (c, r)
    assert (region.hi - region.lo < 1.6).all()  # extraction stays near the houses


def test_a_ball_grown_towards_the_cameras_keeps_its_far_side():
    c = np.array([0.1, 0.0, 0.0])
    above = c + np.array([[0.0, 0.0, 3.0], [0.3, 0.0, 3.0], [-0.3, 0.0, 3.0]])
    center, radius = grown_toward_cameras(c, 0.4, above, 1.5)
    pull = (above - c) / np.linalg.norm(above - c, axis=1, keepdims=True)
    unit = pull.mean(0) / np.linalg.norm(pull.mean(0))
    assert radius == pytest.approx(0.6)
    np.testing.assert_allclose(center, c + 0.2 * unit)
    # The point farthest from the cameras stays; the near side reaches 0.4 further towards them.
    np.testing.assert_allclose(center - radius * unit, c - 0.4 * unit, atol=1e-12)
    # Cameras all around (a full ring in the ball's plane): nothing to grow towards.
    a = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    ring = c + 3.0 * np.stack([np.cos(a), np.sin(a), np.zeros(12)], 1)
    center, radius = grown_toward_cameras(c, 0.4, ring, 1.5)
    np.testing.assert_allclose(center, c)
    assert radius == 0.4
    assert grown_toward_cameras(c, 0.4, above, 1.0)[1] == 0.4


def test_foreground_sphere_grows_towards_one_sided_cameras():
    from dataclasses import replace

    from recon.io.dataset import ViewSplit
    from recon.methods.neus import foreground_views
    from recon.multiview import NeusConfig

    ds = views(fov=25.0)  # a ring 30 degrees up: the mean direction to the cameras points up, length 0.5
    region = find_region(ds)
    c, r = region.sphere()
    assert region.source == "cameras" and np.linalg.norm(c) + r < 1.0
    _, center, radius, grown_by = foreground_views(ViewSplit(ds, None), region, NeusConfig())
    np.testing.assert_allclose(center, c)
    assert radius == r and grown_by == 1.0
    _, center, radius, grown_by = foreground_views(ViewSplit(ds, None), region,
                                                   replace(NeusConfig(), ball_growth=1.5))
    assert radius == pytest.approx(1.5 * r) and grown_by == pytest.approx(1.5)
    assert center[2] - c[2] == pytest.approx(0.5 * r, rel=0.05)  # moved up, to the cameras
    with pytest.raises(ValueError, match="ball_growth"):
        NeusConfig(ball_growth=0.5)


def test_foreground_sphere_grows_only_for_cameras_on_one_side():
    from dataclasses import replace

    from recon.io.dataset import ViewSplit
    from recon.methods.neus import foreground_views
    from recon.multiview import NeusConfig

    cfg = replace(NeusConfig(), ball_growth=1.5, grow_min_pull=0.7)
    for arc, grows in ((360.0, False), (90.0, True)):
        ds = views(fov=25.0, arc=arc)
        region = find_region(ds)
        c, r = region.sphere()
        pull = np.linalg.norm(camera_pull(c, ds.c2w[:, :3, 3]))
        assert (pull >= 0.7) == grows, pull  # the ring: 0.5; a quarter of it: above 0.9
        _, center, radius, grown_by = foreground_views(ViewSplit(ds, None), region, cfg)
        assert grown_by == (pytest.approx(1.5) if grows else 1.0)
        assert radius == (pytest.approx(1.5 * r) if grows else r)
    with pytest.raises(ValueError, match="grow_min_pull"):
        NeusConfig(grow_min_pull=1.5)


def test_the_turntable_band_counts_as_all_around_and_an_arc_of_it_as_one_side():
    from recon.methods import get_method
    from tests.support.render import hemisphere_cameras

    line = get_method("neus").presets["balanced"].fit.grow_min_pull
    pulls = {}
    for arc in (360.0, 150.0):
        _, c2w = hemisphere_cameras(50, 2.2, 32, 32, azimuth_deg=arc)
        d = c2w[:, :3, 3] / np.linalg.norm(c2w[:, :3, 3], axis=1, keepdims=True)
        pulls[arc] = float(np.linalg.norm(camera_pull(np.zeros(3), c2w[:, :3, 3])))
        az = np.degrees(np.arctan2(d[:, 1], d[:, 0]))
        spread = np.ptp((az - az[0] + 180.0) % 360.0)  # the arc the azimuths fill, from the first one
        assert spread <= arc + 1e-9 and (arc == 360.0 or spread > 0.9 * arc), (arc, spread)
    assert pulls[360.0] < line <= pulls[150.0], pulls


def config_given_to_the_fit(monkeypatch, preset_name, preset, ds):
    """The NeusConfig the ``neus`` method hands to ``fit_neus`` for the views ``ds`` (no fit runs)."""
    import recon.multiview
    from recon.io.dataset import ViewSplit
    from recon.methods import MethodContext, get_method

    class Fitted(Exception):
        pass

    def fake_fit(train, cfg, **kw):
        raise Fitted(cfg)

    monkeypatch.setattr(recon.multiview, "fit_neus", fake_fit)
    ctx = MethodContext(preset_name=preset_name, preset=preset, seed=0, resolution=None, extractor="marching_cubes",
                        max_fit_points=None, device=torch.device("cpu"), progress=lambda ev: None, cancel=None,
                        checkpoint_path=None)
    with pytest.raises(Fitted) as fitted:
        get_method("neus").reconstruct(ViewSplit(ds, None), ctx)
    return fitted.value.args[0]


@pytest.mark.parametrize("arc", [360.0, 90.0])
def test_the_balanced_preset_grows_the_ball_and_coarsens_the_background_for_one_sided_views(monkeypatch, arc):
    from dataclasses import replace

    from recon.methods import get_method

    preset = get_method("neus").presets["balanced"]
    assert preset.fit.grown_background is not None and preset.fit.grown_background != preset.fit.background_field
    cfg = config_given_to_the_fit(monkeypatch, "balanced", preset, views(fov=25.0, arc=arc))
    if arc < 360.0:  # one side: the grown ball, its first sphere the same size, the coarse background
        assert cfg.field.sphere_radius == pytest.approx(preset.fit.field.sphere_radius / preset.fit.ball_growth)
        assert cfg.background_field == preset.fit.grown_background
    else:  # all around: the overlap's ball and the preset's background as they are
        assert cfg == replace(preset.fit, seed=0)


@pytest.mark.parametrize("growth", [1.0, 1.5])
def test_the_sdf_first_sphere_keeps_its_size_in_a_grown_ball(monkeypatch, growth):
    from dataclasses import replace

    from recon.methods import get_method

    preset = get_method("neus").presets["fast"]
    preset = replace(preset, fit=replace(preset.fit, ball_growth=growth))
    cfg = config_given_to_the_fit(monkeypatch, "fast", preset, views(fov=25.0))
    # In the frame of the foreground ball, the first sphere is 1 / growth of the preset's: the
    # same size in the scene.
    assert cfg.field.sphere_radius == pytest.approx(preset.fit.field.sphere_radius / growth)
