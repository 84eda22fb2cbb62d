"""Consistent outward normals for an unoriented point cloud, decided globally.

Local propagation alone (a minimum spanning tree over the k-nearest-neighbour graph, as in
Hoppe et al. 1992 and Open3D's ``orient_normals_consistent_tangent_plane``) fails where the
surface is thin or sharp: a tree edge that crosses a thin part, or turns a sharp edge, passes
the wrong sign on to everything behind it. Here:

1. PCA normals from the ``k`` nearest samples.
2. A spanning tree over *tangent* neighbour edges only (an edge whose direction leaves the
   tangent plane by more than 30 degrees crosses a thin part and is left out), weighted
   ``1 - |n_i . n_j|``; signs propagate along it.
3. The tree is cut where the propagation is unsure (neighbour normals more than ~60 degrees
   apart), into patches; patches smaller than ``min_patch`` points stay with their parent.
4. Each patch's sign is then chosen globally with the generalized winding number of the oriented
   samples (a sum of dipoles, Jacobson et al. 2013 / Barill et al. 2018): just inside the
   surface it should be 1, just outside 0 and, away from the surface, either. A greedy search
   flips the patch that lowers that energy most until none does.

The winding numbers of the last step also tell an open surface from a closed one
(:attr:`Orientation.openness`): for a closed surface they are 0 or 1 beside it; for a sheet with
borders they take fractional values on both sides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import breadth_first_order, connected_components, minimum_spanning_tree
from scipy.spatial import cKDTree

from recon.cleaning import knn, pca_frames


@dataclass(frozen=True)
class Orientation:
    """Result of :func:`orient_normals`."""

    normals: np.ndarray
    """(n, 3) unit normals, oriented outward where the surface is closed."""
    n_patches: int
    """Patches the spanning tree was cut into (1: propagation alone was trusted everywhere)."""
    n_flipped: int
    """Patches whose propagated sign the winding number reversed."""
    openness: float
    """75th percentile over probe points of how far the winding number beside the surface is
    from 0 (outside) and 1 (inside): about 0.01-0.05 for closed surfaces, 0.2-0.5 for one-sided
    sheets, 0.06-0.15 for closed surfaces with holes and for a T-shirt (not a good separator)."""
    ambiguous: float
    """Of the lattice points away from the samples with winding number above 0.2, the fraction
    below 0.8: 0 for closed surfaces, rising with the size of their holes, near 1 for sheets."""


def pca_normals(points: np.ndarray, k: int = 15, tree: cKDTree | None = None) -> np.ndarray:
    """Unit normals (unoriented) of the plane through each point's ``k`` nearest samples."""
    _, idx = knn(points, k, tree)
    return pca_frames(points, idx)[1][:, :, 0].copy()


AREA_KNN = 8
"""Neighbours of the area estimate."""


def point_areas(points: np.ndarray, tree: cKDTree | None = None, k: int = AREA_KNN) -> np.ndarray:
    """Surface area each sample stands for: the disc through its ``k``-th neighbour over ``k``."""
    d, _ = knn(points, k + 1, tree)
    return math.pi * d[:, -1] ** 2 / k


def lattice_away_from(points: np.ndarray, tree: cKDTree, grid: int, pad: float, min_distance: float) -> np.ndarray:
    """The ``grid``^3 lattice over the points' box grown by ``pad`` times its longest side, without
    the lattice points within ``min_distance`` of a sample (neither clearly inside nor outside)."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    margin = pad * float((hi - lo).max())
    axes = [np.linspace(lo[a] - margin, hi[a] + margin, grid) for a in range(3)]
    lattice = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    return lattice[tree.query(lattice, k=1, workers=-1)[0] > min_distance]


def ambiguous_share(w: np.ndarray) -> float:
    """Of the winding numbers ``w`` above 0.2 (inside, or near a sheet), the fraction below 0.8."""
    inside = w > 0.2
    return float((inside & (w < 0.8)).sum() / max(1, inside.sum()))


def fast_winding_number(points: np.ndarray, normals: np.ndarray, areas: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """libigl's fast winding number of oriented samples at ``queries``, with samples at the same
    position merged into one dipole first (their areas summed, their area-weighted normals
    averaged: the same sum), because libigl's octree never ends splitting identical points and
    crashes the process (a cloud of 50 points written 4 times each did)."""
    import igl

    uniq, inverse = np.unique(points, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    if len(uniq) < len(points):
        area = np.bincount(inverse, weights=areas, minlength=len(uniq))
        moment = np.stack([np.bincount(inverse, weights=areas * normals[:, c], minlength=len(uniq))
                           for c in range(3)], axis=1)
        keep = area > 0
        points, normals, areas = uniq[keep], moment[keep] / area[keep, None], area[keep]
    if not len(points):
        return np.zeros(len(queries))
    return igl.fast_winding_number(np.ascontiguousarray(points, dtype=np.float64),
                                   np.ascontiguousarray(normals, dtype=np.float64),
                                   np.ascontiguousarray(areas, dtype=np.float64),
                                   np.ascontiguousarray(queries, dtype=np.float64))


def winding_contributions(queries: np.ndarray, points: np.ndarray, normals: np.ndarray, areas: np.ndarray,
                          groups: np.ndarray, n_groups: int) -> np.ndarray:
    """(q, n_groups): the winding number at each query of each group's oriented samples.

    ``w(q) = sum_i a_i (p_i - q) . n_i / (4 pi |p_i - q|^3)`` over a group's samples; the winding
    number of the whole cloud is the row sum. libigl's fast winding number (Barill et al. 2018:
    exact near the query, a multipole expansion far from it), one call per group.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float64)
    out = np.zeros((len(queries), n_groups), dtype=np.float64)
    order = np.argsort(groups, kind="stable")
    bounds = np.searchsorted(groups[order], np.arange(n_groups + 1))
    for g in range(n_groups):
        sel = order[bounds[g]:bounds[g + 1]]
        if len(sel):
            out[:, g] = fast_winding_number(points[sel], normals[sel], areas[sel], queries)
    return out


