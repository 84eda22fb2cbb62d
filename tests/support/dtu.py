"""Small NeuS folders cut from the shared DTU scan24 set (``multiview/dtu_scan24_384_nomask``).

The shared set holds 49 real views of 384x384 (no masks) with their real cameras. Tests and
benchmarks need a few views at a few dozen pixels: :func:`write_dtu_subset` writes such a
NeuS folder (``image/``, ``cameras_sphere.npz``) with the projections rescaled to the new size,
so the cameras stay exactly those of the original images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DTU_SCAN24 = "multiview/dtu_scan24_384_nomask"
"""The shared folder, relative to the shared data root."""
DTU_SIZE = 384
"""Side of the shared images (square)."""
DTU_VIEWS = 49


def resize_projection(world_mat: np.ndarray, factor: float) -> np.ndarray:
    """A NeuS ``world_mat`` (integer pixel centres) for images resized by ``factor``.

    A pixel centre u maps to ``factor * (u + 0.5) - 0.5``.
    """
    A = np.array([[factor, 0.0, 0.5 * factor - 0.5, 0.0], [0.0, factor, 0.5 * factor - 0.5, 0.0],
                  [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    return A @ np.asarray(world_mat, dtype=np.float64)


def write_dtu_subset(shared_data: Path, dst: Path, views=(0, 8, 16, 24, 32, 40), size: int = 64) -> Path:
    """Write views ``views`` of DTU scan24 at ``size`` x ``size`` pixels as a NeuS folder ``dst``.

    Images are area-averaged (PIL's box filter); ``world_mat_i`` is rescaled to match and
    ``scale_mat_i`` copied. View i of the new folder is ``views[i]`` of the shared one.
    """
    from PIL import Image

    src = Path(shared_data) / DTU_SCAN24
    dst = Path(dst)
    (dst / "image").mkdir(parents=True, exist_ok=True)
    cams = np.load(src / "cameras_sphere.npz")
    factor = size / DTU_SIZE
    arrays = {}
    for i, v in enumerate(views):
        with Image.open(src / "image" / f"{v:03d}.png") as im:
            small = im.convert("RGB").resize((size, size), Image.Resampling.BOX) if size != DTU_SIZE else im.convert("RGB")
            small.save(dst / "image" / f"{i:03d}.png")
        arrays[f"world_mat_{i}"] = resize_projection(cams[f"world_mat_{v}"], factor)
        arrays[f"scale_mat_{i}"] = np.asarray(cams[f"scale_mat_{v}"], dtype=np.float64)
    np.savez(dst / "cameras_sphere.npz", **arrays)
    return dst
