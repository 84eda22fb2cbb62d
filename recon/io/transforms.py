"""instant-ngp / NeuS2 / nerfstudio ``transforms.json`` image sets.

Read keys (top level, and per frame where these formats allow overriding them):

* intrinsics: ``fl_x``/``fl_y``/``cx``/``cy`` (pixels; ``fl_y`` defaults to ``fl_x``, the
  principal point to the image centre), else ``camera_angle_x`` (and ``camera_angle_y``)
  field-of-view angles in radians, or a per-frame ``intrinsic_matrix`` (NeuS2, 3x3 or 4x4);
  ``w``/``h`` give the size those intrinsics refer to (images of another size rescale them).
  Pixel centres are at +0.5, as in instant-ngp and nerfstudio. Lens distortion in OpenCV's
  radial-tangential model (``k1``, ``k2``, ``p1``, ``p2``, ``k3``) is undone on load
  (``recon.io.undistort``); ``k4`` and ``camera_model: OPENCV_FISHEYE`` are refused.
* per frame: ``file_path`` (relative to the json file, with or without an image suffix),
  optional ``mask_path``, and ``transform_matrix``: camera-to-world in OpenGL/Blender camera
  axes, or in OpenCV axes when the file says ``"from_na": true`` (NeuS2's own layout).
* normalisation: when ``scale`` or ``offset`` is present, the instant-ngp unit cube
  (``ngp = world * scale + offset`` per axis, the cube being [0, 1]^3) is the region, and the
  unit sphere is the sphere around that cube (source "transforms"); otherwise it is computed
  (``recon.io.scene_bounds``). ``aabb_scale`` only widens instant-ngp's background region and
  is not used.

RGBA images give their alpha as the mask, with colours composited over a uniform background
(white by default).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from recon.io.dataset import OPENGL_TO_OPENCV, MultiviewDataset, is_header_only, validate_dataset
from recon.io.errors import MALFORMED_FILE, NON_FINITE, NOT_FOUND, UNSUPPORTED_FORMAT, InputError
from recon.io.images import (
    check_pixel_budget,
    composite_on_background,
    drop_placeholder_masks,
    read_image,
    read_mask,
    stack_images,
)
from recon.io.normalize import Normalization
from recon.io.scene_bounds import check_framing, normalize_views
from recon.io.undistort import opencv_camera, remap, undistortion_map

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG", ".webp", ".bmp", ".tif", ".tiff")
JSON_NAMES = ("transforms.json", "transforms_train.json")
MAX_JSON_BYTES = 64 << 20


def find_transforms(path: Path) -> Path:
    """The json file for ``path`` (the file itself, or the first of ``JSON_NAMES`` in a directory)."""
    if path.is_file():
        return path
    for name in JSON_NAMES:
        if (path / name).is_file():
            return path / name
    raise InputError(f"no {' or '.join(JSON_NAMES)} in the directory", code=NOT_FOUND, path=path)


def _resolve_image(base: Path, rel: str, *, json_path: Path) -> Path:
    p = (base / rel).resolve()
    if not p.is_relative_to(base.resolve()):
        raise InputError(f"file_path {rel!r} points outside the dataset folder", code=MALFORMED_FILE, path=json_path)
    if p.is_file():
        return p
    for suffix in IMAGE_SUFFIXES:
        q = p.with_name(p.name + suffix)
        if q.is_file():
            return q
    raise InputError(f"image {rel!r} not found", code=NOT_FOUND, path=json_path)


def _number(d: dict, key: str, *, json_path: Path) -> float | None:
    if key not in d or d[key] is None:
        return None
    try:
        x = float(d[key])
    except (TypeError, ValueError) as e:
        raise InputError(f"{key} must be a number, got {d[key]!r}", code=MALFORMED_FILE, path=json_path) from e
    if not math.isfinite(x):
        raise InputError(f"{key} is not finite", code=NON_FINITE, path=json_path)
    return x


def _matrix(value, shape_ok, what: str, *, json_path: Path) -> np.ndarray:
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InputError(f"{what} is not a numeric matrix", code=MALFORMED_FILE, path=json_path) from e
    if m.shape not in shape_ok:
        raise InputError(f"{what} must have shape {' or '.join(map(str, shape_ok))}, got {m.shape}",
                         code=MALFORMED_FILE, path=json_path)
    if not np.isfinite(m).all():
        raise InputError(f"{what} contains NaN or infinite values", code=NON_FINITE, path=json_path)
    return m


DISTORTION_KEYS = ("k1", "k2", "p1", "p2", "k3")


def _distortion(meta: dict, frame: dict, *, json_path: Path) -> dict[str, float]:
    """The frame's non-zero OpenCV distortion coefficients (frame keys override top-level ones)."""
    d = {**meta, **frame}
    model = str(d.get("camera_model", "OPENCV")).upper()
    k4 = _number(d, "k4", json_path=json_path)
    if model not in ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE") or (k4 is not None and abs(k4) > 1e-6):
        raise InputError(f"camera model {model} {'with k4 ' if k4 else ''}is not supported: expected OPENCV "
                         "(k1, k2, p1, p2, k3), or undistort the images first", code=UNSUPPORTED_FORMAT,
                         path=json_path)
    coeffs = {k: _number(d, k, json_path=json_path) for k in DISTORTION_KEYS}
    return {k: float(v) for k, v in coeffs.items() if v is not None and abs(v) > 1e-6}