def _tree(points: np.ndarray, normals: np.ndarray, idx: np.ndarray, across_sin: float):
    """Minimum spanning forest over neighbour edges, tangent ones first: (order, predecessors, dot,
    crossing) where ``dot[i]`` is n_i . n_parent(i) (1 for roots) and ``crossing[i]`` marks a tree
    edge to the parent that leaves the tangent plane."""
    n, k = idx.shape[0], idx.shape[1] - 1
    i = np.repeat(np.arange(n), k)
    j = idx[:, 1:].reshape(-1)
    e = points[j] - points[i]
    length = np.linalg.norm(e, axis=1)
    ok = length > 0
    e_dir = e[ok] / length[ok, None]
    i, j = i[ok], j[ok]
    across = np.maximum(np.abs(np.einsum("ij,ij->i", e_dir, normals[i])),
                        np.abs(np.einsum("ij,ij->i", e_dir, normals[j]))) > across_sin
    # Edges across a thin part are a last resort: the tree takes them only to join what tangent
    # edges cannot, and the patches are cut there.
    w = 1.0 - np.abs(np.einsum("ij,ij->i", normals[i], normals[j])) + 1e-6 + 2.0 * across
    graph = coo_matrix((w, (i, j)), shape=(n, n)).tocsr()
    graph = graph.maximum(graph.T)
    mst = minimum_spanning_tree(graph)
    mst = mst.maximum(mst.T)
    # One breadth-first pass over every tree of the forest: a virtual node n joins their roots.
    n_comp, labels = connected_components(mst, directed=False)
    roots = np.unique(labels, return_index=True)[1]
    mst = mst.tocoo()
    rows = np.concatenate([mst.row, np.full(n_comp, n)])
    cols = np.concatenate([mst.col, roots])
    forest = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n + 1, n + 1)).tocsr()
    order, pred = breadth_first_order(forest, n, directed=False, return_predecessors=True)
    order = order[1:]
    pred = pred[:n].astype(np.int64)
    pred[pred == n] = -1
    parent = np.where(pred >= 0, pred, np.arange(n))
    dot = np.einsum("ij,ij->i", normals, normals[parent])
    dot[pred < 0] = 1.0
    e = points[parent] - points
    e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-300)
    crossing = np.maximum(np.abs(np.einsum("ij,ij->i", e, normals)),
                          np.abs(np.einsum("ij,ij->i", e, normals[parent]))) > across_sin
    crossing &= pred >= 0
    return order, pred, dot, crossing


def _propagate(order: np.ndarray, pred: np.ndarray, dot: np.ndarray) -> np.ndarray:
    """Sign of every node relative to its tree's root: flip whenever the parent's normal disagrees."""
    sign = np.ones(len(order), dtype=np.int8)
    flip = np.where(dot < 0, -1, 1).astype(np.int8)
    for node in order:  # breadth-first: parents before children
        p = pred[node]
        if p >= 0:
            sign[node] = sign[p] * flip[node]
    return sign


def _patches(order: np.ndarray, pred: np.ndarray, dot: np.ndarray, crossing: np.ndarray, cut_cos: float,
             min_patch: int) -> np.ndarray:
    """Patch id of every node: tree components after cutting unsure and crossing edges; small
    ones merged up."""
    n = len(order)
    has_parent = pred >= 0
    cut = has_parent & ((np.abs(dot) < cut_cos) | crossing)
    nodes = np.arange(n)
    for _ in range(8):
        keep = has_parent & ~cut
        g = coo_matrix((np.ones(int(keep.sum())), (nodes[keep], pred[keep])), shape=(n, n))
        _, labels = connected_components(g, directed=False)
        sizes = np.bincount(labels)
        small_root = cut & (sizes[labels] < min_patch)  # the cut edge above a small patch
        if not small_root.any():
            break
        cut &= ~small_root
    _, labels = np.unique(labels, return_inverse=True)
    return labels.astype(np.int64)


