"""Surface-quality metrics on point sets and meshes.

Point-set metrics take (n, 3) arrays (converted to float64) in the same units and return plain
floats in those units (squared units for ``chamfer_l2``). Nearest neighbours come from
``scipy.spatial.cKDTree`` with all cores. Empty inputs and NaN/inf raise ValueError.

Notation: for point sets A, B let d(a, B) = min_{b in B} ||a - b||_2.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from meshing import mesh as mesh_ops
from meshing.mesh import Mesh

_CHUNK = 1 << 20  # points per ray-casting query: bounds memory for millions of input points


def _points(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"expected {name} with shape (n, 3), got {a.shape}")
    if a.shape[0] == 0:
        raise ValueError(f"expected non-empty {name}, got 0 points")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"expected finite {name}, got NaN or inf")
    return a


def _unit(n, like: np.ndarray, name: str) -> np.ndarray:
    n = _points(n, name)
    if n.shape != like.shape:
        raise ValueError(f"expected {name} with shape {like.shape}, got {n.shape}")
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return np.divide(n, length, out=np.zeros_like(n), where=length > 0)


def _nearest(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each point of a: (distance to, index of) its nearest point in b."""
    return cKDTree(b).query(a, k=1, workers=-1)


def chamfer_l1(a, b) -> float:
    """0.5 * (mean_{a in A} d(a, B) + mean_{b in B} d(b, A)), Euclidean (not squared) distances.

    This is the "Chamfer-L1" of Occupancy Networks (Mescheder et al. 2019); units of the input.
    """
    a, b = _points(a, "a"), _points(b, "b")
    return float(0.5 * (_nearest(a, b)[0].mean() + _nearest(b, a)[0].mean()))


def chamfer_l2(a, b) -> float:
    """0.5 * (mean_{a in A} d(a, B)^2 + mean_{b in B} d(b, A)^2); squared input units."""
    a, b = _points(a, "a"), _points(b, "b")
    return float(0.5 * ((_nearest(a, b)[0] ** 2).mean() + (_nearest(b, a)[0] ** 2).mean()))


def _pr_from(d_pred: np.ndarray, d_gt: np.ndarray, threshold: float) -> tuple[float, float]:
    return float(np.mean(d_pred < threshold)), float(np.mean(d_gt < threshold))


def _f_from(d_pred: np.ndarray, d_gt: np.ndarray, threshold: float) -> float:
    precision, recall = _pr_from(d_pred, d_gt, threshold)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _check_threshold(threshold: float) -> None:
    if not threshold > 0:
        raise ValueError(f"expected a positive threshold, got {threshold!r}")


def precision_recall(a_pred, b_gt, threshold: float) -> tuple[float, float]:
    """(precision, recall) at distance ``threshold``, each in [0, 1].

    precision = fraction of predicted points a with d(a, GT) < threshold (how much of the
    prediction is real surface); recall = fraction of GT points b with d(b, pred) < threshold
    (how much of the real surface was recovered). ``f_score`` is their harmonic mean.
    """
    _check_threshold(threshold)
    a, b = _points(a_pred, "a_pred"), _points(b_gt, "b_gt")
    return _pr_from(_nearest(a, b)[0], _nearest(b, a)[0], threshold)


def f_score(a_pred, b_gt, threshold: float) -> float:
    """F-score at distance ``threshold`` (Tatarchenko et al. 2019), in [0, 1].

    precision = fraction of predicted points a with d(a, GT) < threshold;
    recall = fraction of GT points b with d(b, pred) < threshold;
    F = 2 * precision * recall / (precision + recall), or 0 when both are 0.
    """
    _check_threshold(threshold)
    a, b = _points(a_pred, "a_pred"), _points(b_gt, "b_gt")
    return _f_from(_nearest(a, b)[0], _nearest(b, a)[0], threshold)


