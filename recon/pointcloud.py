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

import hashlib
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree

from recon import losses
from recon.fields.base import DistanceField
from recon.fields.hash_sdf import HashSDFConfig
from recon.fields.siren import SirenSDFConfig
from recon.progress import CancelToken, ProgressEvent, ProgressFn, Stage, no_progress
from recon.training import (
    checkpoint_due,
    load_checkpoint,
    make_adam,
    optimizer_step,
    save_checkpoint,
)

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

    def fingerprint(self) -> str:
        """Short hash identifying the configuration (checkpoints resume only on a match)."""
        blob = json.dumps(asdict(self), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


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


def _finest_cell(model: DistanceField) -> float:
    """Edge of the finest active cell, in normalised units (the FD step of the divergence)."""
    layout = getattr(getattr(model, "encoding", None), "layout", None)
    if layout is None:
        return 1e-2
    res = layout.resolutions[max(0, getattr(model, "active_levels", len(layout.resolutions)) - 1)]
    return 2.0 / float(res)


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

    Returns the trained field in eval mode on ``device``. Progress is reported as stage 'fit'.
    With ``checkpoint_path`` and ``config.checkpoint_every`` the state is saved periodically
    and a matching checkpoint found there is resumed from.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) < 10:
        raise ValueError(f"expected points of shape (n>=10, 3), got {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("expected finite point coordinates, got NaN or Inf")
    device = torch.device(device)
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)

    if len(points) > config.max_points:
        keep = rng.choice(len(points), config.max_points, replace=False)
        points = points[keep]
        normals = None if normals is None else normals[keep]
    oriented = normals is not None
    if normals is None and config.estimate_normals and config.w_normal > 0:
        normals = estimate_unoriented_normals(points, config.normal_knn)

    sigma = knn_sigma(points, config.near_knn)
    near_q = near_d = None
    if config.w_distance > 0:
        near_q, near_d = _near_pool(points, normals, sigma, oriented, config.near_pool, rng)
        near_q = torch.as_tensor(near_q, dtype=torch.float32, device=device)
        near_d = torch.as_tensor(near_d, dtype=torch.float32, device=device)
    ext_q = ext_d = None
    if config.w_exterior > 0:
        ext_q, ext_d = _exterior_pool(points, 50_000, rng)
        ext_q = torch.as_tensor(ext_q, dtype=torch.float32, device=device)
        ext_d = torch.as_tensor(ext_d, dtype=torch.float32, device=device)
    pts_t = torch.as_tensor(points, dtype=torch.float32, device=device)
    nrm_t = None if normals is None else torch.as_tensor(normals, dtype=torch.float32, device=device)
    sig_t = torch.as_tensor(sigma, dtype=torch.float32, device=device)

    model = config.field.build().to(device)
    optimizer = make_adam(model.parameters(), config.lr, device)
    gen = torch.Generator(device="cpu").manual_seed(config.seed)
    fingerprint = config.fingerprint()
    ckpt = Path(checkpoint_path) if checkpoint_path else None
    start_step = load_checkpoint(ckpt, model, optimizer, gen, fingerprint, device)

    n = len(points)
    steps = config.steps
    model.train()
    for step in range(start_step, steps):
        if cancel is not None:
            cancel.raise_if_cancelled()
        frac = step / max(1, steps)
        model.set_progress(frac)
        lr = config.lr_final + 0.5 * (config.lr - config.lr_final) * (1 + math.cos(math.pi * frac))
        for group in optimizer.param_groups:
            group["lr"] = lr

        idx = torch.randint(0, n, (min(config.surface_batch, n),), generator=gen).to(device)
        surf = pts_t[idx]
        if near_q is not None:
            pool_idx = torch.randint(0, len(near_q), (config.near_batch,), generator=gen).to(device)
            near = near_q[pool_idx]
        else:
            near_idx = torch.randint(0, n, (config.near_batch,), generator=gen).to(device)
            near = pts_t[near_idx] + torch.randn(config.near_batch, 3, generator=gen).to(device) * sig_t[near_idx, None]
        space = torch.rand(config.space_batch, 3, generator=gen).to(device) * 2.0 - 1.0
        x = torch.cat([surf, near.clamp(-1, 1), space])
        sdf, grad = model.forward_with_gradient(x, create_graph=True)
        if ext_q is not None:
            ext_idx = torch.randint(0, len(ext_q), (config.exterior_batch,), generator=gen).to(device)
            f_ext = model(ext_q[ext_idx])
        ns, nn_ = len(surf), len(near)
        terms = {
            "surface": losses.surface_term(sdf[:ns]),
            "off_surface": losses.off_surface_term(sdf[ns + nn_ :], config.off_surface_alpha),
            "eikonal": losses.eikonal_term(grad),
        }
        weights = {"surface": config.w_surface, "off_surface": config.w_off_surface, "eikonal": config.w_eikonal}
        if nrm_t is not None and config.w_normal > 0:
            terms["normal"] = losses.normal_term(grad[:ns], nrm_t[idx], oriented=oriented)
            weights["normal"] = config.w_normal
        if near_q is not None:
            f_near = sdf[ns : ns + nn_]
            target = near_d[pool_idx]
            terms["distance"] = ((f_near - target).abs() if oriented else (f_near.abs() - target.abs()).abs()).mean()
            weights["distance"] = config.w_distance
        if ext_q is not None:
            terms["exterior"] = (f_ext - ext_d[ext_idx]).abs().mean()
            weights["exterior"] = config.w_exterior
        w_div = losses.anneal(frac, config.divergence)
        if w_div > 0:
            lap = losses.laplacian_fd(model, space[: config.divergence_batch], _finest_cell(model))
            terms["divergence"] = losses.divergence_term(lap)
            weights["divergence"] = w_div
        loss = optimizer_step(optimizer, terms, weights, step)

        done = step + 1
        if done % config.log_every == 0 or done == steps:
            losses_now = {k: v.item() for k, v in terms.items()}
            losses_now["total"] = loss.item()
            progress(ProgressEvent(Stage.FIT, done, steps, losses_now))
        if checkpoint_due(ckpt, config.checkpoint_every, done, steps):
            save_checkpoint(ckpt, model, optimizer, gen, done, fingerprint)

    model.set_progress(1.0)
    model.eval()
    return model

