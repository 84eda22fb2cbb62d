"""The ``Mesh`` dataclass (plain numpy arrays) and operations on it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Mesh:
    """A triangle mesh.

    vertices: (V, 3) float64 positions; faces: (F, 3) int64 vertex indices, counter-clockwise
    seen from outside (normals point to the positive side of the SDF); vertex_normals:
    optional (V, 3) float64 unit normals; vertex_colors: optional (V, 3) uint8 RGB.
    """

    vertices: np.ndarray
    faces: np.ndarray
    vertex_normals: np.ndarray | None = None
    vertex_colors: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.vertices = np.ascontiguousarray(self.vertices, dtype=np.float64).reshape(-1, 3)
        self.faces = np.ascontiguousarray(self.faces, dtype=np.int64).reshape(-1, 3)

    @property
    def n_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def n_faces(self) -> int:
        return int(self.faces.shape[0])

    @property
    def is_empty(self) -> bool:
        return self.n_faces == 0


# --------------------------------------------------------------------------------------------
# Operations. All are pure: they return new Mesh objects and never modify their input.
# Connectivity is by vertex index (vertices at equal positions but different indices are not
# connected; use ``merge_duplicate_vertices`` first for triangle soups).
# --------------------------------------------------------------------------------------------


def _with(
    mesh: Mesh, vertices=None, faces=None, keep: np.ndarray | None = None, normals=True
) -> Mesh:
    """New Mesh; per-vertex attributes are subset by ``keep`` (vertex indices) when given."""

    def attr(a):
        if a is None:
            return None
        return (a if keep is None else a[keep]).copy()

    return Mesh(
        mesh.vertices.copy() if vertices is None else vertices,
        mesh.faces.copy() if faces is None else faces,
        vertex_normals=attr(mesh.vertex_normals) if normals else None,
        vertex_colors=attr(mesh.vertex_colors),
    )


def _compact(mesh: Mesh, faces: np.ndarray) -> Mesh:
    """Mesh with ``faces`` and only the vertices they reference (order kept)."""
    used = np.unique(faces)
    remap = np.full(mesh.n_vertices, -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return _with(mesh, mesh.vertices[used], remap[faces], keep=used)


def select_faces(mesh: Mesh, keep: np.ndarray) -> Mesh:
    """The faces where the (F,) bool ``keep`` is True, with only the vertices they use."""
    keep = np.asarray(keep, dtype=bool)
    if keep.shape != (mesh.n_faces,):
        raise ValueError(f"expected a face mask of shape ({mesh.n_faces},), got {keep.shape}")
    return _compact(mesh, mesh.faces[keep])


def face_normals(mesh: Mesh) -> np.ndarray:
    """(F, 3) unit face normals from the CCW winding; zero for degenerate faces."""
    v = mesh.vertices[mesh.faces]
    n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return np.divide(n, length, out=np.zeros_like(n), where=length > 0)


def face_areas(mesh: Mesh) -> np.ndarray:
    """(F,) triangle areas in squared mesh units."""
    v = mesh.vertices[mesh.faces]
    return 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)


def area(mesh: Mesh) -> float:
    """Total surface area (squared mesh units)."""
    return float(face_areas(mesh).sum())


def half_edges(faces: np.ndarray, *, directed: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The faces' half-edges (3F, 2) in face order (face k owns rows 3k..3k+2), the id of each
    one's edge, and per edge id how many half-edges share it. ``directed`` tells (a, b) from
    (b, a); otherwise they are one edge."""
    he = np.stack([faces, np.roll(faces, -1, 1)], 2).reshape(-1, 2)
    nv = np.int64(faces.max() + 1 if faces.size else 1)
    # Encode (a, b) as one int64 so counting is a 1-D sort, not a row-wise unique.
    a, b = (he[:, 0], he[:, 1]) if directed else (he.min(1), he.max(1))
    _, eid, counts = np.unique(a * nv + b, return_inverse=True, return_counts=True)
    return he, eid.reshape(-1), counts


def _edge_counts(mesh: Mesh) -> tuple[np.ndarray, np.ndarray]:
    """(undirected edge use counts, directed edge use counts) over all face edges."""
    return half_edges(mesh.faces, directed=False)[2], half_edges(mesh.faces, directed=True)[2]