def normal_consistency(a, na, b, nb) -> float:
    """0.5 * (mean_a |<n_a, n_{NN_B(a)}>| + mean_b |<n_b, n_{NN_A(b)}>|), in [0, 1].

    NN_B(a) is a's nearest point in B; normals are normalised first and their sign is ignored
    (so unoriented normals are fine). Identical sets give 1; independent uniformly random
    directions give E|cos| = 0.5.
    """
    a, b = _points(a, "a"), _points(b, "b")
    na, nb = _unit(na, a, "na"), _unit(nb, b, "nb")
    _, ia = _nearest(a, b)
    _, ib = _nearest(b, a)
    return _nc_from(na, nb, ia, ib)


def _nc_from(na, nb, ia, ib) -> float:
    ab = np.abs(np.einsum("ij,ij->i", na, nb[ia])).mean()
    ba = np.abs(np.einsum("ij,ij->i", nb, na[ib])).mean()
    return float(0.5 * (ab + ba))


def hausdorff(a, b) -> float:
    """Symmetric Hausdorff distance max(max_a d(a, B), max_b d(b, A)); input units."""
    a, b = _points(a, "a"), _points(b, "b")
    return float(max(_nearest(a, b)[0].max(), _nearest(b, a)[0].max()))


def _percentile_from(d_ab: np.ndarray, d_ba: np.ndarray, q: float) -> float:
    return float(np.percentile(np.concatenate([d_ab, d_ba]), q))


def hausdorff_percentile(a, b, q: float = 95.0) -> float:
    """The q-th percentile of the symmetric nearest distances {d(a, B)} ∪ {d(b, A)}; input units.

    Pooled over both directions, as the "HD95" of medical image segmentation (MedPy's ``hd95``):
    unlike ``hausdorff`` (q = 100) it ignores the worst (100 - q)% of points, so a few stray
    samples do not decide it, while a missing or extra region covering more than that does.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"expected a percentile q in [0, 100], got {q!r}")
    a, b = _points(a, "a"), _points(b, "b")
    return _percentile_from(_nearest(a, b)[0], _nearest(b, a)[0], q)


def evaluate_meshes(
    pred: Mesh,
    gt: Mesh,
    *,
    n_samples: int = 100_000,
    f_threshold_fraction: float = 0.01,
    seed: int = 0,
) -> dict:
    """Compare two meshes through ``n_samples`` area-uniform surface samples of each.

    Returns floats: chamfer_l1, chamfer_l2, f_score, f_threshold (absolute distance =
    f_threshold_fraction * GT bounding-box diagonal), normal_consistency (face normals at the
    samples), hausdorff; precision and recall (the two halves of the F-score, at f_threshold)
    and hausdorff95 (``hausdorff_percentile`` at 95). pred and gt are sampled with independent
    streams derived from ``seed``, so comparing a mesh with itself gives the sampling floor (small), not exactly 0.
    """
    for name, m in (("pred", pred), ("gt", gt)):
        if m.is_empty:
            raise ValueError(f"expected a non-empty {name} mesh, got 0 faces")
    if n_samples < 1:
        raise ValueError(f"expected n_samples >= 1, got {n_samples}")
    if not f_threshold_fraction > 0:
        raise ValueError(f"expected f_threshold_fraction > 0, got {f_threshold_fraction!r}")
    s_pred, s_gt = np.random.SeedSequence(seed).spawn(2)
    pa, na = mesh_ops.sample_surface(pred, n_samples, seed=s_pred)
    pb, nb = mesh_ops.sample_surface(gt, n_samples, seed=s_gt)
    d_ab, i_ab = _nearest(pa, pb)
    d_ba, i_ba = _nearest(pb, pa)
    threshold = f_threshold_fraction * mesh_ops.bounding_box_diagonal(gt)
    precision, recall = _pr_from(d_ab, d_ba, threshold)
    return {
        "chamfer_l1": float(0.5 * (d_ab.mean() + d_ba.mean())),
        "chamfer_l2": float(0.5 * ((d_ab**2).mean() + (d_ba**2).mean())),
        "f_score": _f_from(d_ab, d_ba, threshold),
        "f_threshold": float(threshold),
        "normal_consistency": _nc_from(na, nb, i_ab, i_ba),
        "hausdorff": float(max(d_ab.max(), d_ba.max())),
        "precision": precision,
        "recall": recall,
        "hausdorff95": _percentile_from(d_ab, d_ba, 95.0),
    }


def point_to_mesh(mesh: Mesh, points, normals=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Exact unsigned distance from each point to the mesh surface (open3d ray-casting BVH).

    Returns ((n,) float64 distances, (n,) |cos| between each point normal and the normal of
    the closest triangle, or None without ``normals``). Computation is float32 inside open3d
    and chunked, so millions of points fit in memory.
    """
    import open3d as o3d

    if mesh.is_empty:
        raise ValueError("expected a non-empty mesh, got 0 faces")
    p = _points(points, "points")
    n = None if normals is None else _unit(normals, p, "normals")
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(mesh.vertices.astype(np.float32)),
        o3d.core.Tensor(mesh.faces.astype(np.uint32)),
    )
    dist = np.empty(len(p))
    cos = None if n is None else np.empty(len(p))
    for s in range(0, len(p), _CHUNK):
        q = o3d.core.Tensor(p[s : s + _CHUNK].astype(np.float32))
        if n is None:
            dist[s : s + _CHUNK] = scene.compute_distance(q).numpy()
            continue
        res = scene.compute_closest_points(q)
        closest = res["points"].numpy().astype(np.float64)
        dist[s : s + _CHUNK] = np.linalg.norm(closest - p[s : s + _CHUNK], axis=1)
        fn = res["primitive_normals"].numpy().astype(np.float64)
        cos[s : s + _CHUNK] = np.abs(np.einsum("ij,ij->i", fn, n[s : s + _CHUNK]))
    return dist, cos


