"""recon.pipeline.run end to end on an analytic sphere in an arbitrary frame."""

import json

import numpy as np
import pytest
from pydantic import ValidationError

from meshing.export import load_mesh, save_mesh
from meshing.mesh import Mesh
from recon.io import InputError
from recon.pipeline import JobSpec, run
from recon.progress import Cancelled, CancelToken
from tests.support.analytic import unit_sphere_points

CENTER, RADIUS = np.array([10.0, -5.0, 3.0]), 2.0


def icosphere(subdiv=4):
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=subdiv, radius=RADIUS)
    return Mesh(m.vertices + CENTER, m.faces)


@pytest.mark.parametrize("method", ["poisson", "digs"])
def test_run_maps_back_to_input_frame_and_writes_artifacts(method, sphere_xyz, tmp_path):
    gt_path = tmp_path / "gt.ply"
    save_mesh(icosphere(), gt_path)
    stages = []
    spec = JobSpec(method=method, preset="fast", formats=["ply", "glb"])
    res = run(spec, sphere_xyz, tmp_path / "out", gt_path=gt_path, progress=lambda e: stages.append(e.stage))

    r = np.linalg.norm(res.mesh.vertices - CENTER, axis=1)
    assert abs(np.median(r) - RADIUS) < 0.02 * RADIUS  # in the input's frame, not the unit cube
    assert set(res.artifacts) == {"mesh.ply", "mesh.glb", "metrics.json"}
    back = load_mesh(res.artifacts["mesh.ply"], merge_vertices=False)
    assert back.n_faces == res.mesh.n_faces
    assert np.allclose(back.vertices, res.mesh.vertices, atol=1e-5 * RADIUS)
    metrics = json.loads(res.artifacts["metrics.json"].read_text())
    gt = metrics["ground_truth"]
    assert gt["f_score"] > 0.95 and gt["chamfer_l1"] < 0.02 * RADIUS
    assert metrics["input"]["distance_mean"] < 0.01 * RADIUS
    assert metrics["input"]["watertight"] is True
    assert stages[0] == "load" and stages[-1] == "export" and "metrics" in stages
    if method == "digs":
        assert "fit" in stages and "extract" in stages


def test_spec_rejects_unknown_fields_and_bad_values():
    with pytest.raises(ValidationError, match="extra"):
        JobSpec(method="digs", colour="red")
    with pytest.raises(ValidationError):
        JobSpec(method="marching")
    with pytest.raises(ValidationError):
        JobSpec(resolution=8)
    with pytest.raises(ValidationError):
        JobSpec(formats=["fbx"])


def test_spec_bbox_is_six_finite_numbers_min_below_max():
    assert JobSpec(method="neus", bbox=[-1, -2, -3, 1, 2, 3.5]).bbox == [-1.0, -2.0, -3.0, 1.0, 2.0, 3.5]
    assert JobSpec(method="neus").bbox is None
    for bad, match in [([0, 0, 0, 1, 1], "at least 6"), ([0, 0, 0, 1, 1, 1, 1], "at most 6"),
                       ([0, 0, float("nan"), 1, 1, 1], "finite"), ([0, 0, 0, 1, float("inf"), 1], "finite"),
                       ([0, 2, 0, 1, 1, 1], "min < max .* on y"), ([0, 0, 1, 1, 1, 1], "on z"),
                       (["a", 0, 0, 1, 1, 1], "valid number")]:
        with pytest.raises(ValidationError, match=match):
            JobSpec(method="neus", bbox=bad)
    with pytest.raises(ValidationError, match="'bbox' is for methods that take images"):
        JobSpec(method="digs", bbox=[0, 0, 0, 1, 1, 1])


def test_cancel_before_fit_raises(sphere_xyz, tmp_path):
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        run(JobSpec(method="digs", preset="fast"), sphere_xyz, tmp_path, cancel=token)


def test_bad_input_is_an_input_error(tmp_path):
    bad = tmp_path / "bad.xyz"
    bad.write_text("1 2 3\nnan 0 0\n" * 100)
    with pytest.raises(InputError):
        run(JobSpec(method="poisson", preset="fast"), bad, tmp_path / "out")


def test_small_pieces_are_dropped_from_fields_only():
    """min_component_fraction removes a fitted field's floating fragments; a mesh built from the
    points (screened Poisson) keeps every piece, each being where the data is."""
    from recon.io.normalize import Normalization
    from recon.methods import get_method
    from recon.pipeline import _finish_mesh

    big, small = icosphere(4), icosphere(1)  # 5120 and 80 faces: 1.6% of the big one
    small = Mesh(small.vertices * 0.1 + np.array([30.0, 0, 0]), small.faces)
    both = Mesh(np.concatenate([big.vertices, small.vertices]),
                np.concatenate([big.faces, small.faces + big.n_vertices]))
    spec = JobSpec(min_component_fraction=0.02)
    ident = Normalization(center=np.zeros(3), scale=1.0)
    assert _finish_mesh(both, spec, ident).n_faces == big.n_faces
    assert _finish_mesh(both, spec, ident, drop_fragments=False).n_faces == both.n_faces
    # Which methods build from the points: poisson always, auto when it runs Poisson.
    from recon.methods.base import MethodContext

    pts = unit_sphere_points(2000)
    from recon.io.pointcloud import PointCloud
    for name in ("poisson", "auto"):
        method = get_method(name)
        ctx = MethodContext(preset_name="fast", preset=method.presets["fast"], seed=0, resolution=None,
                            extractor=None, max_fit_points=None, device="cpu", progress=lambda e: None,
                            cancel=None, checkpoint_path=None)
        assert method.reconstruct(PointCloud(pts * 0.8), ctx).from_field is False
