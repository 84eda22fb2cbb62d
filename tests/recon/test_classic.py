"""recon.classic: screened Poisson baseline (Open3D) on analytic spheres and the Spot model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.spatial import cKDTree

from recon.classic import PoissonConfig, poisson_reconstruct, signed_volume, vertex_normals
from recon.progress import Cancelled, CancelToken
from tests.support.analytic import box_surface_samples

CENTER = np.array([0.3, -0.2, 0.5])
RADIUS = 2.0


def fibonacci_sphere(n=4000):
    """Evenly spread points on a sphere off the origin, with their outward unit normals."""
    i = np.arange(n) + 0.5
    polar = np.arccos(1 - 2 * i / n)
    azimuth = np.pi * (1 + 5**0.5) * i
    d = np.column_stack(
        [np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)]
    )
    return CENTER + RADIUS * d, d


def check_sphere_mesh(mesh):
    r = np.linalg.norm(mesh.vertices - CENTER, axis=1)
    # Depth 7 puts cells ~0.035 R apart; the iso-surface stays well within 1% of R
    # (measured max deviation ~0.2%).
    assert np.abs(r - RADIUS).max() < 0.01 * RADIUS
    assert np.abs(r - RADIUS).mean() < 0.003 * RADIUS
    # Positive signed volume <=> faces counter-clockwise seen from outside.
    assert signed_volume(mesh.vertices, mesh.faces) == pytest.approx(
        4 / 3 * np.pi * RADIUS**3, rel=0.02
    )
    outward = np.einsum("ij,ij->i", mesh.vertex_normals, mesh.vertices - CENTER) / r
    assert (outward > 0.9).mean() > 0.99
    assert mesh.faces.min() == 0 and mesh.faces.max() == mesh.n_vertices - 1


FAST = PoissonConfig(depth=7)


def test_sphere_with_normals():
    pts, nrm = fibonacci_sphere()
    check_sphere_mesh(poisson_reconstruct(pts, nrm, FAST))


def test_sphere_without_normals():
    pts, _ = fibonacci_sphere()
    check_sphere_mesh(poisson_reconstruct(pts, None, FAST))


def test_inward_or_unnormalised_normals_still_give_an_outward_mesh():
    pts, nrm = fibonacci_sphere()
    check_sphere_mesh(poisson_reconstruct(pts, -3.0 * nrm, FAST))


def test_orientation_fallback_when_qhull_fails(monkeypatch):
    o3d = pytest.importorskip("open3d")

    calls = []

    def broken(self, k, *args, **kwargs):
        calls.append(k)
        raise RuntimeError("QH6154 Qhull precision error: initial simplex is flat")

    monkeypatch.setattr(o3d.geometry.PointCloud, "orient_normals_consistent_tangent_plane", broken)
    pts, _ = fibonacci_sphere()
    check_sphere_mesh(poisson_reconstruct(pts, None, replace(FAST, orientation="tangent_plane")))
    assert calls == [30, 30]  # as given, then jittered; then the radial fallback


def test_winding_orientation_handles_a_thin_plate_where_propagation_fails():
    """Two faces 0.05 apart (the sample spacing is about 0.015): both orientations are run on the
    same points; the winding one gives a plate whose faces are both at the data."""
    pts, _ = box_surface_samples((1.0, 1.0, 0.05), 12000)
    mesh = poisson_reconstruct(pts, None, PoissonConfig(depth=8))
    v = mesh.vertices[np.abs(mesh.vertices[:, :2]).max(axis=1) < 0.4]  # away from the rim
    assert np.abs(np.abs(v[:, 2]) - 0.025).max() < 0.01  # on one face or the other, nowhere else


def test_density_trimming_removes_low_density_vertices():
    pts, nrm = fibonacci_sphere()
    full = poisson_reconstruct(pts, nrm, FAST)
    trimmed = poisson_reconstruct(pts, nrm, PoissonConfig(depth=7, density_quantile=0.2))
    assert 0.5 * full.n_vertices < trimmed.n_vertices < 0.95 * full.n_vertices
    assert np.unique(trimmed.faces).size == trimmed.n_vertices  # no unreferenced vertices


def test_progress_and_cancel():
    pts, _ = fibonacci_sphere(1000)
    events = []
    poisson_reconstruct(pts, None, FAST, progress=events.append)
    assert [(e.stage, e.step, e.total) for e in events] == [
        ("normals", 0, 2), ("normals", 1, 2), ("normals", 2, 2),
        ("poisson", 0, 2), ("poisson", 1, 2), ("poisson", 2, 2),
    ]  # fmt: skip
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        poisson_reconstruct(pts, None, FAST, cancel=token)


def test_bad_arguments():
    pts, nrm = fibonacci_sphere(100)
    with pytest.raises(ValueError, match="shape"):
        poisson_reconstruct(pts[:, :2])
    with pytest.raises(ValueError, match="NaN"):
        poisson_reconstruct(np.vstack([pts, [[np.nan, 0, 0]]]))
    with pytest.raises(ValueError, match="normals must have shape"):
        poisson_reconstruct(pts, nrm[:50])
    nrm[3] = 0
    with pytest.raises(ValueError, match="non-zero"):
        poisson_reconstruct(pts, nrm)
    for bad in ({"depth": 0}, {"scale": 0.5}, {"density_quantile": 1.0}, {"normal_knn": 2},
                {"n_threads": 0}):  # fmt: skip
        with pytest.raises(ValueError):
            PoissonConfig(**bad)


def test_vertex_normals_follow_winding():
    v = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [5, 5, 5]])
    f = np.array([[0, 1, 2]])
    np.testing.assert_allclose(vertex_normals(v, f)[:3], [[0, 0, 1]] * 3)
    np.testing.assert_allclose(vertex_normals(v, f[:, ::-1])[:3], [[0, 0, -1]] * 3)
    np.testing.assert_array_equal(vertex_normals(v, f)[3], 0.0)


@pytest.mark.parametrize("given_normals", [True, False])
def test_spot_reconstruction_chamfer(given_normals, shared_data):
    trimesh = pytest.importorskip("trimesh")
    gt = trimesh.load(shared_data / "meshes" / "spot" / "spot.obj", force="mesh")
    pts, face_idx = trimesh.sample.sample_surface(gt, 20000, seed=0)
    normals = gt.face_normals[face_idx] if given_normals else None
    mesh = poisson_reconstruct(pts, normals, PoissonConfig(depth=8))

    recon = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    ours, _ = trimesh.sample.sample_surface(recon, 20000, seed=1)
    ref, _ = trimesh.sample.sample_surface(gt, 20000, seed=2)
    d_ours = cKDTree(ref).query(ours)[0]
    d_ref = cKDTree(ours).query(ref)[0]
    diag = float(np.linalg.norm(gt.bounds[1] - gt.bounds[0]))
    chamfer = (d_ours.mean() + d_ref.mean()) / 2 / diag
    # ~0.33% of the diagonal was measured, which is mostly the spacing of 20k samples;
    # a wrongly oriented or bloated surface scores several percent.
    assert chamfer < 0.005
    assert max(d_ours.max(), d_ref.max()) < 0.03 * diag
    assert signed_volume(mesh.vertices, mesh.faces) == pytest.approx(gt.volume, rel=0.02)
