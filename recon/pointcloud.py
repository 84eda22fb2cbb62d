"""DiGS-style SDF fitting to (possibly unoriented) point clouds.

Terms (DiGS, Ben-Shabat et al., CVPR 2022, built on SIREN/IGR):
  * on-surface   |f(p)| at the input points,
  * off-surface  exp(-alpha |f(q)|) at uniform space samples,
  * eikonal      | ||grad f|| - 1 | on all samples,
  * divergence   |div grad f| clamped to [0.1, 50] at space samples, its weight annealed to 0
                 so that it shapes the early, coarse solution and then lets detail in,
  * normal       1 - cos(grad f, n) when the input carries oriented normals, or 1 - |cos| for
                 unoriented PCA normals (sign-agnostic: it aligns tangent planes only).
On a hash grid the divergence is taken by central finite differences (see
``recon.losses.laplacian_fd``), and levels are switched on coarse to fine.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from recon import losses
from recon.fields.base import DistanceField
from recon.fields.hash_sdf import HashSDFConfig
from recon.fields.siren import SirenSDFConfig
from recon.fitting import Fitter, Schedule, fit, subsample
from recon.progress import CancelToken, ProgressFn, no_progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DigsConfig:
    """Configuration of :func:`fit_sdf`. Distances are in normalised units ([-1, 1]^3)."""

    field: HashSDFConfig | SirenSDFConfig = field(default_factory=HashSDFConfig)
    """The distance field to fit."""
    steps: int = 400
    """Optimisation steps."""
    surface_batch: int = 8192
    """Input points per step."""
    space_batch: int = 4096
    """Uniform samples in the cube per step (off-surface, eikonal and divergence terms)."""
    near_batch: int = 4096
    """Samples per step jittered around input points (eikonal term close to the surface)."""
    near_knn: int = 10
    """The jitter's standard deviation is the distance to this nearest neighbour."""
    lr: float = 1e-2
    """Adam learning rate at the start."""
    lr_final: float = 1e-3
    """Learning rate at the end (cosine decay)."""
    w_surface: float = 3e3
    """Weight of the on-surface term."""
    w_off_surface: float = 1e2
    """Weight of the off-surface term."""
    off_surface_alpha: float = 100.0
    """Decay rate alpha of exp(-alpha |f|) (per normalised unit)."""
    w_eikonal: float = 5e1
    """Weight of the eikonal term."""
    w_normal: float = 1e2
    """Weight of the normal term (used when normals are known or estimated)."""
    w_distance: float = 0.0
    """Weight of the near-surface distance term: at jittered samples q, |f(q)| (or f(q) with
    oriented normals) should equal the distance of q to the tangent plane of its nearest input
    point. 0 disables it (pure DiGS)."""
    w_exterior: float = 1e2
    """Weight of the exterior anchor: on the faces of the cube, which normalisation keeps outside
    the object, f equals the (positive) distance to the nearest input point. It rules out
    sign flips and ghost surfaces far from the data, which noisy scans otherwise provoke."""
    exterior_batch: int = 512
    """Cube-face samples per step for the exterior anchor."""
    near_pool: int = 400_000
    """Jittered samples (with their distance targets) precomputed once and drawn from per step."""
    divergence: tuple[tuple[float, float], ...] = ((0.0, 1e2), (0.2, 1e2), (0.4, 0.0))
    """(training fraction, weight) knots of the divergence weight, linear between knots."""
    divergence_batch: int = 1024
    """Space samples per step on which the divergence is evaluated."""
    estimate_normals: bool = True
    """Estimate unoriented PCA normals when the input has none (sign-agnostic normal term)."""
    normal_knn: int = 16
    """Neighbours for PCA normal estimation."""
    max_points: int = 200_000
    """Input points kept for fitting (random subsample above this)."""
    checkpoint_every: int = 50
    """Save a checkpoint every N steps when a checkpoint path is given (0: never)."""
    log_every: int = 10
    """Report progress every N steps."""
    seed: int = 0
    """Seed of parameter initialisation and sampling."""


