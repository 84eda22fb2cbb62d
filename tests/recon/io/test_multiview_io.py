"""Posed image loaders: the NeuS layout and NeRF-style npz on real data, and their error paths."""

import numpy as np
import pytest
from PIL import Image

from recon.io import InputError, load_multiview
from recon.io.neus import decompose_projection
from tests.support.dtu import DTU_SCAN24, write_dtu_subset
from tests.support.render import look_at

LEGO = "multiview/tiny_lego_100/tiny_lego_rgba_100.npz"


def write_neus(root, n=4, hw=(12, 16), scale=2.0, center=(1.0, -2.0, 3.0), masks=True):
    """A tiny NeuS directory; returns the world-frame K (integer pixel centres) and c2w."""
    (root / "image").mkdir(parents=True)
    if masks:
        (root / "mask").mkdir()
    H, W = hw
    K = np.array([[20.0, 0, W / 2 - 0.5], [0, 21.0, H / 2 - 0.5], [0, 0, 1]])
    S = np.diag([scale, scale, scale, 1.0])
    S[:3, 3] = center
    arrays, poses = {}, []
    rng = np.random.default_rng(0)
    for i in range(n):
        a = 2 * np.pi * i / n
        c2w = look_at(np.array(center) + scale * 3 * np.array([np.cos(a), np.sin(a), 0.3]), center)
        poses.append(c2w)
        P = np.eye(4)
        P[:3, :4] = K @ np.linalg.inv(c2w)[:3]
        arrays[f"world_mat_{i}"] = P
        arrays[f"scale_mat_{i}"] = S
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(root / "image" / f"{i:03d}.png")
        if masks:
            m = np.zeros((H, W), np.uint8)
            m[3:9, 4:12] = 255
            Image.fromarray(m).save(root / "mask" / f"{i:03d}.png")
    np.savez(root / "cameras_sphere.npz", **arrays)
    return K, np.stack(poses)


def test_decompose_projection_recovers_k_and_pose():
    K = np.array([[300.0, 0.5, 160.0], [0, 310.0, 120.0], [0, 0, 1]])
    c2w = look_at([3.0, -1.0, 2.0], [0.1, 0.2, 0.3])
    P = K @ np.linalg.inv(c2w)[:3]
    for s in (1.0, -7.5):  # a projection is homogeneous: any nonzero scale, either sign
        K2, c2w2 = decompose_projection(s * P)
        np.testing.assert_allclose(K2, K, atol=1e-9)
        np.testing.assert_allclose(c2w2, c2w, atol=1e-9)


@pytest.fixture(scope="module")
def dtu_small(shared_data, tmp_path_factory):
    """Views 0, 7, 14, 21 of the real DTU scan24 at its full 384x384 (cameras as in the file)."""
    return write_dtu_subset(shared_data, tmp_path_factory.mktemp("dtu") / "scan24", views=(0, 7, 14, 21), size=384)


def test_neus_real_data(shared_data, dtu_small):
    ds = load_multiview(dtu_small)
    assert ds.images.shape == (4, 384, 384, 3) and ds.images.dtype == np.float32
    assert ds.masks is None and ds.notes == []  # real cameras: no framing or parallax remark
    assert ds.normalization_source == "scale_mat"
    npz = np.load(shared_data / DTU_SCAN24 / "cameras_sphere.npz")
    S, P = npz["scale_mat_0"], npz["world_mat_7"] @ npz["scale_mat_0"]
    assert ds.normalization.scale == pytest.approx(S[0, 0])
    np.testing.assert_allclose(ds.normalization.center, S[:3, 3])
    # Projecting unit-frame points with the file's P (integer pixel centres) and with the
    # dataset's K and pose (+0.5 centres) must agree.
    pts = np.random.default_rng(1).uniform(-0.5, 0.5, (50, 3))
    ph = P[:3] @ np.c_[pts, np.ones(50)].T
    uv_file = (ph[:2] / ph[2]).T + 0.5
    uv, depth = ds.project(pts)
    np.testing.assert_allclose(uv[1], uv_file, atol=1e-3)  # float32 file
    assert (depth > 0).all()


def test_neus_synthetic_roundtrip(tmp_path):
    K, c2w_world = write_neus(tmp_path)
    ds = load_multiview(tmp_path)
    assert ds.masks is not None and ds.masks.shape == (4, 12, 16)
    assert ds.masks[0, 5, 6] == 1.0 and ds.masks[0, 0, 0] == 0.0
    np.testing.assert_allclose(ds.intrinsics[0], K + np.array([[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]]), atol=1e-9)
    world_centres = ds.normalization.from_unit(ds.camera_centers())
    np.testing.assert_allclose(world_centres, c2w_world[:, :3, 3], atol=1e-9)
    np.testing.assert_allclose(ds.c2w[:, :3, :3], c2w_world[:, :3, :3], atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(ds.camera_centers(), axis=1), 3 * np.sqrt(1.09), atol=1e-9)


