"""What the ``auto`` method does to a point cloud before meshing it, and how it chooses.

``prepare_cloud`` looks at the cloud and cleans it the way its measurements ask:

1. **Statistics**: sample spacing ``h`` and noise level ``sigma`` (:mod:`recon.cleaning`).
2. **Outliers**: isolated samples are dropped (:func:`recon.cleaning.outlier_mask`); the noise is
   measured again without them.
3. **Noise**: when ``sigma / h`` exceeds ``NOISY_RATIO``, every point is projected onto the quadric
   of ``clip(60 sigma / h, 30, 100)`` neighbours, twice when ``sigma / h`` exceeds ``VERY_NOISY``:
   the neighbourhood grows with the noise, so 1% noise gives a smooth surface while a clean dense
   cloud is left untouched and keeps its detail.
4. **Normals**: the file's normals if it has them, else PCA normals of 15 neighbours oriented
   globally by winding number (:mod:`recon.orientation`).
5. **Open or closed**: the winding number of the oriented samples on a lattice around them is 0
   or 1 away from a closed surface (holes included, they only blur it locally) and fractional
   around a sheet with borders. If more than ``OPEN_AMBIGUOUS`` of the lattice points it calls
   inside are ambiguous (between 0.2 and 0.8), the surface is open, unless the smoothed cloud is
   still noisier than ``OPEN_MAX_NOISE`` sample spacings: there the normals are too unsure for the
   winding number to tell (a heavily noisy scan of a closed part read as 99% ambiguous), and a
   closed surface is the safer answer.

The method then runs screened Poisson on the cleaned, oriented cloud for closed surfaces, and the
unsigned distance field (``udf``) for open ones. From a Poisson mesh it drops the pieces the data
does not support (:func:`drop_unsupported_pieces`) and the balloons Poisson wraps around thin
sheets (:func:`drop_balloons`). Why this and not the neural signed field: see
"Choosing for the data" in the README (measured with bench/pointcloud.py).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial import cKDTree

from recon.cleaning import estimate_noise, jet_smooth, outlier_mask, spacing
from recon.orientation import (
    ambiguous_share,
    fast_winding_number,
    lattice_away_from,
    orient_normals,
    point_areas,
)

NOISY_RATIO = 0.3
"""sigma / h above which the cloud is smoothed. Measured (bench shapes, 50k points): clean clouds
0.0-0.1, gaussian noise 0.25% of the diagonal 0.5, 3k points 0.27."""
VERY_NOISY = 0.8
"""sigma / h above which smoothing takes two passes (1% noise: about 1.0)."""
OPEN_AMBIGUOUS = 0.6
"""Fraction of the lattice's inside points with a fractional winding number above which the
surface is open. Measured: closed shapes 0.0, closed with three 5% holes 0.09-0.43, the T-shirt
0.36 (a body with openings: meshed closed), a one-sided hemisphere scan 0.93, a disc 1.0."""

BALLOON_COS = 0.8
"""|cos| between a far vertex's offset from its nearest sample and that sample's normal above which
the vertex stands off the data along the normal (a balloon, :func:`drop_balloons`)."""

OPEN_MAX_NOISE = 0.5
"""Residual noise (after smoothing, in sample spacings) above which a cloud is never called open."""


@dataclass(frozen=True)
class CloudAnalysis:
    """What ``prepare_cloud`` measured and did; reported in the job's metrics."""

    n_points: int
    spacing: float
    noise: float
    noise_ratio: float
    residual_noise_ratio: float
    n_outliers: int
    smoothing_neighbours: int
    smoothing_passes: int
    normals: str
    n_patches: int
    n_flipped_patches: int
    ambiguous_fraction: float
    open: bool
    seconds: float

    def as_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class PreparedCloud:
    points: np.ndarray
    normals: np.ndarray
    analysis: CloudAnalysis


def ambiguous_fraction(points: np.ndarray, normals: np.ndarray, offset: float, grid: int = 24) -> float:
    """:func:`recon.orientation.ambiguous_share` of the winding numbers on the lattice (``grid``^3
    over the cloud's box, those farther than ``offset`` from every sample), for clouds whose
    normals came with the file (:func:`~recon.orientation.orient_normals` measures it otherwise)."""
    tree = cKDTree(points)
    lattice = lattice_away_from(points, tree, grid, pad=0.05, min_distance=offset)
    if not len(lattice):
        return 0.0
    return ambiguous_share(fast_winding_number(points, normals, point_areas(points, tree), lattice))


def prepare_cloud(points: np.ndarray, normals: np.ndarray | None = None, *, seed: int = 0) -> PreparedCloud:
    """Clean ``points`` (n, 3) and give them oriented normals; see the module's text."""
    t0 = time.perf_counter()
    points = np.asarray(points, dtype=np.float64)
    n_in = len(points)
    outliers = outlier_mask(points)
    if outliers.any():
        points = points[~outliers]
        normals = None if normals is None else normals[~outliers]
    tree = cKDTree(points)
    h = spacing(points, tree)
    sigma = estimate_noise(points, tree, seed=seed)
    ratio = sigma / h if h > 0 else 0.0
    k, passes = 0, 0
    if ratio > NOISY_RATIO and len(points) > 100:
        k = int(np.clip(60 * ratio, 30, 100))
        passes = 2 if ratio > VERY_NOISY else 1
        points = jet_smooth(points, min(k, len(points)), passes)
        residual = estimate_noise(points, seed=seed)
    else:
        residual = sigma
    if normals is not None:
        orientation = None
        source = "file"
    else:
        orientation = orient_normals(points, noise=residual, seed=seed)
        normals = orientation.normals
        source = "estimated"
    amb = orientation.ambiguous if orientation else ambiguous_fraction(points, normals, offset=4 * max(h, residual))
    analysis = CloudAnalysis(
        n_points=n_in, spacing=h, noise=sigma, noise_ratio=ratio, residual_noise_ratio=residual / h if h > 0 else 0.0,
        n_outliers=int(outliers.sum()),
        smoothing_neighbours=k, smoothing_passes=passes, normals=source,
        n_patches=orientation.n_patches if orientation else 0,
        n_flipped_patches=orientation.n_flipped if orientation else 0,
        ambiguous_fraction=amb, open=amb > OPEN_AMBIGUOUS and residual < OPEN_MAX_NOISE * h,
        seconds=time.perf_counter() - t0)
    return PreparedCloud(points, normals, analysis)