def estimate_unoriented_normals(points: np.ndarray, knn: int) -> np.ndarray:
    """PCA normals (n, 3) of unknown sign from the ``knn`` nearest neighbours (Open3D, threaded)."""
    import open3d as o3d

    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, dtype=np.float64)))
    pc.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(knn))
    return np.asarray(pc.normals)


def knn_sigma(points: np.ndarray, k: int, tree: cKDTree | None = None) -> np.ndarray:
    """Distance of each point to its k-th nearest neighbour, clipped to [1e-3, 0.1] (jitter scale)."""
    tree = cKDTree(points) if tree is None else tree
    k = min(k, len(points) - 1)
    d, _ = tree.query(points, k=k + 1, workers=-1)
    return np.clip(d[:, -1], 1e-3, 0.1)


def _near_pool(points, normals, sigma, oriented: bool, size: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Samples jittered around the input and their distance to the nearest point's tangent plane.

    With normals the target is the (signed, if ``oriented``) point-to-plane distance, which is
    exact for a locally flat surface and, unlike the distance to the nearest sample, does not
    overestimate between sparse points. Without normals it is the point-to-point distance.
    """
    src = rng.integers(0, len(points), size)
    q = np.clip(points[src] + rng.normal(size=(size, 3)) * sigma[src, None], -1.0, 1.0)
    dist, nearest = cKDTree(points).query(q, workers=-1)
    if normals is None:
        return q, dist
    plane = np.einsum("ij,ij->i", q - points[nearest], normals[nearest])
    return q, plane if oriented else np.abs(plane)


def _exterior_pool(points: np.ndarray, size: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Uniform samples on the faces of [-1, 1]^3 and their distance to the nearest input point."""
    q = rng.uniform(-1.0, 1.0, size=(size, 3))
    axis = rng.integers(0, 3, size)
    q[np.arange(size), axis] = rng.choice([-1.0, 1.0], size)
    dist, _ = cKDTree(points).query(q, workers=-1)
    return q, dist


def finest_cell(model: DistanceField) -> float:
    """Edge of the finest active cell, in normalised units (the FD step of the divergence)."""
    layout = getattr(getattr(model, "encoding", None), "layout", None)
    if layout is None:
        return 1e-2
    res = layout.resolutions[max(0, getattr(model, "active_levels", len(layout.resolutions)) - 1)]
    return 2.0 / float(res)


class DigsFitter(Fitter):
    """The DiGS fit of :func:`fit_sdf`: its sample pools and its per-step loss terms."""

    def __init__(self, points: np.ndarray, normals: np.ndarray | None, config: DigsConfig) -> None:
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 3 or len(points) < 10:
            raise ValueError(f"expected points of shape (n>=10, 3), got {points.shape}")
        if not np.isfinite(points).all():
            raise ValueError("expected finite point coordinates, got NaN or Inf")
        self.points, self.normals, self.config = points, normals, config
        self.schedule = Schedule(steps=config.steps, seed=config.seed, checkpoint_every=config.checkpoint_every,
                                 log_every=config.log_every, lr=config.lr, lr_final=config.lr_final)

    def prepare(self, rng: np.random.Generator, device: torch.device) -> None:
        cfg = self.config
        points, normals = subsample(rng, cfg.max_points, self.points, self.normals)
        self.oriented = normals is not None
        if normals is None and cfg.estimate_normals and cfg.w_normal > 0:
            normals = estimate_unoriented_normals(points, cfg.normal_knn)

        def tensor(a):
            return torch.as_tensor(a, dtype=torch.float32, device=device)

        sigma = knn_sigma(points, cfg.near_knn)
        self.near_q = self.near_d = None
        if cfg.w_distance > 0:
            self.near_q, self.near_d = map(tensor, _near_pool(points, normals, sigma, self.oriented, cfg.near_pool, rng))
        self.ext_q = self.ext_d = None
        if cfg.w_exterior > 0:
            self.ext_q, self.ext_d = map(tensor, _exterior_pool(points, 50_000, rng))
        self.pts = tensor(points)
        self.nrm = None if normals is None else tensor(normals)
        self.sigma = tensor(sigma)
        self.device = device

    def build(self) -> DistanceField:
        return self.config.field.build()

    def loss_terms(self, model: DistanceField, gen: torch.Generator, fraction: float
                   ) -> tuple[dict[str, Tensor], dict[str, float]]:
        cfg, device, n = self.config, self.device, len(self.pts)
        idx = torch.randint(0, n, (min(cfg.surface_batch, n),), generator=gen).to(device)
        surf = self.pts[idx]
        if self.near_q is not None:
            pool_idx = torch.randint(0, len(self.near_q), (cfg.near_batch,), generator=gen).to(device)
            near = self.near_q[pool_idx]
        else:
            near_idx = torch.randint(0, n, (cfg.near_batch,), generator=gen).to(device)
            jitter = torch.randn(cfg.near_batch, 3, generator=gen).to(device)
            near = self.pts[near_idx] + jitter * self.sigma[near_idx, None]
        space = torch.rand(cfg.space_batch, 3, generator=gen).to(device) * 2.0 - 1.0
        x = torch.cat([surf, near.clamp(-1, 1), space])
        sdf, grad = model.forward_with_gradient(x, create_graph=True)
        if self.ext_q is not None:
            ext_idx = torch.randint(0, len(self.ext_q), (cfg.exterior_batch,), generator=gen).to(device)
            f_ext = model(self.ext_q[ext_idx])
        ns, nn_ = len(surf), len(near)
        terms = {
            "surface": losses.surface_term(sdf[:ns]),
            "off_surface": losses.off_surface_term(sdf[ns + nn_ :], cfg.off_surface_alpha),
            "eikonal": losses.eikonal_term(grad),
        }
        weights = {"surface": cfg.w_surface, "off_surface": cfg.w_off_surface, "eikonal": cfg.w_eikonal}
        if self.nrm is not None and cfg.w_normal > 0:
            terms["normal"] = losses.normal_term(grad[:ns], self.nrm[idx], oriented=self.oriented)
            weights["normal"] = cfg.w_normal
        if self.near_q is not None:
            f_near, target = sdf[ns : ns + nn_], self.near_d[pool_idx]
            # Oriented normals give a signed target; otherwise only |f| can be asked for.
            term = losses.distance_term if self.oriented else losses.unsigned_distance_term
            terms["distance"] = term(f_near, target)
            weights["distance"] = cfg.w_distance
        if self.ext_q is not None:
            terms["exterior"] = losses.distance_term(f_ext, self.ext_d[ext_idx])
            weights["exterior"] = cfg.w_exterior
        w_div = losses.anneal(fraction, cfg.divergence)
        if w_div > 0:
            lap = losses.laplacian_fd(model, space[: cfg.divergence_batch], finest_cell(model))
            terms["divergence"] = losses.divergence_term(lap)
            weights["divergence"] = w_div
        return terms, weights


def fit_sdf(
    points: np.ndarray,
    normals: np.ndarray | None = None,
    config: DigsConfig = DigsConfig(),
    *,
    device: str | torch.device = "cpu",
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
    checkpoint_path: os.PathLike | None = None,
) -> DistanceField:
    """Fit an SDF to ``points`` (n, 3) in [-1, 1]^3, optionally with oriented ``normals`` (n, 3).

    Returns the trained field in eval mode on ``device`` (the shared loop of
    :mod:`recon.fitting`: progress as stage 'fit', checkpoints, cancellation).
    """
    return fit(DigsFitter(points, normals, config), device=device, progress=progress, cancel=cancel,
               checkpoint_path=checkpoint_path)
