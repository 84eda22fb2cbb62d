"""NeuS2-style surface fitting from posed images, CPU first.

The model (:class:`NeusModel`) is a hash-grid SDF (:class:`recon.fields.hash_sdf.HashSDF`,
analytic gradient through the C++ kernel's Jacobian), a colour network fed with the SDF
network's last hidden layer, the normal and the SH-encoded view direction, NeuS's single
learned inverse sharpness ``s``, a constant learned background colour and an occupancy grid.

Per step: a batch of random pixels across all training views is turned into rays, clipped to
the unit sphere and marched at a fixed step; only samples inside occupied cells of the grid are
evaluated (one fused pass gives SDF, gradient and feature). NeuS opacities are composited front
to back; the loss is L1 on colour, the eikonal term on the ray samples and a few uniform points,
and, when masks exist, binary cross-entropy of the accumulated opacity against the mask (a
normal-smoothness term is a setting, off in every preset). Hash levels are switched on coarse
to fine, the learning rate warms up then decays (cosine), Adam is fused, and the grid is
re-marked every few steps from ``|f|`` against a band that narrows as ``s`` grows. The mesh is
the zero level set (marching cubes inside the unit sphere), coloured by the colour network
looking along the negative normal.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from dataclasses import field as dc_field

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.functional import normalize

from meshing.marching_cubes import extract_sdf
from meshing.mesh import Mesh
from recon import losses
from recon.encodings.hash_grid import HashGridConfig
from recon.fields.background import BackgroundConfig, render_background
from recon.fields.color import ColorConfig, ColorNetwork
from recon.fields.hash_sdf import HashSDF, HashSDFConfig
from recon.fitting import Fitter, ParamGroup, Schedule, fit
from recon.io.dataset import MultiviewDataset
from recon.progress import CancelToken, ProgressFn, no_progress
from recon.rendering import (
    OccupancyGrid,
    camera_rays,
    composite,
    march,
    neus_alpha,
    ray_sphere_bounds,
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
    """The colour network (``feature_dim`` is taken from ``field``, plus ``appearance``'s features)."""
    appearance: HashGridConfig | None = None
    """A hash grid of its own for the colour network (its features beside the SDF network's), so
    that texture need not pass through the geometry's table; None: the SDF's feature only."""
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
    early_max_s: float = 0.0
    """When positive, ``s`` is held at most this until ``early_until`` of training. A wide density
    lets the foreground's opacity reach a few ``1 / s`` beyond its current surface, so the SDF can
    grow into parts of the object outside its first sphere before the background field paints
    them (0: no cap)."""
    early_until: float = 0.15
    """Fraction of training during which ``early_max_s`` holds."""
    cos_anneal_end: float = 0.1
    """Fraction of training over which NeuS's cosine annealing reaches the true slope."""
    w_eikonal: float = 0.1
    """Weight of the eikonal term."""
    w_smooth: float = 0.0
    """Weight of the normal-smoothness term: the unit normals at the ``smooth_points`` ray samples
    of highest weight against those a random ``smooth_radius`` away (0: off)."""
    smooth_points: int = 512
    """Samples per step of the normal-smoothness term."""
    smooth_radius: float = 0.01
    """Distance (normalised frame) to the neighbour of each sample of the normal-smoothness term."""
    eikonal_uniform: int = 256
    """Uniform points in the unit sphere per step for the eikonal term (besides ray samples)."""
    w_mask: float = 0.1
    """Weight of the mask term (binary cross-entropy of opacity against masks, when given)."""
    background: str = "learned"
    """Constant colour behind the foreground when there is no background field: 'learned'
    (initialised from the image borders), 'white' or 'black'."""
    background_model: str = "auto"
    """'grid': a contracted hash-grid radiance field outside the unit sphere
    (:mod:`recon.fields.background`); 'none': the constant colour only; 'auto': 'grid' unless the
    views have masks and what the masks leave out is one colour (:func:`uniform_background`)."""
    background_field: BackgroundConfig = dc_field(default_factory=BackgroundConfig)
    """The background field, when used."""
    ball_growth: float = 1.0
    """With the background field and the region from the views' overlap: the foreground ball's
    radius grows by this factor towards the cameras, its point farthest from them kept
    (:func:`recon.region.grown_toward_cameras`), and the first sphere of the SDF keeps its size
    (1: the overlap's ball)."""
    grow_min_pull: float = 0.25
    """The ball grows only when the mean unit direction from its centre to the training cameras is
    at least this long: views from one side (DTU's arc: 0.82), not a ring around the object (the
    synthetic turntable 12-60 degrees above the ground: 0.61; cameras all around: about 0)."""
    grown_background: BackgroundConfig | None = None
    """The background field used instead of ``background_field`` when the ball grew (None: the
    same). A coarse background early (``start_levels``) cannot paint the parts of the object the
    grown ball now holds (DTU's roofs) view by view before the foreground has taken them."""
    random_background: bool = False
    """Training only, with the background field: a random colour per ray at infinity (the last
    background sample) instead of the field's."""
    checkpoint_every: int = 100
    """Save a checkpoint every N steps when a checkpoint path is given (0: never)."""
    log_every: int = 10
    """Report progress every N steps."""
    seed: int = 0
    """Seed of initialisation and ray sampling."""

    def __post_init__(self) -> None:
        if self.background not in ("learned", "white", "black"):
            raise ValueError(f"expected background 'learned', 'white' or 'black', got {self.background!r}")
        if self.background_model not in ("auto", "grid", "none"):
            raise ValueError(f"expected background_model 'auto', 'grid' or 'none', got {self.background_model!r}")
        if self.early_max_s < 0 or not 0 <= self.early_until <= 1:
            raise ValueError(f"expected early_max_s >= 0 and 0 <= early_until <= 1, got {self.early_max_s} "
                             f"and {self.early_until}")
        if self.w_smooth < 0 or self.smooth_points < 1 or self.smooth_radius <= 0:
            raise ValueError(f"expected w_smooth >= 0, smooth_points >= 1 and smooth_radius > 0, got {self.w_smooth}, "
                             f"{self.smooth_points} and {self.smooth_radius}")
        if self.ball_growth < 1.0:
            raise ValueError(f"expected ball_growth >= 1, got {self.ball_growth}")
        if not 0.0 <= self.grow_min_pull <= 1.0:
            raise ValueError(f"expected 0 <= grow_min_pull <= 1, got {self.grow_min_pull}")
        if not 0 < self.march_step < 1:
            raise ValueError(f"expected 0 < march_step < 1, got {self.march_step}")


class NeusModel(nn.Module):
    """SDF + colour + sharpness + background + occupancy grid, all in the normalised frame."""

    S_LIMIT = 1e6
    """Upper bound of the sharpness ``s`` outside the early cap."""

    def __init__(self, config: NeusConfig, background: np.ndarray | None = None,
                 background_field: bool = False) -> None:
        super().__init__()
        self.config = config
        self.sdf: HashSDF = config.field.build()
        self.appearance = config.appearance.build() if config.appearance is not None else None
        extra = 0 if self.appearance is None else self.appearance.out_dim
        self.color = ColorNetwork(replace(config.color, feature_dim=config.field.hidden_dim + extra))
        self.variance = nn.Parameter(torch.tensor(config.init_variance))
        bg = {"white": np.ones(3), "black": np.zeros(3)}.get(config.background)
        bg = np.full(3, 0.5) if bg is None and background is None else (bg if bg is not None else background)
        logit = torch.logit(torch.as_tensor(bg, dtype=torch.float32).clamp(0.01, 0.99))
        self.background_logit = nn.Parameter(logit, requires_grad=config.background == "learned")
        self.grid = OccupancyGrid(config.grid_resolution)
        self.background_field = config.background_field.build() if background_field else None
        self.max_s = self.S_LIMIT
        """Upper bound of ``inv_s`` now (``early_max_s`` early in training, see :meth:`set_progress`)."""

    @property
    def inv_s(self) -> Tensor:
        """NeuS's inverse standard deviation s of the logistic density (a scalar tensor)."""
        return torch.exp(10.0 * self.variance).clamp(1e-3, self.max_s)

    @property
    def background(self) -> Tensor:
        return torch.sigmoid(self.background_logit)

    def geometry(self, x: Tensor, create_graph: bool) -> tuple[Tensor, Tensor, Tensor]:
        """(n, 3) -> SDF (n,), gradient (n, 3), feature (n, hidden) in one encoding pass."""
        return self.sdf.forward_with_gradient_and_feature(x, create_graph)

    def radiance(self, x: Tensor, feature: Tensor, grad: Tensor, view_dir: Tensor) -> Tensor:
        """Colour at points ``x`` with the SDF network's ``feature`` and gradient, seen along ``view_dir``."""
        normal = normalize(grad, dim=-1, eps=1e-6)
        if self.appearance is not None:
            feature = torch.cat([feature, self.appearance(x)], dim=-1)
        return self.color(feature, normal, view_dir)

    def render(self, origins: Tensor, dirs: Tensor, *, jitter: Tensor | None = None, cos_anneal: float = 1.0,
               train: bool = False) -> dict[str, Tensor]:
        """Render rays (n, 3) from ``origins`` along unit ``dirs`` in the normalised frame.

        Returns ``rgb`` (n, 3), ``opacity`` (n,), ``depth`` (n,) (expected distance of the
        visible surface, weights not renormalised), ``grad`` (m, 3) at the m evaluated samples,
        ``n_samples``, ``background`` (n, 3) (the colour behind the foreground) and, unless
        ``train``, ``normal`` (n, 3) (weighted unit normals; zero where nothing is hit). With
        ``train`` the outputs keep the graph for the eikonal term, and ``points`` (m, 3) and
        ``point_weights`` (m,) (detached) give the evaluated samples and their weights.
        """
        n = origins.shape[0]
        near, far, hit = ray_sphere_bounds(origins, dirs)
        t, keep, pos = march(origins, dirs, near, far, self.config.march_step, self.grid, jitter)
        rgb = origins.new_zeros(n, 3)
        opacity = origins.new_zeros(n)
        depth = origins.new_zeros(n)
        normal = origins.new_zeros(n, 3)
        grad = origins.new_zeros(0, 3)
        m = pos.shape[0]
        if m > 0:
            ray_of = keep.nonzero()[:, 0]
            d = dirs[ray_of]
            sdf, grad, feat = self.geometry(pos, create_graph=train)
            color = self.radiance(pos, feat, grad, d)
            alpha = neus_alpha(sdf, (d * grad).sum(-1), self.config.march_step, self.inv_s, cos_anneal)
            dense = torch.zeros(keep.shape, dtype=alpha.dtype, device=alpha.device).masked_scatter(keep, alpha)
            weights, opacity = composite(dense)
            w = weights[keep]
            rgb = rgb.index_add(0, ray_of, w[:, None] * color)
            depth = depth.index_add(0, ray_of, w * t[keep])
            if not train:  # the rendered normal map (unit normals, opacity-weighted), for people
                unit = normalize(grad, dim=-1, eps=1e-6)
                normal = normal.index_add(0, ray_of, w[:, None] * unit)
        if self.background_field is not None:
            # Behind the sphere for rays through it, from the closest approach on for the others.
            t_start = torch.where(hit, far, (-(origins * dirs).sum(-1)).clamp_min(0))
            far = torch.rand(n, 3, device=origins.device) if train and self.config.random_background else None
            behind = render_background(self.background_field, origins, dirs, t_start, jitter, far)
        else:
            behind = self.background.expand(n, 3)
        rgb = rgb + (1.0 - opacity)[:, None] * behind
        out = {"rgb": rgb, "opacity": opacity, "depth": depth, "grad": grad, "n_samples": m, "background": behind,
               "normal": normal}
        if train and m > 0:
            out["points"], out["point_weights"] = pos, w.detach()
        return out

    def set_progress(self, fraction: float) -> None:
        """Training progress in [0, 1]: the SDF's coarse-to-fine levels (and the appearance grid's,
        in the same proportion), the background field's and the early cap on the sharpness ``s``."""
        self.sdf.set_progress(fraction)
        if self.background_field is not None:
            self.background_field.set_progress(fraction)
        cfg = self.config
        self.max_s = cfg.early_max_s if cfg.early_max_s > 0 and fraction < cfg.early_until else self.S_LIMIT
        if self.appearance is not None:
            n, share = self.appearance.n_levels, self.sdf.active_levels / self.sdf.encoding.n_levels
            self.appearance.set_active_levels(max(1, round(share * n)))

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


def uniform_background(dataset: MultiviewDataset, tolerance: float = 0.02, sample: int = 200_000) -> bool:
    """Whether what the masks leave out is one colour (a studio backdrop, RGBA composited on a
    colour): the mean absolute deviation of up to ``sample`` such pixels from their median colour
    is below ``tolerance``. False without masks (the views then show everything)."""
    if dataset.masks is None:
        return False
    index = np.flatnonzero(dataset.masks.ravel() < 0.5)  # pixels left out, gathered after sampling
    if index.size == 0:
        return True
    if index.size > sample:
        index = index[np.linspace(0, index.size - 1, sample).astype(np.int64)]
    outside = dataset.images.reshape(-1, 3)[index]
    return float(np.abs(outside - np.median(outside, axis=0)).mean()) < tolerance


def uses_background_field(config: NeusConfig, dataset: MultiviewDataset) -> bool:
    """Whether the fit of ``dataset`` models the background with a field (see ``background_model``):
    'auto' uses it unless the masks leave out only one colour (:func:`uniform_background`)."""
    if config.background_model == "auto":
        return not uniform_background(dataset)
    return config.background_model == "grid"


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


class NeusFitter(Fitter):
    """The NeuS fit of :func:`fit_neus`: rays of every training pixel, the sharpness variable in a
    slow parameter group, the occupancy grid re-marked every few steps, and its loss terms."""

    def __init__(self, dataset: MultiviewDataset, config: NeusConfig) -> None:
        _check_dataset(dataset)
        self.dataset, self.config = dataset, config
        self.schedule = Schedule(steps=config.steps, seed=config.seed, checkpoint_every=config.checkpoint_every,
                                 log_every=config.log_every, lr=config.lr, lr_final=config.lr_final,
                                 warmup=config.warmup)

    def prepare(self, rng: np.random.Generator, device: torch.device) -> None:
        origins, dirs = dataset_rays(self.dataset, device)
        self.origins, self.dirs = origins.reshape(-1, 3), dirs.reshape(-1, 3)
        self.colors = torch.as_tensor(self.dataset.images, dtype=torch.float32, device=device).reshape(-1, 3)
        self.masks = None
        if self.dataset.masks is not None and self.config.w_mask > 0:
            self.masks = torch.as_tensor(self.dataset.masks, dtype=torch.float32, device=device).reshape(-1)
        self.device = device

    def build(self) -> NeusModel:
        return NeusModel(self.config, background=border_color(self.dataset),
                         background_field=uses_background_field(self.config, self.dataset))

    def param_groups(self, model: NeusModel) -> list[ParamGroup]:
        cfg = self.config
        fast = [p for p in model.parameters() if p.requires_grad and p is not model.variance]
        # The sharpness decays on the same schedule from its own, lower rate.
        return [ParamGroup(fast, cfg.lr, cfg.lr_final),
                ParamGroup([model.variance], cfg.lr_variance, cfg.lr_variance * cfg.lr_final / cfg.lr)]

    def begin_step(self, model: NeusModel, step: int, fraction: float) -> None:
        model.set_progress(fraction)
        if step % self.config.grid_update_every == 0:
            model.update_grid()

    def loss_terms(self, model: NeusModel, gen: torch.Generator, fraction: float
                   ) -> tuple[dict[str, Tensor], dict[str, float]]:
        cfg, device = self.config, self.device
        idx = torch.randint(0, self.colors.shape[0], (cfg.rays_per_batch,), generator=gen).to(device)
        jitter = torch.rand(cfg.rays_per_batch, generator=gen).to(device)
        cos_anneal = 1.0 if cfg.cos_anneal_end <= 0 else min(1.0, fraction / cfg.cos_anneal_end)
        out = model.render(self.origins[idx], self.dirs[idx], jitter=jitter, cos_anneal=cos_anneal, train=True)
        target = self.colors[idx]
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
        if cfg.w_smooth > 0 and "points" in out:
            k = min(cfg.smooth_points, out["points"].shape[0])
            top = out["point_weights"].topk(k).indices
            shift = torch.randn(k, 3, generator=gen).to(device) * cfg.smooth_radius
            _, g_near, _ = model.geometry(out["points"][top].detach() + shift, create_graph=True)
            terms["smooth"] = losses.normal_smoothness_term(out["grad"][top], g_near)
            weights["smooth"] = cfg.w_smooth
        if self.masks is not None:
            terms["mask"] = losses.mask_bce_term(out["opacity"], self.masks[idx])
            weights["mask"] = cfg.w_mask
        self._last = (model, out, target)
        return terms, weights

    def report(self, terms: dict[str, Tensor], loss: Tensor) -> dict[str, float]:
        """The terms and total, the batch PSNR (dB), the sharpness, samples per ray, grid occupancy."""
        model, out, target = self._last
        now = super().report(terms, loss)
        mse = float(((out["rgb"].detach() - target) ** 2).mean())
        now.update(psnr=-10.0 * math.log10(max(mse, 1e-10)), inv_s=model.inv_s.item(),
                   samples_per_ray=out["n_samples"] / self.config.rays_per_batch, occupied=model.grid.fraction)
        return now

    def end(self, model: NeusModel) -> None:
        model.set_progress(1.0)
        model.update_grid()
        self._last = None


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

    Runs in the shared loop of :mod:`recon.fitting`; progress (stage 'fit') carries the loss
    terms and the batch PSNR (dB). Returns the model in eval mode.
    """
    return fit(NeusFitter(dataset, cfg), device=device, progress=progress, cancel=cancel,
               checkpoint_path=checkpoint_path)


# ------------------------------------------------------------------------------------------------
# Evaluation and meshing
# ------------------------------------------------------------------------------------------------


def render_views(model: NeusModel, dataset: MultiviewDataset, *, chunk: int = 4096,
                 cancel: CancelToken | None = None, normals: bool = False):
    """Render every view of ``dataset``: (N, H, W, 3) RGB and (N, H, W) opacity, float32 numpy;
    with ``normals`` also the (N, H, W, 3) normal maps (normalised frame, opacity-weighted)."""
    _check_dataset(dataset)
    device = next(model.parameters()).device
    n, (h, w) = dataset.n_views, dataset.hw
    origins, dirs = dataset_rays(dataset, device)
    origins, dirs = origins.reshape(-1, 3), dirs.reshape(-1, 3)
    rgb, acc, nrm = [], [], []
    with torch.no_grad():
        for o, d in zip(origins.split(chunk), dirs.split(chunk)):
            if cancel is not None:
                cancel.raise_if_cancelled()
            out = model.render(o, d)
            rgb.append(out["rgb"].clamp(0, 1).cpu())
            acc.append(out["opacity"].cpu())
            nrm.append(out["normal"].cpu())
    images = (torch.cat(rgb).reshape(n, h, w, 3).numpy(), torch.cat(acc).reshape(n, h, w).numpy())
    return (*images, torch.cat(nrm).reshape(n, h, w, 3).numpy()) if normals else images


def views_image(photos: np.ndarray, renders: np.ndarray, normals: np.ndarray, opacity: np.ndarray,
                max_rows: int = 8, max_width: int = 1536) -> np.ndarray:
    """One uint8 image with a row per view: the photo, its rendering and the rendered normals
    (``(n + 1) / 2`` as RGB over white where the opacity is low). Rows beyond ``max_rows`` are
    left out (evenly chosen); the sheet is shrunk (by whole pixels) to at most ``max_width``."""
    n = photos.shape[0]
    pick = np.unique(np.linspace(0, n - 1, min(n, max_rows)).round().astype(int))
    a = opacity[pick][..., None]
    shaded = ((normals[pick] * 0.5 + 0.5) * a + (1.0 - a)).clip(0, 1)
    rows = [np.concatenate([photos[i], renders[i], shaded[k]], axis=1) for k, i in enumerate(pick)]
    sheet = np.concatenate(rows, axis=0)
    step = max(1, math.ceil(sheet.shape[1] / max_width))
    return np.round(sheet[::step, ::step] * 255.0).clip(0, 255).astype(np.uint8)


def vertex_colors(model: NeusModel, vertices: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """uint8 (V, 3) colours at normalised-frame ``vertices``, seen head-on (view = -normal)."""
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for v in torch.as_tensor(vertices, dtype=torch.float32, device=device).split(chunk):
            _, grad, feat = model.geometry(v, create_graph=False)
            normal = normalize(grad, dim=-1, eps=1e-6)
            out.append(model.radiance(v, feat, grad, -normal).cpu())
    rgb = torch.cat(out).numpy() if out else np.zeros((0, 3), np.float32)
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def extract_mesh(model: NeusModel, *, resolution: int = 256, device: str | torch.device = "cpu",
                 colors: bool = True, box: tuple[np.ndarray, np.ndarray] | None = None) -> Mesh:
    """Zero level set inside the unit sphere, in the normalised frame, with vertex colours.

    ``resolution`` is in cells across the cube [-1, 1]^3. With ``box`` (lo, hi), only the part
    of the cube inside that box is meshed (at the same cell size); surfaces it cuts stay open.
    """
    bounds = ((-1.0,) * 3, (1.0,) * 3)
    res = resolution
    if box is not None:
        lo, hi = np.maximum(np.asarray(box[0], float), -1.0), np.minimum(np.asarray(box[1], float), 1.0)
        if not (lo < hi).all():
            return Mesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))
        bounds = (tuple(lo), tuple(hi))
        res = max(16, math.ceil(resolution * float((hi - lo).max()) / 2.0))
    mesh = extract_sdf(model.sdf_in_sphere, bounds=bounds, resolution=res, device=device, chunk_size=1 << 17)
    if colors and not mesh.is_empty:
        mesh.vertex_colors = vertex_colors(model, mesh.vertices)
    return mesh
