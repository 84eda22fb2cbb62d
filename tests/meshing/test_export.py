"""Round trips through every export format, and loader errors."""


import numpy as np
import pytest
import trimesh

from meshing import mesh as M
from meshing.export import EXPORTERS, load_mesh, mesh_bytes, save_mesh
from meshing.mesh import Mesh

F32 = 1e-6  # float32 storage of coordinates of magnitude ~1


@pytest.fixture
def sphere():
    s = trimesh.creation.icosphere(subdivisions=2)
    m = M.compute_vertex_normals(Mesh(s.vertices * 0.7 + [0.1, -0.2, 0.3], s.faces))
    m.vertex_colors = (np.random.default_rng(0).random((m.n_vertices, 3)) * 255).astype(np.uint8)
    return m


def same_triangles(a: Mesh, b: Mesh, atol=F32):
    """Same triangles (positions within atol, winding kept), regardless of vertex order."""
    from scipy.spatial import cKDTree

    assert a.n_faces == b.n_faces and a.n_vertices == b.n_vertices
    dist, to_b = cKDTree(b.vertices).query(a.vertices)
    assert dist.max() <= atol
    assert len(np.unique(to_b)) == b.n_vertices

    def canon(faces):
        # Rotate each triangle to start at its smallest index (keeps winding), then sort rows.
        f = faces[np.arange(len(faces))[:, None], (np.argmin(faces, 1)[:, None] + np.arange(3)) % 3]
        return f[np.lexsort(f.T[::-1])]

    np.testing.assert_array_equal(canon(to_b[a.faces]), canon(b.faces))


@pytest.mark.parametrize("fmt", ["ply", "obj", "glb"])
def test_indexed_round_trip(tmp_path, sphere, fmt):
    path = save_mesh(sphere, tmp_path / f"m.{fmt}")
    assert path.exists() and not list(tmp_path.glob("*.part"))
    back = load_mesh(path)
    np.testing.assert_allclose(back.vertices, sphere.vertices, atol=F32)
    np.testing.assert_array_equal(back.faces, sphere.faces)
    np.testing.assert_allclose(back.vertex_normals, sphere.vertex_normals, atol=1e-5)
    np.testing.assert_array_equal(back.vertex_colors, sphere.vertex_colors)
    assert M.is_watertight(back) and M.volume(back) > 0


def test_file_normals_are_kept_not_recomputed(tmp_path):
    """load_mesh reads normals from the file through trimesh's private cache (trimesh has no
    public way to tell file normals from computed ones; pinned to trimesh < 6 in pyproject).
    Normals that no computation would give (all +z on a tetrahedron) must come back as written,
    and a file without normals must give none: this fails if trimesh moves its cache."""
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float64)
    f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    up = np.tile([0.0, 0.0, 1.0], (4, 1))
    for fmt in ("ply", "obj"):
        back = load_mesh(save_mesh(Mesh(v, f, vertex_normals=up), tmp_path / f"n.{fmt}"), merge_vertices=False)
        np.testing.assert_allclose(back.vertex_normals, up, atol=1e-6, err_msg=fmt)
        plain = load_mesh(save_mesh(Mesh(v, f), tmp_path / f"p.{fmt}"), merge_vertices=False)
        assert plain.vertex_normals is None, fmt


def test_stl_round_trip_is_a_merged_soup(tmp_path, sphere):
    back = load_mesh(save_mesh(sphere, tmp_path / "m.stl"))
    assert back.n_vertices == sphere.n_vertices  # shared corners re-merged on load
    same_triangles(back, sphere)
    assert M.is_watertight(back) and M.volume(back) == pytest.approx(M.volume(sphere), rel=1e-5)
    assert back.vertex_colors is None


def test_plain_mesh_without_attributes(tmp_path):
    b = trimesh.creation.box()
    m = Mesh(b.vertices, b.faces)
    for fmt in EXPORTERS:
        back = load_mesh(save_mesh(m, tmp_path / f"b.{fmt}"))
        same_triangles(back, m)
        assert back.vertex_colors is None


