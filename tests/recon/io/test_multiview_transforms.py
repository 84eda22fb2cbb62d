"""transforms.json (instant-ngp / NeuS2) round trip on a synthetic render, and its errors."""

import json
import math
import warnings

import numpy as np
import pytest
import trimesh
from PIL import Image

from recon.io import InputError, load_multiview
from recon.io.dataset import OPENGL_TO_OPENCV
from tests.support.render import render_dataset


@pytest.fixture(scope="module")
def scene():
    """A capsule (centred at (1, 2, 3), 1.6 long) rendered from 6 views at 24x32, world poses."""
    tm = trimesh.creation.capsule(height=1.0, radius=0.3, count=[16, 16])
    tm.apply_translation([1.0, 2.0, 3.0])
    ds = render_dataset(tm, 6, 24, 32, seed=3)
    c2w = ds.c2w.copy()
    c2w[:, :3, 3] = ds.normalization.from_unit(c2w[:, :3, 3])
    return tm, ds, c2w


def write_set(root, ds, c2w_world, *, fmt="fl", ext=True, extra=None, rgba=True):
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir()
    H, W = ds.hw
    frames = []
    for i in range(ds.n_views):
        px = np.round(ds.images[i] * 255).astype(np.uint8)
        if rgba:
            px = np.dstack([px, np.round(ds.masks[i] * 255).astype(np.uint8)])
        Image.fromarray(px).save(root / "images" / f"{i:02d}.png")
        frames.append({"file_path": f"images/{i:02d}" + (".png" if ext else ""),
                       "transform_matrix": (c2w_world[i] @ OPENGL_TO_OPENCV).tolist()})
    K = ds.intrinsics[0]
    meta = {"w": W, "h": H, "frames": frames}
    if fmt == "fl":
        meta.update(fl_x=K[0, 0], fl_y=K[1, 1], cx=K[0, 2], cy=K[1, 2])
    else:
        meta["camera_angle_x"] = 2 * math.atan(0.5 * W / K[0, 0])
    meta.update(extra or {})
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


@pytest.mark.parametrize("fmt,ext", [("fl", True), ("angle", False)])
def test_transforms_roundtrip(tmp_path, scene, fmt, ext):
    tm, ref, c2w_world = scene
    ds = load_multiview(write_set(tmp_path / "set", ref, c2w_world, fmt=fmt, ext=ext))
    assert ds.n_views == 6 and ds.hw == (24, 32)
    np.testing.assert_allclose(ds.images, ref.images, atol=0.5 / 255 + 1e-6)
    np.testing.assert_allclose(ds.masks, ref.masks)
    np.testing.assert_allclose(ds.intrinsics, ref.intrinsics, rtol=1e-9)
    np.testing.assert_allclose(ds.c2w[:, :3, :3], c2w_world[:, :3, :3], atol=1e-12)
    np.testing.assert_allclose(ds.normalization.from_unit(ds.camera_centers()), c2w_world[:, :3, 3], atol=1e-9)
    # Unit sphere from the alpha masks: holds the whole capsule, not much more.
    assert ds.normalization_source == "masks"
    r = np.linalg.norm(ds.normalization.to_unit(tm.vertices), axis=1)
    assert r.max() < 1.0 and r.max() > 0.5