def _intrinsics(meta: dict, frame: dict, hw: tuple[int, int], *, json_path: Path, idx: int) -> np.ndarray:
    """3x3 K for a frame of actual size ``hw``; frame keys override top-level ones."""
    d = {**meta, **{k: v for k, v in frame.items() if k not in ("file_path", "transform_matrix")}}
    H, W = hw
    w0 = _number(d, "w", json_path=json_path) or W
    h0 = _number(d, "h", json_path=json_path) or H
    if "intrinsic_matrix" in frame:
        K = _matrix(frame["intrinsic_matrix"], ((3, 3), (4, 4)), f"frame {idx} intrinsic_matrix",
                    json_path=json_path)[:3, :3].copy()
    else:
        fx, fy = _number(d, "fl_x", json_path=json_path), _number(d, "fl_y", json_path=json_path)
        if fx is None:
            ax = _number(d, "camera_angle_x", json_path=json_path)
            if ax is None:
                raise InputError("no focal length: expected fl_x or camera_angle_x", code=MALFORMED_FILE,
                                 path=json_path)
            if not 0 < ax < math.pi:
                raise InputError(f"camera_angle_x must be in (0, pi) radians, got {ax}", code=MALFORMED_FILE,
                                 path=json_path)
            fx = 0.5 * w0 / math.tan(0.5 * ax)
            ay = _number(d, "camera_angle_y", json_path=json_path)
            fy = 0.5 * h0 / math.tan(0.5 * ay) if ay is not None and 0 < ay < math.pi else None
        fy = fx if fy is None else fy
        cx, cy = _number(d, "cx", json_path=json_path), _number(d, "cy", json_path=json_path)
        K = np.array([[fx, 0.0, w0 / 2 if cx is None else cx], [0.0, fy, h0 / 2 if cy is None else cy],
                      [0.0, 0.0, 1.0]])
    if (W, H) != (w0, h0):  # images stored at another resolution than the calibration
        K[0] *= W / w0
        K[1] *= H / h0
    return K


