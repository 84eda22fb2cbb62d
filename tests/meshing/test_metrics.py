"""Metrics against analytic answers: concentric spheres, rotated normals, offset cube points."""

import math

import numpy as np
import pytest
import trimesh

from meshing import metrics as MT
from meshing.mesh import Mesh
from meshing.metrics import (
    chamfer_l1,
    chamfer_l2,
    evaluate_against_points,
    evaluate_meshes,
    f_score,
    hausdorff,
    hausdorff_percentile,
    mesh_stats,
    normal_consistency,
    precision_recall,
)


def fibonacci_sphere(n, radius=1.0):
    """Near-uniform points on a sphere (spacing ~ sqrt(4 pi / n) * radius) and their normals."""
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    phi = i * math.pi * (3 - math.sqrt(5))
    rho = np.sqrt(1 - z**2)
    unit = np.stack([rho * np.cos(phi), rho * np.sin(phi), z], 1)
    return radius * unit, unit


def icosphere(radius=1.0, subdivisions=5):
    s = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return Mesh(s.vertices, s.faces)


def test_identical_sets():
    p, n = fibonacci_sphere(5000)
    assert chamfer_l1(p, p) == 0.0
    assert chamfer_l2(p, p) == 0.0
    assert hausdorff(p, p) == 0.0
    assert f_score(p, p, 1e-6) == 1.0
    assert normal_consistency(p, n, p, n) == pytest.approx(1.0)


def test_concentric_spheres():
    r1, r2 = 1.0, 1.1
    a, na = fibonacci_sphere(40_000, r1)
    b, nb = fibonacci_sphere(50_000, r2)  # different counts: no point-to-point alignment
    gap = r2 - r1
    # Dense sampling: nearest neighbours are almost radial, so distances ~ the gap.
    assert chamfer_l1(a, b) == pytest.approx(gap, rel=0.01)
    assert chamfer_l2(a, b) == pytest.approx(gap**2, rel=0.02)
    assert hausdorff(a, b) == pytest.approx(gap, rel=0.02)
    assert hausdorff(a, b) >= gap
    assert f_score(a, b, 0.9 * gap) == 0.0
    assert f_score(a, b, 1.1 * gap) == 1.0
    assert normal_consistency(a, na, b, nb) == pytest.approx(1.0, abs=1e-3)
    assert chamfer_l1(a, b) == chamfer_l1(b, a)


def test_f_score_partial():
    # Half the predicted points sit on the GT, half are far: precision 0.5, recall 1.
    gt = np.random.default_rng(0).random((1000, 3))
    pred = np.vstack([gt, gt + 10.0])
    assert f_score(pred, gt, 0.01) == pytest.approx(2 * 0.5 * 1.0 / 1.5)


def test_normal_consistency_analytic():
    p, n = fibonacci_sphere(10_000)
    # Normals tilted by 60 degrees (any tangent direction): |cos| = 0.5 everywhere.
    tangent = np.cross(n, [0.3, 0.5, 0.8])
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    tilted = 0.5 * n + math.sqrt(3) / 2 * tangent
    assert normal_consistency(p, n, p, tilted) == pytest.approx(0.5, abs=1e-9)
    # Flipped normals count as consistent (orientation is ignored).
    assert normal_consistency(p, n, p, -n) == pytest.approx(1.0)
    # Independent uniform directions: E|cos| = 1/2.
    rand = np.random.default_rng(1).normal(size=n.shape)
    assert normal_consistency(p, n, p, rand) == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("fn", [chamfer_l1, chamfer_l2, hausdorff])
def test_point_metric_errors(fn):
    p = np.zeros((5, 3))
    with pytest.raises(ValueError, match="non-empty"):
        fn(np.zeros((0, 3)), p)
    bad = p.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fn(p, bad)
    with pytest.raises(ValueError, match="shape"):
        fn(np.zeros((5, 2)), p)


def test_f_score_and_normal_errors():
    p = np.zeros((5, 3))
    with pytest.raises(ValueError, match="threshold"):
        f_score(p, p, 0.0)
    with pytest.raises(ValueError, match="shape"):
        normal_consistency(p, np.ones((4, 3)), p, np.ones((5, 3)))