def test_ply_is_binary_with_declared_attributes(sphere):
    data = mesh_bytes(sphere, "ply")
    header = data[: data.index(b"end_header")].decode()
    assert "format binary_little_endian 1.0" in header
    assert f"element vertex {sphere.n_vertices}" in header
    assert "property float nx" in header and "property uchar red" in header
    assert f"element face {sphere.n_faces}" in header
    body = len(data) - len(header) - len("end_header\n")
    assert body == sphere.n_vertices * (6 * 4 + 3) + sphere.n_faces * (1 + 3 * 4)


def test_stl_binary_size_and_normals(sphere):
    data = mesh_bytes(sphere, "stl")
    assert len(data) == 84 + 50 * sphere.n_faces
    rec = np.frombuffer(data[84:], dtype=[("n", "<f4", (3,)), ("t", "<f4", (3, 3)), ("a", "<u2")])
    np.testing.assert_allclose(rec["n"], M.face_normals(sphere), atol=1e-6)


def test_format_argument_overrides_suffix(tmp_path, sphere):
    path = save_mesh(sphere, tmp_path / "mesh.bin", format="PLY")
    assert path.read_bytes().startswith(b"ply\n")
    assert load_mesh(path, format="ply").n_faces == sphere.n_faces


def test_unknown_format(tmp_path, sphere):
    with pytest.raises(ValueError, match="xyz"):
        save_mesh(sphere, tmp_path / "m.xyz")
    with pytest.raises(ValueError, match="expected one of"):
        mesh_bytes(sphere, "fbx")
    with pytest.raises(ValueError, match="format"):
        load_mesh(tmp_path / "m.xyz")


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_mesh(tmp_path / "missing.ply")
    garbage = tmp_path / "garbage.ply"
    garbage.write_bytes(b"\x00\x01 this is not a ply")
    with pytest.raises(ValueError, match="garbage.ply"):
        load_mesh(garbage)
    empty = tmp_path / "empty.obj"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty.obj"):
        load_mesh(empty)
    points_only = tmp_path / "points.obj"
    points_only.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    with pytest.raises(ValueError, match="triangles"):
        load_mesh(points_only)


def test_empty_mesh_saves(tmp_path):
    e = Mesh(np.zeros((0, 3)), np.zeros((0, 3)))
    for fmt in ("ply", "obj", "stl"):
        assert save_mesh(e, tmp_path / f"e.{fmt}").exists()


def test_all_shared_meshes_load(shared_data):
    paths = [p for p in sorted((shared_data / "meshes").glob("*/*")) if p.suffix.lower() in (".obj", ".stl")]
    folders = {d for d in (shared_data / "meshes").iterdir() if d.is_dir()}
    assert folders and {p.parent for p in paths} == folders, paths  # a mesh in every folder
    for path in paths:
        m = load_mesh(path)
        assert m.n_faces > 1000 and M.is_watertight(m), path


def test_off_loads(tmp_path):
    b = trimesh.creation.box()
    path = tmp_path / "b.off"
    path.write_bytes(b.export(file_type="off").encode())
    m = load_mesh(path)
    assert m.n_faces == 12 and M.volume(m) == pytest.approx(1.0)


def test_real_mesh_round_trip(tmp_path, shared_data):
    m = load_mesh(shared_data / "meshes" / "armadillo_correspondence" / "armadillo.obj")
    for fmt in EXPORTERS:
        back = load_mesh(save_mesh(m, tmp_path / f"a.{fmt}"))
        scale = np.abs(m.vertices).max()
        if fmt == "stl":
            same_triangles(back, m, atol=2e-7 * scale)
        else:
            np.testing.assert_allclose(back.vertices, m.vertices, atol=2e-7 * scale)
            np.testing.assert_array_equal(back.faces, m.faces)
