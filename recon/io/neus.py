"""NeuS directories (``image/``, ``mask/``, ``cameras_sphere.npz``) and NeRF-style ``.npz`` arrays.

NeuS stores per view a projection ``world_mat_i`` (``K [R | t]`` with a 4th row) and a
``scale_mat_i`` that maps the unit sphere of interest into the world. ``world_mat @
scale_mat`` is thus the projection from the normalised frame; it is split into intrinsics and
a pose with an RQ decomposition. The scale matrix must be a uniform scale plus a translation
(what NeuS's preprocessing writes): a rotating or anisotropic one is refused, because
``Normalization`` (and the meshes we return) keep angles.

NeuS and DTU calibrations use OpenCV's integer pixel centres, so 0.5 is added to the
principal point to reach this package's +0.5 convention.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
from scipy.linalg import rq

from recon.io.dataset import OPENGL_TO_OPENCV, MultiviewDataset, is_header_only, validate_dataset
from recon.io.errors import IMAGE_TOO_LARGE, MALFORMED_FILE, NON_FINITE, NOT_FOUND, InputError
from recon.io.images import (
    MAX_TOTAL_PIXELS,
    check_pixel_budget,
    composite_on_background,
    drop_placeholder_masks,
    read_image,
    read_mask,
    stack_images,
)
from recon.io.normalize import Normalization
from recon.io.scene_bounds import check_framing, normalize_views

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
HALF_PIXEL = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
"""Left-multiply an integer-pixel-centre K to get the +0.5 convention."""


def decompose_projection(P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A 3x4 projection ``K [R | t]`` -> (K with K[2,2] = 1, camera-to-world 4x4).

    The overall sign of ``P`` is free (it is homogeneous), so it is chosen to make ``det R =
    +1``, and the RQ factors are fixed so that K has a positive diagonal. Raises
    ``ValueError`` for a singular left 3x3 block.
    """
    P = np.asarray(P, dtype=np.float64)[:3, :4]
    M = P[:, :3]
    det = np.linalg.det(M)
    if not np.isfinite(det) or abs(det) <= 1e-12 * float(np.abs(M).max()) ** 3:
        raise ValueError("projection matrix has a singular 3x3 block")
    if det < 0:
        P = -P
        M = P[:, :3]
    K, R = rq(M)
    D = np.diag(np.sign(np.diag(K)))
    K, R = K @ D, D @ R
    t = np.linalg.solve(K, P[:, 3])
    K = K / K[2, 2]
    c2w = np.eye(4)
    c2w[:3, :3] = R.T
    c2w[:3, 3] = -R.T @ t
    return K, c2w


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


def _indexed(npz, prefix: str) -> dict[int, np.ndarray]:
    out = {}
    for k in npz.files:
        m = re.fullmatch(prefix + r"_(\d+)", k)
        if m:
            out[int(m.group(1))] = np.asarray(npz[k], dtype=np.float64)
    return out


def normalization_from_scale_mat(S: np.ndarray, *, path: Path | None = None) -> Normalization:
    """A NeuS ``scale_mat`` (unit frame -> world) as a ``Normalization``; refuses rotation/anisotropy."""
    S = np.asarray(S, dtype=np.float64)
    if S.shape not in ((4, 4), (3, 4)) or not np.isfinite(S).all():
        raise InputError(f"scale_mat must be a finite 4x4 matrix, got shape {S.shape}", code=MALFORMED_FILE,
                         path=path)
    A = S[:3, :3]
    s = float(np.cbrt(np.linalg.det(A))) if np.linalg.det(A) > 0 else 0.0
    if not s > 0 or np.abs(A - s * np.eye(3)).max() > 1e-6 * s:
        raise InputError("scale_mat is not a uniform scale plus translation (it rotates, mirrors or scales "
                         "axes differently); only NeuS's usual similarity without rotation is supported",
                         code=MALFORMED_FILE, path=path)
    return Normalization(center=S[:3, 3], scale=s)


