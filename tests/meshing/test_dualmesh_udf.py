"""DualMesh-UDF on analytic unsigned distance fields: open and closed sheets with known geometry."""

import math

import numpy as np
import pytest
import torch

from meshing import mesh as M
from meshing.dualmesh_udf import UDFExtractStats, extract_udf
from meshing.metrics import chamfer_l1, f_score, normal_consistency, point_to_mesh
from tests.support.analytic import (
    SHAPES,
    R,
    hemisphere_udf,
    sphere_samples,
    sphere_udf,
)

DEPTH = 7
CELL = 2.0 / 2**DEPTH  # finest cell edge over the default bounds (the lattice is ~0.2% wider)
CASES = SHAPES


@pytest.fixture(scope="module")
def meshes():
    out = {}
    for name, (udf, _) in CASES.items():
        stats = UDFExtractStats()
        out[name] = (extract_udf(udf, depth=DEPTH, stats=stats), stats)
    return out


def boundary_vertices(mesh):
    f = mesh.faces
    e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), 1)
    uniq, counts = np.unique(e, axis=0, return_counts=True)
    return np.unique(uniq[counts == 1])


# --- tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_geometry_against_analytic_surface(meshes, name):
    mesh, _ = meshes[name]
    rng = np.random.default_rng(0)
    gt, gt_n = CASES[name][1](100_000, rng)
    pred, pred_n = M.sample_surface(mesh, 100_000, seed=1)
    diag = float(np.linalg.norm(gt.max(0) - gt.min(0)))
    # Sampled Chamfer is dominated by the sampling floor (half the sample spacing, ~0.2 cell
    # here); the exact one-sided distances below show the geometric error itself.
    assert chamfer_l1(pred, gt) < 0.3 * CELL
    assert f_score(pred, gt, 0.01 * diag) >= 0.99
    assert normal_consistency(pred, pred_n, gt, gt_n) > 0.99
    udf = CASES[name][0]
    to_surface = udf(torch.from_numpy(pred)).double().numpy()  # exact: the field is the distance
    to_mesh, _ = point_to_mesh(mesh, gt[:20_000])
    # Chord sag is ~1e-3 cell; the rim staircase (up to half a cell, on a band one cell wide)
    # dominates the mean from the ground truth to the mesh of open sheets.
    assert to_surface.mean() < 0.01 * CELL
    assert to_mesh.mean() < (0.01 if name == "sphere" else 0.05) * CELL


@pytest.mark.parametrize("name", list(CASES))
def test_topology(meshes, name):
    mesh, _ = meshes[name]
    assert M.is_edge_manifold(mesh)
    assert M.is_winding_consistent(mesh)
    assert M.n_components(mesh) == 1
    assert len(np.unique(np.sort(mesh.faces, 1), axis=0)) == mesh.n_faces  # no duplicate faces
    assert len(np.unique(mesh.vertices, axis=0)) == mesh.n_vertices  # no duplicate vertices
    assert np.all(mesh.faces[:, 0] != mesh.faces[:, 1])
    assert np.all(mesh.faces[:, 1] != mesh.faces[:, 2])
    assert np.all(mesh.faces[:, 0] != mesh.faces[:, 2])


def test_closed_sphere_has_no_boundary(meshes):
    mesh, _ = meshes["sphere"]
    assert M.is_watertight(mesh)
    area = M.area(mesh)
    assert area == pytest.approx(4 * math.pi * R**2, rel=0.01)


@pytest.mark.parametrize("name", ["hemisphere", "disc", "patch"])
def test_open_sheets_keep_their_rim(meshes, name):
    mesh, _ = meshes[name]
    rim = mesh.vertices[boundary_vertices(mesh)]
    assert len(rim) > 0
    x, y, z = rim.T
    if name == "patch":
        outer = np.maximum(np.abs(x), np.abs(y))
        assert np.all(np.abs(outer - R) < CELL)
    else:
        assert np.all(np.abs(np.hypot(x, y) - R) < CELL)
    assert np.all(np.abs(z) < CELL)
    # The rim is one loop around the sheet: a perimeter's worth of boundary vertices.
    perimeter = 8 * R if name == "patch" else 2 * math.pi * R
    assert perimeter / CELL * 0.8 < len(rim) < perimeter / CELL * 2.0


