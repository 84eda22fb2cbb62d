"""The ground-truth renderer against analytic ray-sphere geometry, projections and shading."""

import numpy as np
import pytest
import trimesh
from scipy.ndimage import distance_transform_edt

from meshing.export import load_mesh
from meshing.mesh import Mesh
from recon.io import validate_dataset
from tests.support.render import (
    AMBIENT,
    LIGHT_DIR,
    look_at,
    orbit_cameras,
    pixel_rays,
    render_dataset,
    render_mesh,
)

H, W = 48, 64
K = np.array([[70.0, 0.0, 35.5], [0.0, 72.0, 22.0], [0.0, 0.0, 1.0]])  # off-centre, non-square pixels


@pytest.fixture(scope="module")
def sphere():
    tm = trimesh.creation.icosphere(subdivisions=5, radius=0.5)
    return Mesh(tm.vertices, tm.faces)


def analytic_sphere_depth(c2w, center, radius):
    """Camera z of the first hit of each pixel ray on the exact sphere (NaN on a miss), and cos incidence."""
    o, d = pixel_rays(K, c2w, H, W)
    oc = o - center
    b = d @ oc
    a = np.einsum("hwi,hwi->hw", d, d)
    disc = b * b - a * (oc @ oc - radius**2)
    t = np.where(disc >= 0, (-b - np.sqrt(np.clip(disc, 0, None))) / a, np.nan)
    p = o + t[..., None] * d
    n = (p - center) / radius
    cos = -np.einsum("hwi,hwi->hw", n, d) / np.sqrt(a)
    return t, cos  # directions have unit camera z, so t is the z-depth


def test_sphere_depth_and_mask_match_analytic(sphere):
    center = np.array([0.05, -0.1, 0.0])
    mesh = Mesh(sphere.vertices + center, sphere.faces)
    c2w = look_at([0.3, -2.2, 0.9], [0.0, 0.0, 0.1])
    out = render_mesh(mesh, K, c2w, H, W)
    assert out["rgb"].shape == (H, W, 3) and out["mask"].shape == out["depth"].shape == (H, W)
    t, cos = analytic_sphere_depth(c2w, center, 0.5)
    hit = np.isfinite(t)
    mask = out["mask"] > 0.5
    # Only silhouette pixels may disagree (the icosphere is inscribed in the sphere).
    assert (mask != hit).sum() <= 0.02 * hit.sum()
    both = mask & hit & (cos > 0.3)
    assert both.sum() > 300
    err = np.abs(out["depth"][both] - t[both])
    assert err.max() < 2e-3, err.max()  # facets sit at most ~1e-3 inside a radius-0.5 sphere
    assert (out["depth"][~mask] == 0).all() and np.allclose(out["rgb"][~mask], 1.0)


def test_mask_area_matches_projected_disc(sphere):
    # Camera looking at the centre with square pixels and centred principal point: the silhouette
    # is a circle of radius f * tan(asin(r / d)) pixels.
    f, d, r = 60.0, 2.5, 0.5
    Kc = np.array([[f, 0.0, 32.0], [0.0, f, 32.0], [0.0, 0.0, 1.0]])
    out = render_mesh(sphere, Kc, look_at([0.0, d, 0.0]), 64, 64)
    rho = f * np.tan(np.arcsin(r / d))
    assert out["mask"].sum() == pytest.approx(np.pi * rho**2, rel=0.03)


def test_projected_vertices_land_on_the_mask(shared_data):
    mesh = load_mesh(shared_data / "meshes" / "spot" / "spot.obj")
    center = 0.5 * (mesh.vertices.min(0) + mesh.vertices.max(0))
    c2w = look_at(center + [2.4, -3.2, 1.6], center)
    out = render_mesh(mesh, K, c2w, H, W)
    cam = (mesh.vertices - c2w[:3, 3]) @ c2w[:3, :3]  # world -> camera (R^T (x - t))
    uv = cam @ K.T
    uv = uv[:, :2] / uv[:, 2:3]
    j, i = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
    inside = (i >= 0) & (i < H) & (j >= 0) & (j < W)
    assert inside.all()
    # Vertices on the silhouette may fall on a pixel whose centre ray just misses: none is
    # farther than one pixel from the mask, and most are on it.
    off_mask = distance_transform_edt(out["mask"] < 0.5)
    assert off_mask[i, j].max() <= 1.0
    assert (out["mask"][i, j] > 0.5).mean() > 0.85
    assert (cam[:, 2] > 0).all()


