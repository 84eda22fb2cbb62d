"""DualMesh-UDF: dual-contouring surface extraction from an unsigned distance field.

After Zhang et al., "Surface Extraction from Neural Unsigned Distance Fields" (ICCV 2023).
The field is unsigned (>= 0, zero on the surface), so there are no sign changes to find the
surface with; everything below uses values and gradients only:

1. **Adaptive octree.** Level ``coarse_depth`` is evaluated at every cell centre; a cell is
   subdivided only while its centre reads at most ``safety * half-diagonal + threshold`` (for a
   1-Lipschitz field whose surface reads <= threshold, a surface through the cell forces that).
   The leaves that survive to ``depth`` are the active cells. All leaves live on the finest
   grid: the octree only prunes empty space, so the connectivity step below works on one
   uniform grid of leaves and needs no balancing.
2. **Projection.** Each grid node of an active cell is projected onto the surface along its
   gradient, ``q = p - udf(p) * g / |g|`` (stepped back by ``udf(q) / 2`` where that is lower:
   a field with a floor m > 0 overshoots by m). A projection is valid when the gradient is not
   degenerate and ``udf(q) <= threshold``; a cell uses the valid projections of its 8 corners that
   land in the cell (or, if none does, in the cell widened by half a cell on each side).
3. **Tangent planes** through each ``q`` with normal ``g / |g|`` (the sign does not matter).
4. **QEF per cell.** The dual vertex minimises the sum of squared plane distances; the 3x3
   normal matrix is inverted with a truncated eigen-decomposition (eigenvalues below
   ``svd_threshold`` times the largest are dropped) around the mass point of the projections, so
   a plane moves the vertex only along its normal, an edge along two, a corner along three. The
   vertex is clamped into its cell.
5. **Crossing edges.** A grid edge p0 -> p1 (direction e) is crossed by the surface when the
   gradients at its ends point away from each other along it (``n0.e < 0 < n1.e`` and
   ``n0.n1 < 0``, i.e. p0 and p1 sit on opposite sides of a sheet, the unsigned analogue of a
   sign change) and the field is near zero at the interpolated crossing
   ``p0 + u0 / (u0 + u1) * (p1 - p0)`` (``udf <= threshold``; on a fitted field whose floor
   varies, a larger crossing threshold, see ``extract_udf``). The last test is what keeps the
   surface open: past a boundary the gradients still oppose, but the field stays positive.
   A tangent edge outside a curved sheet has gradients pointing the same way and is rejected.
6. **Quads.** Each crossed edge joins the dual vertices of its 4 cells into a quad, split along
   its shorter diagonal (a triangle if one cell has no vertex). Faces on edges shared by more
   than two faces are dropped. Orientation is made consistent per connected component by
   propagating across shared edges; the faces on edges where it still disagrees (a twist that
   makes a patch non-orientable, which only fitted fields produce) are dropped too.

The lattice is widened asymmetrically by a fraction of a cell so that grid nodes avoid the
planes through the centre of ``bounds``: exact UDFs have no gradient on their zero set, and
analytic test shapes like to sit exactly on those planes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import breadth_first_order, connected_components

from meshing.evaluator import Field, FieldEvaluator
from meshing.marching_cubes import check_bounds
from meshing.mesh import Mesh, half_edges

# Fractions of a cell by which the lattice is widened below / above ``bounds`` on each axis.
_PAD_LO = np.array([0.1371, 0.2113, 0.1789])
_PAD_HI = np.array([0.0583, 0.0947, 0.0411])
_CORNERS = np.array([[(k >> 2) & 1, (k >> 1) & 1, k & 1] for k in range(8)], dtype=np.int64)


@dataclass
class UDFExtractStats:
    """Work done by one ``extract_udf`` call (filled in when passed as ``stats=``)."""

    evaluations: int = 0
    """Field evaluations in total (value-only and value+gradient)."""
    gradient_evaluations: int = 0
    """Of those, points where the gradient was also taken."""
    cells_per_level: list[int] = dc_field(default_factory=list)
    """Cells kept (centre near the surface) at each octree level, coarse to fine."""
    leaves: int = 0
    """Active cells at the finest level."""
    crossed_edges: int = 0
    threshold: float = 0.0
    """The surface threshold used (the given one, or the adaptive default)."""
    crossing_threshold: float = 0.0
    """The threshold of the crossing test: ``threshold``, raised on a fitted field (see
    ``extract_udf``)."""
    nonmanifold_faces: int = 0
    """Faces dropped because they shared an edge with two or more others (0 on exact UDFs; a
    fitted field whose valley is blurred over a cell produces a few where sheets nearly touch)."""
    holes_filled: int = 0
    """Boundary loops closed because their perimeter was under ``fill_holes`` cells."""
    twisted_faces: int = 0
    """Faces dropped because orientation could not agree across one of their edges (a twist:
    none on exact UDFs; a fitted field can join sheets into a non-orientable patch)."""
    seconds: float = 0.0


def _check_args(bounds, depth, threshold, chunk_size, coarse_depth, safety, svd_threshold):
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or not 1 <= depth <= 12:
        raise ValueError(f"expected depth to be an int in [1, 12], got {depth!r}")
    b = check_bounds(bounds)
    if threshold is not None and not (np.isfinite(threshold) and threshold > 0):
        raise ValueError(f"expected threshold > 0 or None, got {threshold!r}")
    if chunk_size < 1:
        raise ValueError(f"expected chunk_size >= 1, got {chunk_size!r}")
    if not 0 <= coarse_depth:
        raise ValueError(f"expected coarse_depth >= 0, got {coarse_depth!r}")
    if not safety > 0:
        raise ValueError(f"expected safety > 0, got {safety!r}")
    if not 0 <= svd_threshold < 1:
        raise ValueError(f"expected svd_threshold in [0, 1), got {svd_threshold!r}")
    return b


def extract_udf(
    field: Field,
    *,
    bounds: Sequence[Sequence[float]] = ((-1, -1, -1), (1, 1, 1)),
    depth: int = 8,
    threshold: float | None = None,
    chunk_size: int = 2**18,
    device: str | torch.device = "cpu",
    stats: UDFExtractStats | None = None,
    coarse_depth: int = 4,
    safety: float = 1.25,
    svd_threshold: float = 0.05,
    fill_holes: float = 0.0,
) -> Mesh:
    """Extract the zero set of an unsigned distance field as a triangle mesh (DualMesh-UDF).

    field: maps (n, 3) float32 points on ``device`` to (n,) unsigned distances (>= 0, world
    units). Gradients are taken with autograd, or by central differences if the output does not
    require grad. bounds: world box; depth: octree depth, i.e. 2**depth finest cells per axis.
    threshold: field value (world units) under which a point counts as on the surface. Default:
    a quarter of the finest cell's smallest edge, raised for a fitted field whose minimum does
    not reach zero to twice the median of what it reads at the projections of the nodes within
    a cell of the surface (at most half a cell); the crossing test then allows the threshold
    plus eight times that median (at most half a cell), because where a fitted sheet crosses a
    grid edge it often reads more than twice its median floor. coarse_depth: first octree level,
    evaluated everywhere. safety: assumed Lipschitz bound of the field when pruning octree
    cells. svd_threshold: relative eigenvalue cut-off of the QEF solve. fill_holes: close
    boundary loops whose perimeter is under this many finest cells (0, the default, keeps the
    mesh as extracted; fitted fields leave small holes, see ``_fill_small_holes``). stats: if given, a
    ``UDFExtractStats`` filled in. The field is also evaluated up to a fifth of a cell outside
    ``bounds`` (the lattice is widened, see the module docstring).

    Returns a Mesh in world units, open where the surface ends, faces oriented consistently per
    connected component (there is no inside, so the global sign is arbitrary). Raises
    ValueError when the field never comes near zero inside the bounds: no octree cell keeps its
    centre within reach of the surface, or no grid edge gets within ``threshold`` of it.
    """
    t0 = time.perf_counter()
    b = _check_args(bounds, depth, threshold, chunk_size, coarse_depth, safety, svd_threshold)
    if not (np.isfinite(fill_holes) and fill_holes >= 0):
        raise ValueError(f"expected fill_holes >= 0 (cells), got {fill_holes!r}")
    n = 2**depth
    cell0 = (b[1] - b[0]) / n
    lo = b[0] - _PAD_LO * cell0
    step = (b[1] + _PAD_HI * cell0 - lo) / n
    h_min = float(step.min())
    thr = 0.25 * h_min if threshold is None else float(threshold)
    ev = FieldEvaluator(field, int(chunk_size), device, fd_step=0.01 * h_min)
    st = UDFExtractStats() if stats is None else stats
    st.cells_per_level = []  # a reused stats object describes the latest call only

    cells = _octree_leaves(ev, lo, step, depth, min(coarse_depth, depth), safety, thr, st)
    mesh = _dual_mesh(ev, cells, lo, step, n, thr, svd_threshold, st, adaptive=threshold is None,
                      fill_holes=float(fill_holes))
    st.evaluations, st.gradient_evaluations = ev.count, ev.grad_count
    st.seconds = time.perf_counter() - t0
    return mesh


def _octree_leaves(ev, lo, step, depth, coarse_depth, safety, thr, st) -> np.ndarray:
    """(L, 3) int64 finest-level indices of cells whose centre is near the surface."""
    level = coarse_depth
    m = 2**level
    ax = np.arange(m)
    cells = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
    while True:
        size = step * 2 ** (depth - level)
        u = ev.values(lo + (cells + 0.5) * size)
        # Surface points may read up to ``thr`` (a field's floor), hence the extra margin.
        reach = safety * 0.5 * float(np.linalg.norm(size)) + thr
        keep = u <= reach
        st.cells_per_level.append(int(keep.sum()))
        if not keep.any():
            raise ValueError(
                f"the UDF never comes within {reach:.3g} of zero: no surface "
                f"(smallest value {u.min():.3g} at octree level {level})"
            )
        cells = cells[keep]
        if level == depth:
            return cells
        cells = (cells[:, None, :] * 2 + _CORNERS[None]).reshape(-1, 3)
        level += 1


def _dual_mesh(ev, cells, lo, step, n, thr, svd_threshold, st, adaptive, fill_holes) -> Mesh:
    n1 = n + 1
    h_min = float(step.min())
    # Nodes: corners of active cells, gradients taken once per node.
    corner_idx = (cells[:, None, :] + _CORNERS[None]).reshape(-1, 3)
    corner_ids = (corner_idx[:, 0] * n1 + corner_idx[:, 1]) * n1 + corner_idx[:, 2]
    node_ids, corner_of = np.unique(corner_ids, return_inverse=True)
    corner_of = corner_of.reshape(-1, 8)
    node_idx = np.stack([node_ids // (n1 * n1), (node_ids // n1) % n1, node_ids % n1], 1)
    p = lo + node_idx * step
    u, g = ev.values_and_gradients(p)
    gn = np.linalg.norm(g, axis=1)
    ok = gn > 0.1
    nrm = np.where(ok[:, None], g / np.maximum(gn, 1e-12)[:, None], 0.0)

    # 2-4. projections, their validity, and the QEF per cell.
    q = p - u[:, None] * nrm
    u_q = ev.values(q)
    # A field that bottoms out at m > 0 (neural UDFs do) sends q past the sheet by m, where it
    # reads 2 m; stepping back by u_q / 2 lands on the sheet. Kept only where it is lower, so
    # exact fields (u_q = 0) and fields that under-estimate distance keep q.
    q_back = p - (u - 0.5 * u_q)[:, None] * nrm
    u_back = ev.values(q_back)
    back = u_back < u_q
    q[back], u_q[back] = q_back[back], u_back[back]
    thr_cross = thr
    if adaptive:
        # The floor of a fitted field: what it reads where projections from within a cell land.
        # Exact fields read ~0 there and keep the default; the cap keeps a poor field from
        # turning its whole valley into surface.
        near = u < h_min
        if near.any():
            floor = float(np.median(u_q[near]))
            thr = float(np.clip(2.0 * floor, thr, 0.5 * h_min))
            # The floor varies along a fitted sheet, and where the sheet crosses an edge the field
            # often reads more than twice its median: the crossing test gets more room (8 floors,
            # at most half a cell; past a rim that widens the sheet by under a cell).
            thr_cross = float(np.clip(thr + 8.0 * floor, thr, 0.5 * h_min))
    st.threshold, st.crossing_threshold = thr, thr_cross
    ok &= u_q <= thr
    vert, has_vert = _solve_qef(cells, q, nrm, ok, corner_of, lo, step, svd_threshold)
    st.leaves = len(cells)

    # 5. crossing test on the unique edges of active cells (edge id = node id * 3 + axis).
    e_nodes, e_axis = [], []
    for a in range(3):
        on_face = _CORNERS[:, a] == 0
        e_nodes.append(corner_of[:, on_face].ravel())
        e_axis.append(np.full(e_nodes[-1].shape, a))
    key = np.concatenate(e_nodes) * 3 + np.concatenate(e_axis)
    key = np.unique(key)
    i0, axis = np.searchsorted(node_ids, node_ids[key // 3]), key % 3
    # The far endpoint: the same node shifted by one along the axis.
    far_ids = node_ids[key // 3] + np.array([n1 * n1, n1, 1])[axis]
    i1 = np.searchsorted(node_ids, far_ids)
    i1 = np.minimum(i1, len(node_ids) - 1)
    present = node_ids[i1] == far_ids
    i0, i1, axis = i0[present], i1[present], axis[present]
    d0 = nrm[i0, axis]
    d1 = nrm[i1, axis]
    opp = (d1 > d0) & (np.einsum("ij,ij->i", nrm[i0], nrm[i1]) < 0)
    opp &= u[i0] + u[i1] <= 1.5 * step[axis] + 2 * thr  # a field may bottom out at thr
    i0, i1, axis = i0[opp], i1[opp], axis[opp]
    # Where the sheet meets the edge: linear interpolation of the distances (exact for a plane
    # at any angle), and where each end's tangent plane cuts the edge (better at grazing
    # incidence on curved sheets). The edge counts as crossed if any guess is on the surface.
    length = step[axis]
    t_lin = u[i0] / np.maximum(u[i0] + u[i1], 1e-30)
    t_0 = u[i0] / np.maximum(-d0[opp], 1e-12) / length
    t_1 = 1 - u[i1] / np.maximum(d1[opp], 1e-12) / length
    t = np.clip(np.stack([t_lin, t_0, t_1]), 0, 1)  # (3, E)
    x = p[i0][None] + t[..., None] * (p[i1] - p[i0])[None]
    crossed = ev.values(x.reshape(-1, 3)).reshape(3, -1).min(0) <= thr_cross
    i0, axis = i0[crossed], axis[crossed]
    st.crossed_edges = len(i0)
    if len(i0) == 0 and u.min() > thr:
        raise ValueError(
            f"the UDF never comes within {thr:.3g} of zero: no surface (smallest value near the "
            f"octree leaves {u.min():.3g}; pass a larger threshold for a field whose minimum "
            "does not reach zero)"
        )

    # 6. quads from the 4 cells around each crossed edge, in a ring CCW about +axis.
    cell_ids = (cells[:, 0] * n + cells[:, 1]) * n + cells[:, 2]
    order = np.argsort(cell_ids)
    sorted_ids = cell_ids[order]
    base = node_idx[i0]
    ring = []
    for db, dc in ((0, 0), (1, 0), (1, 1), (0, 1)):
        c = base.copy()
        bax, cax = (axis + 1) % 3, (axis + 2) % 3
        r = np.arange(len(c))
        c[r, bax] -= db
        c[r, cax] -= dc
        inside = np.all((c >= 0) & (c < n), axis=1)
        cid = (c[:, 0] * n + c[:, 1]) * n + c[:, 2]
        at = np.minimum(np.searchsorted(sorted_ids, cid), len(sorted_ids) - 1)
        found = inside & (sorted_ids[at] == cid)
        k = np.where(found, order[at], -1)
        k[found] = np.where(has_vert[k[found]], k[found], -1)
        ring.append(k)
    quads = np.stack(ring, 1)
    faces = _triangulate(quads, vert)
    faces, st.nonmanifold_faces = _drop_nonmanifold(faces)
    faces, st.twisted_faces = _drop_twists(_orient(faces))
    vert, faces, st.holes_filled = _fill_small_holes(ev, vert, faces, fill_holes * h_min)
    used, faces = np.unique(faces, return_inverse=True)
    return Mesh(vert[used], faces.reshape(-1, 3))


def _solve_qef(cells, q, nrm, ok, corner_of, lo, step, svd_threshold):
    """(C, 3) dual vertices and (C,) mask of cells with at least one usable projection."""
    cmin = lo + cells * step
    cmax = cmin + step
    qc, nc = q[corner_of], nrm[corner_of]  # (C, 8, 3)
    valid = ok[corner_of]
    tol = 1e-6 * step
    inside = np.all((qc >= cmin[:, None] - tol) & (qc <= cmax[:, None] + tol), 2)
    near = np.all((qc >= cmin[:, None] - 0.5 * step) & (qc <= cmax[:, None] + 0.5 * step), 2)
    # Planes from the cell itself when it has any: projections from half a cell away bring in
    # the rim curve's tilted tangent planes next to a boundary. Otherwise the widened cell.
    w = valid & inside
    w = np.where(w.any(1, keepdims=True), w, valid & near).astype(np.float64)  # (C, 8)
    cnt = w.sum(1)
    has = cnt > 0
    mass = (w[..., None] * qc).sum(1) / np.maximum(cnt, 1)[:, None]
    a_mat = np.einsum("ck,cki,ckj->cij", w, nc, nc)
    rhs = np.einsum("ck,cki,ck->ci", w, nc, np.einsum("ckj,ckj->ck", nc, qc - mass[:, None]))
    lam, vec = np.linalg.eigh(a_mat)
    keep = lam > svd_threshold * np.maximum(lam[:, -1:], 1e-30)
    inv = np.where(keep, 1.0 / np.where(keep, lam, 1.0), 0.0)
    delta = np.einsum("cij,cj,ckj,ck->ci", vec, inv, vec, rhs)
    vert = np.clip(mass + delta, cmin, cmax)
    return vert, has


def _triangulate(quads: np.ndarray, vert: np.ndarray) -> np.ndarray:
    """(Q, 4) cell rings (-1 = no vertex) -> (F, 3) triangles, quads split on the short diagonal."""
    n_ok = (quads >= 0).sum(1)
    full = quads[n_ok == 4]
    d02 = np.linalg.norm(vert[full[:, 0]] - vert[full[:, 2]], axis=1)
    d13 = np.linalg.norm(vert[full[:, 1]] - vert[full[:, 3]], axis=1)
    alt = d13 < d02
    f = np.where(alt[:, None], full[:, [1, 2, 3, 0]], full)
    tris = [f[:, [0, 1, 2]], f[:, [0, 2, 3]]]
    three = quads[n_ok == 3]
    if len(three):
        # Drop the missing corner and keep the cyclic order of the other three.
        srt = np.argsort(three < 0, axis=1, kind="stable")[:, :3]
        tris.append(np.take_along_axis(three, srt, 1))
    return np.concatenate(tris).astype(np.int64)


def _drop_nonmanifold(faces: np.ndarray) -> tuple[np.ndarray, int]:
    """Remove every face on an edge used by more than two faces; returns (faces, removed)."""
    if len(faces) == 0:
        return faces, 0
    _, eid, counts = half_edges(faces, directed=False)
    bad = (counts[eid] > 2).reshape(-1, 3).any(1)
    return faces[~bad], int(bad.sum())


def _boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Boundary loops of a consistently oriented, edge-manifold mesh, each as its vertices in
    the direction the faces traverse them. Where boundaries meet at a vertex, the walk splits
    them into simple loops (no vertex twice), so every loop can be closed on its own."""
    he, eid, counts = half_edges(faces, directed=False)
    b = he[counts[eid] == 1]
    out: dict[int, list[int]] = {}
    for a, c in b.tolist():
        out.setdefault(a, []).append(c)
    loops = []
    for start in list(out):
        while out.get(start):
            path, pos, v = [start], {start: 0}, out[start].pop()
            while True:
                if v in pos:  # a cycle closed: emit it, keep walking from v
                    k = pos[v]
                    loops.append(np.array(path[k:], dtype=np.int64))
                    for w in path[k + 1 :]:
                        del pos[w]
                    del path[k + 1 :]
                else:
                    pos[v] = len(path)
                    path.append(v)
                if not out.get(v):
                    break
                v = out[v].pop()
    return loops