def load_neus(root: Path, *, cameras: str = "cameras_sphere.npz", normalization: str = "auto",
              background: float = 1.0) -> MultiviewDataset:
    """A NeuS directory -> ``MultiviewDataset`` normalised by its ``scale_mat`` (source "scale_mat").

    ``normalization`` other than "auto" recomputes the unit sphere from the world-frame poses
    (see ``recon.io.scene_bounds.MODES``; "none" keeps the world frame). ``background`` is
    accepted for a uniform signature and unused (NeuS keeps masks apart from the images).

    Images are ``image/*`` in sorted order, view i using ``world_mat_i``/``scale_mat_i``; masks
    ``mask/*`` (same count) are optional, and all-white placeholder masks are dropped.
    """
    root = Path(root)
    cam_path = root / cameras
    try:
        with np.load(cam_path, allow_pickle=False) as npz:
            world, scale = _indexed(npz, "world_mat"), _indexed(npz, "scale_mat")
    except FileNotFoundError as e:
        raise InputError(f"{cameras} not found", code=NOT_FOUND, path=root) from e
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"cannot read {cameras}: {e}", code=MALFORMED_FILE, path=cam_path) from e
    if not world:
        raise InputError(f"{cameras} has no world_mat_<i> arrays", code=MALFORMED_FILE, path=cam_path)
    if not (root / "image").is_dir():
        raise InputError("no image/ folder next to the cameras", code=NOT_FOUND, path=root)
    files = _list_images(root / "image")
    n = len(files)
    if n == 0:
        raise InputError("image/ holds no images", code=NOT_FOUND, path=root)
    missing = [i for i in range(n) if i not in world]
    if missing or len(world) != n:
        raise InputError(f"{n} images in image/ but world_mat indices {_span(world)} in {cameras}; "
                         f"they must be 0..{n - 1}", code=MALFORMED_FILE, path=cam_path)
    scale = {i: scale.get(i, np.eye(4)) for i in range(n)}
    norm = normalization_from_scale_mat(scale[0], path=cam_path)
    if any(not np.allclose(scale[i], scale[0], rtol=1e-6, atol=1e-9) for i in range(n)):
        raise InputError("scale_mat differs between views; NeuS expects one normalisation for all",
                         code=MALFORMED_FILE, path=cam_path)

    Ks, poses = [], []
    for i in range(n):
        W, S = world[i], scale[i]
        if W.shape not in ((4, 4), (3, 4)) or not np.isfinite(W).all():
            raise InputError(f"world_mat_{i} must be a finite 3x4 or 4x4 matrix", code=MALFORMED_FILE,
                             path=cam_path)
        S4 = np.eye(4)
        S4[: S.shape[0]] = S
        try:
            K, c2w = decompose_projection(W[:3, :4] @ S4)
        except ValueError as e:
            raise InputError(f"world_mat_{i}: {e}", code=MALFORMED_FILE, path=cam_path) from e
        Ks.append(HALF_PIXEL @ K)
        poses.append(c2w)

    check_pixel_budget(files, path=root)
    rgbs, names = [], [f.name for f in files]
    for f in files:
        rgb, _ = read_image(f)
        rgbs.append(rgb)
    images = stack_images(rgbs, names, path=root)
    notes: list[str] = []
    masks = None
    if (root / "mask").is_dir():
        mfiles = _list_images(root / "mask")
        if mfiles:
            if len(mfiles) != n:
                raise InputError(f"{n} images but {len(mfiles)} masks", code=MALFORMED_FILE, path=root)
            masks = stack_images([read_mask(f) for f in mfiles], [f.name for f in mfiles], path=root, what="mask")
            if masks.shape != images.shape[:3]:
                raise InputError("masks and images differ in size", code=MALFORMED_FILE, path=root)
            masks = drop_placeholder_masks(masks, notes)
    ds = MultiviewDataset(images=images, intrinsics=np.stack(Ks), c2w=np.stack(poses), normalization=norm,
                          masks=masks, names=names, normalization_source="scale_mat", notes=notes)
    validate_dataset(ds, path=root)
    if normalization != "auto":
        ds.c2w[:, :3, 3] = norm.from_unit(ds.c2w[:, :3, 3])
        ds.normalization, ds.normalization_source = Normalization(np.zeros(3), 1.0), "given"
        return normalize_views(ds, mode=normalization, path=root)
    check_framing(ds, path=root)
    return ds


def _span(d: dict) -> str:
    keys = sorted(d)
    return f"{keys[0]}..{keys[-1]} ({len(keys)})" if keys else "none"