def evaluate_against_points(mesh: Mesh, points, normals=None) -> dict:
    """How well ``mesh`` explains the input cloud, plus its topology.

    Distances are from each input point to the closest point of the mesh surface (not just
    vertices): distance_mean, distance_median, distance_p95, distance_max (input units);
    normal_consistency (mean |cos| to the closest triangle's normal) when ``normals`` are given;
    then ``mesh_stats`` keys (watertight, edge_manifold, n_components, n_vertices, n_faces, ...).
    """
    dist, cos = point_to_mesh(mesh, points, normals)
    out = {
        "distance_mean": float(dist.mean()),
        "distance_median": float(np.median(dist)),
        "distance_p95": float(np.percentile(dist, 95)),
        "distance_max": float(dist.max()),
    }
    if cos is not None:
        out["normal_consistency"] = float(cos.mean())
    out.update(mesh_stats(mesh))
    return out


def mesh_stats(mesh: Mesh) -> dict:
    """Size and topology: n_vertices, n_faces, watertight, edge_manifold, winding_consistent,
    n_components, area, volume (None unless watertight), bbox_diagonal."""
    watertight = mesh_ops.is_watertight(mesh)
    return {
        "n_vertices": mesh.n_vertices,
        "n_faces": mesh.n_faces,
        "watertight": watertight,
        "edge_manifold": mesh_ops.is_edge_manifold(mesh),
        "winding_consistent": mesh_ops.is_winding_consistent(mesh),
        "n_components": mesh_ops.n_components(mesh),
        "area": mesh_ops.area(mesh),
        "volume": mesh_ops.volume(mesh) if watertight else None,
        "bbox_diagonal": mesh_ops.bounding_box_diagonal(mesh),
    }


def psnr(pred, target, mask=None, max_value: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(max_value^2 / MSE)`` over all channels.

    ``pred`` and ``target`` are images (or stacks of them) of equal shape, in the same units as
    ``max_value`` (1.0 for float images in [0, 1]). ``mask`` (the images' shape without the
    channel axis) restricts the mean to pixels where it is > 0.5. Identical images give inf.
    """
    a, b = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"expected two non-empty images of the same shape, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("expected finite pixel values, got NaN or inf")
    err = (a - b) ** 2
    if mask is not None:
        m = np.asarray(mask) > 0.5
        if m.shape != a.shape[: m.ndim]:
            raise ValueError(f"expected a mask of shape {a.shape[:-1]}, got {m.shape}")
        if not m.any():
            raise ValueError("expected a mask with at least one pixel set, got none")
        err = err[m]
    mse = float(err.mean())
    return float("inf") if mse == 0 else float(10.0 * np.log10(max_value**2 / mse))
