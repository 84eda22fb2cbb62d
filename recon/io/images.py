"""Reading the images and masks of posed image sets: decoding, size checks, stacking, compositing.

Every helper honours the loaders' header-only mode (``recon.io.dataset.header_only``): image
sizes come from the file headers and pixels stay undecoded placeholders.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon.io.dataset import is_header_only
from recon.io.errors import IMAGE_TOO_LARGE, MALFORMED_FILE, NOT_FOUND, InputError

MAX_IMAGE_PIXELS = 40_000_000
"""Largest image accepted (pixels); checked from the header before decoding."""
MAX_TOTAL_PIXELS = 250_000_000
"""Largest image set accepted (pixels over all views; about 3 GB as float32 RGB)."""


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
            if is_header_only():  # size from the header; pixels stay undecoded
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
    if is_header_only():
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
    if is_header_only():
        return np.broadcast_to(arrays[0], (len(arrays), *arrays[0].shape))
    return np.stack(arrays).astype(np.float32)


def drop_placeholder_masks(masks: np.ndarray | None, notes: list[str]) -> np.ndarray | None:
    """None when every mask is (almost) all object, as the NeuS "without mask" placeholders are."""
    if masks is None or is_header_only():
        return masks
    if float(masks.min()) >= 0.99:
        notes.append("the masks are all white everywhere (placeholders); the views are used without masks")
        return None
    return masks


def composite_on_background(rgb: np.ndarray, alpha: np.ndarray, background: float = 1.0) -> np.ndarray:
    """RGB over a uniform grey ``background`` by alpha (straight, not premultiplied, alpha)."""
    if is_header_only():
        return rgb
    return (rgb * alpha[..., None] + background * (1.0 - alpha[..., None])).astype(np.float32)