@pytest.mark.parametrize("name, area", [("disc", math.pi * R**2), ("patch", 4 * R**2)])
def test_flat_sheets_are_single_layer(meshes, name, area):
    mesh, _ = meshes[name]
    # Every vertex on the plane (the QEF moves only along the normal), except that cells that
    # contain the rim also see the tilted tangent planes of the distance tube around it ...
    z = np.abs(mesh.vertices[:, 2])
    x, y = np.abs(mesh.vertices[:, :2]).T
    to_rim = R - (np.maximum(x, y) if name == "patch" else np.hypot(x, y))
    assert z[to_rim > 1.8 * CELL].max() < 1e-6
    assert z.max() < 0.1 * CELL
    # ... and one quad (two triangles) per crossed cell column, not two sheets.
    expected = 2 * area / CELL**2
    assert 0.9 * expected < mesh.n_faces < 1.15 * expected
    assert M.area(mesh) == pytest.approx(area, rel=0.03)


def test_hemisphere_stays_above_the_equator(meshes):
    mesh, _ = meshes["hemisphere"]
    # Rim cells reach at most a tenth of a cell below the equator (see the flat sheets) ...
    assert mesh.vertices[:, 2].min() > -0.1 * CELL
    # ... and every vertex away from the rim is on the sphere.
    r = np.linalg.norm(mesh.vertices, axis=1)
    err = np.abs(r[mesh.vertices[:, 2] > 1.8 * CELL] - R)
    # A few vertices are clamped back into their cell (curved sheet through a cell corner).
    assert np.quantile(err, 0.99) < 0.01 * CELL
    assert err.max() < 0.1 * CELL


def test_box_corners_are_sharp():
    half = 0.4

    def box_udf(x):  # |SDF| of a cube: its surface, with edges and corners
        q = x.abs() - half
        out = torch.clamp(q, min=0).norm(dim=1)
        inside = torch.clamp(q.max(dim=1).values, max=0)
        return (out + inside).abs()

    mesh = extract_udf(box_udf, depth=5)
    corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    d = np.linalg.norm(mesh.vertices[None] - half * corners[:, None], axis=2).min(1)
    # Truncated QEF puts a vertex on each corner (within float32 noise), not a cell away.
    assert d.max() < 1e-4
    assert M.is_edge_manifold(mesh)


def test_approximate_field_like_a_neural_one():
    """Not a true distance: gradient norm 0.64..0.96, and the minimum is 0.001, not 0."""

    def wobbly(x):
        return 0.8 * hemisphere_udf(x) * (1 + 0.2 * torch.sin(7 * x[:, 0])) + 0.001

    mesh = extract_udf(wobbly, depth=DEPTH)
    gt, gt_n = sphere_samples(100_000, np.random.default_rng(0), upper_only=True)
    pred, pred_n = M.sample_surface(mesh, 100_000, seed=1)
    assert f_score(pred, gt, 0.01 * float(np.linalg.norm(gt.max(0) - gt.min(0)))) >= 0.99
    # Projections fall short by up to 36% of the (small) distance, so planes tilt a little.
    assert normal_consistency(pred, pred_n, gt, gt_n) > 0.98
    assert M.is_edge_manifold(mesh) and M.n_components(mesh) == 1
    assert len(boundary_vertices(mesh)) > 0


def test_finite_differences_match_autograd():
    def no_grad_udf(x):
        with torch.no_grad():
            return hemisphere_udf(x)

    a = extract_udf(hemisphere_udf, depth=5)
    b = extract_udf(no_grad_udf, depth=5)
    assert abs(a.n_faces - b.n_faces) <= 0.02 * a.n_faces
    pa, _ = M.sample_surface(a, 20_000, seed=0)
    pb, _ = M.sample_surface(b, 20_000, seed=0)
    assert chamfer_l1(pa, pb) < 0.02 * 2 / 2**5


