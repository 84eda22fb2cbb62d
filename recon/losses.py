"""Every loss term of the fitters: distance fields fitted to points (DiGS / SIREN / IGR family,
and the unsigned-distance terms of the UDF fit) and to posed images (NeuS: colour, squared
eikonal and mask terms, at the end of the file).

All terms are means over their sample sets, so their weights do not depend on batch size; the
gradient terms give 0 on an empty set (a fitter may select no sample in a step). Distances are
in the normalised cube's units.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import Tensor


def surface_term(sdf_on_surface: Tensor) -> Tensor:
    """Mean |f| on the input points: the surface passes through them."""
    return sdf_on_surface.abs().mean()


def off_surface_term(sdf_off_surface: Tensor, alpha: float = 100.0) -> Tensor:
    """Mean exp(-alpha |f|) at space samples: keeps spurious zero crossings away (SIREN, DiGS)."""
    return torch.exp(-alpha * sdf_off_surface.abs()).mean()


def eikonal_term(grad: Tensor) -> Tensor:
    """Mean | ||grad f|| - 1 |: the field is a distance function (L1 form, as DiGS)."""
    if grad.shape[0] == 0:
        return grad.new_zeros(())
    return (grad.norm(dim=-1) - 1.0).abs().mean()


def normal_term(grad: Tensor, normals: Tensor, oriented: bool) -> Tensor:
    """Alignment of grad f with the given normals at the input points.

    ``oriented``: 1 - cos, which also fixes the sign (inside/outside); otherwise 1 - |cos|,
    which only aligns the tangent plane and suits normals of unknown orientation (e.g. PCA).
    """
    cos = torch.nn.functional.cosine_similarity(grad, normals, dim=-1, eps=1e-8)
    return (1.0 - (cos if oriented else cos.abs())).mean()


def laplacian_fd(field: Callable[[Tensor], Tensor], x: Tensor, h: float) -> Tensor:
    """Finite-difference Laplacian (the divergence of grad f) at ``x`` with step ``h``.

    A hash grid interpolates trilinearly, so its second derivatives along each axis vanish
    inside every cell and the analytic divergence would ignore it. Central differences over
    a step of about one finest-level cell see the grid's curvature; the stencil costs 7
    evaluations a point and is differentiable with respect to the parameters with only
    first-order backward passes.
    """
    n = x.shape[0]
    offsets = torch.eye(3, dtype=x.dtype, device=x.device) * h
    stencil = torch.cat([x, (x[:, None, :] + offsets).reshape(-1, 3), (x[:, None, :] - offsets).reshape(-1, 3)])
    f = field(stencil)
    f0, fp, fm = f[:n], f[n : 4 * n].view(n, 3), f[4 * n :].view(n, 3)
    return ((fp + fm).sum(dim=1) - 6.0 * f0) / (h * h)


def divergence_term(laplacian: Tensor, clamp: tuple[float, float] = (0.1, 50.0)) -> Tensor:
    """DiGS's divergence penalty: mean of |div grad f| clamped into ``clamp``."""
    return laplacian.abs().clamp(*clamp).mean()


def distance_term(f: Tensor, target: Tensor) -> Tensor:
    """Mean |f - d|: regression of the field onto target distances d (signed when f is).

    The UDF fit's distance regression (d: distance to the nearest input point, or to its
    tangent plane), DiGS's exterior anchor (d > 0 on the cube's faces, outside the object) and
    the near-surface term with oriented normals (d: signed distance to the tangent plane).
    """
    return (f - target).abs().mean()


def unsigned_distance_term(sdf: Tensor, distance: Tensor) -> Tensor:
    """Mean | |f| - d |, with d >= 0 the distance of each sample to the input (the surface's side
    unknown, as with unoriented normals): only the magnitude of a signed field is regressed."""
    return (sdf.abs() - distance).abs().mean()


def direction_term(grad: Tensor, direction: Tensor) -> Tensor:
    """Mean 1 - cos(grad f, u): the gradient points along the unit direction u.

    For a UDF, u points away from the nearest surface point, which is where an exact UDF's
    gradient points and what gradient-based extraction relies on.
    """
    if grad.shape[0] == 0:
        return grad.new_zeros(())
    return (1.0 - torch.nn.functional.cosine_similarity(grad, direction, dim=-1, eps=1e-8)).mean()


def sign_term(raw: Tensor) -> Tensor:
    """Mean relu(-s) of a network's raw output s where the field is f = |s|: keeps s >= 0, since
    every sign change of s is a spurious zero sheet of f."""
    return torch.relu(-raw).mean()


def anneal(fraction: float, knots: tuple[tuple[float, float], ...]) -> float:
    """Piecewise-linear weight over training progress, given ``(fraction, weight)`` knots.

    ``((0.0, 1e2), (0.2, 1e2), (0.4, 0.0))``: 100 until 20% of training, down linearly to 0 at
    40%, then 0 (DiGS's linear divergence decay). Constant before the first knot and after
    the last.
    """
    if not knots:
        raise ValueError("expected at least one (fraction, weight) knot, got none")
    if any(b[0] < a[0] for a, b in itertools.pairwise(knots)):
        raise ValueError(f"expected knots sorted by fraction, got {knots}")
    if fraction <= knots[0][0]:
        return float(knots[0][1])
    for (t0, w0), (t1, w1) in itertools.pairwise(knots):
        if fraction <= t1:
            return float(w1 if t1 == t0 else w0 + (w1 - w0) * (fraction - t0) / (t1 - t0))
    return float(knots[-1][1])


# ------------------------------------------------------------------------------------------------
# Multi-view (NeuS) terms: colours and opacities of rendered rays against pixels and masks.
# ------------------------------------------------------------------------------------------------


def color_l1_term(rgb: Tensor, target: Tensor) -> Tensor:
    """Mean absolute colour error of rendered rays (NeuS's photometric loss), colours in [0, 1]."""
    return (rgb - target).abs().mean()


def eikonal_l2_term(grad: Tensor) -> Tensor:
    """Mean (||grad f|| - 1)^2, the squared eikonal form of IGR and NeuS."""
    return ((grad.norm(dim=-1) - 1.0) ** 2).mean()


def normal_smoothness_term(grad_a: Tensor, grad_b: Tensor) -> Tensor:
    """Mean squared difference of the unit normals at paired points (a point and a neighbour):
    small where the surface is locally flat, so bumps that only copy texture cost."""
    na = torch.nn.functional.normalize(grad_a, dim=-1, eps=1e-6)
    nb = torch.nn.functional.normalize(grad_b, dim=-1, eps=1e-6)
    return ((na - nb) ** 2).sum(-1).mean()


def mask_bce_term(opacity: Tensor, mask: Tensor, eps: float = 1e-3) -> Tensor:
    """Binary cross-entropy of a ray's accumulated opacity against the mask value of its pixel.

    Opacities are clamped into [eps, 1 - eps] so that a fully transparent or opaque ray keeps a
    finite loss and gradient.
    """
    return torch.nn.functional.binary_cross_entropy(opacity.clamp(eps, 1.0 - eps), mask)
