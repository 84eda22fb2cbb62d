"""Sparse, crack-free marching cubes over a signed distance field given as a torch callable.

Grid: ``resolution`` cells per axis over the axis-aligned ``bounds``, i.e. ``resolution + 1``
samples per axis at ``lo + i * (hi - lo) / resolution``. The field is negative inside; output
faces are counter-clockwise seen from outside, so face normals point toward increasing values.

Work grows with surface area, not volume:

1. a coarse grid (every ``s``-th fine sample, s = 8 by default) is evaluated everywhere;
2. the fine grid is split into blocks of ``block_size`` cells; a block stays a candidate while
   its samples leave room for the level set inside it (see ``_mark_blocks``). Candidates are
   re-tested on lattices of stride s/2, s/4, ..., 2 inside the block, each with a margin half as
   wide, so the band that is finally refined hugs the surface;
3. surviving blocks get all their fine samples (one-sample overlap with neighbours). Whenever the
   surface leaves a refined block through a face, the neighbour across that face is refined
   too, so a surface that the coarse tests found partly is traced completely even where a
   neural field is far from a true distance;
4. triangles come from a vectorised marching-cubes table generated in ``_build_tables``. Every
   vertex is named by its global grid-edge id, so blocks weld exactly and the mesh has no
   duplicate vertices and no cracks.

Every grid sample is evaluated at most once: values are shared between levels and between
neighbouring blocks through ``_SampleStore``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from meshing.evaluator import Field, FieldEvaluator
from meshing.mesh import Mesh

# Vertices are kept strictly inside their edge (in edge-length units) so that distinct grid edges
# never produce coincident vertices, even where a sample lies exactly on the level set.
_EDGE_EPS = 1e-6


@dataclass
class ExtractStats:
    """Work done by one ``extract_sdf`` call (filled in when passed as ``stats=``)."""

    evaluations: int = 0
    """Field evaluations in total (coarse + fine)."""
    coarse_evaluations: int = 0
    fine_evaluations: int = 0
    blocks_total: int = 0
    """Blocks in the fine grid."""
    blocks_marked: int = 0
    """Blocks passing the coarse-grid test."""
    blocks_refined: int = 0
    """Blocks whose fine samples were evaluated (passed every lattice test, or traced)."""
    blocks_propagated: int = 0
    """Of those, blocks that the lattice tests rejected and surface tracing found."""
    seconds: float = 0.0


# --------------------------------------------------------------------------------------------
# Case tables
# --------------------------------------------------------------------------------------------

# Corner k of a cell sits at offset (k & 1, (k >> 1) & 1, (k >> 2) & 1) in (x, y, z).
_CORNERS = np.array([[(k >> a) & 1 for a in range(3)] for k in range(8)], dtype=np.int64)


def _build_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate the 256-case triangle table instead of transcribing a published one.

    For each sign configuration, every cube face contributes iso-segments between the edge
    crossings on it. On a face with four crossings (ambiguous), inside corners are always
    separated; the choice depends only on that face's four signs, so the two cells sharing the
    face always agree and the surface is closed. Orientation: walking the face boundary
    counter-clockwise (seen from outside the cell), a segment runs from the crossing where the
    walk enters the inside region to the next crossing, where it leaves. Segments chain into
    closed loops (each crossing is entered on one face and left on the other); each loop is
    fanned into triangles whose normals point from inside (< level) to outside, from an apex
    chosen so that no fan diagonal lies in a cube face.

    Returns (edges (12, 2) corner pairs, tri_table (256, T, 3) local edge ids padded with -1,
    n_tris (256,)).
    """
    edges = []
    edge_of = {}
    for a in range(3):
        for k in range(8):
            if not (k >> a) & 1:
                edge_of[frozenset((k, k | 1 << a))] = len(edges)
                edges.append((k, k | 1 << a))
    faces_of = [  # the two cube faces (axis, side) each edge lies on
        {(a, _CORNERS[c0][a]) for a in range(3) if _CORNERS[c0][a] == _CORNERS[c1][a]}
        for c0, c1 in edges
    ]
    faces = []
    for a in range(3):
        u, v = (a + 1) % 3, (a + 2) % 3
        for side in (0, 1):
            ring = []
            for du, dv in ((0, 0), (1, 0), (1, 1), (0, 1)):  # CCW around +e_a
                ring.append((side << a) | (du << u) | (dv << v))
            faces.append(ring if side else ring[::-1])
    tables = []
    for case in range(256):
        inside = [(case >> k) & 1 for k in range(8)]
        nxt: dict[int, int] = {}
        for ring in faces:
            crossings = []  # (edge id, entering inside?) in CCW order
            for i in range(4):
                c0, c1 = ring[i], ring[(i + 1) % 4]
                if inside[c0] != inside[c1]:
                    crossings.append((edge_of[frozenset((c0, c1))], bool(inside[c1])))
            for i, (e, entering) in enumerate(crossings):
                if entering:
                    nxt[e] = crossings[(i + 1) % len(crossings)][0]
        tris = []
        while nxt:
            start = min(nxt)
            loop = [start]
            while nxt[loop[-1]] != start:
                loop.append(nxt[loop[-1]])
            for e in loop:
                del nxt[e]
            # A fan diagonal between two crossings on one cube face would be shared with the
            # neighbouring cell (non-manifold edge), so fan from an apex sharing no face with
            # the vertices it connects to; every loop of this table has one.
            apex = next(
                i
                for i in range(len(loop))
                if not any(
                    faces_of[loop[i]] & faces_of[loop[(i + j) % len(loop)]]
                    for j in range(2, len(loop) - 1)
                )
            )
            loop = loop[apex:] + loop[:apex]
            tris += [(loop[0], loop[i], loop[i + 1]) for i in range(1, len(loop) - 1)]
        tables.append(tris)
    width = max(len(t) for t in tables)
    tri_table = np.full((256, width, 3), -1, dtype=np.int64)
    for case, tris in enumerate(tables):
        if tris:
            tri_table[case, : len(tris)] = tris
    n_tris = np.array([len(t) for t in tables], dtype=np.int64)
    return np.array(edges, dtype=np.int64), tri_table, n_tris


