"""NeuS2-style surface fitting from posed images, CPU first.

The model (:class:`NeusModel`) is a hash-grid SDF (:class:`recon.fields.hash_sdf.HashSDF`,
analytic gradient through the C++ kernel's Jacobian), a colour network fed with the SDF
network's last hidden layer, the normal and the SH-encoded view direction, NeuS's single
learned inverse sharpness ``s``, a constant learned background colour and an occupancy grid.

Per step: a batch of random pixels across all training views is turned into rays, clipped to
the unit sphere and marched at a fixed step; only samples inside occupied cells of the grid are
evaluated (one fused pass gives SDF, gradient and feature). NeuS opacities are composited front
to back; the loss is L1 on colour, the eikonal term on the ray samples and a few uniform points,
and, when masks exist, binary cross-entropy of the accumulated opacity against the mask. Hash
levels are switched on coarse to fine, the learning rate warms up then decays (cosine), Adam is
fused, and the grid is re-marked every few steps from ``|f|`` against a band that narrows as
``s`` grows. The mesh is the zero level set (marching cubes inside the unit sphere), coloured
by the colour network looking along the negative normal.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from dataclasses import field as dc_field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from meshing.marching_cubes import extract_sdf
from meshing.mesh import Mesh
from recon import losses
from recon.encodings.hash_grid import HashGridConfig
from recon.fields.color import ColorConfig, ColorNetwork
from recon.fields.hash_sdf import HashSDF, HashSDFConfig
from recon.io.dataset import MultiviewDataset
from recon.progress import CancelToken, ProgressEvent, ProgressFn, no_progress
from recon.rendering import (
    OccupancyGrid,
    camera_rays,
    composite,
    march,
    neus_alpha,
    ray_sphere_bounds,
)
from recon.training import (
    checkpoint_due,
    config_fingerprint,
    cosine_lr,
    load_checkpoint,
    make_adam,
    optimizer_step,
    save_checkpoint,
)


def _default_field() -> HashSDFConfig:
    grid = HashGridConfig(n_levels=12, n_features_per_level=2, log2_hashmap_size=17,
                          base_resolution=16, finest_resolution=512)
    return HashSDFConfig(encoding=grid, hidden_dim=32, n_hidden_layers=1, sphere_radius=0.5,
                         start_levels=4, full_levels_at=0.4)


@dataclass(frozen=True)
class NeusConfig:
    """Configuration of :func:`fit_neus`. Lengths are in the normalised frame (unit sphere)."""

    field: HashSDFConfig = dc_field(default_factory=_default_field)
    """The SDF network (its ``hidden_dim`` is also the colour network's feature width)."""
    color: ColorConfig = dc_field(default_factory=ColorConfig)
    """The colour network (``feature_dim`` is taken from ``field``)."""
    steps: int = 1000
    """Optimisation steps."""
    rays_per_batch: int = 1024
    """Random pixels (rays) per step, drawn across all training views."""
    march_step: float = 2.0 / 192
    """Distance between samples along a ray."""
    grid_resolution: int = 64
    """Cells per axis of the occupancy grid over [-1, 1]^3."""
    grid_update_every: int = 16
    """Re-mark the occupancy grid every N steps."""
    grid_band: float = 4.0
    """Occupied band half-width beyond the cell's half diagonal, in units of 1 / s."""
    lr: float = 1e-2
    """Peak Adam learning rate of the networks and the hash table."""
    lr_final: float = 1e-3
    """Learning rate at the end (cosine decay)."""
    warmup: float = 0.02
    """Fraction of training with a linear learning-rate warm-up."""
    lr_variance: float = 2e-3
    """Learning rate of the inverse-sharpness variable (decays with the same schedule)."""
    init_variance: float = 0.3
    """Initial value v of the sharpness variable; s = exp(10 v)."""
    cos_anneal_end: float = 0.1
    """Fraction of training over which NeuS's cosine annealing reaches the true slope."""
    w_eikonal: float = 0.1
    """Weight of the eikonal term."""
    eikonal_uniform: int = 256
    """Uniform points in the unit sphere per step for the eikonal term (besides ray samples)."""
    w_mask: float = 0.1
    """Weight of the mask term (binary cross-entropy of opacity against masks, when given)."""
    background: str = "learned"
    """'learned' (a constant colour initialised from the image borders), 'white' or 'black'."""
    checkpoint_every: int = 100
    """Save a checkpoint every N steps when a checkpoint path is given (0: never)."""
    log_every: int = 10
    """Report progress every N steps."""
    seed: int = 0
    """Seed of initialisation and ray sampling."""

    def __post_init__(self) -> None:
        if self.background not in ("learned", "white", "black"):
            raise ValueError(f"expected background 'learned', 'white' or 'black', got {self.background!r}")
        if not 0 < self.march_step < 1:
            raise ValueError(f"expected 0 < march_step < 1, got {self.march_step}")


class NeusModel(nn.Module):
    """SDF + colour + sharpness + background + occupancy grid, all in the normalised frame."""

    def __init__(self, config: NeusConfig, background: np.ndarray | None = None) -> None:
        super().__init__()
        self.config = config
        self.sdf: HashSDF = config.field.build()
        self.color = ColorNetwork(replace(config.color, feature_dim=config.field.hidden_dim))
        self.variance = nn.Parameter(torch.tensor(config.init_variance))
        bg = {"white": np.ones(3), "black": np.zeros(3)}.get(config.background)
        bg = np.full(3, 0.5) if bg is None and background is None else (bg if bg is not None else background)
        logit = torch.logit(torch.as_tensor(bg, dtype=torch.float32).clamp(0.01, 0.99))
        self.background_logit = nn.Parameter(logit, requires_grad=config.background == "learned")
        self.grid = OccupancyGrid(config.grid_resolution)

    @property
    def inv_s(self) -> Tensor:
        """NeuS's inverse standard deviation s of the logistic density (a scalar tensor)."""
        return torch.exp(10.0 * self.variance).clamp(1e-3, 1e6)

    @property
    def background(self) -> Tensor:
        return torch.sigmoid(self.background_logit)

    def geometry(self, x: Tensor, create_graph: bool) -> tuple[Tensor, Tensor, Tensor]:
        """(n, 3) -> SDF (n,), gradient (n, 3), feature (n, hidden) in one encoding pass."""
        return self.sdf.forward_with_gradient_and_feature(x, create_graph)

    def radiance(self, feature: Tensor, grad: Tensor, view_dir: Tensor) -> Tensor:
        normal = grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        return self.color(feature, normal, view_dir)

    def render(self, origins: Tensor, dirs: Tensor, *, jitter: Tensor | None = None, cos_anneal: float = 1.0,
               train: bool = False) -> dict[str, Tensor]:
        """Render rays (n, 3) from ``origins`` along unit ``dirs`` in the normalised frame.

        Returns ``rgb`` (n, 3), ``opacity`` (n,), ``depth`` (n,) (expected distance of the
        visible surface, weights not renormalised), ``grad`` (m, 3) at the m evaluated samples
        and ``n_samples``. With ``train`` the outputs keep the graph for the eikonal term.
        """
        n = origins.shape[0]
        near, far, _ = ray_sphere_bounds(origins, dirs)
        t, keep, pos = march(origins, dirs, near, far, self.config.march_step, self.grid, jitter)
        rgb = origins.new_zeros(n, 3)
        opacity = origins.new_zeros(n)
        depth = origins.new_zeros(n)
        grad = origins.new_zeros(0, 3)
        m = pos.shape[0]
        if m > 0:
            ray_of = keep.nonzero()[:, 0]
            d = dirs[ray_of]
            sdf, grad, feat = self.geometry(pos, create_graph=train)
            color = self.radiance(feat, grad, d)
            alpha = neus_alpha(sdf, (d * grad).sum(-1), self.config.march_step, self.inv_s, cos_anneal)
            dense = torch.zeros(keep.shape, dtype=alpha.dtype, device=alpha.device).masked_scatter(keep, alpha)
            weights, opacity = composite(dense)
            w = weights[keep]
            rgb = rgb.index_add(0, ray_of, w[:, None] * color)
            depth = depth.index_add(0, ray_of, w * t[keep])
        rgb = rgb + (1.0 - opacity)[:, None] * self.background
        return {"rgb": rgb, "opacity": opacity, "depth": depth, "grad": grad, "n_samples": m}

    def sdf_in_sphere(self, x: Tensor) -> Tensor:
        """The SDF intersected with the unit sphere (max(f, |x| - 1)): closed meshes, no floaters outside."""
        return torch.maximum(self.sdf(x), x.norm(dim=-1) - 1.0)

    @torch.no_grad()
    def update_grid(self) -> None:
        band = self.config.grid_band / self.inv_s.item()
        self.grid.update(self.sdf, band)


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------


def dataset_rays(dataset: MultiviewDataset, device: torch.device) -> tuple[Tensor, Tensor]:
    """Origins and unit directions (N, H, W, 3) float32 of every pixel of ``dataset``."""
    h, w = dataset.hw
    o, d = camera_rays(torch.as_tensor(dataset.c2w, dtype=torch.float64),
                       torch.as_tensor(dataset.intrinsics, dtype=torch.float64), h, w)
    return o.float().to(device), d.float().to(device)


def border_color(dataset: MultiviewDataset) -> np.ndarray:
    """Median colour of the images' one-pixel borders: a guess of a constant background."""
    im = dataset.images
    border = np.concatenate([im[:, 0], im[:, -1], im[:, :, 0], im[:, :, -1]], axis=1).reshape(-1, 3)
    return np.median(border, axis=0)


def _check_dataset(dataset: MultiviewDataset) -> None:
    im = dataset.images
    if im.ndim != 4 or im.shape[-1] != 3 or dataset.n_views < 1:
        raise ValueError(f"expected images of shape (N>=1, H, W, 3), got {im.shape}")
    if dataset.c2w.shape != (dataset.n_views, 4, 4) or dataset.intrinsics.shape != (dataset.n_views, 3, 3):
        raise ValueError(f"expected c2w (N, 4, 4) and intrinsics (N, 3, 3), got {dataset.c2w.shape} "
                         f"and {dataset.intrinsics.shape}")
    if dataset.masks is not None and dataset.masks.shape != im.shape[:3]:
        raise ValueError(f"expected masks of shape {im.shape[:3]}, got {dataset.masks.shape}")


# ------------------------------------------------------------------------------------------------
# Fitting
# ------------------------------------------------------------------------------------------------


def _lr_factor(step: int, cfg: NeusConfig) -> float:
    frac = step / max(1, cfg.steps)
    if cfg.warmup > 0 and frac < cfg.warmup:
        return (step + 1) / max(1.0, cfg.warmup * cfg.steps)
    return cosine_lr(frac, 1.0, cfg.lr_final / cfg.lr)


def fit_neus(
    dataset: MultiviewDataset,
    cfg: NeusConfig = NeusConfig(),
    *,
    device: str | torch.device = "cpu",
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
    checkpoint_path: os.PathLike | None = None,
) -> NeusModel:
    """Fit a :class:`NeusModel` to every view of ``dataset`` (hold views out before calling).

    Progress is reported as stage 'fit' with the loss terms and the batch PSNR (dB). With
    ``checkpoint_path`` and ``cfg.checkpoint_every`` the state is saved periodically and a
    matching checkpoint found there is resumed from. Returns the model in eval mode.
    """
    _check_dataset(dataset)
    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    model = NeusModel(cfg, background=border_color(dataset)).to(device)
    origins, dirs = dataset_rays(dataset, device)
    origins, dirs = origins.reshape(-1, 3), dirs.reshape(-1, 3)
    colors = torch.as_tensor(dataset.images, dtype=torch.float32, device=device).reshape(-1, 3)
    masks = None
    if dataset.masks is not None and cfg.w_mask > 0:
        masks = torch.as_tensor(dataset.masks, dtype=torch.float32, device=device).reshape(-1)

    slow = [model.variance]
    fast = [p for p in model.parameters() if p.requires_grad and p is not model.variance]
    optimizer = make_adam([{"params": fast, "lr": cfg.lr}, {"params": slow, "lr": cfg.lr_variance}], cfg.lr, device)
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    fingerprint = config_fingerprint(cfg)
    ckpt = Path(checkpoint_path) if checkpoint_path else None
    start = load_checkpoint(ckpt, model, optimizer, gen, fingerprint, device)

    n_pix = colors.shape[0]
    model.train()
    for step in range(start, cfg.steps):
        if cancel is not None:
            cancel.raise_if_cancelled()
        frac = step / max(1, cfg.steps)
        model.sdf.set_progress(frac)
        factor = _lr_factor(step, cfg)
        optimizer.param_groups[0]["lr"] = cfg.lr * factor
        optimizer.param_groups[1]["lr"] = cfg.lr_variance * factor
        if step % cfg.grid_update_every == 0:
            model.update_grid()

        idx = torch.randint(0, n_pix, (cfg.rays_per_batch,), generator=gen).to(device)
        jitter = torch.rand(cfg.rays_per_batch, generator=gen).to(device)
        cos_anneal = 1.0 if cfg.cos_anneal_end <= 0 else min(1.0, frac / cfg.cos_anneal_end)
        out = model.render(origins[idx], dirs[idx], jitter=jitter, cos_anneal=cos_anneal, train=True)
        target = colors[idx]
        terms = {"color": losses.color_l1_term(out["rgb"], target)}
        weights = {"color": 1.0}
        grads = out["grad"]
        if cfg.eikonal_uniform > 0:
            u = torch.randn(cfg.eikonal_uniform, 3, generator=gen)
            r = torch.rand(cfg.eikonal_uniform, 1, generator=gen) ** (1.0 / 3.0)
            _, g_u, _ = model.geometry((u / u.norm(dim=-1, keepdim=True) * r).to(device), create_graph=True)
            grads = torch.cat([grads, g_u])
        if grads.shape[0] > 0:
            terms["eikonal"] = losses.eikonal_l2_term(grads)
            weights["eikonal"] = cfg.w_eikonal
        if masks is not None:
            terms["mask"] = losses.mask_bce_term(out["opacity"], masks[idx])
            weights["mask"] = cfg.w_mask
        loss = optimizer_step(optimizer, terms, weights, step)

        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            mse = float(((out["rgb"].detach() - target) ** 2).mean())
            now = {k: v.item() for k, v in terms.items()}
            now.update(total=loss.item(), psnr=-10.0 * math.log10(max(mse, 1e-10)), inv_s=model.inv_s.item(),
                       samples_per_ray=out["n_samples"] / cfg.rays_per_batch, occupied=model.grid.fraction)
            progress(ProgressEvent("fit", done, cfg.steps, now))
        if checkpoint_due(ckpt, cfg.checkpoint_every, done, cfg.steps):
            save_checkpoint(ckpt, model, optimizer, gen, done, fingerprint)

    model.sdf.set_progress(1.0)
    model.update_grid()
    model.eval()
    return model


# ------------------------------------------------------------------------------------------------
# Evaluation and meshing
# ------------------------------------------------------------------------------------------------


def render_views(model: NeusModel, dataset: MultiviewDataset, *, chunk: int = 4096,
                 cancel: CancelToken | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Render every view of ``dataset``: (N, H, W, 3) RGB and (N, H, W) opacity, float32 numpy."""
    _check_dataset(dataset)
    device = next(model.parameters()).device
    n, (h, w) = dataset.n_views, dataset.hw
    origins, dirs = dataset_rays(dataset, device)
    origins, dirs = origins.reshape(-1, 3), dirs.reshape(-1, 3)
    rgb, acc = [], []
    with torch.no_grad():
        for o, d in zip(origins.split(chunk), dirs.split(chunk)):
            if cancel is not None:
                cancel.raise_if_cancelled()
            out = model.render(o, d)
            rgb.append(out["rgb"].clamp(0, 1).cpu())
            acc.append(out["opacity"].cpu())
    return (torch.cat(rgb).reshape(n, h, w, 3).numpy(), torch.cat(acc).reshape(n, h, w).numpy())


def vertex_colors(model: NeusModel, vertices: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """uint8 (V, 3) colours at normalised-frame ``vertices``, seen head-on (view = -normal)."""
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for v in torch.as_tensor(vertices, dtype=torch.float32, device=device).split(chunk):
            _, grad, feat = model.geometry(v, create_graph=False)
            normal = grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-6)
            out.append(model.color(feat, normal, -normal).cpu())
    rgb = torch.cat(out).numpy() if out else np.zeros((0, 3), np.float32)
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def extract_mesh(model: NeusModel, *, resolution: int = 256, device: str | torch.device = "cpu",
                 colors: bool = True) -> Mesh:
    """Zero level set inside the unit sphere, in the normalised frame, with vertex colours."""
    mesh = extract_sdf(model.sdf_in_sphere, resolution=resolution, device=device, chunk_size=1 << 17)
    if colors and not mesh.is_empty:
        mesh.vertex_colors = vertex_colors(model, mesh.vertices)
    return mesh
