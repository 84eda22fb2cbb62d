"""Mesh operations on analytic shapes (trimesh icospheres/boxes) and the shared test meshes."""

import math

import numpy as np
import pytest
import trimesh

from meshing import mesh as M
from meshing.mesh import Mesh


def icosphere(subdivisions=3, radius=1.0, center=(0, 0, 0)):
    s = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return Mesh(s.vertices + np.asarray(center, dtype=float), s.faces)


def box(extents=(1.0, 2.0, 3.0)):
    b = trimesh.creation.box(extents=extents)
    return Mesh(b.vertices, b.faces)


def test_area_volume_bbox_of_box():
    m = box((1.0, 2.0, 3.0))
    assert M.area(m) == pytest.approx(2 * (2 + 3 + 6))
    assert M.volume(m) == pytest.approx(6.0)
    assert M.bounding_box_diagonal(m) == pytest.approx(math.sqrt(14))
    assert M.is_watertight(m) and M.is_edge_manifold(m) and M.is_winding_consistent(m)
    assert M.n_components(m) == 1


def test_volume_requires_closed_mesh_and_sign_follows_winding():
    m = box()
    flipped = Mesh(m.vertices, m.faces[:, ::-1])
    assert M.volume(flipped) == pytest.approx(-6.0)
    open_box = Mesh(m.vertices, m.faces[:-1])
    assert not M.is_watertight(open_box) and M.is_edge_manifold(open_box)
    with pytest.raises(ValueError, match="watertight"):
        M.volume(open_box)


def test_non_manifold_edge_detected():
    # Three triangles on one edge.
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1.0]])
    m = Mesh(v, [[0, 1, 2], [1, 0, 3], [0, 1, 4]])
    assert not M.is_edge_manifold(m)
    assert not M.is_watertight(m)


def test_empty_mesh_predicates():
    e = Mesh(np.zeros((0, 3)), np.zeros((0, 3)))
    assert not M.is_watertight(e)
    assert M.is_edge_manifold(e)
    assert M.n_components(e) == 0
    assert M.area(e) == 0.0
    assert M.bounding_box_diagonal(e) == 0.0
    with pytest.raises(ValueError):
        M.sample_surface(e, 10)


def two_spheres():
    big, small = icosphere(3, 1.0), icosphere(1, 0.1, center=(3, 0, 0))
    return (
        Mesh(
            np.vstack([big.vertices, small.vertices]),
            np.vstack([big.faces, small.faces + big.n_vertices]),
        ),
        big,
        small,
    )


def test_remove_small_components():
    both, big, small = two_spheres()
    assert M.n_components(both) == 2
    frac_small = small.n_faces / both.n_faces  # 80 / 1360
    kept = M.remove_small_components(both, min_fraction=0.1)
    assert M.n_components(kept) == 1
    assert kept.n_faces == big.n_faces and kept.n_vertices == big.n_vertices
    np.testing.assert_array_equal(kept.vertices, big.vertices)
    np.testing.assert_array_equal(kept.faces, big.faces)
    assert M.n_components(M.remove_small_components(both, min_fraction=frac_small / 2)) == 2
    assert M.n_components(M.remove_small_components(both, min_fraction=0.0, min_faces=81)) == 1
    # The largest component always survives, even if it is below the threshold itself.
    assert M.remove_small_components(both, min_fraction=1.0).n_faces == big.n_faces
    assert both.n_faces == big.n_faces + small.n_faces  # input untouched


def test_remove_small_components_keeps_attributes():
    both, big, _ = two_spheres()
    both.vertex_colors = np.arange(both.n_vertices * 3).reshape(-1, 3).astype(np.uint8)
    kept = M.remove_small_components(both, min_fraction=0.1)
    np.testing.assert_array_equal(kept.vertex_colors, both.vertex_colors[: big.n_vertices])


def test_decimate_to_target_and_ratio():
    m = icosphere(5)  # 20480 faces
    d = M.decimate(m, target_faces=2000)
    assert 1800 <= d.n_faces <= 2000
    assert M.is_watertight(d)
    r = np.linalg.norm(d.vertices, axis=1)
    assert np.abs(r - 1).max() < 0.02
    h = M.decimate(m, ratio=0.5)
    assert abs(h.n_faces - m.n_faces / 2) <= 0.05 * m.n_faces
    assert M.decimate(m, target_faces=10**6).n_faces == m.n_faces
    with pytest.raises(ValueError):
        M.decimate(m)
    with pytest.raises(ValueError):
        M.decimate(m, target_faces=10, ratio=0.5)


def test_decimate_carries_colors_and_normals():
    m = M.compute_vertex_normals(icosphere(4))
    m.vertex_colors = np.where(m.vertices[:, :1] > 0, [255, 0, 0], [0, 0, 255]).astype(np.uint8)
    d = M.decimate(m, target_faces=500)
    assert d.vertex_normals.shape == d.vertices.shape
    assert np.all(np.einsum("ij,ij->i", d.vertex_normals, d.vertices) > 0.9)
    far = np.abs(d.vertices[:, 0]) > 0.2
    np.testing.assert_array_equal(d.vertex_colors[far, 0] == 255, d.vertices[far, 0] > 0)