_EDGES, _TRI_TABLE, _N_TRIS = _build_tables()
_EDGE_START = _CORNERS[_EDGES[:, 0]]  # (12, 3) offset of each edge's lower corner
_EDGE_AXIS = np.argmax(_CORNERS[_EDGES[:, 1]] - _CORNERS[_EDGES[:, 0]], axis=1)  # (12,)


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------


def check_bounds(bounds) -> np.ndarray:
    """``bounds`` as a (2, 3) float64 array ``(lo, hi)``; ValueError unless finite with lo < hi."""
    try:
        b = np.asarray(bounds, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"expected bounds as ((x0, y0, z0), (x1, y1, z1)), got {bounds!r}"
        ) from None
    if b.shape != (2, 3) or not np.all(np.isfinite(b)) or not np.all(b[1] > b[0]):
        raise ValueError(
            f"expected bounds as ((x0, y0, z0), (x1, y1, z1)) with finite lo < hi, got {bounds!r}"
        )
    return b


def _check_args(bounds, resolution, level, chunk_size, coarse_resolution):
    if (
        isinstance(resolution, bool)
        or not isinstance(resolution, (int, np.integer))
        or resolution < 2
    ):
        raise ValueError(f"expected resolution to be an int >= 2, got {resolution!r}")
    b = check_bounds(bounds)
    if not np.isfinite(level):
        raise ValueError(f"expected a finite level, got {level!r}")
    if chunk_size < 1:
        raise ValueError(f"expected chunk_size >= 1, got {chunk_size!r}")
    if coarse_resolution is not None and not (1 <= coarse_resolution):
        raise ValueError(f"expected coarse_resolution >= 1 or None, got {coarse_resolution!r}")
    return b


