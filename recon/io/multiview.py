"""Posed image sets: the in-memory form every multi-view loader produces, and ``load_multiview``.

Conventions (fixed; the fitter, the renderer and every loader rely on them):

* cameras are OpenCV-style: x right, y down, z forward (looking along +z);
* ``c2w`` maps camera to the *normalised* frame, in which the region to reconstruct lies
  inside the unit sphere; ``normalization`` maps it back (``world = unit * scale + center``);
* ``intrinsics`` are pixel-unit 3x3 matrices per view, pixel centres at +0.5 (the top-left
  pixel's centre is at (0.5, 0.5), as in COLMAP; the ray of pixel (row i, column j) goes
  through ``K^-1 (j + 0.5, i + 0.5, 1)``);
* images are float32 RGB in [0, 1] (as stored, sRGB), masks float32 in [0, 1] (1 = object).

Formats (``load_multiview`` picks by what the path is): a NeuS directory
(``cameras_sphere.npz``), a NeRF-style ``.npz`` (``images``, ``poses``, ``focal``), a
``transforms.json`` (instant-ngp / NeuS2) file or directory, a COLMAP model directory, or a
``.zip`` archive holding one of those directories.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recon.io.errors import (
    DEGENERATE,
    IMAGE_TOO_LARGE,
    MALFORMED_FILE,
    NON_FINITE,
    NOT_FOUND,
    UNSUPPORTED_FORMAT,
    InputError,
)
from recon.io.normalize import Normalization

MAX_IMAGE_PIXELS = 40_000_000
"""Largest image accepted (pixels); checked from the header before decoding."""
MAX_TOTAL_PIXELS = 250_000_000
"""Largest image set accepted (pixels over all views; about 3 GB as float32 RGB)."""

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
    pixels = () if _HEADER_ONLY.get() else (("images", ds.images), ("masks", ds.masks))
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


def reading_headers_only() -> bool:
    """True while a probe reads image sizes only (pixels are placeholders, not worth processing)."""
    return _HEADER_ONLY.get()


def read_image(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """An image file -> (H, W, 3) float32 RGB in [0, 1] and its alpha (H, W) or None.

    8- and 16-bit, grey, palette, RGB and RGBA images are accepted; ``InputError`` when the
    file is missing or cannot be decoded.
    """
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise InputError(f"image {path.name!r} not found", code=NOT_FOUND, path=path)
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_IMAGE_PIXELS:
                raise InputError(f"image {path.name!r} has {im.width}x{im.height} pixels, more than the limit of "
                                 f"{MAX_IMAGE_PIXELS}: downscale the images (and their calibration)",
                                 code=IMAGE_TOO_LARGE, path=path)
            if _HEADER_ONLY.get():  # size from the header; pixels stay undecoded
                return np.broadcast_to(np.float32(0.5), (im.height, im.width, 3)), None
            im.load()
            arr = _pil_to_array(im)
    except Image.DecompressionBombError as e:
        raise InputError(f"image {path.name!r} declares too many pixels: {e}", code=IMAGE_TOO_LARGE,
                         path=path) from e
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise InputError(f"cannot read image {path.name!r}: {e}", code=MALFORMED_FILE, path=path) from e
    return arr


def _header_pixels(path: Path) -> int:
    """Width x height from the header; 0 when unreadable (``read_image`` reports it later)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.width * im.height
    except Image.DecompressionBombError:
        return MAX_TOTAL_PIXELS + 1
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return 0


def check_pixel_budget(paths: list[Path], *, path: Path | None = None,
                       limit: int = MAX_TOTAL_PIXELS) -> None:
    """``InputError`` when the images in ``paths`` hold more than ``limit`` pixels together.

    Reads only the headers, so the loaders call it before decoding anything. Unreadable files
    are left for ``read_image`` to report.
    """
    total = sum(_header_pixels(p) for p in paths)
    if total > limit:
        raise InputError(f"the {len(paths)} images hold {total} pixels, more than the limit of {limit}: "
                         "downscale them (and their calibration) or send fewer views", code=IMAGE_TOO_LARGE,
                         path=path)


def _pil_to_array(im) -> tuple[np.ndarray, np.ndarray | None]:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit files (PNG/TIFF) open as I;16 or as 32-bit I holding 16-bit values.
        a = np.clip(np.asarray(im, dtype=np.float64) / 65535.0, 0.0, 1.0)
        rgb = np.repeat(a[..., None], 3, axis=-1)
        return rgb.astype(np.float32), None
    if im.mode == "F":
        a = np.clip(np.asarray(im, dtype=np.float32), 0, 1)
        return np.repeat(a[..., None], 3, axis=-1), None
    has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
    im = im.convert("RGBA" if has_alpha else "RGB")
    a = np.asarray(im, dtype=np.float32) / 255.0
    return (a[..., :3].copy(), a[..., 3].copy()) if has_alpha else (a, None)


def read_mask(path: Path) -> np.ndarray:
    """A mask image -> (H, W) float32 in [0, 1]: alpha when it has one, else mean of RGB."""
    rgb, alpha = read_image(path)
    if _HEADER_ONLY.get():
        return rgb[..., 0]
    return alpha if alpha is not None and alpha.min() < 1.0 else rgb.mean(axis=-1)