def test_transforms_scale_offset_and_opencv_poses(tmp_path, scene):
    _, ref, c2w_world = scene
    root = write_set(tmp_path / "set", ref, c2w_world, extra={"scale": 0.25, "offset": [0.25, 0.0, -0.25]},
                     rgba=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the cube is centred on the object: no framing warning
        ds = load_multiview(root)
    assert ds.masks is None and ds.normalization_source == "transforms"
    np.testing.assert_allclose(ds.normalization.center, [1.0, 2.0, 3.0])  # (0.5 - offset) / scale
    assert ds.normalization.scale == pytest.approx(2 * math.sqrt(3))
    # NeuS2's own layout: poses already in OpenCV axes.
    meta = json.loads((root / "transforms.json").read_text())
    for i, fr in enumerate(meta["frames"]):
        fr["transform_matrix"] = c2w_world[i].tolist()
    meta["from_na"] = True
    (root / "transforms.json").write_text(json.dumps(meta))
    ds2 = load_multiview(root / "transforms.json")
    np.testing.assert_allclose(ds2.c2w, ds.c2w, atol=1e-12)


def test_transforms_resized_images_rescale_intrinsics(tmp_path, scene):
    _, ref, c2w_world = scene
    root = write_set(tmp_path / "set", ref, c2w_world)
    meta = json.loads((root / "transforms.json").read_text())
    meta.update(w=64, h=48, fl_x=2 * meta["fl_x"], fl_y=2 * meta["fl_y"], cx=2 * meta["cx"], cy=2 * meta["cy"])
    (root / "transforms.json").write_text(json.dumps(meta))
    np.testing.assert_allclose(load_multiview(root).intrinsics, ref.intrinsics, rtol=1e-9)


def _broken(root, edit):
    meta = json.loads((root / "transforms.json").read_text())
    edit(meta)
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


@pytest.mark.parametrize("edit,match,code", [
    (lambda m: m["frames"][2].update(file_path="images/nope.png"), "image 'images/nope.png' not found", "not_found"),
    (lambda m: m["frames"][1].update(file_path="../../etc/passwd"), "outside the dataset", "malformed_file"),
    (lambda m: m["frames"][0].update(transform_matrix=[[1, 0], [0, 1]]), "frame 0 transform_matrix", "malformed_file"),
    (lambda m: m["frames"][0]["transform_matrix"][0].__setitem__(3, float("nan")), "NaN", "non_finite"),
    (lambda m: m.update(k4=0.2), "with k4 is not supported", "unsupported_format"),
    (lambda m: m.update(camera_model="OPENCV_FISHEYE", k1=0.1), "OPENCV_FISHEYE is not supported",
     "unsupported_format"),
    (lambda m: [m.pop(k) for k in ("fl_x", "fl_y")], "no focal length", "malformed_file"),
    (lambda m: m.update(frames=[]), "non-empty 'frames'", "malformed_file"),
])
def test_transforms_errors(tmp_path, scene, edit, match, code):
    _, ref, c2w_world = scene
    root = _broken(write_set(tmp_path / "set", ref, c2w_world), edit)
    with pytest.raises(InputError, match=match) as e:
        load_multiview(root)
    assert e.value.code == code


def test_transforms_invalid_json(tmp_path):
    (tmp_path / "transforms.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_multiview(tmp_path)


def test_opencv_distortion_is_undone(tmp_path, scene):
    """Smooth patterns seen through an OpenCV lens (k1, k2, p1, p2, k3 in the file): the loader
    gives back the pinhole views (bilinear resampling is near exact on smooth images)."""
    from recon.io.undistort import distort, opencv_camera

    _, ref, c2w_world = scene
    H, W = 96, 128
    K = ref.intrinsics[0].copy()
    K[:2] *= 4
    coeffs = {"k1": 0.2, "k2": -0.05, "p1": 0.003, "p2": -0.004, "k3": 0.01}
    yy, xx = np.mgrid[0:H, 0:W] / 16.0
    pinhole = np.stack([np.stack([0.5 + 0.4 * np.sin(xx + k), 0.5 + 0.4 * np.cos(yy - k),
                                  0.5 + 0.3 * np.sin(0.7 * (xx + yy))], -1) for k in range(ref.n_views)])
    cam = opencv_camera(K, W, H, **coeffs)
    photographed = np.stack([distort(im, cam) for im in pinhole])
    big = type(ref)(**{**ref.__dict__, "images": photographed, "intrinsics": np.repeat(K[None], ref.n_views, 0)})
    ds = load_multiview(write_set(tmp_path / "set", big, c2w_world, rgba=False, extra=coeffs))
    np.testing.assert_allclose(ds.intrinsics[0], K, rtol=1e-9)
    assert any(f"{ref.n_views} views undistorted" in n for n in ds.notes), ds.notes
    inner = (slice(None), slice(12, -12), slice(16, -16))
    err_loaded = np.abs(ds.images - pinhole)[inner].max()
    err_raw = np.abs(photographed - pinhole)[inner].max()
    assert err_raw > 0.02 and err_loaded < 0.1 * err_raw, (err_loaded, err_raw)