def is_edge_manifold(mesh: Mesh) -> bool:
    """True if every edge is shared by at most two faces (boundary edges allowed)."""
    if mesh.is_empty:
        return True
    return bool(np.all(_edge_counts(mesh)[0] <= 2))


def is_watertight(mesh: Mesh) -> bool:
    """True if the mesh is non-empty and every edge is shared by exactly two faces."""
    if mesh.is_empty:
        return False
    return bool(np.all(_edge_counts(mesh)[0] == 2))


def is_winding_consistent(mesh: Mesh) -> bool:
    """True if no directed edge is used twice, i.e. neighbouring faces agree on orientation."""
    if mesh.is_empty:
        return True
    return bool(np.all(_edge_counts(mesh)[1] == 1))


def volume(mesh: Mesh) -> float:
    """Enclosed volume of a watertight mesh (divergence theorem over signed tetrahedra).

    Positive when faces are CCW seen from outside; raises ValueError if the mesh is not closed.
    """
    if not is_watertight(mesh):
        raise ValueError("expected a watertight mesh for volume, got an open or empty mesh")
    v = mesh.vertices[mesh.faces]
    # Origin at the centroid keeps the signed tetrahedra small (less cancellation).
    v = v - mesh.vertices.mean(axis=0)
    return float(np.einsum("ij,ij->i", v[:, 0], np.cross(v[:, 1], v[:, 2])).sum() / 6.0)


def bounding_box_diagonal(mesh: Mesh) -> float:
    """Length of the axis-aligned bounding-box diagonal of the vertices (0.0 if none)."""
    if mesh.n_vertices == 0:
        return 0.0
    return float(np.linalg.norm(mesh.vertices.max(axis=0) - mesh.vertices.min(axis=0)))


def _vertex_labels(mesh: Mesh) -> tuple[int, np.ndarray]:
    """Connected components of the vertex graph induced by face edges."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    f = mesh.faces
    rows = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
    cols = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    graph = coo_matrix(
        (np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(mesh.n_vertices, mesh.n_vertices)
    )
    return connected_components(graph, directed=False)


def vertex_components(mesh: Mesh) -> np.ndarray:
    """Component label of every vertex (components of the graph of face edges)."""
    if mesh.is_empty:
        return np.zeros(mesh.n_vertices, dtype=np.int64)
    return _vertex_labels(mesh)[1]


def n_components(mesh: Mesh) -> int:
    """Number of face-connected components (faces sharing a vertex are connected)."""
    if mesh.is_empty:
        return 0
    _, labels = _vertex_labels(mesh)
    return len(np.unique(labels[mesh.faces[:, 0]]))


def remove_small_components(mesh: Mesh, min_fraction: float = 0.01, min_faces: int = 0) -> Mesh:
    """Keep components with >= max(min_faces, min_fraction * F) faces; the largest always stays.

    Unreferenced vertices are dropped; vertex attributes follow their vertices.
    """
    if not 0.0 <= min_fraction <= 1.0:
        raise ValueError(f"expected min_fraction in [0, 1], got {min_fraction!r}")
    if mesh.is_empty:
        return _with(mesh)
    _, labels = _vertex_labels(mesh)
    face_label = labels[mesh.faces[:, 0]]
    counts = np.bincount(face_label)
    keep = counts >= max(min_faces, min_fraction * mesh.n_faces)
    keep[np.argmax(counts)] = True
    return _compact(mesh, mesh.faces[keep[face_label]])


def merge_duplicate_vertices(mesh: Mesh, tolerance: float = 0.0) -> Mesh:
    """Merge vertices at equal positions (or equal after rounding to ``tolerance`` units).

    The first occurrence keeps its attributes; vertices keep their first-occurrence order, and
    faces that collapse (repeated index) are removed.
    """
    if mesh.n_vertices == 0:
        return _with(mesh)
    key = mesh.vertices if tolerance <= 0 else np.round(mesh.vertices / tolerance)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)  # unique ids sorted by first occurrence
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    faces = rank[inverse.reshape(-1)][mesh.faces]
    ok = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    keep = first[order]
    return _with(mesh, mesh.vertices[keep], faces[ok], keep=keep)


def transform(mesh: Mesh, scale=1.0, translation=(0.0, 0.0, 0.0)) -> Mesh:
    """Map every vertex x to x * scale + translation (scale: scalar or per-axis (3,)).

    Normals follow the inverse transpose; a reflection (negative scale product) also reverses
    the winding so faces stay CCW seen from outside.
    """
    s = np.broadcast_to(np.asarray(scale, dtype=np.float64), (3,))
    t = np.broadcast_to(np.asarray(translation, dtype=np.float64), (3,))
    if np.any(s == 0) or not np.all(np.isfinite(s)) or not np.all(np.isfinite(t)):
        raise ValueError(
            f"expected finite non-zero scale and finite translation, got {scale!r}, {translation!r}"
        )
    faces = mesh.faces[:, ::-1].copy() if np.prod(s) < 0 else mesh.faces.copy()
    out = _with(mesh, mesh.vertices * s + t, faces)
    if out.vertex_normals is not None:
        n = out.vertex_normals / s
        length = np.linalg.norm(n, axis=1, keepdims=True)
        out.vertex_normals = np.divide(n, length, out=np.zeros_like(n), where=length > 0)
    return out


def compute_vertex_normals(mesh: Mesh) -> Mesh:
    """Mesh with (V, 3) unit vertex normals: area-weighted mean of incident face normals.

    Vertices with no (non-degenerate) incident face get a zero normal.
    """
    v = mesh.vertices[mesh.faces]
    weighted = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])  # length = 2 * area
    n = np.zeros_like(mesh.vertices)
    for k in range(3):
        np.add.at(n, mesh.faces[:, k], weighted)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    out = _with(mesh, normals=False)
    out.vertex_normals = np.divide(n, length, out=np.zeros_like(n), where=length > 0)
    return out


def sample_surface(mesh: Mesh, n: int, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points uniformly distributed by area, with the face normal of each.

    seed: anything ``np.random.default_rng`` accepts (int, SeedSequence).

    Returns (points (n, 3) float64, normals (n, 3) float64 unit). Deterministic for a seed.
    """
    areas = face_areas(mesh) if not mesh.is_empty else np.zeros(0)
    total = areas.sum()
    if n < 0:
        raise ValueError(f"expected n >= 0 samples, got {n}")
    if not total > 0 or not np.isfinite(total):
        raise ValueError(f"expected a mesh with positive finite area to sample, got area {total}")
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(areas)
    face = np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), len(cdf) - 1)
    # Uniform barycentrics on a triangle: reflect the unit square's upper half.
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    tri = mesh.vertices[mesh.faces[face]]
    points = tri[:, 0] + u[:, None] * (tri[:, 1] - tri[:, 0]) + v[:, None] * (tri[:, 2] - tri[:, 0])
    return points, face_normals(mesh)[face]


