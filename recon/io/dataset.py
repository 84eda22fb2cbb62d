"""Posed image sets in memory: the ``MultiviewDataset`` every multi-view loader produces.

Conventions (fixed; the fitter, the renderer and every loader rely on them):

* cameras are OpenCV-style: x right, y down, z forward (looking along +z);
* ``c2w`` maps camera to the *normalised* frame, in which the region to reconstruct lies
  inside the unit sphere; ``normalization`` maps it back (``world = unit * scale + center``);
* ``intrinsics`` are pixel-unit 3x3 matrices per view, pixel centres at +0.5 (the top-left
  pixel's centre is at (0.5, 0.5), as in COLMAP; the ray of pixel (row i, column j) goes
  through ``K^-1 (j + 0.5, i + 0.5, 1)``);
* images are float32 RGB in [0, 1] (as stored, sRGB), masks float32 in [0, 1] (1 = object).

Also here: the header-only mode of the loaders (``header_only``: check structure, decode no
pixels), and choosing views (``split_views`` holds every k-th view out).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from recon.io.errors import DEGENERATE, MALFORMED_FILE, NON_FINITE, InputError
from recon.io.normalize import Normalization

_HEADER_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("multiview_header_only", default=False)

OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])
"""Right-multiply a camera-to-world matrix in OpenGL/Blender axes (y up, looking along -z)
to get OpenCV axes (y down, looking along +z): flips the camera's y and z axes."""