def test_stats_are_filled(meshes):
    _, stats = meshes["sphere"]
    assert stats.evaluations > stats.gradient_evaluations > 0
    assert len(stats.cells_per_level) == DEPTH - 4 + 1
    assert stats.leaves == stats.cells_per_level[-1]
    assert stats.crossed_edges > 0 and stats.seconds > 0
    # Work follows the surface: far fewer leaves than finest cells.
    assert stats.leaves < 0.05 * 8**DEPTH


def test_field_far_from_zero_raises():
    # Pruned away by the octree ...
    with pytest.raises(ValueError, match="never comes within .* of zero: no surface"):
        extract_udf(lambda x: x.norm(dim=1) * 0 + 0.7, depth=6)
    # ... or close enough to keep leaves, but never within the threshold (a floor of 0.02 raises
    # the default from a quarter cell up to its cap, half a cell, 0.0157 here).
    with pytest.raises(ValueError, match=r"never comes within 0\.01[56]\d* of zero: no surface"):
        extract_udf(lambda x: sphere_udf(x) + 0.02, depth=6)
    # A threshold above the floor accepts the offset sheet, and the projection's step back
    # puts the vertices on it although each first projection overshoots by 0.02 (2/3 cell).
    mesh = extract_udf(lambda x: sphere_udf(x) + 0.02, depth=6, threshold=0.03)
    assert M.is_watertight(mesh) and M.is_edge_manifold(mesh)
    assert np.abs(np.linalg.norm(mesh.vertices, axis=1) - R).max() < 0.1 * 2 / 2**6


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"depth": 0}, "expected depth"),
        ({"bounds": ((0, 0, 0), (0, 1, 1))}, "expected bounds"),
        ({"threshold": -1.0}, "expected threshold"),
        ({"chunk_size": 0}, "expected chunk_size"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        extract_udf(sphere_udf, **kwargs)


def test_chunking_does_not_change_the_mesh():
    a = extract_udf(sphere_udf, depth=5)
    b = extract_udf(sphere_udf, depth=5, chunk_size=777)
    np.testing.assert_array_equal(a.faces, b.faces)
    np.testing.assert_allclose(a.vertices, b.vertices)


def test_exact_fields_keep_the_default_threshold_and_lose_no_faces(meshes):
    for name, (_, stats) in meshes.items():
        assert stats.nonmanifold_faces == 0 and stats.twisted_faces == 0, name
        assert stats.threshold == pytest.approx(0.25 * 2 / 2**DEPTH, rel=0.05), name
        assert stats.crossing_threshold == pytest.approx(stats.threshold, rel=0.01), name


def test_threshold_rises_to_the_floor_of_a_fitted_field():
    # A floor of 0.004 (a quarter cell at depth 7 is 0.0039): the default would leave holes
    # wherever the floor is above it; the adaptive threshold reads the floor at the projections.
    stats = UDFExtractStats()
    mesh = extract_udf(lambda x: sphere_udf(x) + 0.004, depth=DEPTH, stats=stats)
    assert 0.004 < stats.threshold <= 0.5 * 2.01 / 2**DEPTH
    assert stats.crossing_threshold == stats.threshold  # both at the cap
    # A lower floor (0.001) keeps the default threshold; the crossing test still gets more room.
    mesh = extract_udf(lambda x: sphere_udf(x) + 0.001, depth=DEPTH, stats=stats)
    assert stats.threshold == pytest.approx(0.25 * 2.01 / 2**DEPTH, rel=0.05)
    assert 1.9 * stats.threshold < stats.crossing_threshold <= 0.5 * 2.01 / 2**DEPTH  # 0.0039 + 8 * 0.001, capped
    assert M.is_watertight(mesh) and M.is_edge_manifold(mesh)
    assert M.is_watertight(mesh) and M.is_edge_manifold(mesh)


def test_faces_on_overused_edges_are_dropped():
    from meshing.dualmesh_udf import _drop_nonmanifold

    # Three triangles on the edge (0, 1) (a fin) plus one ordinary neighbour of the first.
    faces = np.array([[0, 1, 2], [1, 0, 3], [0, 1, 4], [2, 1, 5]])
    kept, removed = _drop_nonmanifold(faces)
    assert removed == 3 and kept.tolist() == [[2, 1, 5]]


def _strip(n: int, twist: bool) -> np.ndarray:
    """Faces of a band of ``n`` quads closed into a ring: an annulus, or a Moebius strip when
    ``twist`` joins the last rung to the first upside down (vertices 2i on one side, 2i+1 on the other)."""
    faces = []
    for i in range(n):
        a, b = 2 * i, 2 * i + 1
        c, d = (2 * (i + 1), 2 * (i + 1) + 1) if i + 1 < n else ((1, 0) if twist else (0, 1))
        faces += [[a, c, b], [b, c, d]]
    return np.array(faces)


def test_twists_are_cut_so_that_the_mesh_is_orientable():
    from meshing.dualmesh_udf import _drop_twists, _orient

    ring, ring_removed = _drop_twists(_orient(_strip(12, twist=False)))
    assert ring_removed == 0 and len(ring) == 24  # orientable: untouched
    scrambled = _strip(12, twist=True)
    scrambled[::3] = scrambled[::3, ::-1]  # orientation must not depend on the input's
    kept, removed = _drop_twists(_orient(scrambled))
    verts = np.zeros((24, 3))  # only the connectivity matters to these checks
    mesh = M.Mesh(verts, kept)
    assert 0 < removed <= 4 and len(kept) == 24 - removed
    assert M.is_winding_consistent(mesh) and M.is_edge_manifold(mesh)


def _grid_with_holes():
    """A 6x6 grid of unit squares in z = 0 (two triangles each, consistently oriented) without
    the squares (1, 1) and (2, 2), two holes that touch at the vertex (2, 2), and without the
    2x2 block at (3..4, 3..4), a hole of perimeter 8 that touches the second at (3, 3)."""
    faces = []
    for i in range(6):
        for j in range(6):
            if (i, j) in {(1, 1), (2, 2), (3, 3), (4, 3), (3, 4), (4, 4)}:
                continue
            a, b, c, d = i * 7 + j, (i + 1) * 7 + j, (i + 1) * 7 + j + 1, i * 7 + j + 1
            faces += [[a, b, c], [a, c, d]]
    ij = np.stack(np.meshgrid(np.arange(7), np.arange(7), indexing="ij"), -1).reshape(-1, 2)
    return np.column_stack([ij, np.zeros(len(ij))]).astype(np.float64), np.array(faces)


def test_small_holes_are_closed_and_the_rim_kept():
    from meshing.dualmesh_udf import _boundary_loops, _fill_small_holes
    from meshing.evaluator import FieldEvaluator

    vert, faces = _grid_with_holes()
    loops = _boundary_loops(faces)
    # The rim (24 edges), the two unit holes split apart at the vertex they share, the 2x2 hole.
    assert sorted(len(lp) for lp in loops) == [4, 4, 8, 24]
    ev = FieldEvaluator(lambda x: x[:, 2].abs() + 0.0 * x.sum(1), 2**16, "cpu", fd_step=1e-3)
    for limit, closed, area in ((4.5, 2, 36 - 4), (8.5, 3, 36), (0, 0, 36 - 6)):
        v, f, n = _fill_small_holes(ev, vert, faces, limit)
        mesh = M.Mesh(v, f)
        assert n == closed and M.area(mesh) == pytest.approx(area)
        assert M.is_edge_manifold(mesh) and M.is_winding_consistent(mesh)
        assert np.abs(v[:, 2]).max() < 1e-6  # fan centres lie on the field's zero set
    assert len(boundary_vertices(M.Mesh(*_fill_small_holes(ev, vert, faces, 8.5)[:2]))) == 24  # the rim


def test_fill_holes_is_checked():
    with pytest.raises(ValueError, match="fill_holes"):
        extract_udf(sphere_udf, depth=5, fill_holes=-1.0)
