"""The region of interest of a posed-image scene: the box that holds the object.

Photos without masks show the object and everything around it (table, floor, walls). The fit
needs to know where the object is to keep its foreground field there (everything else goes to
the background model, :mod:`recon.fields.background`), and the mesh is extracted only inside
that region. The region is an axis-aligned box in the dataset's normalised frame, from the
first of these that applies:

* ``"bbox"``: the user's box (the job's ``bbox``, given in the input's frame);
* ``"masks"``: the visual hull of the masks (carved like :mod:`recon.io.scene_bounds`);
* ``"sparse_points"``: the structure-from-motion points (COLMAP), 2nd-98th percentile per axis;
* ``"cameras"``: where the views overlap: the largest ball about the point closest (least
  squares) to every optical axis that half of the views see, unless the format declares a
  sphere that this ball does not fit inside;
* ``"scale_mat"`` / ``"transforms"``: then, the unit sphere the format declares (NeuS's
  ``scale_mat``; a transforms.json's aabb, scale and offset). Declared spheres are often
  loose: DTU's holds much of the table, and a foreground that large swallows the background
  (on DTU scan24 without masks, held-out PSNR 13.3 dB after 500 steps in the declared sphere
  against 20.4 dB in the overlap's ball of radius 0.66).

Every estimate but the user's is padded by 10% and clipped to the cube [-1, 1]^3, which the
loaders make hold the scene of interest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from meshing import mesh as mesh_ops
from meshing.mesh import Mesh
from recon.io.dataset import MultiviewDataset
from recon.io.normalize import Normalization
from recon.io.scene_bounds import closest_point_to_axes

SOURCES = ("bbox", "masks", "sparse_points", "scale_mat", "transforms", "cameras")
PAD = 1.1
"""Padding factor of the estimated boxes' half extents."""


@dataclass(frozen=True, eq=False)
class Region:
    """An axis-aligned box ``lo`` .. ``hi`` (each (3,), normalised frame) and where it came from."""

    lo: np.ndarray
    hi: np.ndarray
    source: str
    ball: tuple[np.ndarray, float] | None = None
    """(centre, radius) of a ball known to hold the object when tighter than the box's bounding
    sphere (the views' overlap), else None."""

    def __post_init__(self) -> None:
        lo, hi = (np.array(a, dtype=np.float64).reshape(3) for a in (self.lo, self.hi))
        if not (np.isfinite(lo).all() and np.isfinite(hi).all() and (lo < hi).all()):
            raise ValueError(f"expected a box with finite lo < hi, got lo={lo}, hi={hi}")
        if self.source not in SOURCES:
            raise ValueError(f"expected a region source in {SOURCES}, got {self.source!r}")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)

    @property
    def center(self) -> np.ndarray:
        return 0.5 * (self.lo + self.hi)

    @property
    def radius(self) -> float:
        """Radius of the bounding sphere (half the box diagonal)."""
        return 0.5 * float(np.linalg.norm(self.hi - self.lo))

    def sphere(self) -> tuple[np.ndarray, float]:
        """(centre, radius) of the foreground sphere: the ``ball`` when known, else the box's
        bounding sphere."""
        if self.ball is not None:
            return np.asarray(self.ball[0], dtype=np.float64), float(self.ball[1])
        return self.center, self.radius

    def contains(self, points: np.ndarray) -> np.ndarray:
        """(M, 3) -> (M,) bool, True inside the box (boundary included)."""
        p = np.asarray(points, dtype=np.float64)
        return ((p >= self.lo) & (p <= self.hi)).all(-1)

    def box_sdf(self, x: Tensor) -> Tensor:
        """Signed distance to the box (negative inside) at (n, 3) points, same dtype and device."""
        lo = torch.as_tensor(self.lo, dtype=x.dtype, device=x.device)
        hi = torch.as_tensor(self.hi, dtype=x.dtype, device=x.device)
        c, h = 0.5 * (lo + hi), 0.5 * (hi - lo)
        q = (x - c).abs() - h
        return q.clamp_min(0).norm(dim=-1) + q.max(dim=-1).values.clamp_max(0)

    def clipped(self, lo=-1.0, hi=1.0) -> Region:
        """The box intersected with ``[lo, hi]^3`` (unchanged when they do not overlap)."""
        a, b = np.maximum(self.lo, lo), np.minimum(self.hi, hi)
        return Region(a, b, self.source, self.ball) if (a < b).all() else self

    def mapped(self, center: np.ndarray, scale: float) -> Region:
        """The region in the frame ``(x - center) / scale``."""
        ball = None if self.ball is None else ((np.asarray(self.ball[0]) - center) / scale, self.ball[1] / scale)
        return Region((self.lo - center) / scale, (self.hi - center) / scale, self.source, ball)

    def describe(self, norm: Normalization | None = None) -> dict:
        """For the metrics: source and box, in the input frame when ``norm`` is given."""
        lo, hi = (self.lo, self.hi) if norm is None else (norm.from_unit(self.lo), norm.from_unit(self.hi))
        return {"source": self.source, "bbox": [*map(float, lo), *map(float, hi)]}


