"""COLMAP models written with pycolmap from a synthetic render load back with the same cameras."""

import numpy as np
import pycolmap
import pytest
import trimesh
from PIL import Image

from recon.io import InputError, load_multiview
from recon.io.undistort import distort
from tests.support.render import render_dataset


@pytest.fixture(scope="module")
def scene():
    """A 1.2 x 0.8 x 0.6 box centred at (-2, 0.5, 4), 5 views of 24x32, poses in the world frame."""
    tm = trimesh.creation.box(extents=[1.2, 0.8, 0.6])
    tm.apply_translation([-2.0, 0.5, 4.0])
    ds = render_dataset(tm, 5, 24, 32, seed=1)
    c2w = ds.c2w.copy()
    c2w[:, :3, 3] = ds.normalization.from_unit(c2w[:, :3, 3])
    points, _ = trimesh.sample.sample_surface(tm, 300, seed=0)
    return tm, ds, c2w, np.asarray(points)


def write_colmap(root, ds, c2w, points, *, model="PINHOLE", extra=(), masks=False, sub=("sparse", "0"),
                 images=None):
    (root / "images").mkdir(parents=True)
    model_dir = root.joinpath(*sub)
    model_dir.mkdir(parents=True)
    H, W = ds.hw
    K = ds.intrinsics[0]
    params = {"PINHOLE": [K[0, 0], K[1, 1], K[0, 2], K[1, 2]],
              "SIMPLE_PINHOLE": [K[0, 0], K[0, 2], K[1, 2]],
              "OPENCV": [K[0, 0], K[1, 1], K[0, 2], K[1, 2], 0, 0, 0, 0],
              "SIMPLE_RADIAL": [K[0, 0], K[0, 2], K[1, 2], 0]}[model]
    for i, v in enumerate(extra):
        params[len(params) - len(extra) + i] = v
    images = ds.images if images is None else images
    rec = pycolmap.Reconstruction()
    cam = pycolmap.Camera.create_from_model_name(1, model, K[0, 0], W, H)
    cam.params = params
    rec.add_camera_with_trivial_rig(cam)
    for i in range(ds.n_views):
        name = f"img_{i:02d}.png"
        Image.fromarray(np.round(images[i] * 255).astype(np.uint8)).save(root / "images" / name)
        if masks:
            (root / "masks").mkdir(exist_ok=True)
            Image.fromarray(np.round(ds.masks[i] * 255).astype(np.uint8)).save(root / "masks" / f"{name}.png")
        img = pycolmap.Image(name=name, camera_id=1, image_id=i + 1)
        rec.add_image_with_trivial_frame(img, pycolmap.Rigid3d(np.linalg.inv(c2w[i])[:3]))
    for p in points:
        rec.add_point3D(p, pycolmap.Track())
    rec.write(str(model_dir))
    return root


@pytest.mark.parametrize("model,sub", [("PINHOLE", ("sparse", "0")), ("SIMPLE_PINHOLE", ("sparse",)),
                                       ("OPENCV", ("sparse", "0"))])
def test_colmap_roundtrip(tmp_path, scene, model, sub):
    tm, ref, c2w, points = scene
    ds = load_multiview(write_colmap(tmp_path / "proj", ref, c2w, points, model=model, sub=sub))
    assert ds.names == [f"img_{i:02d}.png" for i in range(5)] and ds.masks is None
    np.testing.assert_allclose(ds.images, ref.images, atol=0.5 / 255 + 1e-6)
    np.testing.assert_allclose(ds.intrinsics, ref.intrinsics, rtol=1e-9)
    np.testing.assert_allclose(ds.c2w[:, :3, :3], c2w[:, :3, :3], atol=1e-9)
    np.testing.assert_allclose(ds.normalization.from_unit(ds.camera_centers()), c2w[:, :3, 3], atol=1e-9)
    # Unit sphere from the sparse points: it holds the box (points trimmed, then padded).
    assert ds.normalization_source == "sparse_points"
    r = np.linalg.norm(ds.normalization.to_unit(tm.vertices), axis=1)
    assert 0.7 < r.max() < 1.05