def test_lego_npz(shared_data):
    raw = np.load(shared_data / LEGO)
    ds = load_multiview(shared_data / LEGO)
    assert ds.images.shape == (100, 100, 100, 3) and ds.masks.shape == (100, 100, 100)
    alpha = raw["images"][..., 3] / 255.0
    np.testing.assert_allclose(ds.masks, alpha, atol=1e-6)
    assert np.allclose(ds.images[alpha == 0], 1.0)  # composited on white
    assert ds.normalization_source == "masks"
    np.testing.assert_allclose(ds.intrinsics[0], [[raw["focal"], 0, 50], [0, raw["focal"], 50], [0, 0, 1]], rtol=1e-6)
    # OpenGL -> OpenCV: same centre, forward axis is minus the Blender camera's z axis.
    pose = raw["poses"].astype(float)
    np.testing.assert_allclose(ds.normalization.from_unit(ds.camera_centers()), pose[:, :3, 3], atol=1e-5)
    np.testing.assert_allclose(ds.c2w[:, :3, 2], -pose[:, :3, 2], atol=1e-6)
    np.testing.assert_allclose(ds.c2w[:, :3, 1], -pose[:, :3, 1], atol=1e-6)


def _err(path, match, code):
    with pytest.raises(InputError, match=match) as e:
        load_multiview(path)
    assert e.value.code == code
    return e.value


def test_neus_errors(tmp_path):
    write_neus(tmp_path / "a")
    (tmp_path / "a" / "image" / "003.png").unlink()
    _err(tmp_path / "a", "3 images in image/ but world_mat", "malformed_file")

    write_neus(tmp_path / "b")
    Image.fromarray(np.zeros((10, 16, 3), np.uint8)).save(tmp_path / "b" / "image" / "002.png")
    _err(tmp_path / "b", "same size", "malformed_file")

    write_neus(tmp_path / "c")
    (tmp_path / "c" / "image" / "001.png").write_bytes(b"not a png")
    _err(tmp_path / "c", "cannot read image '001.png'", "malformed_file")

    write_neus(tmp_path / "d")
    cams = dict(np.load(tmp_path / "d" / "cameras_sphere.npz"))
    cams["world_mat_2"][0, 0] = np.nan
    np.savez(tmp_path / "d" / "cameras_sphere.npz", **cams)
    _err(tmp_path / "d", "world_mat_2", "malformed_file")

    cams["world_mat_2"] = np.zeros((4, 4))
    np.savez(tmp_path / "d" / "cameras_sphere.npz", **cams)
    _err(tmp_path / "d", "singular", "malformed_file")

    write_neus(tmp_path / "e")
    cams = dict(np.load(tmp_path / "e" / "cameras_sphere.npz"))
    for i in range(4):
        cams[f"scale_mat_{i}"] = np.diag([1.0, 2.0, 1.0, 1.0])
    np.savez(tmp_path / "e" / "cameras_sphere.npz", **cams)
    _err(tmp_path / "e", "uniform scale", "malformed_file")

    write_neus(tmp_path / "f")
    (tmp_path / "f" / "mask" / "000.png").unlink()
    _err(tmp_path / "f", "4 images but 3 masks", "malformed_file")

    _err(tmp_path / "missing", "no such file", "not_found")
    (tmp_path / "empty").mkdir()
    _err(tmp_path / "empty", "not a posed image set", "unsupported_format")


def test_npz_errors(tmp_path):
    H = W = 8
    images = np.zeros((3, H, W, 4), np.uint8)
    poses = np.stack([look_at([4 * np.cos(a), 4 * np.sin(a), 1]) @ np.diag([1, -1, -1, 1])
                      for a in (0, 2, 4)]).astype(np.float32)
    np.savez(tmp_path / "count.npz", images=images, poses=poses[:2], focal=10.0)
    _err(tmp_path / "count.npz", "3 images but poses", "malformed_file")
    np.savez(tmp_path / "nofocal.npz", images=images, poses=poses)
    _err(tmp_path / "nofocal.npz", "missing arrays", "malformed_file")
    bad = poses.copy()
    bad[1, 0, 3] = np.inf
    np.savez(tmp_path / "inf.npz", images=images, poses=bad, focal=10.0)
    _err(tmp_path / "inf.npz", "NaN or infinite", "non_finite")
    bad = poses.copy()
    bad[1, :3, :3] *= 0
    np.savez(tmp_path / "sing.npz", images=images, poses=bad, focal=10.0)
    _err(tmp_path / "sing.npz", "not a rotation", "malformed_file")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04junk")
    _err(tmp_path / "junk.npz", "cannot read", "malformed_file")