def orient_normals(points: np.ndarray, normals: np.ndarray | None = None, *, k: int = 15, graph_k: int = 10,
                   noise: float = 0.0, probes: int = 2000, grid: int = 20, across_sin: float = 0.5,
                   cut_cos: float = 0.5, min_patch: int | None = None, max_patches: int = 48,
                   max_dipoles: int = 200_000,
                   seed: int = 0) -> Orientation:
    """Consistently oriented normals of ``points`` (see the module's text).

    ``normals``: unoriented normals to orient (PCA normals of ``k`` neighbours if None).
    ``noise``: the cloud's noise level, which sets how far beside the surface the winding number
    is probed (at least 1.5 sample spacings and 3 noise levels). ``probes`` samples probe both
    sides; a ``grid``^3 lattice over the bounding box probes away from the surface.
    """
    points = np.ascontiguousarray(points, dtype=np.float64)
    n = len(points)
    if n < 4:
        return Orientation(np.zeros_like(points) if normals is None else np.asarray(normals, float), 1, 0, 0.0, 0.0)
    tree = cKDTree(points)
    # One neighbour query serves the normals, the graph, the areas and the spacing.
    dist, idx = knn(points, max(k, graph_k + 1, AREA_KNN + 1, 7), tree)
    if normals is None:
        normals = pca_frames(points, idx[:, :k])[1][:, :, 0].copy()
    normals = np.asarray(normals, dtype=np.float64)
    order, pred, dot, crossing = _tree(points, normals, idx[:, :graph_k + 1], across_sin)
    normals = normals * _propagate(order, pred, dot)[:, None]
    dot = np.abs(dot)  # after propagation every tree edge agrees in sign
    min_patch = min_patch if min_patch is not None else max(30, n // 500)
    labels = _patches(order, pred, dot, crossing, cut_cos, min_patch)
    while labels.max() + 1 > max_patches and min_patch < n:  # noisy normals: keep the search small
        min_patch *= 2
        labels = _patches(order, pred, dot, crossing, cut_cos, min_patch)
    n_patches = int(labels.max()) + 1

    rng = np.random.default_rng(seed)
    areas = math.pi * dist[:, AREA_KNN] ** 2 / AREA_KNN  # point_areas, from the query above
    dip = rng.choice(n, size=max_dipoles, replace=False) if n > max_dipoles else np.arange(n)
    dip_areas = areas[dip] * (areas.sum() / areas[dip].sum())
    h = float(np.median(dist[:, 1:7].mean(axis=1)))
    offset = max(1.5 * h, 3.0 * noise)
    probe = rng.choice(n, size=min(probes, n), replace=False)
    # Every patch gets probes of its own, so that its sign is decided by its own sides.
    extra = [rng.choice(np.flatnonzero(labels == p), size=min(8, int((labels == p).sum())), replace=False)
             for p in range(n_patches)] if n_patches > 1 else []
    probe = np.unique(np.concatenate([probe, *extra])) if extra else probe
    outside = points[probe] + offset * normals[probe]
    inside = points[probe] - offset * normals[probe]
    lattice = lattice_away_from(points, tree, grid, pad=0.1, min_distance=max(4 * h, 4 * noise, 2 * offset))
    queries = np.concatenate([outside, inside, lattice])
    contrib = winding_contributions(queries, points[dip], normals[dip], dip_areas, labels[dip], n_patches)
    m = len(probe)
    probe_patch = labels[probe]

    own = probe_patch[:, None] == np.arange(n_patches)[None, :]  # (m, P): probe belongs to patch

    def energies(sign: np.ndarray) -> tuple[float, np.ndarray]:
        """Energy of ``sign`` and of every single-patch flip of it."""
        w = contrib @ sign
        flipped = w[:, None] - 2.0 * contrib * sign[None, :]  # (q, P): patch p flipped
        ws = np.concatenate([w[:, None], flipped], axis=1)  # column 0: as is
        s = sign[probe_patch][:, None] * np.concatenate([np.ones((m, 1)), np.where(own, -1.0, 1.0)], axis=1)
        w_out = np.where(s > 0, ws[:m], ws[m:2 * m])
        w_in = np.where(s > 0, ws[m:2 * m], ws[:m])
        e = (w_out ** 2 + (1 - w_in) ** 2).mean(axis=0)
        if len(lattice):
            far = ws[2 * m:]
            e = e + np.minimum(far ** 2, (1 - far) ** 2).mean(axis=0)
        return float(e[0]), e[1:]

    sign = np.ones(n_patches)
    for _ in range(2 * n_patches + 2):
        best, trials = energies(sign)
        p = int(np.argmin(trials))
        if trials[p] >= best - 1e-6:
            break
        sign[p] *= -1
    normals = normals * sign[labels][:, None]
    w = contrib @ sign
    s = sign[probe_patch]
    w_out = np.where(s > 0, w[:m], w[m:2 * m])
    w_in = np.where(s > 0, w[m:2 * m], w[:m])
    openness = float(np.percentile(np.maximum(np.abs(w_out), np.abs(1 - w_in)), 75))
    ambiguous = ambiguous_share(w[2 * m:])
    return Orientation(normals, n_patches, int((sign < 0).sum()), openness, ambiguous)