@dataclass
class MultiviewDataset:
    """N posed views of one scene, all of the same size."""

    images: np.ndarray  # (N, H, W, 3) float32 in [0, 1]
    intrinsics: np.ndarray  # (N, 3, 3) float64, pixels
    c2w: np.ndarray  # (N, 4, 4) float64, camera -> normalised frame, OpenCV axes
    normalization: Normalization  # normalised frame -> input (world) frame
    masks: np.ndarray | None = None  # (N, H, W) float32 in [0, 1], or None
    names: list[str] = field(default_factory=list)
    # How the unit sphere was chosen, reported to the user: "scale_mat" (NeuS file),
    # "transforms" (aabb/scale/offset of a transforms.json), "masks" (visual hull),
    # "sparse_points" (COLMAP points), "cameras" (optical axes), "given".
    normalization_source: str = "given"
    # Human-readable remarks made while loading (dropped placeholder masks, background
    # compositing, dubious framing), for logs and job reports.
    notes: list[str] = field(default_factory=list)
    # Sparse structure-from-motion points (M, 3) in the normalised frame (COLMAP models), or None.
    points: np.ndarray | None = None

    @property
    def n_views(self) -> int:
        return int(self.images.shape[0])

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])

    def camera_centers(self) -> np.ndarray:
        """(N, 3) camera positions in the normalised frame."""
        return self.c2w[:, :3, 3].copy()

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised-frame points (M, 3) -> pixel coordinates (N, M, 2) and depths (N, M).

        Pixel coordinates follow the +0.5 convention: a point projecting into pixel (i, j)
        has ``i <= v < i + 1`` and ``j <= u < j + 1``.
        """
        w2c = np.linalg.inv(self.c2w)
        pts = np.asarray(points, dtype=np.float64)
        cam = np.einsum("nij,mj->nmi", w2c[:, :3, :3], pts) + w2c[:, None, :3, 3]
        depth = cam[..., 2]
        pix = np.einsum("nij,nmj->nmi", self.intrinsics, cam)
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = pix[..., :2] / pix[..., 2:3]
        return uv, depth


def validate_dataset(ds: MultiviewDataset, *, path: str | Path | None = None) -> MultiviewDataset:
    """Check shapes, ranges and finiteness; ``InputError`` naming the problem otherwise."""
    n = ds.images.shape[0] if ds.images.ndim == 4 else -1
    if ds.images.ndim != 4 or ds.images.shape[-1] != 3 or n < 1:
        raise InputError(f"expected images of shape (N, H, W, 3), got {ds.images.shape}", code=MALFORMED_FILE,
                         path=path)
    if ds.intrinsics.shape != (n, 3, 3) or ds.c2w.shape != (n, 4, 4):
        raise InputError(f"{n} images but intrinsics {ds.intrinsics.shape} and poses {ds.c2w.shape}",
                         code=MALFORMED_FILE, path=path)
    if ds.masks is not None and ds.masks.shape != ds.images.shape[:3]:
        raise InputError(f"masks of shape {ds.masks.shape} do not match images {ds.images.shape[:3]}",
                         code=MALFORMED_FILE, path=path)
    pixels = () if is_header_only() else (("images", ds.images), ("masks", ds.masks))
    for what, arr in (("intrinsics", ds.intrinsics), ("poses", ds.c2w), *pixels):
        if arr is not None and not np.isfinite(arr).all():
            raise InputError(f"{what} contain NaN or infinite values", code=NON_FINITE, path=path)
    fx, fy = ds.intrinsics[:, 0, 0], ds.intrinsics[:, 1, 1]
    if (fx <= 0).any() or (fy <= 0).any():
        raise InputError("focal lengths must be positive", code=MALFORMED_FILE, path=path)
    rot = ds.c2w[:, :3, :3]
    err = np.abs(np.einsum("nji,njk->nik", rot, rot) - np.eye(3)).max(axis=(1, 2))
    det = np.linalg.det(rot)
    bad = np.flatnonzero((err > 1e-3) | (det < 0))
    if bad.size:
        raise InputError(f"camera pose {int(bad[0])} is not a rotation plus translation", code=MALFORMED_FILE,
                         path=path)
    if not np.allclose(ds.c2w[:, 3], [0, 0, 0, 1], atol=1e-6):
        raise InputError("camera poses must have (0, 0, 0, 1) as last row", code=MALFORMED_FILE, path=path)
    if n > 1 and np.ptp(ds.c2w[:, :3, 3], axis=0).max() < 1e-9:
        raise InputError("all cameras sit at the same position: no depth can be recovered", code=DEGENERATE,
                         path=path)
    return ds


def apply_normalization(c2w_world: np.ndarray, norm: Normalization) -> np.ndarray:
    """Camera-to-world poses in the input frame -> camera-to-normalised-frame poses."""
    out = np.array(c2w_world, dtype=np.float64, copy=True)
    out[:, :3, 3] = norm.to_unit(out[:, :3, 3])
    return out


@contextmanager
def header_only() -> Iterator[None]:
    """Within this block the loaders check structure but decode no pixels (see ``probe_multiview``)."""
    token = _HEADER_ONLY.set(True)
    try:
        yield
    finally:
        _HEADER_ONLY.reset(token)


def is_header_only() -> bool:
    """True inside ``header_only()``: a probe reads image sizes only (pixels are placeholders,
    not worth processing)."""
    return _HEADER_ONLY.get()


class ViewSplit(NamedTuple):
    """Views to fit and views held out to score the fit (None: every view is fitted)."""

    train: MultiviewDataset
    test: MultiviewDataset | None


def split_views(dataset: MultiviewDataset, holdout_every: int) -> ViewSplit:
    """Training views and every ``holdout_every``-th view held out (index 0, k, 2k, ...).

    ``holdout_every`` 0 keeps all views for training and returns no test set.
    """
    n = dataset.n_views
    if holdout_every <= 0 or n < 2:
        return ViewSplit(dataset, None)
    test = np.arange(n) % holdout_every == 0
    if test.all() or not test.any():
        return ViewSplit(dataset, None)
    return ViewSplit(select_views(dataset, np.flatnonzero(~test)), select_views(dataset, np.flatnonzero(test)))


def renormalized(ds: MultiviewDataset, center, radius: float) -> MultiviewDataset:
    """``ds`` in the frame where the sphere (``center``, ``radius``) of its normalised frame is the
    unit sphere: ``new = (unit - center) / radius``; ``normalization`` still maps to the input frame."""
    center = np.asarray(center, dtype=np.float64).reshape(3)
    if not radius > 0:
        raise ValueError(f"expected a positive radius, got {radius}")
    c2w = ds.c2w.copy()
    c2w[:, :3, 3] = (c2w[:, :3, 3] - center) / radius
    norm = Normalization(ds.normalization.from_unit(center), ds.normalization.scale * radius)
    points = None if ds.points is None else (ds.points - center) / radius
    return replace(ds, c2w=c2w, normalization=norm, points=points)


def select_views(ds: MultiviewDataset, idx) -> MultiviewDataset:
    """The views ``idx`` (indices into ``ds``) as a dataset of their own, same normalisation."""
    idx = np.asarray(idx, dtype=np.int64)
    return replace(ds, images=ds.images[idx], intrinsics=ds.intrinsics[idx], c2w=ds.c2w[idx],
                   masks=None if ds.masks is None else ds.masks[idx],
                   names=[ds.names[i] for i in idx] if len(ds.names) == ds.n_views else [])