def test_probe_checks_structure_without_decoding(tmp_path, shared_data, dtu_small):
    from recon.io.multiview import probe_multiview

    ds = probe_multiview(dtu_small)
    ref = load_multiview(dtu_small)
    assert ds.n_views == 4 and ds.hw == (384, 384) and not ds.images.flags.writeable
    np.testing.assert_array_equal(ds.c2w, ref.c2w)
    lego = probe_multiview(shared_data / LEGO)
    assert lego.n_views == 100 and lego.hw == (100, 100) and lego.normalization_source == "cameras"
    # Structure errors are still found; a corrupt image body is not (only the full load decodes).
    write_neus(tmp_path / "a")
    (tmp_path / "a" / "image" / "003.png").unlink()
    with pytest.raises(InputError, match="3 images in image/ but world_mat"):
        probe_multiview(tmp_path / "a")
    write_neus(tmp_path / "b")
    png = (tmp_path / "b" / "image" / "001.png").read_bytes()
    (tmp_path / "b" / "image" / "001.png").write_bytes(png[:60])
    probe_multiview(tmp_path / "b")
    with pytest.raises(InputError, match="cannot read image '001.png'"):
        load_multiview(tmp_path / "b")


@pytest.mark.parametrize("mode,dtype,scale", [("RGB", np.uint8, 255), ("RGBA", np.uint8, 255), ("L", np.uint8, 255),
                                              ("I;16", np.uint16, 65535)])
def test_read_image_modes(tmp_path, mode, dtype, scale):
    from recon.io.images import read_image

    rng = np.random.default_rng(0)
    shape = {"RGB": (5, 7, 3), "RGBA": (5, 7, 4), "L": (5, 7), "I;16": (5, 7)}[mode]
    px = rng.integers(0, scale, shape, endpoint=True).astype(dtype)
    Image.fromarray(px, mode=mode if mode != "I;16" else None).save(tmp_path / "x.png")
    rgb, alpha = read_image(tmp_path / "x.png")
    assert rgb.shape == (5, 7, 3) and rgb.dtype == np.float32
    expect = px[..., :3] / scale if px.ndim == 3 else np.repeat(px[..., None] / scale, 3, axis=-1)
    np.testing.assert_allclose(rgb, expect, atol=1e-6)
    if mode == "RGBA":
        np.testing.assert_allclose(alpha, px[..., 3] / 255, atol=1e-6)
    else:
        assert alpha is None


def test_pixel_caps(tmp_path, monkeypatch):
    import recon.io.images as mv

    write_neus(tmp_path / "a", n=4, hw=(12, 16))
    monkeypatch.setattr(mv, "MAX_IMAGE_PIXELS", 150)  # 12 x 16 = 192 pixels per image
    with pytest.raises(InputError, match="has 16x12 pixels, more than the limit of 150") as e:
        load_multiview(tmp_path / "a")
    assert e.value.code == "image_too_large"
    monkeypatch.setattr(mv, "MAX_IMAGE_PIXELS", 10_000)
    with pytest.raises(InputError, match="the 4 images hold 768 pixels, more than the limit of 700") as e:
        mv.check_pixel_budget(sorted((tmp_path / "a" / "image").iterdir()), limit=700)
    assert e.value.code == "image_too_large"
    mv.check_pixel_budget(sorted((tmp_path / "a" / "image").iterdir()), limit=768)


def test_neus_normalization_override(tmp_path):
    _, c2w_world = write_neus(tmp_path / "a", n=6)
    ref = load_multiview(tmp_path / "a")
    ds = load_multiview(tmp_path / "a", normalization="cameras")
    assert ref.normalization_source == "scale_mat" and ds.normalization_source == "cameras"
    np.testing.assert_allclose(ds.normalization.from_unit(ds.camera_centers()), c2w_world[:, :3, 3], atol=1e-9)
    # The synthetic cameras orbit the scale_mat centre and look at it: the optical axes meet there.
    np.testing.assert_allclose(ds.normalization.center, ref.normalization.center, atol=1e-9)