def test_colmap_masks_take_precedence(tmp_path, scene):
    tm, ref, c2w, points = scene
    ds = load_multiview(write_colmap(tmp_path / "proj", ref, c2w, points, masks=True))
    np.testing.assert_allclose(ds.masks, ref.masks)
    assert ds.normalization_source == "masks"
    assert np.linalg.norm(ds.normalization.to_unit(tm.vertices), axis=1).max() < 1.0


@pytest.mark.parametrize("model,extra", [("SIMPLE_RADIAL", (-0.3,)), ("OPENCV", (0.2, -0.05, 0.004, -0.003))])
def test_distorted_cameras_are_undistorted(tmp_path, scene, model, extra):
    """Smooth test patterns seen through a known lens: the loader gives back the pinhole views
    (bilinear resampling is near exact on smooth images, so what is left is the lens)."""
    _, ref, c2w, points = scene
    H, W = 96, 128
    K = ref.intrinsics[0].copy()
    K[:2] *= 4  # the 24x32 scene's cameras at 96x128
    yy, xx = np.mgrid[0:H, 0:W] / 16.0
    pinhole = np.stack([np.stack([0.5 + 0.4 * np.sin(xx + k), 0.5 + 0.4 * np.cos(yy - k),
                                  0.5 + 0.3 * np.sin(0.7 * (xx + yy))], -1) for k in range(ref.n_views)])
    cam = pycolmap.Camera.create_from_model_name(1, model, K[0, 0], W, H)
    cam.params = {"SIMPLE_RADIAL": [K[0, 0], K[0, 2], K[1, 2]],
                  "OPENCV": [K[0, 0], K[1, 1], K[0, 2], K[1, 2]]}[model] + list(extra)
    photographed = np.stack([distort(im, cam) for im in pinhole])
    big = type(ref)(**{**ref.__dict__, "images": photographed, "intrinsics": np.repeat(K[None], ref.n_views, 0)})
    ds = load_multiview(write_colmap(tmp_path / "proj", big, c2w, points, model=model, extra=extra))
    np.testing.assert_allclose(ds.intrinsics[0], K, rtol=1e-9)  # a pinhole with the same K
    assert any(f"{ref.n_views} views undistorted" in n for n in ds.notes), ds.notes
    # Away from the border (where the distorted photo saw less than the pinhole view).
    inner = (slice(None), slice(12, -12), slice(16, -16))
    err_loaded = np.abs(ds.images - pinhole)[inner].max()
    err_raw = np.abs(photographed - pinhole)[inner].max()
    assert err_raw > 0.02 and err_loaded < 0.1 * err_raw, (err_loaded, err_raw)  # 8-bit PNGs: ~0.002 left


def test_colmap_errors(tmp_path, scene):
    _, ref, c2w, points = scene
    root = write_colmap(tmp_path / "fisheye", ref, c2w, points)
    rec = pycolmap.Reconstruction(str(root / "sparse" / "0"))
    fisheye = pycolmap.Camera.create_from_model_name(1, "SIMPLE_RADIAL_FISHEYE", 30.0, 32, 24)
    rec.cameras[1].model, rec.cameras[1].params = fisheye.model, fisheye.params
    rec.write(str(root / "sparse" / "0"))
    with pytest.raises(InputError, match="SIMPLE_RADIAL_FISHEYE .* not supported") as e:
        load_multiview(root)
    assert e.value.code == "unsupported_format"

    root = write_colmap(tmp_path / "missing", ref, c2w, points)
    (root / "images" / "img_03.png").unlink()
    with pytest.raises(InputError, match="img_03.png") as e:
        load_multiview(root)
    assert e.value.code == "not_found"

    root = write_colmap(tmp_path / "corrupt", ref, c2w, points)
    (root / "sparse" / "0" / "images.bin").write_bytes(b"\x07" * 10)
    with pytest.raises(InputError, match="cannot read the COLMAP model") as e:
        load_multiview(root)
    assert e.value.code == "malformed_file"
