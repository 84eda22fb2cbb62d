"""Sparse marching cubes against analytic SDFs (sphere, torus) with known geometry."""

import math

import numpy as np
import pytest
import torch

from meshing import mesh as M
from meshing.marching_cubes import _N_TRIS, ExtractStats, extract_sdf


def sphere(radius=0.5, center=(0.0, 0.0, 0.0)):
    c = torch.tensor(center)
    return lambda x: (x - c).norm(dim=1) - radius


def torus(R=0.6, r=0.25):
    def f(x):
        q = torch.stack([torch.sqrt(x[:, 0] ** 2 + x[:, 1] ** 2) - R, x[:, 2]], 1)
        return q.norm(dim=1) - r

    return f


def check_closed_manifold(mesh):
    assert not mesh.is_empty
    assert M.is_watertight(mesh)
    assert M.is_edge_manifold(mesh)
    assert M.is_winding_consistent(mesh)
    # Welding: no two vertices share a position.
    assert len(np.unique(mesh.vertices, axis=0)) == mesh.n_vertices


@pytest.mark.parametrize("res", [64, 128])
def test_sphere_geometry_and_topology(res):
    r = 0.5
    mesh = extract_sdf(sphere(r), resolution=res)
    voxel = 2.0 / res
    check_closed_manifold(mesh)
    assert M.n_components(mesh) == 1
    # Linear interpolation of an exact SDF keeps vertices well within a tenth of a voxel.
    assert np.abs(np.linalg.norm(mesh.vertices, axis=1) - r).max() < 0.1 * voxel
    # Chords cut inside the sphere: area and volume are slightly low, by O(voxel^2).
    assert M.area(mesh) == pytest.approx(4 * math.pi * r**2, rel=0.01)
    assert M.volume(mesh) == pytest.approx(4 / 3 * math.pi * r**3, rel=0.01)
    assert M.volume(mesh) > 0  # positive signed volume <=> outward winding


def test_face_normals_point_outward_toward_positive_sdf():
    mesh = extract_sdf(sphere(0.5, center=(0.1, -0.2, 0.05)), resolution=48)
    centroids = mesh.vertices[mesh.faces].mean(axis=1)
    radial = centroids - np.array([0.1, -0.2, 0.05])
    assert np.all(np.einsum("ij,ij->i", M.face_normals(mesh), radial) > 0)
    # Vertex normals agree with the analytic gradient of the SDF.
    normals = M.compute_vertex_normals(mesh).vertex_normals
    radial = mesh.vertices - np.array([0.1, -0.2, 0.05])
    radial /= np.linalg.norm(radial, axis=1, keepdims=True)
    assert np.einsum("ij,ij->i", normals, radial).min() > 0.98


def test_torus():
    R, r, res = 0.6, 0.25, 128
    mesh = extract_sdf(torus(R, r), resolution=res)
    check_closed_manifold(mesh)
    assert M.n_components(mesh) == 1
    # Genus 1: Euler characteristic V - E + F = 0.
    n_edges = len(np.unique(np.sort(mesh.faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), 1), axis=0))
    assert mesh.n_vertices - n_edges + mesh.n_faces == 0
    v = mesh.vertices
    dist = np.sqrt((np.hypot(v[:, 0], v[:, 1]) - R) ** 2 + v[:, 2] ** 2)
    assert np.abs(dist - r).max() < 0.1 * 2 / res
    assert M.area(mesh) == pytest.approx(4 * math.pi**2 * R * r, rel=0.01)
    assert M.volume(mesh) == pytest.approx(2 * math.pi**2 * R * r**2, rel=0.01)


def test_level_and_bounds():
    # The 0.1 level set of a 0.3-sphere is a 0.4-sphere; an anisotropic box still works.
    bounds = ((-0.5, -0.6, -0.45), (0.5, 0.5, 0.5))
    mesh = extract_sdf(sphere(0.3), bounds=bounds, resolution=60, level=0.1)
    check_closed_manifold(mesh)
    assert np.abs(np.linalg.norm(mesh.vertices, axis=1) - 0.4).max() < 2e-3