def _padded(lo: np.ndarray, hi: np.ndarray, source: str, pad: float = PAD, ball=None) -> Region:
    c, h = 0.5 * (lo + hi), 0.5 * (hi - lo) * pad
    h = np.maximum(h, 1e-3)
    return Region(c - h, c + h, source, ball).clipped()


def region_from_bbox(bbox, norm: Normalization) -> Region:
    """The user's ``[xmin, ymin, zmin, xmax, ymax, zmax]`` (input frame) in the normalised frame."""
    b = np.asarray(bbox, dtype=np.float64).reshape(6)
    return Region(norm.to_unit(b[:3]), norm.to_unit(b[3:]), "bbox")


def region_from_points(points: np.ndarray, *, lo: float = 2.0, hi: float = 98.0) -> Region:
    """Box of the percentile-trimmed points (normalised frame), padded."""
    pts = np.asarray(points, dtype=np.float64)
    pts = pts[np.isfinite(pts).all(1)]
    if len(pts) < 4:
        raise ValueError(f"expected at least 4 sparse points, got {len(pts)}")
    a, b = np.percentile(pts, [lo, hi], axis=0)
    return _padded(a, b, "sparse_points")


def _grid(center: np.ndarray, half: float, res: int) -> np.ndarray:
    ax = (np.arange(res) + 0.5) / res * 2.0 - 1.0
    return np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3) * half + center


def seen_fraction(ds: MultiviewDataset, points: np.ndarray) -> np.ndarray:
    """(M,) fraction of the views whose image the points (normalised frame) project into."""
    uv, depth = ds.project(points)
    H, W = ds.hw
    inside = (depth > 0) & (uv[..., 0] >= 0) & (uv[..., 0] <= W) & (uv[..., 1] >= 0) & (uv[..., 1] <= H)
    return inside.mean(0)


def region_from_cameras(ds: MultiviewDataset, *, res: int = 48, min_seen: float = 0.5) -> Region:
    """Where the views overlap: the largest ball about the point the optical axes pass closest to
    (least squares) whose points project into at least ``min_seen`` of the images (tested on a
    ``res^3`` grid over the cube [-1, 1]^3), padded; the region is its box."""
    c = np.clip(closest_point_to_axes(ds.c2w), -1.0, 1.0)
    pts = _grid(np.zeros(3), 1.0, res)
    outside = pts[seen_fraction(ds, pts) < min_seen - 1e-9]
    r = float(np.linalg.norm(outside - c, axis=1).min()) if len(outside) else 2.0
    r = max(r, 2.0 / res) * PAD
    return _padded(c - r, c + r, "cameras", pad=1.0, ball=(c, r))


