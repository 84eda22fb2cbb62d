"""`run()` with method neus: posed images on disk -> coloured mesh in the input frame + PSNR metrics."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from test_multiview import sphere_scene, tiny_config

from meshing.export import load_mesh, save_mesh
from meshing.mesh import Mesh
from recon.methods import get_method
from recon.pipeline import JobSpec, run

CENTER = np.array([1.0, -2.0, 0.5])
WORLD_RADIUS = 0.8  # the sphere's radius in the input (world) frame

OPENGL_FROM_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


def write_nerf_npz(path, n_views=10, size=24):
    """The analytic sphere as a NeRF-style npz: RGBA uint8 images, OpenGL c2w in world units, focal.
    Returns the rendered dataset (normalised frame)."""
    ds = sphere_scene(n_views=n_views, size=size, radius=0.5, scale=WORLD_RADIUS / 0.5, center=CENTER)
    c2w = ds.c2w.copy()
    c2w[:, :3, 3] = ds.normalization.from_unit(c2w[:, :3, 3])
    rgba = np.concatenate([ds.images, ds.masks[..., None]], axis=-1)
    np.savez(path, images=np.round(rgba * 255).astype(np.uint8), poses=(c2w @ OPENGL_FROM_OPENCV).astype(np.float32),
             focal=np.float32(ds.intrinsics[0, 0, 0]))
    return ds


def icosphere(radius, center, subdivisions=3) -> Mesh:
    import open3d as o3d

    m = o3d.geometry.TriangleMesh.create_sphere(radius=radius, resolution=40)
    return Mesh(np.asarray(m.vertices) + center, np.asarray(m.triangles))


@pytest.fixture
def tiny_preset(monkeypatch):
    """The 'fast' preset with the test-sized NeuS model (the pipeline is under test, not the preset)."""
    presets = get_method("neus").presets
    monkeypatch.setitem(presets, "fast", replace(presets["fast"], fit=tiny_config(steps=120)))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_run_neus_writes_a_coloured_mesh_and_view_metrics(tmp_path, tiny_preset):
    scene = tmp_path / "sphere.npz"
    rendered = write_nerf_npz(scene)
    gt = tmp_path / "gt.ply"
    save_mesh(icosphere(WORLD_RADIUS, CENTER), gt)
    events = []
    spec = JobSpec(method="neus", preset="fast", resolution=64, formats=["ply", "glb"], holdout_every=5)
    result = run(spec, scene, tmp_path / "out", gt_path=gt, progress=events.append)

    assert set(result.artifacts) == {"mesh.ply", "mesh.glb", "metrics.json", "views.png"}
    from PIL import Image

    with Image.open(result.artifacts["views.png"]) as sheet:  # 2 held-out views: photo | render | normals
        assert sheet.size == (3 * 24, 2 * 24) and sheet.mode == "RGB"
        px = np.asarray(sheet, dtype=np.float64) / 255.0
    photo, render = px[:, :24], px[:, 24:48]
    assert np.abs(photo - render).mean() < 0.05  # the fit matches the held-out photos
    normals = px[:, 48:]
    assert np.abs(normals[12, 12] - 1).max() > 0.1 and normals[0, 0].min() > 0.9  # a normal on the sphere, white off it
    mesh = load_mesh(result.artifacts["mesh.ply"])
    assert mesh.vertex_colors is not None and mesh.vertex_colors.shape == (mesh.n_vertices, 3)
    # The mesh is back in the input frame: its vertices lie on the world sphere.
    r = np.linalg.norm(mesh.vertices - CENTER, axis=1)
    assert abs(np.median(r) - WORLD_RADIUS) < 0.03 * WORLD_RADIUS

    metrics = json.loads(result.artifacts["metrics.json"].read_text())
    views = metrics["views"]
    assert views["n_train"] == 8 and views["n_test"] == 2
    assert views["psnr_test"] > 24.0 and views["psnr_test_foreground"] > 20.0
    # One PSNR a held-out view; their mean squared errors average to the whole set's.
    per_view = np.asarray(views["psnr_test_views"])
    assert per_view.shape == (2,) and (per_view > 20.0).all()
    assert abs(-10 * np.log10(np.mean(10 ** (-per_view / 10))) - views["psnr_test"]) < 1e-6
    # Held-out views 0 and 5 show the sphere on the constant background: the foreground leaves
    # the pixels off the sphere's mask, and nearly none of the sphere's, to the background.
    masks = rendered.masks[[0, 5]]
    assert abs(views["background_pixels_test"] - (1 - masks.mean())) < 0.03
    assert 0.0 <= views["background_error_share_test"] <= 1.0
    gtm = metrics["ground_truth"]
    assert gtm["chamfer_l1"] < 0.01 * 2 * WORLD_RADIUS * np.sqrt(3)  # 1% of the diagonal
    assert gtm["f_score"] > 0.9
    assert metrics["method"] == "neus" and metrics["mesh"]["watertight"]
    assert views["background_model"] == "constant" and views["region"]["source"] == "masks"
    stages = [e.stage for e in events]
    assert stages.index("load") < stages.index("fit") < stages.index("extract") < stages.index("metrics")


def test_neus_spec_rejects_point_cloud_options():
    with pytest.raises(ValueError, match="marching_cubes"):
        JobSpec(method="neus", extractor="dualmesh_udf")
    with pytest.raises(ValueError, match="max_fit_points"):
        JobSpec(method="neus", max_fit_points=5000)


def test_run_neus_on_a_point_cloud_is_a_clear_input_error(sphere_xyz, tmp_path):
    with pytest.raises(ValueError):
        run(JobSpec(method="neus", preset="fast"), sphere_xyz, tmp_path / "out")


def test_run_neus_keeps_the_mesh_inside_the_bbox(tmp_path, tiny_preset):
    scene = tmp_path / "sphere.npz"
    write_nerf_npz(scene)
    box = [*(CENTER - 1.0), *(CENTER + [1.0, 1.0, 0.0])]  # the lower half of the world sphere
    spec = JobSpec(method="neus", preset="fast", resolution=64, holdout_every=5, bbox=box)
    result = run(spec, scene, tmp_path / "out")
    v = result.mesh.vertices
    assert v[:, 2].max() <= CENTER[2] + 1e-6 and v[:, 2].min() < CENTER[2] - 0.9 * WORLD_RADIUS
    region = result.metrics["views"]["region"]
    assert region["source"] == "bbox" and np.allclose(region["bbox"], box)
