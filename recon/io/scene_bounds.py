"""Choosing the unit sphere of a posed image set when its format does not say.

Three estimates, tried in this order by ``normalize_views(mode="auto")``:

* ``"masks"`` -- visual hull: a voxel grid is carved by the masks of up to 40 views (a
  voxel survives when it projects into the object in all but 5% of the views that see it --
  a few wrong masks must not cut the object -- and at least half of the views, and two, see
  it: points near one camera are outside most others);
  first a 32^3 grid around the cameras' common target, then a 64^3 grid on the survivors'
  box padded by two coarse cells. The sphere is the bounding sphere of the surviving voxels,
  padded by 10%. Masks are dilated by two pixels first so that thin parts are not carved
  away by sampling.
* ``"sparse_points"`` -- the points of a structure-from-motion model, trimmed to the 2nd-98th
  percentile on each axis against stray points; bounding sphere of the rest, padded 10%.
* ``"cameras"`` -- the point closest (least squares) to every optical axis; the radius is the
  one that fills the smaller field of view from the median camera distance, padded 10%, kept
  inside the nearest camera.

The sphere is then mapped to the unit sphere by a uniform scale and translation: a
``Normalization`` with ``center`` the sphere centre and ``scale`` its radius.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from recon.io.dataset import MultiviewDataset, apply_normalization, is_header_only
from recon.io.errors import DEGENERATE, InputError, InputWarning
from recon.io.normalize import Normalization

MODES = ("auto", "masks", "sparse_points", "cameras", "none")
PAD = 1.1
"""Padding factor on the estimated radius."""
MIN_PARALLAX = 0.02
"""Camera baselines below this fraction of the distance to the scene draw a warning."""


def closest_point_to_axes(c2w: np.ndarray) -> np.ndarray:
    """(3,) least-squares point nearest to every camera's optical axis (+z of OpenCV cameras)."""
    o = c2w[:, :3, 3]
    d = c2w[:, :3, 2] / np.linalg.norm(c2w[:, :3, 2], axis=1, keepdims=True)
    A = np.eye(3)[None] - d[:, :, None] * d[:, None, :]
    lhs, rhs = A.sum(0), np.einsum("nij,nj->i", A, o)
    if np.linalg.cond(lhs) > 1e8:  # parallel axes: no crossing point; look ahead of the cameras
        return o.mean(0) + d.mean(0) * np.linalg.norm(o - o.mean(0), axis=1).mean()
    return np.linalg.solve(lhs, rhs)


def sphere_from_cameras(c2w: np.ndarray, intrinsics: np.ndarray, hw: tuple[int, int]) -> tuple[np.ndarray, float]:
    """(centre, radius) of the region the cameras look at: the sphere that fills the smaller
    field of view from the median camera distance, padded by ``PAD``, kept inside the nearest
    camera (NeuS-style fitters need the cameras outside the sphere when they can be)."""
    c = closest_point_to_axes(c2w)
    dist = np.linalg.norm(c2w[:, :3, 3] - c, axis=1)
    H, W = hw
    half_fov = np.arctan(0.5 * min(W / intrinsics[:, 0, 0].mean(), H / intrinsics[:, 1, 1].mean()))
    r = float(np.median(dist) * np.sin(half_fov)) * PAD
    r = min(r, 0.9 * float(dist.min())) if dist.min() > 0 else r
    if not r > 0:
        r = float(np.median(dist)) or 1.0
    return c, r


def sphere_from_points(points: np.ndarray, *, lo: float = 2.0, hi: float = 98.0) -> tuple[np.ndarray, float]:
    """(centre, radius) of the percentile-trimmed points, padded by ``PAD``."""
    pts = np.asarray(points, dtype=np.float64)
    pts = pts[np.isfinite(pts).all(1)]
    if len(pts) >= 20:
        a, b = np.percentile(pts, [lo, hi], axis=0)
        pts = pts[((pts >= a) & (pts <= b)).all(1)]
    if len(pts) < 2:
        raise ValueError("too few points to bound the scene")
    c = 0.5 * (pts.min(0) + pts.max(0))
    r = float(np.linalg.norm(pts - c, axis=1).max())
    if not r > 0:
        raise ValueError("the points have zero extent")
    return c, r * PAD


def _carve(ds: MultiviewDataset, masks: dict, center: np.ndarray, half: float, res: int,
           views: np.ndarray, min_seen: float = 0.5, tolerance: float = 0.05) -> np.ndarray:
    """Surviving voxel centres (M, 3) of a res^3 grid of half-size ``half`` around ``center``.

    A voxel is carved once more than ``tolerance`` of the views (at least one) put it on the
    background, so that a few wrong masks do not cut the object.
    """
    H, W = ds.hw
    ax = ((np.arange(res) + 0.5) / res * 2 - 1).astype(np.float32)
    pts = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3) * np.float32(half)
    pts = np.c_[pts + center.astype(np.float32), np.ones(len(pts), np.float32)]
    seen = np.zeros(len(pts), dtype=np.int32)
    votes = np.zeros(len(pts), dtype=np.int32)
    allowed = int(tolerance * len(views))
    w2c = np.linalg.inv(ds.c2w)
    for v in views:
        P = (ds.intrinsics[v] @ w2c[v, :3]).astype(np.float32)
        uvw = pts @ P.T
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.floor(uvw[:, 0] / uvw[:, 2])
            r = np.floor(uvw[:, 1] / uvw[:, 2])
        inside = (uvw[:, 2] > 0) & (u >= 0) & (u < W) & (r >= 0) & (r < H)
        idx = np.flatnonzero(inside)
        bg = idx[~masks[v][r[idx].astype(np.int64), u[idx].astype(np.int64)]]
        seen += inside
        votes[bg] += 1
        if bg.size and (votes[bg] > allowed).any():
            keep = votes <= allowed
            pts, seen, votes = pts[keep], seen[keep], votes[keep]
        if len(pts) == 0:
            break
    need = max(min(2, len(views)), int(np.ceil(min_seen * len(views))))
    return pts[seen >= need, :3].astype(np.float64)