def test_evaluate_meshes_same_and_offset():
    gt = icosphere(1.0)
    same = evaluate_meshes(gt, gt, n_samples=50_000)
    assert set(same) == {
        "chamfer_l1",
        "chamfer_l2",
        "f_score",
        "f_threshold",
        "normal_consistency",
        "hausdorff",
        "precision",
        "recall",
        "hausdorff95",
    }
    # Sampling floor only: mean nearest-neighbour distance of n random points on area A is
    # about 0.5 * sqrt(A / n) = 0.008 here.
    assert same["chamfer_l1"] < 0.01
    assert same["f_score"] > 0.999
    assert same["normal_consistency"] > 0.99
    assert same["f_threshold"] == pytest.approx(0.01 * 2 * math.sqrt(3), rel=0.01)

    pred = icosphere(1.05)
    out = evaluate_meshes(pred, gt, n_samples=50_000, f_threshold_fraction=0.01)
    assert out["chamfer_l1"] == pytest.approx(0.05, rel=0.05)
    assert out["hausdorff"] == pytest.approx(0.05, rel=0.3)
    assert out["f_score"] < 0.05  # threshold 0.035 < gap 0.05
    # Every sample of either sphere is >= 0.05 from the other, and within 0.05 + the sampling
    # floor (~0.008), so nothing is within the threshold and HD95 sits just above the gap.
    assert out["precision"] == out["recall"] == 0.0
    assert 0.05 <= out["hausdorff95"] < 0.05 + 0.02
    assert out["hausdorff95"] <= out["hausdorff"]
    loose = evaluate_meshes(pred, gt, n_samples=50_000, f_threshold_fraction=0.03)
    assert loose["f_score"] > 0.99
    assert loose["precision"] > 0.99 and loose["recall"] > 0.99
    # Deterministic for a seed.
    assert evaluate_meshes(pred, gt, n_samples=2000, seed=5) == evaluate_meshes(
        pred, gt, n_samples=2000, seed=5
    )


def offset_planes(gap, n=60):
    """An n x n grid on z = 0 and the same grid on z = gap: every nearest distance is exactly gap."""
    g = np.linspace(0.0, 1.0, n)
    x, y = np.meshgrid(g, g)
    flat = np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], 1)
    return flat, flat + [0.0, 0.0, gap]