def test_welding_across_many_small_blocks():
    # Block size 4 puts block faces everywhere, off-centre so the surface cuts them obliquely.
    stats = ExtractStats()
    mesh = extract_sdf(sphere(0.37, (0.03, 0.051, -0.02)), resolution=50, block_size=4, stats=stats)
    assert stats.blocks_refined > 50
    check_closed_manifold(mesh)
    dense = extract_sdf(sphere(0.37, (0.03, 0.051, -0.02)), resolution=50, block_size=64)
    assert mesh.n_faces == dense.n_faces
    np.testing.assert_allclose(M.area(mesh), M.area(dense), rtol=1e-9)


@pytest.mark.parametrize("coarse", [None, 72, 36, 18, 9, 2])
def test_result_independent_of_coarse_grid(coarse):
    # Sparsity must only skip work: every configuration yields the dense-grid surface.
    f = torus(0.5, 0.22)
    ref = extract_sdf(f, resolution=72, block_size=64, coarse_resolution=72)
    stats = ExtractStats()
    mesh = extract_sdf(f, resolution=72, coarse_resolution=coarse, stats=stats)
    assert mesh.n_faces == ref.n_faces
    np.testing.assert_array_equal(np.sort(mesh.vertices, 0), np.sort(ref.vertices, 0))
    if coarse is None:
        assert stats.blocks_refined < stats.blocks_marked < stats.blocks_total


def test_all_cases_give_closed_manifold_surfaces():
    # A random sign per grid sample exercises every cube configuration including the
    # ambiguous ones; a positive shell keeps the surface inside the grid, so it must close.
    n = 24
    rng = np.random.default_rng(0)
    table = rng.normal(size=(n + 1,) * 3).astype(np.float32)
    table[[0, -1]] = table[:, [0, -1]] = table[:, :, [0, -1]] = 1.0
    table_t = torch.from_numpy(table)

    def noise(x):
        i = torch.round((x + 1) / 2 * n).long().clamp(0, n)
        return table_t[i[:, 0], i[:, 1], i[:, 2]]

    mesh = extract_sdf(noise, resolution=n, block_size=8, safety=1e9)
    inside = table < 0
    cases = np.zeros((n,) * 3, dtype=np.int64)
    for k in range(8):
        dx, dy, dz = k & 1, (k >> 1) & 1, (k >> 2) & 1
        cases |= inside[dx : dx + n, dy : dy + n, dz : dz + n].astype(np.int64) << k
    assert len(np.unique(cases)) > 200  # most of the 256 configurations occur
    assert mesh.n_faces == _N_TRIS[cases].sum()
    check_closed_manifold(mesh)


