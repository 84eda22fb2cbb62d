"""Lens undistortion of posed images: every loader's views become pinhole views.

A distorted camera is described by a ``pycolmap.Camera`` (COLMAP's camera models and their
projection code, so that COLMAP models, and OpenCV coefficients from other formats, mean
exactly what they mean there). The undistorted view keeps the camera's focal lengths,
principal point and size; each of its pixels samples the photo (bilinear) where the lens
puts that pixel's ray. Pixels whose source lies outside the photo take the nearest edge pixel.
Pixel centres are at +0.5, as in COLMAP, instant-ngp and nerfstudio.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon.io.errors import MALFORMED_FILE, InputError


def opencv_camera(K: np.ndarray, width: int, height: int, k1=0.0, k2=0.0, p1=0.0, p2=0.0, k3=0.0):
    """A pycolmap camera with OpenCV's radial-tangential model (FULL_OPENCV when ``k3`` is set)."""
    import pycolmap

    params = [K[0, 0], K[1, 1], K[0, 2], K[1, 2], k1, k2, p1, p2]
    model = "OPENCV"
    if k3:
        model, params = "FULL_OPENCV", [*params, k3, 0.0, 0.0, 0.0]
    cam = pycolmap.Camera.create_from_model_name(1, model, float(K[0, 0]), int(width), int(height))
    cam.params = [float(p) for p in params]
    return cam


def undistortion_map(cam, width: int, height: int, *, path: Path | None = None, what: str = "") -> np.ndarray:
    """(2, H, W) row/column positions in a ``width`` x ``height`` photo taken with ``cam`` (or a
    resized copy of it) that each pixel of the undistorted pinhole view takes its value from.
    ``InputError`` (naming ``path`` and prefixed by ``what``) when the lens sends a ray nowhere."""
    sx, sy = cam.width / width, cam.height / height
    jj, ii = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    # Pixel centres in the camera's own pixel units, then rays through the pinhole camera.
    u, v = (jj + 0.5) * sx, (ii + 0.5) * sy
    K = np.asarray(cam.calibration_matrix(), dtype=np.float64)
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1).reshape(-1, 3)
    src = np.asarray(cam.img_from_cam(rays, check_cheirality=False), dtype=np.float64).reshape(height, width, 2)
    if not np.isfinite(src).all():
        raise InputError(f"{what}the lens distortion of camera {cam.camera_id} ({cam.model_name}) does not map "
                         "every pixel into the image", code=MALFORMED_FILE, path=path)
    return np.stack([src[..., 1] / sy - 0.5, src[..., 0] / sx - 0.5])


def remap(image: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Bilinear samples of an (H, W) or (H, W, C) image at (2, H, W) row/column positions."""
    from scipy.ndimage import map_coordinates

    if image.ndim == 2:
        return map_coordinates(image, coords, order=1, mode="nearest").astype(np.float32)
    return np.stack([map_coordinates(image[..., c], coords, order=1, mode="nearest")
                     for c in range(image.shape[-1])], -1).astype(np.float32)


def distort(image: np.ndarray, cam) -> np.ndarray:
    """The inverse of undistortion: what ``cam``, lens included, photographs of a pinhole view
    with the same calibration (each photo pixel looks up the pinhole view where its ray,
    unprojected by COLMAP's own code, meets the image plane). For tests and synthetic data."""
    H, W = image.shape[:2]
    jj, ii = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    rays = np.asarray(cam.cam_from_img(np.stack([jj, ii], -1).reshape(-1, 2)), dtype=np.float64)
    K = np.asarray(cam.calibration_matrix(), dtype=np.float64)
    u, v = K[0, 0] * rays[:, 0] + K[0, 2] - 0.5, K[1, 1] * rays[:, 1] + K[1, 2] - 0.5
    return remap(image, np.stack([v.reshape(H, W), u.reshape(H, W)]))