def test_small_sphere_lands_on_its_projection(sphere):
    """Sub-pixel check of the pixel convention: the mask centroid of a tiny off-axis sphere
    is the projection of its centre (pixel centres at +0.5)."""
    c2w = look_at([0.4, -3.0, 0.7], [0.0, 0.0, 0.0])
    p = np.array([0.35, 0.1, -0.2])
    tiny = Mesh(sphere.vertices * 0.06 + p, sphere.faces)
    out = render_mesh(tiny, K * [[4], [4], [1]], c2w, 4 * H, 4 * W)
    i, j = np.nonzero(out["mask"] > 0.5)
    centroid = np.array([j.mean() + 0.5, i.mean() + 0.5])
    cam = c2w[:3, :3].T @ (p - c2w[:3, 3])
    proj = (K * [[4], [4], [1]]) @ cam
    np.testing.assert_allclose(centroid, proj[:2] / proj[2], atol=0.15)


def test_vertex_colours_and_lambert_shading():
    # A square facing the light, red vertices: rgb = (1, 0, 0) * (ambient + (1 - ambient) * 1).
    u = np.cross(LIGHT_DIR, [0.0, 0.0, 1.0])
    u /= np.linalg.norm(u)
    v = np.cross(LIGHT_DIR, u)
    verts = np.array([-u - v, u - v, u + v, -u + v])
    quad = Mesh(verts, [[0, 1, 2], [0, 2, 3]], vertex_colors=np.tile([255, 0, 0], (4, 1)).astype(np.uint8))
    out = render_mesh(quad, K, look_at(3 * LIGHT_DIR + 0.3 * u), H, W, background=0.0)
    lit = out["rgb"][out["mask"] > 0.5]
    assert len(lit) > 100
    np.testing.assert_allclose(lit, np.tile([1.0, 0.0, 0.0], (len(lit), 1)), atol=1e-6)
    # Tilted by 60 degrees: n . l = 0.5.
    rot = trimesh.transformations.rotation_matrix(np.pi / 3, u)[:3, :3]
    quad2 = Mesh(verts @ rot.T, quad.faces, vertex_colors=quad.vertex_colors)
    out = render_mesh(quad2, K, look_at(3 * LIGHT_DIR), H, W, background=0.0)
    lit = out["rgb"][out["mask"] > 0.5]
    np.testing.assert_allclose(lit[:, 0], AMBIENT + (1 - AMBIENT) * 0.5, atol=1e-5)


def test_orbit_cameras_look_at_the_origin():
    Ks, c2w = orbit_cameras(12, 3.0, 40, 60, fov_deg=50.0, seed=4)
    assert Ks.shape == (12, 3, 3) and c2w.shape == (12, 4, 4)
    np.testing.assert_allclose(np.linalg.norm(c2w[:, :3, 3], axis=1), 3.0)
    np.testing.assert_allclose(Ks[0, 0, 0], 30.0 / np.tan(np.radians(25.0)))
    # The origin projects onto the principal point of every view.
    cam = np.einsum("nji,nj->ni", c2w[:, :3, :3], -c2w[:, :3, 3])
    np.testing.assert_allclose(cam[:, :2], 0.0, atol=1e-12)
    assert (cam[:, 2] > 0).all()
    # Spread over the sphere: every pair of cameras at least 30 degrees apart.
    dirs = c2w[:, :3, 3] / 3.0
    cos = dirs @ dirs.T - 2 * np.eye(12)
    assert cos.max() < np.cos(np.radians(30))


def test_render_dataset_spot(shared_data):
    mesh = load_mesh(shared_data / "meshes" / "spot" / "spot.obj")
    ds = render_dataset(mesh, 6, 32, 40, seed=0)
    validate_dataset(ds)
    assert ds.images.shape == (6, 32, 40, 3) and ds.masks.shape == (6, 32, 40)
    unit = ds.normalization.to_unit(mesh.vertices)
    assert np.linalg.norm(unit, axis=1).max() == pytest.approx(0.8)
    # Every view sees the whole object (the unit sphere fits in the field of view).
    for m in ds.masks:
        assert m.sum() > 50 and not m[0].any() and not m[-1].any() and not m[:, 0].any() and not m[:, -1].any()
    # The procedural texture varies across the object.
    assert ds.images[ds.masks > 0.5].std(axis=0).min() > 0.05