def region_from_masks(ds: MultiviewDataset, *, res: int = 48, max_views: int = 40) -> Region:
    """Box of the masks' visual hull, carved on a grid over the cube [-1, 1]^3, padded."""
    from scipy.ndimage import binary_dilation

    from recon.io.scene_bounds import _carve

    views = np.unique(np.linspace(0, ds.n_views - 1, min(ds.n_views, max_views)).round().astype(int))
    masks = {int(v): binary_dilation(ds.masks[v] > 0.5, iterations=2) for v in views}
    pts = _carve(ds, masks, np.zeros(3), 1.0, res, views)
    if len(pts) == 0:
        raise ValueError("the masks carve every voxel of the unit cube away")
    cell = 2.0 / res
    return _padded(pts.min(0) - 0.5 * cell, pts.max(0) + 0.5 * cell, "masks")


def find_region(ds: MultiviewDataset, bbox=None) -> Region:
    """The region of interest of ``ds`` in its normalised frame (see the module docstring)."""
    if bbox is not None:
        return region_from_bbox(bbox, ds.normalization)
    if ds.masks is not None:
        try:
            return region_from_masks(ds)
        except ValueError:
            pass
    if ds.points is not None and len(ds.points) >= 4:
        return region_from_points(ds.points)
    seen = region_from_cameras(ds)
    if ds.normalization_source in ("scale_mat", "transforms"):
        # The format says the object is in its unit sphere (NeuS, instant-ngp's aabb/scale), but
        # such spheres are often loose (DTU's hold much of the table): the views' overlap, when
        # it is a smaller ball inside that sphere, is the tighter estimate.
        c, r = seen.sphere()
        if not (r < 1.0 and np.linalg.norm(c) + r <= 1.0 + 1e-6):
            return Region(-np.ones(3), np.ones(3), ds.normalization_source, ball=(np.zeros(3), 1.0))
    return seen


def camera_pull(center: np.ndarray, camera_centers: np.ndarray) -> np.ndarray:
    """The mean unit direction (3,) from ``center`` to the ``camera_centers`` (M, 3): about 0 long
    for cameras all around, near 1 for cameras that all look from one side."""
    to_cams = np.asarray(camera_centers, dtype=np.float64) - np.asarray(center, dtype=np.float64)
    to_cams /= np.linalg.norm(to_cams, axis=1, keepdims=True).clip(1e-12)
    return to_cams.mean(0)


def grown_toward_cameras(center: np.ndarray, radius: float, camera_centers: np.ndarray, growth: float,
                         min_pull: float = 0.25) -> tuple[np.ndarray, float]:
    """The ball (``center``, ``radius``) grown to ``growth`` times its radius towards the cameras:
    its centre moves by ``(growth - 1) radius`` along the mean unit direction from the centre to
    the ``camera_centers`` (M, 3), so that its point farthest from them stays where it was. Views
    taken from one side (DTU's arc) see the object's parts nearest the cameras stick
    out of the overlap's ball, while what lies behind it (table, backdrop) should stay outside.
    Unchanged when that mean direction is shorter than ``min_pull`` (cameras all around)."""
    c = np.asarray(center, dtype=np.float64)
    pull = camera_pull(c, camera_centers)
    if growth <= 1.0 or np.linalg.norm(pull) < min_pull:
        return c, float(radius)
    return c + (growth - 1.0) * radius * pull / np.linalg.norm(pull), float(radius) * growth


def keep_main_components(mesh: Mesh, min_fraction: float = 0.05) -> Mesh:
    """Drop floating fragments: connected components with fewer than ``min_fraction`` of all the
    faces (the largest always stays)."""
    if mesh.is_empty or min_fraction <= 0:
        return mesh
    return mesh_ops.remove_small_components(mesh, min_fraction=min_fraction)


def crop_mesh(mesh: Mesh, region: Region) -> Mesh:
    """The faces of ``mesh`` whose three vertices lie in the region (normalised frame)."""
    if mesh.is_empty:
        return mesh
    inside = region.contains(mesh.vertices)
    return mesh_ops.select_faces(mesh, inside[mesh.faces].all(1))
