"""Volume rendering of signed distance fields (NeuS) and the occupancy grid that skips empty space.

Pure functions over tensors, in the normalised frame where the object lies in the unit sphere:

* :func:`camera_rays` turns pinhole cameras (OpenCV axes) into unit-direction rays;
* :func:`ray_sphere_bounds` clips rays to the unit sphere;
* :func:`march` places samples at a fixed step along every ray (dense ``(rays, steps)`` layout)
  and keeps those inside occupied cells of an :class:`OccupancyGrid`, so the field is evaluated
  only there while compositing stays a cheap dense cumulative product;
* :func:`neus_alpha` is NeuS's discrete opacity (Wang et al., NeurIPS 2021): with
  ``Phi_s(f) = sigmoid(s f)`` the logistic CDF of inverse sharpness ``s``, the opacity of a
  section between two points whose SDF values are ``f_prev`` and ``f_next`` is
  ``max((Phi_s(f_prev) - Phi_s(f_next)) / Phi_s(f_prev), 0)``. The end values are estimated
  from the SDF and its directional derivative at the section's midpoint, so the weights are
  unbiased (peak at the zero crossing) and occlusion-aware;
* :func:`composite` turns opacities into weights ``w_i = alpha_i prod_{j<i} (1 - alpha_j)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def camera_rays(c2w: Tensor, intrinsics: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Rays through every pixel centre of each view.

    c2w: (N, 4, 4) camera-to-world, OpenCV axes (x right, y down, z forward); intrinsics:
    (N, 3, 3) in pixels, pixel centres at +0.5. Returns origins and unit directions, both
    (N, H, W, 3), in the frame of ``c2w``.
    """
    dt, dev = c2w.dtype, c2w.device
    v, u = torch.meshgrid(torch.arange(height, dtype=dt, device=dev) + 0.5,
                          torch.arange(width, dtype=dt, device=dev) + 0.5, indexing="ij")
    pix = torch.stack([u, v, torch.ones_like(u)], dim=-1)  # (H, W, 3)
    cam = torch.einsum("nij,hwj->nhwi", torch.linalg.inv(intrinsics), pix)
    dirs = torch.einsum("nij,nhwj->nhwi", c2w[:, :3, :3], cam)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    origins = c2w[:, None, None, :3, 3].expand_as(dirs)
    return origins.contiguous(), dirs.contiguous()


