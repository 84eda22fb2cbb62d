"""Analytic unsigned distance fields and dense samples of their surfaces.

Exact references for the UDF extractor: its tests and ``bench/udf.py`` mesh these and compare
with the samples. Fields map (n, 3) torch points to (n,) distances; samplers return (points,
unit normals) as numpy arrays, drawn from a ``numpy.random.Generator``. All shapes are centred
at the origin with size ``R``.
"""

from __future__ import annotations

import numpy as np
import torch

R = 0.5
"""Radius of the sphere, hemisphere and disc, half-width of the square patch."""


def sphere_udf(x: torch.Tensor) -> torch.Tensor:
    return (x.norm(dim=1) - R).abs()


def hemisphere_udf(x: torch.Tensor) -> torch.Tensor:
    """Upper half (z >= 0) of the sphere of radius R; below the equator the rim is nearest."""
    rho = torch.sqrt(x[:, 0] ** 2 + x[:, 1] ** 2)
    rim = torch.sqrt((rho - R) ** 2 + x[:, 2] ** 2)
    return torch.where(x[:, 2] >= 0, (x.norm(dim=1) - R).abs(), rim)


def disc_udf(x: torch.Tensor) -> torch.Tensor:
    """Flat disc of radius R in the z = 0 plane."""
    rho = torch.sqrt(x[:, 0] ** 2 + x[:, 1] ** 2)
    return torch.sqrt(torch.clamp(rho - R, min=0) ** 2 + x[:, 2] ** 2)


def patch_udf(x: torch.Tensor) -> torch.Tensor:
    """Square [-R, R]^2 in the z = 0 plane."""
    dx = torch.clamp(x[:, 0].abs() - R, min=0)
    dy = torch.clamp(x[:, 1].abs() - R, min=0)
    return torch.sqrt(dx**2 + dy**2 + x[:, 2] ** 2)


def sphere_samples(n: int, rng: np.random.Generator, upper_only: bool = False):
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    if upper_only:
        d[:, 2] = np.abs(d[:, 2])
    return R * d, d


def unit_sphere_points(n: int, seed: int = 0) -> np.ndarray:
    """``n`` points uniformly on the unit sphere (the directions of :func:`sphere_samples`)."""
    return sphere_samples(n, np.random.default_rng(seed))[1]


def box_surface_samples(size, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points uniformly on the surface of an axis-aligned box centred at 0, with outward normals."""
    rng = np.random.default_rng(seed)
    size = np.asarray(size, dtype=float)
    areas = np.array([size[1] * size[2], size[0] * size[2], size[0] * size[1]])
    axis = rng.choice(3, size=n, p=areas / areas.sum())
    pts = rng.uniform(-0.5, 0.5, size=(n, 3)) * size
    side = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    pts[np.arange(n), axis] = side * size[axis] / 2
    normals = np.zeros((n, 3))
    normals[np.arange(n), axis] = side
    return pts, normals


def hemisphere_samples(n: int, rng: np.random.Generator):
    return sphere_samples(n, rng, upper_only=True)


def disc_samples(n: int, rng: np.random.Generator):
    rho, phi = R * np.sqrt(rng.random(n)), 2 * np.pi * rng.random(n)
    p = np.stack([rho * np.cos(phi), rho * np.sin(phi), np.zeros(n)], 1)
    return p, np.tile([0.0, 0.0, 1.0], (n, 1))


def patch_samples(n: int, rng: np.random.Generator):
    p = np.concatenate([rng.uniform(-R, R, (n, 2)), np.zeros((n, 1))], 1)
    return p, np.tile([0.0, 0.0, 1.0], (n, 1))


SHAPES = {
    "hemisphere": (hemisphere_udf, hemisphere_samples),
    "disc": (disc_udf, disc_samples),
    "patch": (patch_udf, patch_samples),
    "sphere": (sphere_udf, sphere_samples),
}
"""name -> (field, sampler) for every shape above."""
