"""Degraded point clouds for the robustness benchmark (``bench/pointcloud.py``).

Pure functions over an (n, 3) float array of clean surface samples and a
``numpy.random.Generator``; each returns a new (m, 3) float64 array and leaves its input alone.
Distances are fractions of the clean cloud's bounding-box diagonal, so a case means the same on
every shape whatever its units. ``CASES`` names the benchmark's cases; ``case_rng`` gives the
generator of one (shape, case) so that every run, method and seed sees the same degraded input.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np
from scipy.spatial import cKDTree


def _points(points) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3 or len(p) == 0:
        raise ValueError(f"expected a non-empty (n, 3) point array, got shape {p.shape}")
    return p


def bbox_diagonal(points) -> float:
    """Length of the axis-aligned bounding box's diagonal; input units."""
    p = _points(points)
    return float(np.linalg.norm(p.max(axis=0) - p.min(axis=0)))


def add_noise(points, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Every point displaced by isotropic Gaussian noise: standard deviation ``sigma`` x the bbox
    diagonal along each axis (so the displacement's RMS length is sqrt(3) times that)."""
    p = _points(points)
    if not sigma >= 0:
        raise ValueError(f"expected sigma >= 0, got {sigma!r}")
    return p + rng.normal(scale=sigma * bbox_diagonal(p), size=p.shape)


def add_outliers(points, fraction: float, rng: np.random.Generator, pad: float = 0.05) -> np.ndarray:
    """The points plus ``round(fraction * n)`` outliers, uniform in the bounding box grown by
    ``pad`` x its extent on every side. The outliers come after the original points."""
    p = _points(points)
    if not fraction >= 0 or not pad >= 0:
        raise ValueError(f"expected fraction >= 0 and pad >= 0, got {fraction!r} and {pad!r}")
    lo, hi = p.min(axis=0), p.max(axis=0)
    margin = pad * (hi - lo)
    extra = rng.uniform(lo - margin, hi + margin, size=(round(fraction * len(p)), 3))
    return np.vstack([p, extra])


def subsample(points, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` of the points, drawn without replacement (all of them, reordered, if there are fewer)."""
    p = _points(points)
    if n < 1:
        raise ValueError(f"expected n >= 1, got {n}")
    return p[rng.permutation(len(p))[: min(n, len(p))]]


def hole_mask(points, n_holes: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(keep mask (n,) bool, hole centres (n_holes, 3)) for ``n_holes`` holes of
    ``round(fraction * n)`` points each.

    Each centre is a random point not yet removed; its hole is the nearest ``round(fraction *
    n)`` points still present, a Euclidean ball that follows the surface like a geodesic one
    wherever the shape is thicker than the ball. Holes therefore never overlap and together
    remove exactly ``n_holes * round(fraction * n)`` points.
    """
    p = _points(points)
    k = round(fraction * len(p))
    if n_holes < 0 or k < 0 or n_holes * k > len(p):
        raise ValueError(f"expected holes that fit in {len(p)} points, got {n_holes} x {k}")
    keep = np.ones(len(p), dtype=bool)
    centres = np.empty((n_holes, 3))
    for h in range(n_holes):
        left = np.flatnonzero(keep)
        centres[h] = p[rng.choice(left)]
        if k:
            _, nearest = cKDTree(p[left]).query(centres[h], k=k)
            keep[left[np.atleast_1d(nearest)]] = False
    return keep, centres


def remove_holes(points, n_holes: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """The points outside ``n_holes`` holes of ``fraction`` of the points each (see ``hole_mask``)."""
    p = _points(points)
    return p[hole_mask(p, n_holes, fraction, rng)[0]]


def half_axis(points) -> tuple[int, float]:
    """(axis, centroid coordinate) of the plane that halves the cloud: perpendicular to the
    bounding box's longest axis, through the centroid."""
    p = _points(points)
    axis = int(np.argmax(p.max(axis=0) - p.min(axis=0)))
    return axis, float(p[:, axis].mean())


def thin_half(points, keep: float, rng: np.random.Generator) -> np.ndarray:
    """The points below the halving plane (``half_axis``) all kept, those above it thinned to
    ``keep`` of them, drawn without replacement; original order preserved."""
    p = _points(points)
    if not 0 < keep <= 1:
        raise ValueError(f"expected keep in (0, 1], got {keep!r}")
    axis, c = half_axis(p)
    upper = np.flatnonzero(p[:, axis] > c)
    dropped = rng.choice(upper, size=len(upper) - round(keep * len(upper)), replace=False)
    mask = np.ones(len(p), dtype=bool)
    mask[dropped] = False
    return p[mask]


Degradation = Callable[[np.ndarray, np.random.Generator], np.ndarray]

CASES: dict[str, Degradation] = {
    "clean": lambda p, rng: _points(p).copy(),
    "noise0.25": lambda p, rng: add_noise(p, 0.0025, rng),
    "noise0.5": lambda p, rng: add_noise(p, 0.005, rng),
    "noise1": lambda p, rng: add_noise(p, 0.01, rng),
    "outliers10": lambda p, rng: add_outliers(p, 0.10, rng, pad=0.05),
    "sparse3k": lambda p, rng: subsample(p, 3000, rng),
    "holes3": lambda p, rng: remove_holes(p, 3, 0.05, rng),
    "halfdensity": lambda p, rng: thin_half(p, 0.1, rng),
}
"""Case name -> degradation of the clean samples (the first case is the clean cloud itself)."""


def case_rng(shape: str, case: str, seed: int = 0) -> np.random.Generator:
    """The generator of one (shape, case, data seed): stable across processes and Python
    versions (CRC-32 of the names, not ``hash``), different for every shape and case."""
    return np.random.default_rng([seed, zlib.crc32(shape.encode()), zlib.crc32(case.encode())])


def degrade(points, shape: str, case: str, seed: int = 0) -> np.ndarray:
    """The ``case`` version of ``shape``'s clean samples; deterministic per (shape, case, seed)."""
    if case not in CASES:
        raise ValueError(f"expected a case in {', '.join(CASES)}, got {case!r}")
    return CASES[case](_points(points), case_rng(shape, case, seed))