def test_transform_scale_translate_and_reflection():
    m = M.compute_vertex_normals(icosphere(2))
    t = M.transform(m, scale=2.0, translation=(1, 2, 3))
    np.testing.assert_allclose(t.vertices, m.vertices * 2 + [1, 2, 3])
    assert M.volume(t) == pytest.approx(8 * M.volume(m))
    np.testing.assert_allclose(t.vertex_normals, m.vertex_normals)
    # Reflection keeps the mesh outward-facing and normals outward.
    r = M.transform(m, scale=(-1.0, 1.0, 1.0))
    assert M.volume(r) == pytest.approx(M.volume(m))
    assert np.all(np.einsum("ij,ij->i", r.vertex_normals, r.vertices) > 0.9)
    # Anisotropic scale: normals follow the inverse transpose (ellipsoid gradient).
    s = M.transform(m, scale=(1.0, 2.0, 4.0))
    expected = s.vertices / np.array([1.0, 4.0, 16.0])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.einsum("ij,ij->i", s.vertex_normals, expected).min() > 0.95
    with pytest.raises(ValueError):
        M.transform(m, scale=0.0)


def test_vertex_normals_of_sphere_are_radial():
    m = M.compute_vertex_normals(icosphere(3))
    np.testing.assert_allclose(np.linalg.norm(m.vertex_normals, axis=1), 1.0)
    assert np.einsum("ij,ij->i", m.vertex_normals, m.vertices).min() > 0.99


def test_sample_surface_area_weighted_and_seeded():
    m = box((1.0, 1.0, 4.0))  # the four 1x4 sides hold 16 of the 18 area units
    p, n = M.sample_surface(m, 90_000, seed=3)
    assert p.shape == (90_000, 3) and n.shape == (90_000, 3)
    on_side = np.abs(np.abs(p[:, 2]) - 2.0) > 1e-9
    assert on_side.mean() == pytest.approx(16 / 18, abs=0.005)
    # Points lie on the surface and normals are the outward face normals.
    assert np.all(np.isclose(np.abs(p), [0.5, 0.5, 2.0]).any(axis=1))
    np.testing.assert_allclose(np.abs(n).sum(axis=1), 1.0)
    assert np.all((p * n).sum(axis=1) > 0)
    p2, _ = M.sample_surface(m, 90_000, seed=3)
    np.testing.assert_array_equal(p, p2)
    assert not np.array_equal(p, M.sample_surface(m, 90_000, seed=4)[0])


def test_sample_surface_uniform_within_triangle():
    m = Mesh([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]])
    p, _ = M.sample_surface(m, 200_000, seed=0)
    assert np.all(p[:, 0] + p[:, 1] <= 1 + 1e-12) and np.all(p >= 0)
    np.testing.assert_allclose(p.mean(axis=0), [1 / 3, 1 / 3, 0], atol=3e-3)


def test_merge_duplicate_vertices_on_triangle_soup():
    m = icosphere(2)
    soup = Mesh(m.vertices[m.faces].reshape(-1, 3), np.arange(3 * m.n_faces).reshape(-1, 3))
    assert not M.is_watertight(soup) and M.n_components(soup) == m.n_faces
    merged = M.merge_duplicate_vertices(soup)
    assert merged.n_vertices == m.n_vertices and merged.n_faces == m.n_faces
    assert M.is_watertight(merged) and M.n_components(merged) == 1
    np.testing.assert_allclose(merged.vertices[merged.faces], soup.vertices[soup.faces])
    # Tolerance merging also collapses near-duplicates and drops degenerate faces.
    jitter = Mesh(
        soup.vertices + 1e-9 * np.random.default_rng(0).normal(size=soup.vertices.shape), soup.faces
    )
    assert M.merge_duplicate_vertices(jitter).n_vertices == soup.n_vertices
    assert M.merge_duplicate_vertices(jitter, tolerance=1e-6).n_vertices == m.n_vertices


def test_merge_keeps_order_without_duplicates():
    m = icosphere(2)
    merged = M.merge_duplicate_vertices(m)
    np.testing.assert_array_equal(merged.vertices, m.vertices)
    np.testing.assert_array_equal(merged.faces, m.faces)


@pytest.mark.parametrize(
    "name", ["ponq_bunny/bunny.obj", "spot/spot.obj", "trimesh_torus/torus.STL"]
)
def test_real_meshes(name, shared_data):
    from meshing.export import load_mesh

    m = load_mesh(shared_data / "meshes" / name)
    assert M.is_watertight(m) and M.is_edge_manifold(m) and M.n_components(m) == 1
    ref = trimesh.Trimesh(m.vertices, m.faces, process=False)
    assert M.area(m) == pytest.approx(ref.area, rel=1e-9)
    assert M.volume(m) == pytest.approx(ref.volume, rel=1e-6)
    d = M.decimate(m, ratio=0.25)
    assert d.n_faces <= 0.27 * m.n_faces
    assert M.area(d) == pytest.approx(M.area(m), rel=0.05)