def _fill_small_holes(ev, vert: np.ndarray, faces: np.ndarray, max_perimeter: float):
    """Close boundary loops shorter than ``max_perimeter`` (world units): a triangle for three
    edges, else a fan around the loop's centroid projected onto the field's zero set. Keeps the
    mesh edge-manifold and consistently oriented; returns (vertices, faces, loops filled)."""
    if max_perimeter <= 0 or len(faces) == 0:
        return vert, faces, 0
    small = []
    for loop in _boundary_loops(faces):
        if len(loop) >= 3:
            ring = vert[loop]
            if np.linalg.norm(ring - np.roll(ring, -1, 0), axis=1).sum() <= max_perimeter:
                small.append(loop)
    if not small:
        return vert, faces, 0
    new_faces = [faces]
    tris = [lp for lp in small if len(lp) == 3]
    if tris:
        new_faces.append(np.array(tris)[:, ::-1])  # the reverse of the boundary's direction
    fans = [lp for lp in small if len(lp) > 3]
    if fans:
        c = np.stack([vert[lp].mean(0) for lp in fans])
        u, g = ev.values_and_gradients(c)
        gn = np.linalg.norm(g, axis=1, keepdims=True)
        c = np.where(gn > 0.1, c - u[:, None] * g / np.maximum(gn, 1e-12), c)
        base = len(vert)
        vert = np.concatenate([vert, c])
        for k, lp in enumerate(fans):
            new_faces.append(np.stack([np.roll(lp, -1), lp, np.full(len(lp), base + k)], 1))
    return vert, np.concatenate(new_faces).astype(np.int64), len(small)


