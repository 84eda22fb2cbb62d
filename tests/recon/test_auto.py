"""The ``auto`` method: what it chooses, and that its surfaces have no ghosts, stay open where the
data is open and come back smooth from noise (issue 11, point 7), at small sizes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial import cKDTree

from meshing.export import load_mesh
from meshing.mesh import Mesh
from recon.auto import drop_balloons, prepare_cloud
from recon.pipeline import run
from recon.spec import JobSpec
from tests.support.analytic import unit_sphere_points


def grid_mesh(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and faces of the square [-1, 1]^2 at z = 0, ``n`` x ``n`` vertices."""
    g = np.linspace(-1, 1, n)
    v = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    i = np.arange(n * n).reshape(n, n)
    a, b, c, d = i[:-1, :-1].ravel(), i[1:, :-1].ravel(), i[1:, 1:].ravel(), i[:-1, 1:].ravel()
    return np.c_[v, np.zeros(len(v))], np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])


def disc(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    r, t = np.sqrt(rng.random(n)), rng.random(n) * 2 * np.pi
    return np.stack([r * np.cos(t), r * np.sin(t), 0.05 * np.sin(3 * r)], 1)


def reconstruct(points: np.ndarray, tmp_path, preset: str = "fast"):
    path = tmp_path / "cloud.xyz"
    np.savetxt(path, points)
    result = run(JobSpec(method="auto", preset=preset, formats=["ply"]), path, tmp_path / "out")
    return result, json.loads((tmp_path / "out" / "metrics.json").read_text())


def test_sphere_with_ghost_points_inside_comes_back_single(tmp_path):
    # 4000 samples of the unit sphere and 200 stray points inside it, where a field that finds its
    # own sign grows a second, inner sheet.
    rng = np.random.default_rng(1)
    ghosts = rng.normal(size=(200, 3))
    ghosts *= (rng.random(200) ** (1 / 3) * 0.8 / np.linalg.norm(ghosts, axis=1))[:, None]
    result, metrics = reconstruct(np.concatenate([unit_sphere_points(4000), ghosts]), tmp_path)
    radius = np.linalg.norm(result.mesh.vertices, axis=1)
    assert radius.min() > 0.9 and radius.max() < 1.05  # no vertex of an inner sheet
    assert metrics["auto"]["chose"] == "poisson"
    assert metrics["method"] == "auto"


def test_a_sparsely_sampled_real_piece_stays(tmp_path):
    # A second sphere (radius 0.4) sampled about 4x more sparsely than the unit sphere: its samples
    # lie on a surface, so they are not stray points, and Poisson's piece around them is kept.
    small = unit_sphere_points(70, seed=5) * 0.4 + [3.0, 0.0, 0.0]
    result, metrics = reconstruct(np.concatenate([unit_sphere_points(4000), small]), tmp_path)
    v = result.mesh.vertices
    far = v[v[:, 0] > 2.0]
    assert metrics["auto"]["unsupported_faces_dropped"] == 0
    assert len(far) > 100 and np.abs(np.linalg.norm(far - [3.0, 0.0, 0.0], axis=1) - 0.4).max() < 0.05
    assert np.abs(np.linalg.norm(v[v[:, 0] < 2.0], axis=1) - 1.0).max() < 0.05


def sphere_with_fin(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """4000 samples of the unit sphere and, as densely, one sheet of samples sticking out of it: the
    disc of radius 0.5 about (1.4, 0, 0) in the plane y = 0, outside the sphere (an ear whose two
    sides are closer than the samples tell apart)."""
    sphere = unit_sphere_points(4000, seed=seed)
    rng = np.random.default_rng(seed)
    n = int(np.pi * 0.25 / (4 * np.pi / 4000))
    r, t = 0.5 * np.sqrt(rng.random(n)), rng.random(n) * 2 * np.pi
    fin = np.stack([1.4 + r * np.cos(t), np.zeros(n), r * np.sin(t)], 1)
    return sphere, fin[np.linalg.norm(fin, axis=1) > 1.0]


def distance_to_sphere_and_fin(v: np.ndarray) -> np.ndarray:
    q = v - [1.4, 0.0, 0.0]
    to_fin = np.hypot(q[:, 1], np.clip(np.linalg.norm(q[:, [0, 2]], axis=1) - 0.5, 0, None))
    return np.minimum(np.abs(np.linalg.norm(v, axis=1) - 1.0), to_fin)


def test_a_thin_sheet_gets_no_balloon(tmp_path):
    # Screened Poisson wraps a one-sheet fin in a balloon standing off it along its normals (3% of
    # the vertices farther than 0.05 from the data, up to 0.34): those faces go, the fin stays.
    sphere, fin = sphere_with_fin()
    result, metrics = reconstruct(np.concatenate([sphere, fin]), tmp_path)
    v = result.mesh.vertices
    assert metrics["auto"]["chose"] == "poisson" and metrics["auto"]["balloon_faces_dropped"] > 0
    assert (distance_to_sphere_and_fin(v) > 0.1).mean() < 0.01
    near, _ = cKDTree(v).query(fin)
    assert (near < 0.05).mean() > 0.9  # the fin itself is still there


def test_balloon_faces_go_and_hole_fills_stay():
    # Samples of the plane z = 0 (normals +z) with a hole of radius 0.3; a mesh of that plane, hole
    # filled, and a sheet 0.3 above the samples. The sheet stands off the samples along their
    # normals (a balloon); the fill stands off the rim across its tangent plane, so it stays.
    g = np.linspace(-1, 1, 81)
    xy = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    pts = np.c_[xy, np.zeros(len(xy))][np.linalg.norm(xy, axis=1) > 0.3]
    normals = np.tile([0.0, 0.0, 1.0], (len(pts), 1))
    grid = Mesh(*grid_mesh(41))
    above = Mesh(grid.vertices * [0.25, 0.25, 0.0] + [0.7, 0.0, 0.3], grid.faces)  # not over the hole
    both = Mesh(np.concatenate([grid.vertices, above.vertices]),
                np.concatenate([grid.faces, grid.faces + len(grid.vertices)]))
    kept = drop_balloons(both, pts, normals, radius=0.05)
    assert kept.n_faces == grid.n_faces  # the sheet above went, every face of the plane stayed
    assert np.abs(kept.vertices[:, 2]).max() == 0.0
    assert (np.linalg.norm(kept.vertices[:, :2], axis=1) < 0.1).any()  # the fill of the hole


def test_open_disc_goes_to_udf_and_stays_open(tmp_path):
    pts = disc(6000)
    assert prepare_cloud(pts).analysis.open
    result, metrics = reconstruct(pts, tmp_path)
    assert metrics["auto"]["chose"] == "udf"
    assert "open surface" in metrics["auto"]["why"]
    v = result.mesh.vertices
    # A sheet, not a balloon: every vertex near the disc's surface, none above or below it.
    assert np.abs(v[:, 2] - 0.05 * np.sin(3 * np.linalg.norm(v[:, :2], axis=1))).max() < 0.08


def test_closed_shapes_are_not_called_open():
    assert not prepare_cloud(unit_sphere_points(6000)).analysis.open
    # A sphere with a hole of 5% of its surface is still a closed object.
    pts = unit_sphere_points(6000)
    assert not prepare_cloud(pts[pts[:, 2] < 0.9]).analysis.open


def test_noisy_sphere_comes_back_smooth(tmp_path):
    sigma = 0.02  # 1% of the diameter
    pts = unit_sphere_points(8000, seed=2)
    noisy = pts + np.random.default_rng(3).normal(scale=sigma, size=pts.shape)
    result, metrics = reconstruct(noisy, tmp_path, preset="balanced")
    a = metrics["auto"]["analysis"]
    assert a["smoothing_passes"] >= 1
    mesh = load_mesh(tmp_path / "out" / "mesh.ply")
    radius = np.linalg.norm(mesh.vertices, axis=1)
    # The surface is a sphere again: the radial spread is far below the noise, and the normals
    # are those of a sphere.
    assert np.std(radius) < 0.3 * sigma
    assert abs(np.mean(radius) - 1) < sigma
    n = result.mesh.vertex_normals
    assert np.mean(np.einsum("ij,ij->i", n, mesh.vertices / radius[:, None])) > 0.99


def test_analysis_is_recorded_in_the_metrics(tmp_path):
    _, metrics = reconstruct(unit_sphere_points(3000), tmp_path)
    info = metrics["auto"]
    assert info["chose"] in ("poisson", "udf") and info["why"]
    for key in ("spacing", "noise_ratio", "n_outliers", "ambiguous_fraction", "open"):
        assert key in info["analysis"]


@pytest.mark.parametrize("name", ["digs", "poisson", "udf"])
def test_existing_method_names_keep_working(name):
    assert JobSpec(method=name).method == name
    assert JobSpec().method == "auto"