class _GridEvaluator:
    """The field at integer grid indices: ``lo + index * step``, evaluated in chunks."""

    def __init__(self, field: Field, lo: np.ndarray, step: np.ndarray, chunk_size: int, device):
        self.lo, self.step = lo, step
        self.fields = FieldEvaluator(field, chunk_size, device)

    @property
    def count(self) -> int:
        return self.fields.count

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        """(n, 3) int grid indices -> (n,) float32 values."""
        # Coordinates are computed in float64 from integers, so a sample shared by two
        # blocks always gets the same float32 position.
        return self.fields.values(self.lo + idx * self.step, dtype=np.float32)


def _mark_blocks(
    coarse: np.ndarray, pos: np.ndarray, n: int, block: int, margin: float
) -> np.ndarray:
    """Blocks whose fine cells may contain the level set, from coarse samples (value - level).

    ``coarse`` holds samples at fine indices ``pos`` (multiples of the stride, plus n) on every
    axis. Block b spans fine indices [b*block, min((b+1)*block, n)] and sees the coarse samples in
    that closed range. Every point of the block is within ``margin / safety`` of one of them, so
    for an L-Lipschitz field (L <= safety) a zero crossing inside the block forces some sample to
    |value| <= margin; i.e. the block is needed iff min <= margin and max >= -margin.
    """
    nb = -(-n // block)
    starts = np.searchsorted(pos, np.arange(nb) * block)
    ends = np.searchsorted(pos, np.minimum((np.arange(nb) + 1) * block, n))
    lo, hi = coarse, coarse
    for axis in range(3):
        # reduceat covers [start_b, start_{b+1}); the shared boundary sample is added explicitly.
        lo = np.minimum(np.minimum.reduceat(lo, starts, axis), np.take(lo, ends, axis))
        hi = np.maximum(np.maximum.reduceat(hi, starts, axis), np.take(hi, ends, axis))
    return (lo <= margin) & (hi >= -margin)


class _SampleStore:
    """Values of samples that several blocks or levels use, keyed by flat grid index.

    Holds the coarse grid, lattice samples and block-shell samples. Besides saving work, one
    value per sample matters because a neural field can return slightly different bits for the
    same point in different batches; neighbouring blocks must agree on signs to stay closed.
    Two sorted tiers (a large one, and a small one merged into it when it grows) keep inserts
    cheap without a Python dict.
    """

    def __init__(self):
        empty = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))
        self.tiers = [empty, empty]

    def lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sorted unique ``ids`` -> (found mask, values; entries where not found are garbage)."""
        found = np.zeros(len(ids), dtype=bool)
        vals = np.empty(len(ids), dtype=np.float32)
        for keys, kv in self.tiers:
            if len(keys):
                at = np.minimum(np.searchsorted(keys, ids), len(keys) - 1)
                hit = keys[at] == ids
                vals[hit] = kv[at[hit]]
                found |= hit
        return found, vals

    def insert(self, ids: np.ndarray, vals: np.ndarray) -> None:
        """Add sorted ids not yet present."""
        (big_k, big_v), (k, v) = self.tiers
        at = np.searchsorted(k, ids)
        k, v = np.insert(k, at, ids), np.insert(v, at, vals)
        if len(k) > max(2**16, len(big_k) // 4):
            at = np.searchsorted(big_k, k)
            big_k, big_v = np.insert(big_k, at, k), np.insert(big_v, at, v)
            k, v = k[:0], v[:0]
        self.tiers = [(big_k, big_v), (k, v)]


def _pick_stride(resolution: int, coarse_resolution: int | None, block: int) -> int:
    """Coarse stride in fine cells: a power of two dividing ``block`` (default: 8 cells)."""
    want = 8 if coarse_resolution is None else max(1, resolution // coarse_resolution)
    stride = 1
    while stride * 2 <= min(want, block) and block % (stride * 2) == 0:
        stride *= 2
    return stride


def extract_sdf(
    field: Field,
    *,
    bounds: Sequence[Sequence[float]] = ((-1, -1, -1), (1, 1, 1)),
    resolution: int = 256,
    level: float = 0.0,
    chunk_size: int = 2**18,
    device: str | torch.device = "cpu",
    coarse_resolution: int | None = None,
    block_size: int = 8,
    safety: float = 2.0,
    stats: ExtractStats | None = None,
) -> Mesh:
    """Extract the ``level`` iso-surface of ``field`` as a welded triangle mesh.

    field: maps (n, 3) float32 points on ``device`` to (n,) values, negative inside.
    bounds: ((x0, y0, z0), (x1, y1, z1)) world box; resolution: cells per axis (>= 2).
    coarse_resolution: cells per axis of the coarse marking grid (default resolution / 8; rounded
    so that its stride is a power of two dividing ``block_size``). safety: assumed Lipschitz bound
    of the field for the coarse test; surface tracing across block faces adds robustness on top.
    stats: if given, an ``ExtractStats`` filled with evaluation counts and timing.

    Returns a Mesh with vertices in world units and faces CCW seen from outside (normals toward
    increasing field values). A surface cut by the bounds is left open there. An empty Mesh is
    returned when the level set does not cross the grid. Vertex normals are not computed.
    """
    t0 = time.perf_counter()
    b = _check_args(bounds, resolution, level, chunk_size, coarse_resolution)
    if block_size < 1:
        raise ValueError(f"expected block_size >= 1, got {block_size!r}")
    n, block = int(resolution), int(min(block_size, resolution))
    lo, step = b[0], (b[1] - b[0]) / n
    ev = _GridEvaluator(field, lo, step, chunk_size, device)

    # 1. coarse grid and block marking.
    stride = _pick_stride(n, coarse_resolution, block)
    pos = np.unique(np.append(np.arange(0, n + 1, stride), n))
    m = len(pos)
    plane = np.stack(np.meshgrid(pos, pos, indexing="ij"), -1).reshape(-1, 2)
    raw = np.empty((m, m, m), dtype=np.float32)
    slabs = max(1, chunk_size // (m * m))  # x-slabs per call; bounds the index array size
    for i in range(0, m, slabs):
        xs = pos[i : i + slabs]
        idx = np.concatenate([np.repeat(xs, len(plane))[:, None], np.tile(plane, (len(xs), 1))], 1)
        raw[i : i + slabs] = ev(idx).reshape(len(xs), m, m)
    coarse, coarse_count = raw.astype(np.float64) - level, ev.count
    # A point of a block is within half a lattice-cell diagonal of some lattice sample.
    def margin(s):
        return safety * 0.5 * s * float(np.linalg.norm(step))
    marked = _mark_blocks(coarse, pos, n, block, margin(stride))
    nb = marked.shape[0]
    store = _SampleStore()
    grid_ids = ((pos[:, None, None] * (n + 1) + pos[None, :, None]) * (n + 1) + pos).ravel()
    store.insert(grid_ids, raw.ravel())

    # 2. narrow the candidates on finer lattices.
    candidates, lattice = np.argwhere(marked), stride // 2
    while lattice >= 2 and len(candidates):
        per = max(1, chunk_size // (block // lattice + 1) ** 3)
        keep = []
        for i in range(0, len(candidates), per):
            batch = candidates[i : i + per]
            v = _lattice_values(ev, store, batch, block, n, lattice).reshape(len(batch), -1) - level
            keep.append(batch[(v.min(1) <= margin(lattice)) & (v.max(1) >= -margin(lattice))])
        candidates, lattice = np.concatenate(keep), lattice // 2

    # 3. refine in batches, tracing the surface into blocks the tests rejected.
    visited = np.zeros_like(marked)
    visited[tuple(candidates.T)] = True
    queue = [tuple(x) for x in candidates]
    fine_lookup = _fine_lookup_mask(block, stride)
    per_batch = max(1, max(chunk_size, 2**18) // (block + 1) ** 3)
    tris, verts, head = [], [], 0
    while head < len(queue):
        batch = np.array(queue[head : head + per_batch], dtype=np.int64)
        head += len(batch)
        vals = _evaluate_blocks(ev, store, batch, block, n, fine_lookup)
        t, v = _polygonise(vals, batch, block, n, level)
        tris.append(t)
        verts.append(v)
        for nbr in _crossed_neighbours(vals, batch, block, nb, level):
            if not visited[nbr]:
                visited[nbr] = True
                queue.append(nbr)

    if stats is not None:
        stats.evaluations = ev.count
        stats.coarse_evaluations = coarse_count
        stats.fine_evaluations = ev.count - coarse_count
        stats.blocks_total = nb**3
        stats.blocks_marked = int(marked.sum())
        stats.blocks_refined = len(queue)
        stats.blocks_propagated = len(queue) - len(candidates)
    mesh = _weld(tris, verts, lo, step)
    if stats is not None:
        stats.seconds = time.perf_counter() - t0
    return mesh


def _lookup_or_evaluate(ev, store, idx: np.ndarray, n: int, remember: bool) -> np.ndarray:
    """(m, 3) grid indices (duplicates allowed) -> (m,) values, evaluating each point once."""
    flat = (idx[:, 0] * (n + 1) + idx[:, 1]) * (n + 1) + idx[:, 2]
    ids, inverse = np.unique(flat, return_inverse=True)
    found, uvals = store.lookup(ids)
    todo = ids[~found]
    g = np.stack([todo // (n + 1) ** 2, (todo // (n + 1)) % (n + 1), todo % (n + 1)], -1)
    uvals[~found] = ev(g)
    if remember:
        store.insert(todo, uvals[~found])
    return uvals[inverse]


def _lattice_values(ev, store, batch, block, n, lattice) -> np.ndarray:
    """(K, 3) blocks -> (K, m, m, m) samples at local multiples of ``lattice``, m = B/lattice+1.

    Indices beyond the grid are clipped to its last sample, which keeps every point of a
    partial block within half a lattice cell of a sample.
    """
    r = np.arange(0, block + 1, lattice)
    local = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1)
    idx = np.minimum(batch[:, None, None, None, :] * block + local, n)
    return _lookup_or_evaluate(ev, store, idx.reshape(-1, 3), n, True).reshape(idx.shape[:-1])


def _fine_lookup_mask(block: int, stride: int) -> np.ndarray:
    """Local samples of a block that may already be known: the shell (shared with neighbours)
    and, when lattice levels ran, the stride-2 lattice."""
    r = np.arange(block + 1)
    local = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1)
    mask = np.any((local == 0) | (local == block), axis=-1)
    if stride >= 4:
        mask |= np.all(local % 2 == 0, axis=-1)
    return mask


def _evaluate_blocks(ev, store, batch, block, n, lookup_mask) -> np.ndarray:
    """(K, 3) block coords -> (K, B+1, B+1, B+1) float32 samples; NaN beyond the grid."""
    r = np.arange(block + 1)
    local = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1)  # (B+1, B+1, B+1, 3)
    shell = np.any((local == 0) | (local == block), axis=-1)
    idx = batch[:, None, None, None, :] * block + local  # (K, B+1, B+1, B+1, 3)
    inb = batch[:, :, None] * block + r <= n  # (K, 3, B+1)
    valid = inb[:, 0, :, None, None] & inb[:, 1, None, :, None] & inb[:, 2, None, None, :]
    out = np.full(valid.shape, np.nan, dtype=np.float32)
    # The last grid sample was also a coarse / clipped lattice sample for partial blocks.
    shared = valid & (lookup_mask | np.any(idx == n, axis=-1))
    # Samples seen by no other block and no lattice level are evaluated directly.
    private = valid & ~shared
    out[private] = ev(idx[private])
    # Only shell samples need remembering: lattice samples already are, the rest is private.
    out[shared & shell] = _lookup_or_evaluate(ev, store, idx[shared & shell], n, True)
    inner = shared & ~shell
    if inner.any():
        out[inner] = _lookup_or_evaluate(ev, store, idx[inner], n, False)
    return out


def _polygonise(vals, batch, block, n, level) -> tuple[np.ndarray, np.ndarray]:
    """Triangles of a batch of blocks as global edge ids, and their vertex positions.

    Returns (edge ids (T, 3) int64, positions (T, 3, 3) float64 in grid-index units).
    """
    inside = vals < level  # NaN (beyond the grid) counts as outside ...
    nan = np.isnan(vals)
    case = np.zeros((vals.shape[0], block, block, block), dtype=np.int64)
    bad = np.zeros(case.shape, dtype=bool)
    for k, (dx, dy, dz) in enumerate(_CORNERS):
        sl = (slice(None), slice(dx, dx + block), slice(dy, dy + block), slice(dz, dz + block))
        case |= inside[sl].astype(np.int64) << k
        bad |= nan[sl]
    case[bad] = 0  # ... but such cells are dropped entirely.
    kb, cx, cy, cz = np.nonzero((case != 0) & (case != 255))
    c = case[kb, cx, cy, cz]
    cell = np.stack([cx, cy, cz], -1)
    slots = np.arange(_TRI_TABLE.shape[1])
    ci, si = np.nonzero(slots[None, :] < _N_TRIS[c][:, None])  # (cell, triangle slot) pairs
    local_edges = _TRI_TABLE[c[ci], si]  # (T, 3)
    start = cell[ci][:, None, :] + _EDGE_START[local_edges]  # (T, 3, 3) local sample index
    axis = _EDGE_AXIS[local_edges]  # (T, 3)
    k = kb[ci][:, None]
    v0 = vals[k, start[..., 0], start[..., 1], start[..., 2]].astype(np.float64)
    end = start + np.eye(3, dtype=np.int64)[axis]
    v1 = vals[k, end[..., 0], end[..., 1], end[..., 2]].astype(np.float64)
    t = np.clip((level - v0) / (v1 - v0), _EDGE_EPS, 1.0 - _EDGE_EPS)
    g = batch[kb[ci]][:, None, :] * block + start  # global sample index of each edge start
    pos = g + t[..., None] * np.eye(3)[axis]
    ids = ((g[..., 0] * (n + 1) + g[..., 1]) * (n + 1) + g[..., 2]) * 3 + axis
    return ids, pos


def _crossed_neighbours(vals, batch, block, nb, level):
    """Neighbour blocks across faces on which the level set crosses (sign change)."""
    found = []
    for axis in range(3):
        for side, face in ((-1, 0), (1, block)):
            sl = [slice(None)] * 4
            sl[axis + 1] = face
            f = vals[tuple(sl)].reshape(len(batch), -1)
            crossed = (f < level).any(1) & (f >= level).any(1)  # NaN is neither
            nbr = batch[crossed].copy()
            nbr[:, axis] += side
            ok = (nbr[:, axis] >= 0) & (nbr[:, axis] < nb)
            found += [tuple(x) for x in nbr[ok]]
    return found


def _weld(tris, verts, lo, step) -> Mesh:
    """Merge triangle corners that name the same grid edge into one vertex."""
    if not tris or sum(len(t) for t in tris) == 0:
        return Mesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))
    ids = np.concatenate(tris).reshape(-1)
    pos = np.concatenate(verts).reshape(-1, 3)
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    vertices = lo + pos[first] * step
    return Mesh(vertices, inverse.reshape(-1, 3))