def test_matches_skimage_dense_marching_cubes():
    from skimage.measure import marching_cubes

    res = 64
    f = torus(0.55, 0.2)
    mesh = extract_sdf(f, resolution=res)
    g = torch.linspace(-1, 1, res + 1)
    grid = torch.stack(torch.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    vol = f(grid).reshape(res + 1, res + 1, res + 1).numpy()
    verts, faces, _, _ = marching_cubes(vol, 0.0, spacing=(2 / res,) * 3)
    ref = M.Mesh(verts - 1.0, faces)
    assert M.area(mesh) == pytest.approx(M.area(ref), rel=2e-3)
    assert abs(M.volume(mesh)) == pytest.approx(abs(M.volume(ref)), rel=2e-3)


def test_empty_field_gives_empty_mesh():
    stats = ExtractStats()
    mesh = extract_sdf(lambda x: torch.ones(x.shape[0]), resolution=64, stats=stats)
    assert mesh.is_empty and mesh.n_vertices == 0
    assert mesh.vertices.shape == (0, 3) and mesh.faces.shape == (0, 3)
    assert stats.fine_evaluations == 0
    # Entirely inside is also "no surface".
    assert extract_sdf(lambda x: -torch.ones(x.shape[0]), resolution=32).is_empty


def test_surface_cut_by_bounds_is_open_but_manifold():
    mesh = extract_sdf(sphere(0.5), bounds=((0, -1, -1), (1, 1, 1)), resolution=40)
    assert M.is_edge_manifold(mesh) and M.is_winding_consistent(mesh)
    assert not M.is_watertight(mesh)
    assert M.area(mesh) == pytest.approx(2 * math.pi * 0.25, rel=0.02)


def test_sub_volumetric_work_at_256():
    stats = ExtractStats()
    mesh = extract_sdf(sphere(0.5), resolution=256, stats=stats)
    assert stats.evaluations < 0.25 * 257**3
    assert stats.evaluations == stats.coarse_evaluations + stats.fine_evaluations
    assert stats.blocks_refined < stats.blocks_total
    assert M.is_watertight(mesh)


def test_tracing_recovers_blocks_the_coarse_tests_miss():
    # A steep (200x) sphere SDF whose surface pokes 0.001 past the block face x = 0.5 as a cap
    # of radius 0.032 placed between stride-2 lattice samples: no lattice test sees it, but the
    # fine samples on the shared face change sign, so tracing must pull in the outer blocks.
    c = torch.tensor([0.0, 0.031, 0.031])
    def steep(x):
        return 200.0 * ((x - c).norm(dim=1) - 0.501)
    stats = ExtractStats()
    mesh = extract_sdf(steep, resolution=64, block_size=8, safety=1.0, stats=stats)
    assert stats.blocks_propagated > 0
    check_closed_manifold(mesh)
    assert mesh.vertices[:, 0].max() > 0.5
    assert M.area(mesh) == pytest.approx(4 * math.pi * 0.501**2, rel=0.01)


@pytest.mark.parametrize("res,block", [(100, 8), (99, 8), (61, 16), (30, 12)])
def test_every_grid_point_evaluated_at_most_once(res, block):
    # Shared samples (coarse grid, lattices, block faces) must be reused, not re-evaluated:
    # besides saving work this keeps neighbouring blocks consistent for non-deterministic fields.
    seen = []

    def f(x):
        seen.append(x.numpy().copy())
        return (x - torch.tensor([0.01, 0.02, 0.03])).norm(dim=1) - 0.6

    stats = ExtractStats()
    mesh = extract_sdf(f, resolution=res, block_size=block, stats=stats)  # partial last blocks
    check_closed_manifold(mesh)
    points = np.concatenate(seen)
    assert len(points) == stats.evaluations
    assert len(np.unique(points, axis=0)) == len(points)


def test_field_receives_float32_points_without_grad():
    seen = {}

    def f(x):
        seen["dtype"], seen["grad"] = x.dtype, torch.is_grad_enabled()
        return x.norm(dim=1) - 0.5

    extract_sdf(f, resolution=16)
    assert seen == {"dtype": torch.float32, "grad": False}


def test_chunking_does_not_change_result():
    a = extract_sdf(torus(), resolution=40, chunk_size=2**18)
    b = extract_sdf(torus(), resolution=40, chunk_size=1000)
    np.testing.assert_array_equal(a.faces, b.faces)
    np.testing.assert_array_equal(a.vertices, b.vertices)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"resolution": 1},
        {"resolution": 0},
        {"resolution": 32.5},
        {"bounds": ((0, 0, 0), (0, 1, 1))},
        {"bounds": ((1, 1, 1), (-1, -1, -1))},
        {"bounds": ((0, 0), (1, 1))},
        {"bounds": ((0, 0, float("nan")), (1, 1, 1))},
        {"level": float("inf")},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="expected"):
        extract_sdf(sphere(), **{"resolution": 16, **kwargs})


def test_bad_field_output():
    with pytest.raises(ValueError, match="expected"):
        extract_sdf(lambda x: torch.zeros(x.shape[0], 2), resolution=8)
    with pytest.raises(ValueError, match="NaN"):
        extract_sdf(lambda x: torch.full((x.shape[0],), float("nan")), resolution=8)