def stack_images(arrays: list[np.ndarray], names: list[str], *, path: Path | None, what: str = "image"
                 ) -> np.ndarray:
    """Stack equally sized arrays; ``InputError`` naming the first one of a different size."""
    shape0 = arrays[0].shape[:2]
    for a, name in zip(arrays, names):
        if a.shape[:2] != shape0:
            raise InputError(f"{what} {name!r} is {a.shape[1]}x{a.shape[0]} but {names[0]!r} is "
                             f"{shape0[1]}x{shape0[0]}: all views must have the same size",
                             code=MALFORMED_FILE, path=path)
    if _HEADER_ONLY.get():
        return np.broadcast_to(arrays[0], (len(arrays), *arrays[0].shape))
    return np.stack(arrays).astype(np.float32)


def drop_placeholder_masks(masks: np.ndarray | None, notes: list[str]) -> np.ndarray | None:
    """None when every mask is (almost) all object, as the NeuS "without mask" placeholders are."""
    if masks is None or _HEADER_ONLY.get():
        return masks
    if float(masks.min()) >= 0.99:
        notes.append("the masks are all white everywhere (placeholders); the views are used without masks")
        return None
    return masks


def composite_on_background(rgb: np.ndarray, alpha: np.ndarray, background: float = 1.0) -> np.ndarray:
    """RGB over a uniform grey ``background`` by alpha (straight, not premultiplied, alpha)."""
    if _HEADER_ONLY.get():
        return rgb
    return (rgb * alpha[..., None] + background * (1.0 - alpha[..., None])).astype(np.float32)


def apply_normalization(c2w_world: np.ndarray, norm: Normalization) -> np.ndarray:
    """Camera-to-world poses in the input frame -> camera-to-normalised-frame poses."""
    out = np.array(c2w_world, dtype=np.float64, copy=True)
    out[:, :3, 3] = norm.to_unit(out[:, :3, 3])
    return out


def load_multiview(path: str | Path, **kwargs) -> MultiviewDataset:
    """Load a posed image set, choosing the format from what ``path`` is.

    * a directory with ``cameras_sphere.npz`` -> NeuS layout (``recon.io.neus``);
    * a directory with ``transforms.json`` (or ``transforms_train.json``), or such a file
      -> instant-ngp / NeuS2 layout (``recon.io.transforms``);
    * a directory with ``sparse/0`` or ``sparse`` holding a COLMAP model -> COLMAP
      (``recon.io.colmap``);
    * an ``.npz`` file with ``images``, ``poses`` and ``focal`` -> NeRF-style arrays;
    * a ``.zip`` archive holding one of the directories above (extracted safely to a
      temporary directory, see ``recon.io.archive``).

    Keyword arguments go to the format's loader; all take ``normalization`` ("auto": the
    format's own normalisation if it has one, else computed; or one of
    ``recon.io.scene_bounds.MODES``) and ``background`` (the grey level RGBA images are
    composited over). Every problem is an ``InputError``.
    """
    p = Path(path)
    if not p.exists():
        raise InputError("no such file or directory", code=NOT_FOUND, path=p)
    if p.is_file() and p.suffix.lower() == ".zip":
        from recon.io.archive import load_multiview_zip

        return load_multiview_zip(p, **kwargs)
    if p.is_file() and p.suffix.lower() == ".npz":
        from recon.io.neus import load_nerf_npz

        return load_nerf_npz(p, **kwargs)
    if p.is_file() and p.suffix.lower() == ".json":
        from recon.io.transforms import load_transforms

        return load_transforms(p, **kwargs)
    if p.is_dir():
        kind = detect_layout(p)
        if kind == "neus":
            from recon.io.neus import load_neus

            return load_neus(p, **kwargs)
        if kind == "transforms":
            from recon.io.transforms import load_transforms

            return load_transforms(p, **kwargs)
        if kind == "colmap":
            from recon.io.colmap import load_colmap

            return load_colmap(p, **kwargs)
    raise InputError("not a posed image set: expected a NeuS directory (cameras_sphere.npz), a "
                     "transforms.json, a COLMAP model (sparse/), an .npz with images/poses/focal or a .zip "
                     "of one of these", code=UNSUPPORTED_FORMAT, path=p)


@contextmanager
def header_only() -> Iterator[None]:
    """Within this block the loaders check structure but decode no pixels (see ``probe_multiview``)."""
    token = _HEADER_ONLY.set(True)
    try:
        yield
    finally:
        _HEADER_ONLY.reset(token)


def is_header_only() -> bool:
    """True inside ``header_only()``."""
    return _HEADER_ONLY.get()


def probe_multiview(path: str | Path, **kwargs) -> MultiviewDataset:
    """``load_multiview`` with header-level checks only, cheap enough to run on submission.

    Checks the layout, the camera files (parsed and decomposed as when loading), counts,
    that every image (and mask) exists, has a readable image header and the common size, and
    the framing of the cameras. Pixels are not decoded: ``images`` and ``masks`` of the
    result are read-only placeholders, and the unit sphere comes from the cameras (or sparse
    points) instead of the masks. A corrupt image body is only found by the full load.
    """
    with header_only():
        return load_multiview(path, **kwargs)


def detect_layout(root: Path) -> str | None:
    """'neus', 'transforms', 'colmap' or None for a directory."""
    if (root / "cameras_sphere.npz").is_file():
        return "neus"
    if any((root / n).is_file() for n in ("transforms.json", "transforms_train.json")):
        return "transforms"
    for sub in (root / "sparse" / "0", root / "sparse"):
        if any((sub / f"cameras{ext}").is_file() for ext in (".bin", ".txt")):
            return "colmap"
    return None