def test_precision_recall_offset_plane():
    a, b = offset_planes(0.1)
    assert precision_recall(a, b, 0.11) == (1.0, 1.0)
    assert precision_recall(a, b, 0.09) == (0.0, 0.0)
    # 10% of the prediction is a stray copy 5 units away: precision drops to 0.9, recall stays.
    # The stray copy's nearest GT point is 5 - 0.1 away; the GT's nearest stays the main copy.
    stray = a[: len(a) // 9] + [0.0, 0.0, 5.0]
    p, r = precision_recall(np.vstack([a, stray]), b, 0.11)
    assert p == pytest.approx(len(a) / (len(a) + len(stray)), abs=1e-12)
    assert p == pytest.approx(0.9, abs=0.001)
    assert r == 1.0
    # The other way round: the GT has the extra region, so recall drops instead.
    p, r = precision_recall(b, np.vstack([a, stray]), 0.11)
    assert (p, r) == (1.0, pytest.approx(0.9, abs=0.001))
    # The F-score is their harmonic mean.
    assert f_score(b, np.vstack([a, stray]), 0.11) == pytest.approx(2 * p * r / (p + r))


def test_hausdorff_percentile_offset_plane():
    a, b = offset_planes(0.1)
    assert hausdorff_percentile(a, b) == pytest.approx(0.1, abs=1e-12)
    assert hausdorff_percentile(a, b, q=100) == hausdorff(a, b)
    # 2% stray points at 5 + 0.1: HD95 ignores them, the Hausdorff distance does not.
    stray = a[:: 50] + [0.0, 0.0, 5.0]
    pred = np.vstack([a, stray])
    assert hausdorff_percentile(pred, b) == pytest.approx(0.1, abs=1e-12)
    assert hausdorff(pred, b) == pytest.approx(4.9)
    # Pooled over both directions: 9% of one side (4.5% of all distances) is still ignored,
    # 12% of one side (6% of all) is not.
    assert hausdorff_percentile(np.vstack([a, a[: int(0.09 * len(a))] + [0, 0, 5.0]]), b) < 0.2
    assert hausdorff_percentile(np.vstack([a, a[: int(0.12 * len(a))] + [0, 0, 5.0]]), b) > 4.8


def test_concentric_spheres_precision_recall_hausdorff95():
    # Fibonacci spheres of radii 1 and 1.1 with the same n: point i of one lies radially above
    # point i of the other, so every nearest distance is 0.1.
    a, _ = fibonacci_sphere(20_000, 1.0)
    b, _ = fibonacci_sphere(20_000, 1.1)
    assert hausdorff_percentile(a, b) == pytest.approx(0.1, abs=0.002)
    assert precision_recall(a, b, 0.12) == (1.0, 1.0)
    assert precision_recall(a, b, 0.09) == (0.0, 0.0)


def test_precision_recall_and_percentile_errors():
    p, _ = fibonacci_sphere(10)
    with pytest.raises(ValueError, match="positive threshold"):
        precision_recall(p, p, 0.0)
    with pytest.raises(ValueError, match="percentile"):
        hausdorff_percentile(p, p, q=101)
    with pytest.raises(ValueError, match="non-empty"):
        hausdorff_percentile(np.zeros((0, 3)), p)


def test_evaluate_meshes_errors():
    empty = Mesh(np.zeros((0, 3)), np.zeros((0, 3)))
    with pytest.raises(ValueError, match="pred"):
        evaluate_meshes(empty, icosphere())
    with pytest.raises(ValueError, match="gt"):
        evaluate_meshes(icosphere(), empty)
    nan = icosphere()
    nan.vertices[0] = np.nan
    with pytest.raises(ValueError):
        evaluate_meshes(nan, icosphere())


def cube():
    b = trimesh.creation.box(extents=(2.0, 2.0, 2.0))  # [-1, 1]^3
    return Mesh(b.vertices, b.faces)


def test_evaluate_against_points_on_cube():
    # Points off the +x / -y / +z faces (and one inside) at known distances.
    rng = np.random.default_rng(0)
    d = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0])
    uv = rng.uniform(-0.4, 0.4, size=(len(d), 2))
    pts = np.stack([1 + d, uv[:, 0], uv[:, 1]], 1)
    pts[3] = [uv[3, 0], -1 - d[3], uv[3, 1]]
    pts[6] = [uv[6, 0], uv[6, 1], 1 - d[6]]  # inside, 0.6 below the top face
    normals = np.tile([1.0, 0, 0], (len(d), 1))
    normals[3], normals[6] = [0, -1, 0], [0, 0, 1]
    out = evaluate_against_points(cube(), pts, normals)
    assert out["distance_mean"] == pytest.approx(d.mean(), abs=1e-6)
    assert out["distance_median"] == pytest.approx(np.median(d), abs=1e-6)
    assert out["distance_p95"] == pytest.approx(np.percentile(d, 95), abs=1e-6)
    assert out["distance_max"] == pytest.approx(1.0, abs=1e-6)
    assert out["normal_consistency"] == pytest.approx(1.0, abs=1e-6)
    assert out["watertight"] and out["edge_manifold"] and out["n_components"] == 1
    assert out["n_vertices"] == 8 and out["n_faces"] == 12
    assert out["volume"] == pytest.approx(8.0)
    assert "normal_consistency" not in evaluate_against_points(cube(), pts)


def test_evaluate_against_points_chunked_matches(monkeypatch):
    pts = np.random.default_rng(0).normal(size=(5000, 3))
    full, _ = MT.point_to_mesh(cube(), pts)
    monkeypatch.setattr(MT, "_CHUNK", 777)
    chunked, _ = MT.point_to_mesh(cube(), pts)
    np.testing.assert_array_equal(full, chunked)
    # Exact point-to-box distance (outside: Euclidean to the box; inside: to the nearest face).
    q = np.abs(pts) - 1
    exact = np.where(np.all(q <= 0, 1), -q.max(1), np.linalg.norm(np.maximum(q, 0), axis=1))
    np.testing.assert_allclose(full, exact, atol=1e-5)


def test_evaluate_against_points_errors():
    with pytest.raises(ValueError, match="non-empty"):
        evaluate_against_points(cube(), np.zeros((0, 3)))
    with pytest.raises(ValueError, match="0 faces"):
        evaluate_against_points(Mesh(np.zeros((0, 3)), np.zeros((0, 3))), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        evaluate_against_points(cube(), np.full((3, 3), np.nan))


def test_mesh_stats_open_mesh():
    c = cube()
    open_cube = Mesh(c.vertices, c.faces[:-2])
    s = mesh_stats(open_cube)
    assert not s["watertight"] and s["edge_manifold"] and s["volume"] is None
    assert s["area"] == pytest.approx(20.0)
    assert s["bbox_diagonal"] == pytest.approx(2 * math.sqrt(3))