def sphere_from_masks(ds: MultiviewDataset, *, res: int = 64, max_views: int = 40) -> tuple[np.ndarray, float]:
    """(centre, radius) of the visual hull of ``ds.masks`` (poses in any frame), padded by ``PAD``.

    At most ``max_views`` evenly spaced views carve (fewer views: a looser, still enclosing hull).
    """
    from scipy.ndimage import binary_dilation

    views = np.unique(np.linspace(0, ds.n_views - 1, min(ds.n_views, max_views)).round().astype(int))
    masks = {int(v): binary_dilation(ds.masks[v] > 0.5, iterations=2) for v in views}
    center, r0 = sphere_from_cameras(ds.c2w, ds.intrinsics, ds.hw)
    # The first grid must hold the object: half the distance to the farthest camera does.
    half = max(float(np.linalg.norm(ds.c2w[:, :3, 3] - center, axis=1).max()), r0)
    pts = _carve(ds, masks, center, half, res // 2, views)
    if len(pts) == 0:
        raise ValueError("the masks carve every voxel away: they do not agree with the cameras")
    cell = 2 * half / (res // 2)
    lo, hi = pts.min(0) - 2 * cell, pts.max(0) + 2 * cell
    center, half2 = 0.5 * (lo + hi), 0.5 * float((hi - lo).max())
    fine = _carve(ds, masks, center, half2, res, views)
    if len(fine) > 0:
        pts, cell = fine, 2 * half2 / res
    c = 0.5 * (pts.min(0) + pts.max(0))
    r = float(np.linalg.norm(pts - c, axis=1).max()) + 0.5 * np.sqrt(3) * cell
    return c, r * PAD


def normalize_views(ds: MultiviewDataset, *, mode: str = "auto", points: np.ndarray | None = None,
                    path: Path | None = None) -> MultiviewDataset:
    """Put the poses of ``ds`` (given in the input frame) into a computed unit sphere.

    ``mode`` is one of ``MODES``; "auto" uses masks, else ``points``, else cameras, and
    "none" keeps the input frame (for data already normalised). Sets ``normalization``,
    ``normalization_source`` and a note; then checks the framing (``check_framing``).
    """
    if mode not in MODES:
        raise ValueError(f"normalization mode must be one of {MODES}, got {mode!r}")
    if is_header_only() and mode in ("auto", "masks"):
        mode = "sparse_points" if points is not None and len(points) else "cameras"  # no pixels to carve
    if mode == "auto":
        mode = "masks" if ds.masks is not None else "sparse_points" if points is not None and len(points) else "cameras"
    if mode == "none":
        ds.normalization_source = "given"
        check_framing(ds, path=path)
        return ds
    try:
        if mode == "masks":
            if ds.masks is None:
                raise ValueError("no masks to carve with")
            c, r = sphere_from_masks(ds)
        elif mode == "sparse_points":
            if points is None:
                raise ValueError("no sparse points")
            c, r = sphere_from_points(points)
        else:
            c, r = sphere_from_cameras(ds.c2w, ds.intrinsics, ds.hw)
    except ValueError as e:
        raise InputError(f"cannot bound the scene from {mode}: {e}", code=DEGENERATE, path=path) from e
    norm = Normalization(center=c, scale=r)
    ds.c2w = apply_normalization(ds.c2w, norm)
    ds.normalization = norm
    ds.normalization_source = mode
    ds.notes.append(f"unit sphere from {mode}: centre {np.round(c, 4).tolist()}, radius {r:.4g} (input units)")
    check_framing(ds, path=path)
    return ds


def check_framing(ds: MultiviewDataset, *, path: Path | None = None, min_fraction: float = 0.5) -> float:
    """Fraction of views in which the unit sphere's centre projects into the image.

    Below ``min_fraction`` the cameras do not look at the chosen region (wrong pose
    convention, wrong normalisation): ``InputError``. Any view missing it adds a note and an
    ``InputWarning``, and so do cameras that barely move (largest baseline under
    ``MIN_PARALLAX`` of their distance to the centre): without parallax no depth can be
    recovered, which usually means wrong poses.
    """
    uv, depth = ds.project(np.zeros((1, 3)))
    H, W = ds.hw
    u, v, z = uv[:, 0, 0], uv[:, 0, 1], depth[:, 0]
    ok = (z > 0) & (u >= 0) & (u <= W) & (v >= 0) & (v <= H)
    frac = float(ok.mean())
    if frac < min_fraction:
        raise InputError(f"the scene centre projects into only {ok.sum()} of {ds.n_views} images: the poses do "
                         "not look at a common object (wrong axis convention or c2w/w2c mix-up?)",
                         code=DEGENERATE, path=path)
    if frac < 1.0:
        msg = f"the scene centre falls outside {int((~ok).sum())} of {ds.n_views} images"
        ds.notes.append(msg)
        warnings.warn(msg, InputWarning, stacklevel=2)
    centres = ds.camera_centers()
    reach = float(np.median(np.linalg.norm(centres, axis=1)))
    baseline = float(np.ptp(centres, axis=0).max()) if ds.n_views > 1 else 0.0
    if ds.n_views > 1 and baseline < MIN_PARALLAX * reach:
        msg = (f"the cameras barely move (largest baseline {baseline / reach:.2%} of their distance to the scene): "
               "too little parallax to recover depth; check the poses")
        ds.notes.append(msg)
        warnings.warn(msg, InputWarning, stacklevel=2)
    return frac