def _npz_header_array(path: Path, key: str) -> np.ndarray:
    """A read-only placeholder with the shape and dtype of ``key`` in the npz, from its header only."""
    with zipfile.ZipFile(path) as zf, zf.open(f"{key}.npy") as f:
        version = np.lib.format.read_magic(f)
        shape, _, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                           else np.lib.format.read_array_header_2_0(f))
    return np.broadcast_to(np.zeros((), dtype=dtype), shape)


def load_nerf_npz(path: Path, *, background: float = 1.0, normalization: str = "auto") -> MultiviewDataset:
    """A NeRF-style ``.npz`` (``images``, ``poses`` c2w in OpenGL axes, scalar ``focal``).

    RGBA images give their alpha as the mask and their RGB composited over a uniform
    ``background`` (white by default, as the NeRF synthetic scenes are usually shown).
    uint8 and float images are accepted. The principal point is the image centre. The
    normalisation is computed (``recon.io.scene_bounds``): from the masks when present.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("images", "poses", "focal") if k not in npz.files]
            if missing:
                raise InputError(f"missing arrays {missing}; expected images, poses, focal", code=MALFORMED_FILE,
                                 path=path)
            poses, focal = npz["poses"], npz["focal"]
            images = _npz_header_array(path, "images") if is_header_only() else npz["images"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"cannot read the npz: {e}", code=MALFORMED_FILE, path=path) from e
    if images.ndim != 4 or images.shape[-1] not in (3, 4) or images.shape[0] < 1:
        raise InputError(f"images must be (N, H, W, 3 or 4), got {images.shape}", code=MALFORMED_FILE, path=path)
    n, H, W = images.shape[:3]
    if n * H * W > MAX_TOTAL_PIXELS:
        raise InputError(f"{n} images of {W}x{H} pixels, more than the limit of {MAX_TOTAL_PIXELS} in all",
                         code=IMAGE_TOO_LARGE, path=path)
    if poses.ndim != 3 or poses.shape[0] != n or poses.shape[1:] not in ((4, 4), (3, 4)):
        raise InputError(f"{n} images but poses of shape {poses.shape}; expected ({n}, 4, 4)",
                         code=MALFORMED_FILE, path=path)
    if np.asarray(focal).size != 1 or not np.isfinite(focal) or float(focal) <= 0:
        raise InputError(f"focal must be one positive number, got {focal!r}", code=MALFORMED_FILE, path=path)
    if is_header_only() and images.dtype.kind in "uf":
        img = np.broadcast_to(np.float32(0.5), images.shape)
    elif images.dtype == np.uint8:
        img = images.astype(np.float32) / 255.0
    elif images.dtype == np.uint16:
        img = images.astype(np.float32) / 65535.0
    elif np.issubdtype(images.dtype, np.floating):
        img = images.astype(np.float32)
        if not np.isfinite(img).all():
            raise InputError("images contain NaN or infinite values", code=NON_FINITE, path=path)
        img = np.clip(img, 0.0, 1.0)
    else:
        raise InputError(f"images must be uint8, uint16 or float, got {images.dtype}", code=MALFORMED_FILE,
                         path=path)
    notes: list[str] = []
    masks = None
    if img.shape[-1] == 4:
        masks = img[..., 3] if is_header_only() else np.ascontiguousarray(img[..., 3])
        img = composite_on_background(img[..., :3], masks, background)
        notes.append(f"RGBA images: alpha used as the mask, colours composited on a background of {background:g}")
        masks = drop_placeholder_masks(masks, notes)
    c2w = np.tile(np.eye(4), (n, 1, 1))
    c2w[:, : poses.shape[1]] = np.asarray(poses, dtype=np.float64)
    if not np.isfinite(c2w).all():
        raise InputError("poses contain NaN or infinite values", code=NON_FINITE, path=path)
    c2w = c2w @ OPENGL_TO_OPENCV
    f = float(focal)
    K = np.array([[f, 0.0, W / 2.0], [0.0, f, H / 2.0], [0.0, 0.0, 1.0]])
    ds = MultiviewDataset(images=img if is_header_only() else np.ascontiguousarray(img),
                          intrinsics=np.tile(K, (n, 1, 1)), c2w=c2w,
                          normalization=Normalization(np.zeros(3), 1.0), masks=masks,
                          names=[f"{i:03d}" for i in range(n)], normalization_source="given", notes=notes)
    validate_dataset(ds, path=path)
    return normalize_views(ds, mode=normalization, path=path)