def drop_unsupported_pieces(mesh, points: np.ndarray, radius: float, min_support: float = 0.5,
                            max_local: float = 4.0, flat: float = 0.05, tree: cKDTree | None = None):
    """``mesh`` without the pieces the data does not support: every connected piece but the
    largest keeps only if at least ``min_support`` of its vertices lie near a sample: within
    ``radius``, or within the sample's own spacing (mean distance to its 6 nearest others, up
    to ``max_local`` x ``radius``) where its neighbours lie on a plane (smallest PCA eigenvalue
    under ``flat`` of their sum). Poisson wraps stray points that survived the outlier test (a
    few hundred scattered inside a sphere) in small closed blobs; measured on such a sphere, 7%
    of a blob's vertices lie within one sample spacing of a sample, against 95% of the true
    surface's. Stray points are scattered in volume, so only surface samples get their own
    spacing: real parts sampled ten times more sparsely than the rest stay (the benchmark's
    half-density cow lost a 520-face piece to the one global radius). ``tree``: a k-d tree of
    ``points``, when the caller has one."""
    from meshing.mesh import select_faces, vertex_components

    if mesh.is_empty:
        return mesh
    labels = vertex_components(mesh)
    n = int(labels.max()) + 1
    if n == 1:
        return mesh
    face_label = labels[mesh.faces[:, 0]]
    largest = int(np.argmax(np.bincount(face_label, minlength=n)))
    tree = tree if tree is not None else cKDTree(points)
    dist, nearest = tree.query(mesh.vertices, k=1, workers=-1)
    # Spacing and flatness only of the samples nearest to the other pieces' vertices.
    samples, slot = np.unique(nearest[labels != largest], return_inverse=True)
    d, idx = tree.query(points[samples], k=min(7, len(points)), workers=-1)
    nb = points[idx] - points[idx].mean(axis=1, keepdims=True)
    eig = np.linalg.eigvalsh(np.einsum("nki,nkj->nij", nb, nb))
    planar = eig[:, 0] <= flat * eig.sum(axis=1).clip(1e-30)
    own = np.where(planar, np.minimum(d[:, 1:].mean(axis=1), max_local * radius), 0.0)
    near = dist <= radius
    near[labels != largest] |= dist[labels != largest] <= own[slot.reshape(-1)]
    support = np.bincount(labels, weights=near, minlength=n) / np.maximum(np.bincount(labels, minlength=n), 1)
    keep = support >= min_support
    keep[largest] = True
    return select_faces(mesh, keep[face_label])


def drop_balloons(mesh, points: np.ndarray, normals: np.ndarray, radius: float, min_cos: float = BALLOON_COS,
                  tree: cKDTree | None = None):
    """``mesh`` without its faces whose three vertices all lie farther than ``radius`` from every
    sample, each off its nearest sample along that sample's normal (within ``acos(min_cos)``).

    Screened Poisson closes every sheet it is given: where the data is one thin sheet (a cow's
    ear, whose two sides noise merges into one), it wraps a balloon around the sheet's edge, a
    surface that stands off the samples along their normals where no sample is. A surface
    that closes a hole in the data stands off the rim's samples across their tangent plane
    instead, so hole fills stay. Measured on the benchmark's cow (50k points): these faces are
    2% of the mesh and took precision from 0.96 to 0.995 (clean) and from 0.93 to 0.99 (0.5%
    noise), recall unchanged. ``tree``: a k-d tree of ``points``, when the caller has one."""
    from meshing.mesh import select_faces

    if mesh.is_empty or len(points) == 0:
        return mesh
    tree = tree if tree is not None else cKDTree(points)
    dist, nearest = tree.query(mesh.vertices, k=1, workers=-1)
    along = np.abs(np.einsum("ij,ij->i", mesh.vertices - points[nearest], normals[nearest]))
    off = (dist > radius) & (along >= min_cos * dist)
    return select_faces(mesh, ~off[mesh.faces].all(axis=1))


def describe_choice(a: CloudAnalysis, method: str) -> str:
    """One sentence for people: what was found and what was run."""
    parts = []
    if a.n_outliers:
        parts.append(f"dropped {a.n_outliers} outliers ({100 * a.n_outliers / a.n_points:.1f}%)")
    if a.smoothing_passes:
        parts.append(f"noise at {a.noise_ratio:.2f} sample spacings: smoothed over {a.smoothing_neighbours} "
                     f"neighbours x{a.smoothing_passes}")
    else:
        parts.append(f"noise at {a.noise_ratio:.2f} sample spacings: kept as is")
    shape = (f"open surface ({100 * a.ambiguous_fraction:.0f}% of the inside is ambiguous)" if a.open
             else "closed surface")
    parts.append(f"{shape}: {method}")
    return "; ".join(parts)
