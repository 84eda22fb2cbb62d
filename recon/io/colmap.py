"""COLMAP sparse models: ``<root>/sparse/0`` (or ``<root>/sparse``) plus ``<root>/images``.

The model (binary or text) is read with ``pycolmap``. Every registered image becomes a view,
in name order; its file is ``images/<name>`` and an optional mask ``masks/<name>.png`` (or
``masks/<stem>.png``, COLMAP's own convention is the former). Camera models: PINHOLE,
SIMPLE_PINHOLE, and the distorted SIMPLE_RADIAL (COLMAP's default), RADIAL, OPENCV and
FULL_OPENCV. Images (and masks) of a camera with lens distortion are undistorted on load into
a pinhole camera with the same focal lengths, principal point and size: each output pixel
samples the input (bilinear) where COLMAP's own projection (``Camera.img_from_cam``) puts it;
output pixels whose source falls outside the image take the nearest edge pixel, and the
notes say how many views were undistorted. COLMAP's pixel convention (top-left pixel centre at
(0.5, 0.5)) and camera axes are ours, so K and ``cam_from_world`` carry over unchanged. The
unit sphere comes from the masks when there are any, else from the sparse points
(percentile-trimmed), see ``recon.io.scene_bounds``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon.io.dataset import MultiviewDataset, is_header_only, validate_dataset
from recon.io.errors import MALFORMED_FILE, NOT_FOUND, UNSUPPORTED_FORMAT, InputError
from recon.io.images import (
    check_pixel_budget,
    drop_placeholder_masks,
    read_image,
    read_mask,
    stack_images,
)
from recon.io.normalize import Normalization
from recon.io.scene_bounds import normalize_views
from recon.io.undistort import remap, undistortion_map

SUPPORTED_MODELS = ("PINHOLE", "SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV")
DISTORTION_TOLERANCE = 1e-6


def find_model(root: Path) -> Path:
    """The folder holding cameras/images/points3D of the model under ``root``."""
    for sub in (root / "sparse" / "0", root / "sparse", root):
        if any((sub / f"cameras{ext}").is_file() for ext in (".bin", ".txt")):
            return sub
    raise InputError("no COLMAP model: expected sparse/0/cameras.bin (or .txt)", code=NOT_FOUND, path=root)


def _camera_matrix(cam, *, name: str, path: Path) -> tuple[np.ndarray, bool]:
    """K of a supported camera and whether its images must be undistorted."""
    model = str(cam.model_name)
    if model not in SUPPORTED_MODELS:
        raise InputError(f"camera model {model} of image {name!r} is not supported; expected one of "
                         f"{', '.join(SUPPORTED_MODELS)} (undistort the images first)", code=UNSUPPORTED_FORMAT,
                         path=path)
    params = np.asarray(cam.params, dtype=np.float64)
    extra = params[list(cam.extra_params_idxs())] if len(cam.extra_params_idxs()) else np.zeros(0)
    if not np.isfinite(params).all():
        raise InputError(f"camera {cam.camera_id} ({model}) has non-finite parameters", code=MALFORMED_FILE,
                         path=path)
    distorted = bool(extra.size and np.abs(extra).max() > DISTORTION_TOLERANCE)
    return np.asarray(cam.calibration_matrix(), dtype=np.float64), distorted


def _find_mask(root: Path, name: str) -> Path | None:
    for cand in (root / "masks" / f"{name}.png", (root / "masks" / name).with_suffix(".png")):
        if cand.is_file():
            return cand
    return None


def load_colmap(root: Path, *, normalization: str = "auto", background: float = 1.0) -> MultiviewDataset:
    """A COLMAP project directory -> ``MultiviewDataset`` (see the module docstring).

    ``background`` is accepted for a uniform signature and unused (masks are separate files).
    """
    import pycolmap

    root = Path(root)
    model_dir = find_model(root)
    rec = pycolmap.Reconstruction()
    try:
        rec.read(str(model_dir))
    except Exception as e:  # pycolmap raises plain RuntimeError/ValueError subclasses from C++
        raise InputError(f"cannot read the COLMAP model: {e}", code=MALFORMED_FILE, path=model_dir) from e
    images = sorted((img for img in rec.images.values() if img.has_pose), key=lambda im: im.name)
    if not images:
        raise InputError("the COLMAP model has no registered images", code=MALFORMED_FILE, path=model_dir)
    img_dir = root / "images"
    if not img_dir.is_dir():
        raise InputError("no images/ folder next to sparse/", code=NOT_FOUND, path=root)
    files = [(img_dir / img.name).resolve() for img in images]
    for img, p in zip(images, files):
        if not p.is_relative_to(img_dir.resolve()):
            raise InputError(f"image name {img.name!r} points outside images/", code=MALFORMED_FILE, path=model_dir)
    check_pixel_budget(files, path=root)
    rgbs, Ks, poses, names, masks = [], [], [], [], []
    maps: dict[tuple[int, int, int], np.ndarray] = {}  # one undistortion map per camera and size
    n_distorted = 0
    for img, p in zip(images, files):
        rgb, _ = read_image(p)
        cam = rec.cameras[img.camera_id]
        K, distorted = _camera_matrix(cam, name=img.name, path=model_dir)
        H, W = rgb.shape[:2]
        mask_file = _find_mask(root, img.name)
        mask = None if mask_file is None else read_mask(mask_file)
        if distorted and not is_header_only():
            key = (img.camera_id, W, H)
            if key not in maps:
                maps[key] = undistortion_map(cam, W, H, path=model_dir)
            rgb = remap(rgb, maps[key])
            n_distorted += 1
            if mask is not None and mask.shape == (H, W):
                mask = remap(mask, maps[key])
        if (W, H) != (cam.width, cam.height):  # downsampled images: scale the calibration
            K[0] *= W / cam.width
            K[1] *= H / cam.height
        w2c = np.eye(4)
        w2c[:3] = np.asarray(img.cam_from_world().matrix(), dtype=np.float64)
        rgbs.append(rgb)
        Ks.append(K)
        poses.append(np.linalg.inv(w2c))
        names.append(img.name)
        masks.append(mask)
    stacked = stack_images(rgbs, names, path=root)
    notes: list[str] = []
    n_masks = sum(m is not None for m in masks)
    mask_arr = None
    if n_masks and n_masks != len(masks):
        raise InputError(f"masks/ has masks for {n_masks} of {len(masks)} images: give all or none",
                         code=MALFORMED_FILE, path=root)
    if n_masks:
        mask_arr = drop_placeholder_masks(stack_images(masks, names, path=root, what="mask"), notes)
        if mask_arr is not None and mask_arr.shape != stacked.shape[:3]:
            raise InputError("masks and images differ in size", code=MALFORMED_FILE, path=root)
    if n_distorted:
        notes.append(f"{n_distorted} views undistorted (lens distortion of their COLMAP camera)")
    n_unreg = len(rec.images) - len(images)
    if n_unreg:
        notes.append(f"{n_unreg} images without a pose in the model were skipped")
    points = np.array([p.xyz for p in rec.points3D.values()], dtype=np.float64).reshape(-1, 3)
    ds = MultiviewDataset(images=stacked, intrinsics=np.stack(Ks), c2w=np.stack(poses),
                          normalization=Normalization(np.zeros(3), 1.0), masks=mask_arr, names=names,
                          normalization_source="given", notes=notes)
    validate_dataset(ds, path=root)
    ds = normalize_views(ds, mode=normalization, points=points if len(points) else None, path=root)
    if len(points):
        ds.points = ds.normalization.to_unit(points)
    return ds
