"""The computed unit sphere: visual hull on real masks, sparse points, optical axes, framing check."""

import warnings

import numpy as np
import pytest

from recon.io import InputError, MultiviewDataset, Normalization, load_multiview
from recon.io.neus import load_nerf_npz
from recon.io.scene_bounds import (
    check_framing,
    closest_point_to_axes,
    normalize_views,
    sphere_from_points,
)
from tests.support.dtu import write_dtu_subset
from tests.support.render import look_at

LEGO = "multiview/tiny_lego_100/tiny_lego_rgba_100.npz"


def pixel_rays(ds: MultiviewDataset, v: int) -> tuple[np.ndarray, np.ndarray]:
    """Origin (3,) and unit directions (H, W, 3) of the rays through the pixel centres of view v."""
    H, W = ds.hw
    j, i = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    pix = np.stack([j, i, np.ones_like(i)], -1)
    d = pix @ np.linalg.inv(ds.intrinsics[v]).T @ ds.c2w[v, :3, :3].T
    return ds.c2w[v, :3, 3], d / np.linalg.norm(d, axis=-1, keepdims=True)


def sphere_coverage(ds: MultiviewDataset, masks: np.ndarray) -> list[float]:
    """Per view: projected unit-sphere area / mask bounding-box area; asserts every mask pixel
    is inside the projected sphere."""
    ratios = []
    for v in range(ds.n_views):
        o, d = pixel_rays(ds, v)
        # ray misses the unit sphere <=> distance from the origin to the ray > 1
        t = np.clip(-(d @ o), 0, None)
        hits = np.linalg.norm(o + t[..., None] * d, axis=-1) <= 1.0
        mask = masks[v] > 0.5
        assert not (mask & ~hits).any(), f"view {v}: object pixels outside the projected sphere"
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        ratios.append(hits.sum() / ((rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)))
    return ratios


def test_visual_hull_sphere_contains_lego_and_is_tight(shared_data):
    ds = load_multiview(shared_data / LEGO)
    assert ds.normalization_source == "masks"
    ratios = sphere_coverage(ds, ds.masks)
    assert np.mean(ratios) < 4.0, np.mean(ratios)  # measured 1.8
    # The cameras stay outside the sphere.
    assert np.linalg.norm(ds.camera_centers(), axis=1).min() > 1.2


def test_visual_hull_survives_a_wrong_mask(shared_data):
    ds = load_nerf_npz(shared_data / LEGO, normalization="none")
    good = ds.masks.copy()
    ds.masks = good.copy()
    ds.masks[0] = 0.0  # one empty mask would carve everything away without the tolerance
    ds = normalize_views(ds)
    assert ds.normalization_source == "masks"
    assert np.mean(sphere_coverage(ds, good)) < 4.0


def orbit_dataset(center, dist, n=8, hw=(20, 30), f=30.0):
    c2w = np.stack([look_at(np.asarray(center) + dist * np.array([np.cos(a), np.sin(a), 0.4 * np.sin(3 * a)]), center)
                    for a in np.linspace(0, 2 * np.pi, n, endpoint=False)])
    K = np.array([[f, 0, hw[1] / 2], [0, f, hw[0] / 2], [0, 0, 1]])
    return MultiviewDataset(images=np.zeros((n, *hw, 3), np.float32), intrinsics=np.tile(K, (n, 1, 1)), c2w=c2w,
                            normalization=Normalization(np.zeros(3), 1.0))


def test_cameras_sphere_centre_is_the_common_look_at_point():
    center = np.array([5.0, -3.0, 2.0])
    ds = orbit_dataset(center, dist=10.0)
    np.testing.assert_allclose(closest_point_to_axes(ds.c2w), center, atol=1e-9)
    ds = normalize_views(ds)
    assert ds.normalization_source == "cameras"
    np.testing.assert_allclose(ds.normalization.center, center, atol=1e-9)
    # radius: the sphere filling the smaller (vertical) field of view from the camera distance
    dist = np.linalg.norm(ds.c2w[:, :3, 3], axis=1) * ds.normalization.scale  # back in input units
    assert ds.normalization.scale == pytest.approx(1.1 * np.median(dist) * np.sin(np.arctan(10 / 30)), rel=1e-9)
    assert dist.min() == pytest.approx(10.0)


def test_sparse_points_sphere_ignores_outliers():
    rng = np.random.default_rng(0)
    d = rng.normal(size=(5000, 3))
    pts = d / np.linalg.norm(d, axis=1, keepdims=True) * 2.0 + [1.0, 2.0, 3.0]
    pts = np.r_[pts, rng.uniform(-500, 500, (20, 3))]  # 0.4% stray points far away
    c, r = sphere_from_points(pts)
    np.testing.assert_allclose(c, [1, 2, 3], atol=0.1)
    assert 1.8 < r < 2.6
    ds = normalize_views(orbit_dataset([1.0, 2.0, 3.0], 10.0), points=pts)
    assert ds.normalization_source == "sparse_points" and ds.normalization.scale == pytest.approx(r)


def test_framing_check_rejects_cameras_looking_away():
    ds = orbit_dataset(np.zeros(3), 5.0)
    ds.c2w[:, :3, :3] = ds.c2w[:, :3, :3] @ np.diag([-1.0, 1.0, -1.0])  # turned around
    with pytest.raises(InputError, match="projects into only 0 of 8") as e:
        check_framing(ds)
    assert e.value.code == "degenerate"
    ds = orbit_dataset(np.zeros(3), 5.0)
    ds.c2w[0, :3, :3] = ds.c2w[0, :3, :3] @ np.diag([-1.0, 1.0, -1.0])
    with pytest.warns(UserWarning, match="outside 1 of 8"):
        assert check_framing(ds) == pytest.approx(7 / 8)


def test_camera_sphere_contains_lego_without_masks(shared_data):
    ds = load_nerf_npz(shared_data / LEGO, normalization="none")
    masks, ds.masks = ds.masks, None
    ds = normalize_views(ds)
    assert ds.normalization_source == "cameras"
    np.testing.assert_allclose(ds.normalization.center, 0.0, atol=1e-3)  # the orbit's centre
    assert np.mean(sphere_coverage(ds, masks)) < 4.0  # measured 1.7


def test_parallax_warning(shared_data, tmp_path):
    # Cameras 0.01 apart looking at a point 5 away: almost a pure rotation.
    c2w = np.stack([look_at([0.01 * i, 0.0, -5.0], [0.5 * i, 0.3, 0.0], up=(0.0, 1.0, 0.0)) for i in range(4)])
    K = np.array([[30.0, 0, 15], [0, 30.0, 10], [0, 0, 1]])
    ds = MultiviewDataset(images=np.zeros((4, 20, 30, 3), np.float32), intrinsics=np.tile(K, (4, 1, 1)), c2w=c2w,
                          normalization=Normalization(np.zeros(3), 1.0))
    with pytest.warns(UserWarning, match=r"barely move \(largest baseline 0.6\d% "):
        check_framing(ds)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # The real DTU scan24 cameras (an arc over the object) draw no warning.
        dtu = load_multiview(write_dtu_subset(shared_data, tmp_path / "dtu", views=(0, 12, 24, 36, 48), size=32))
        assert not any("parallax" in n for n in dtu.notes)
        orbit = orbit_dataset(np.zeros(3), 5.0)
        assert check_framing(orbit) == 1.0