def load_transforms(path: Path, *, background: float = 1.0, normalization: str = "auto") -> MultiviewDataset:
    """A ``transforms.json`` file (or a directory holding one) -> ``MultiviewDataset``."""
    json_path = find_transforms(Path(path))
    if json_path.stat().st_size > MAX_JSON_BYTES:
        raise InputError(f"the json file is larger than {MAX_JSON_BYTES >> 20} MiB", code=MALFORMED_FILE,
                         path=json_path)
    try:
        meta = json.loads(json_path.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"not valid JSON: {e}", code=MALFORMED_FILE, path=json_path) from e
    frames = meta.get("frames") if isinstance(meta, dict) else None
    if not isinstance(frames, list) or not frames or not all(isinstance(f, dict) for f in frames):
        raise InputError("expected an object with a non-empty 'frames' list", code=MALFORMED_FILE, path=json_path)
    base = json_path.parent
    opencv = bool(meta.get("from_na", False))
    for i, fr in enumerate(frames):
        if "file_path" not in fr or "transform_matrix" not in fr:
            raise InputError(f"frame {i} needs file_path and transform_matrix", code=MALFORMED_FILE, path=json_path)
    files = [_resolve_image(base, str(fr["file_path"]), json_path=json_path) for fr in frames]
    check_pixel_budget(files, path=json_path)
    rgbs, alphas, masks, names, Ks, poses = [], [], [], [], [], []
    n_undistorted = 0
    for i, (fr, img_path) in enumerate(zip(frames, files)):
        rgb, alpha = read_image(img_path)
        mask = None
        if "mask_path" in fr:
            mask = read_mask(_resolve_image(base, str(fr["mask_path"]), json_path=json_path))
        c2w = np.eye(4)
        m = _matrix(fr["transform_matrix"], ((4, 4), (3, 4)), f"frame {i} transform_matrix", json_path=json_path)
        c2w[: m.shape[0]] = m
        K = _intrinsics(meta, fr, rgb.shape[:2], json_path=json_path, idx=i)
        coeffs = _distortion(meta, fr, json_path=json_path)
        if coeffs and not is_header_only():
            H, W = rgb.shape[:2]
            coords = undistortion_map(opencv_camera(K, W, H, **coeffs), W, H, path=json_path, what=f"frame {i}: ")
            rgb = remap(rgb, coords)
            alpha = None if alpha is None else remap(alpha, coords)
            mask = None if mask is None or mask.shape != (H, W) else remap(mask, coords)
            n_undistorted += 1
        rgbs.append(rgb)
        alphas.append(alpha)
        names.append(str(fr["file_path"]))
        if mask is not None:
            masks.append(mask)
        poses.append(c2w if opencv else c2w @ OPENGL_TO_OPENCV)
        Ks.append(K)
    images = stack_images(rgbs, names, path=json_path)
    notes: list[str] = []
    if n_undistorted:
        notes.append(f"{n_undistorted} views undistorted (OpenCV lens coefficients in the file)")
    mask_arr = None
    if masks:
        if len(masks) != len(frames):
            raise InputError(f"{len(masks)} of {len(frames)} frames have a mask_path: give all or none",
                             code=MALFORMED_FILE, path=json_path)
        mask_arr = stack_images(masks, names, path=json_path, what="mask")
        if mask_arr.shape != images.shape[:3]:
            raise InputError("masks and images differ in size", code=MALFORMED_FILE, path=json_path)
    if any(a is not None for a in alphas):
        alpha = np.stack([np.ones(images.shape[1:3], np.float32) if a is None else a for a in alphas])
        images = composite_on_background(images, alpha, background)
        notes.append(f"RGBA images: colours composited on a background of {background:g}")
        if mask_arr is None:
            mask_arr = alpha
            notes.append("alpha used as the mask")
    mask_arr = drop_placeholder_masks(mask_arr, notes)
    ds = MultiviewDataset(images=images, intrinsics=np.stack(Ks), c2w=np.stack(poses),
                          normalization=Normalization(np.zeros(3), 1.0), masks=mask_arr, names=names,
                          normalization_source="given", notes=notes)
    validate_dataset(ds, path=json_path)
    if normalization == "auto" and ("scale" in meta or "offset" in meta):
        norm = _ngp_normalization(meta, json_path=json_path)
        ds.c2w[:, :3, 3] = norm.to_unit(ds.c2w[:, :3, 3])
        ds.normalization, ds.normalization_source = norm, "transforms"
        ds.notes.append("unit sphere: the sphere around the file's instant-ngp unit cube (scale/offset)")
        check_framing(ds, path=json_path)
        return ds
    return normalize_views(ds, mode=normalization, path=json_path)


def _ngp_normalization(meta: dict, *, json_path: Path) -> Normalization:
    scale = _number(meta, "scale", json_path=json_path)
    scale = 0.33 if scale is None else scale  # instant-ngp's default
    offset = _matrix(meta.get("offset", [0.5, 0.5, 0.5]), ((3,),), "offset", json_path=json_path)
    if not scale > 0:
        raise InputError(f"scale must be positive, got {scale}", code=MALFORMED_FILE, path=json_path)
    # ngp = world * scale + offset, cube [0, 1]^3: centre 0.5, circumscribed radius sqrt(3)/2.
    return Normalization(center=(0.5 - offset) / scale, scale=math.sqrt(3) / 2 / scale)