def ray_sphere_bounds(origins: Tensor, dirs: Tensor, radius: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    """Entry and exit distances of unit-direction rays through the sphere ``|x| = radius``.

    Returns ``(near, far, hit)`` of shape (n,); ``near`` is clamped at 0 (origins inside the
    sphere start there) and rays that miss have ``near == far == 0`` and ``hit`` False.
    """
    b = (origins * dirs).sum(-1)
    c = (origins * origins).sum(-1) - radius * radius
    disc = b * b - c
    hit = disc > 0
    root = disc.clamp_min(0).sqrt()
    near = (-b - root).clamp_min(0)
    far = (-b + root).clamp_min(0)
    hit = hit & (far > near)
    zero = torch.zeros_like(near)
    return torch.where(hit, near, zero), torch.where(hit, far, zero), hit


def neus_alpha(sdf: Tensor, cos: Tensor, step: float | Tensor, inv_s: Tensor, cos_anneal: float = 1.0) -> Tensor:
    """NeuS opacity of sections of length ``step`` centred on samples with SDF ``sdf``.

    ``cos`` is the directional derivative ``dot(ray direction, grad f)``. ``cos_anneal`` in
    [0, 1] blends NeuS's early-training slope ``relu(0.5 - 0.5 cos)`` (which lets gradients
    reach surfaces seen from behind) into the true ``relu(-cos)``; at 1 the estimate is exact
    for a planar SDF. ``inv_s`` is the inverse standard deviation ``s`` of the logistic density.
    """
    slope = -(F.relu(0.5 - 0.5 * cos) * (1.0 - cos_anneal) + F.relu(-cos) * cos_anneal)
    half = slope * (0.5 * step)
    prev_cdf = torch.sigmoid((sdf - half) * inv_s)
    next_cdf = torch.sigmoid((sdf + half) * inv_s)
    return ((prev_cdf - next_cdf + 1e-5) / (prev_cdf + 1e-5)).clamp(0.0, 1.0)


def composite(alpha: Tensor) -> tuple[Tensor, Tensor]:
    """(rays, samples) opacities, front to back -> (weights (rays, samples), opacity (rays,)).

    Transmittance is an exclusive cumulative product, taken in log space so that it stays
    differentiable where an opacity is exactly 1 (clamped just below).
    """
    log_t = torch.log1p(-alpha.clamp(max=1.0 - 1e-6))
    trans = torch.exp(torch.cumsum(log_t, dim=-1) - log_t)
    weights = alpha * trans
    return weights, weights.sum(-1)


class OccupancyGrid(nn.Module):
    """A boolean ``res^3`` grid over the cube [-1, 1]^3 marking cells that may hold surface.

    A cell is occupied when ``|f|`` at its centre is below a threshold that covers the cell's
    half diagonal plus the width of the current NeuS density (a few ``1 / s``): outside that
    band every section's opacity is negligible, so samples there are skipped. Cells outside the
    unit sphere (plus half a diagonal) are never occupied. The grid is a buffer, so it is saved
    and restored with the model's state.
    """

    def __init__(self, resolution: int = 64) -> None:
        super().__init__()
        if resolution < 2:
            raise ValueError(f"expected resolution >= 2, got {resolution}")
        self.resolution = int(resolution)
        c = (torch.arange(resolution, dtype=torch.float32) + 0.5) * (2.0 / resolution) - 1.0
        centres = torch.stack(torch.meshgrid(c, c, c, indexing="ij"), -1).reshape(-1, 3)
        self.register_buffer("centres", centres, persistent=False)
        in_sphere = centres.norm(dim=-1) <= 1.0 + self.half_diagonal
        self.register_buffer("in_sphere", in_sphere, persistent=False)
        self.register_buffer("occupied", in_sphere.clone())

    @property
    def cell(self) -> float:
        """Edge length of a cell (normalised units)."""
        return 2.0 / self.resolution

    @property
    def half_diagonal(self) -> float:
        return 0.5 * math.sqrt(3.0) * self.cell

    @property
    def fraction(self) -> float:
        """Fraction of cells occupied."""
        return float(self.occupied.float().mean())

    @torch.no_grad()
    def update(self, sdf_fn, band: float, chunk: int = 1 << 17) -> None:
        """Re-mark cells from ``|sdf_fn(centre)| <= half_diagonal + band`` (inside the sphere).

        Only cells in the sphere are evaluated. ``band`` is the extra width in normalised units
        (callers tie it to the current ``1 / s``) and also absorbs a field that is not exactly
        a distance.
        """
        idx = self.in_sphere.nonzero().squeeze(1)
        vals = torch.cat([sdf_fn(self.centres[i]) for i in idx.split(chunk)])
        occ = torch.zeros_like(self.occupied)
        occ[idx] = vals.abs() <= self.half_diagonal + band
        self.occupied.copy_(occ)

    def lookup(self, x: Tensor) -> Tensor:
        """(..., 3) points -> (...,) bool, True inside an occupied cell (False outside the cube)."""
        inside = ((x >= -1.0) & (x < 1.0)).all(-1)
        return self.lookup_clamped(x) & inside

    def lookup_clamped(self, x: Tensor) -> Tensor:
        """Like :meth:`lookup`, but points outside the cube read the nearest border cell.

        For callers that mask such points anyway (the marcher's samples beyond ``far``); int32
        cell arithmetic on clamped coordinates is 2-3x faster than the checked lookup.
        """
        r = self.resolution
        ijk = ((x + 1.0) * (0.5 * r)).clamp_(0, r - 1).to(torch.int32)  # truncation = floor here
        flat = (ijk[..., 0] * r + ijk[..., 1]) * r + ijk[..., 2]
        return self.occupied[flat]


def march(origins: Tensor, dirs: Tensor, near: Tensor, far: Tensor, step: float, grid: OccupancyGrid | None,
          jitter: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Fixed-step samples along rays, kept where the occupancy grid is set.

    Samples sit at ``t_k = near + (k + u) * step`` for ``k = 0 .. ceil(2 / step)`` while
    ``t_k < far``, with ``u`` the per-ray ``jitter`` in [0, 1) (0.5 when None). Returns
    ``t`` (rays, K) for every slot, the ``keep`` mask (rays, K) and the kept positions
    (m, 3) in row-major order of ``keep``. All rays share K slots, so compositing is dense.
    """
    k = math.ceil(2.0 / step) + 1
    u = torch.full_like(near, 0.5) if jitter is None else jitter
    t = near[:, None] + (torch.arange(k, dtype=near.dtype, device=near.device)[None, :] + u[:, None]) * step
    keep = t < far[:, None]
    pos = origins[:, None, :] + t[..., None] * dirs[:, None, :]
    if grid is not None:
        keep &= grid.lookup_clamped(pos)  # slots beyond ``far`` are already masked
    return t, keep, pos[keep]