def _drop_twists(faces: np.ndarray) -> tuple[np.ndarray, int]:
    """After ``_orient``: remove the faces on any edge still traversed twice in the same direction.

    ``_orient`` is exact on orientable patches, so such edges only remain where a patch is
    non-orientable (a twist no true surface has). Without them the mesh is winding-consistent;
    returns (faces, removed).
    """
    if len(faces) == 0:
        return faces, 0
    _, eid, counts = half_edges(faces, directed=True)
    bad = (counts[eid] > 1).reshape(-1, 3).any(1)
    return faces[~bad], int(bad.sum())


def _orient(faces: np.ndarray) -> np.ndarray:
    """Flip faces so that neighbours traverse shared edges in opposite directions."""
    if len(faces) == 0:
        return faces
    f = len(faces)
    he, eid, counts = half_edges(faces, directed=False)
    face_of = np.repeat(np.arange(f), 3)
    # Pair faces that share a manifold edge; "same" when they use it in the same direction.
    inner = counts[eid] == 2
    o = np.argsort(eid[inner], kind="stable")
    idx = np.nonzero(inner)[0][o]
    fa, fb = face_of[idx[0::2]], face_of[idx[1::2]]
    same = he[idx[0::2], 0] == he[idx[1::2], 0]
    graph = coo_matrix((np.ones(len(fa)), (fa, fb)), shape=(f, f)).tocsr()
    graph = graph + graph.T
    rel = coo_matrix((same.astype(np.float64) + 1.0, (fa, fb)), shape=(f, f)).tocsr()
    rel = rel + rel.T  # value 2: flip relative to neighbour, 1: keep
    _, labels = connected_components(graph, directed=False)
    flip = np.zeros(f, dtype=bool)
    roots = np.unique(labels, return_index=True)[1]
    for root in roots:
        order, pred = breadth_first_order(graph, root, directed=False)
        if len(order) < 2:  # a lone face: nothing to agree with
            continue
        # Visit in BFS order: each face takes its parent's flip, toggled when the pair disagrees.
        parent = pred[order[1:]]
        r = np.asarray(rel[order[1:], parent]).ravel() == 2
        for face, par, toggle in zip(order[1:].tolist(), parent.tolist(), r.tolist()):
            flip[face] = flip[par] ^ toggle
    out = faces.copy()
    out[flip] = out[flip][:, ::-1]
    return out