def decimate(
    mesh: Mesh,
    target_faces: int | None = None,
    ratio: float | None = None,
    aggressiveness: float = 7.0,
) -> Mesh:
    """Quadric edge-collapse decimation (fast_simplification) to about ``target_faces`` faces,
    or to ``ratio`` (0, 1] of the current count. Exactly one of the two must be given.

    Colours are carried over from the nearest original vertex; normals are recomputed if the
    input had them. A mesh already at or below the target is returned unchanged (copied).
    """
    import fast_simplification

    if (target_faces is None) == (ratio is None):
        raise ValueError(
            f"expected exactly one of target_faces or ratio, got {target_faces!r}, {ratio!r}"
        )
    if ratio is not None and not 0 < ratio <= 1:
        raise ValueError(f"expected ratio in (0, 1], got {ratio!r}")
    if target_faces is not None and target_faces < 1:
        raise ValueError(f"expected target_faces >= 1, got {target_faces!r}")
    target = int(target_faces) if target_faces is not None else max(1, round(ratio * mesh.n_faces))
    if mesh.n_faces <= target:
        return _with(mesh)
    points, faces = fast_simplification.simplify(
        mesh.vertices, mesh.faces.astype(np.int32), target_count=target, agg=aggressiveness
    )
    out = Mesh(points, faces)
    if mesh.vertex_colors is not None:
        from scipy.spatial import cKDTree

        _, nearest = cKDTree(mesh.vertices).query(out.vertices, workers=-1)
        out.vertex_colors = mesh.vertex_colors[nearest].copy()
    if mesh.vertex_normals is not None:
        colors = out.vertex_colors
        out = compute_vertex_normals(out)
        out.vertex_colors = colors
    return out
