"""The `surfrecon reconstruct` and `evaluate` commands, run as a user would (subprocess)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from meshing.export import load_mesh


def surfrecon(*args, timeout=600):
    # -X faulthandler: a crash of the child (a native library's segfault) prints its Python stack
    # into the stderr the assertions show.
    return subprocess.run([sys.executable, "-X", "faulthandler", "-m", "service.cli", *args], check=False,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("fmt", ["ply", "obj", "glb", "stl"])
def test_reconstruct_writes_requested_format(fmt, sphere_xyz, tmp_path):
    out = tmp_path / f"mesh.{fmt}"
    metrics = tmp_path / "m.json"
    p = surfrecon("reconstruct", str(sphere_xyz), "-o", str(out), "--method", "poisson", "--preset", "fast",
                  "--metrics-json", str(metrics), "-q")
    assert p.returncode == 0, p.stderr
    mesh = load_mesh(out)
    r = np.linalg.norm(mesh.vertices - [10.0, -5.0, 3.0], axis=1)
    assert abs(np.median(r) - 2.0) < 0.05
    assert json.loads(metrics.read_text())["input"]["distance_mean"] < 0.02


def test_reconstruct_digs_fast_and_evaluate(sphere_xyz, tmp_path):
    out = tmp_path / "digs.ply"
    p = surfrecon("reconstruct", str(sphere_xyz), "-o", str(out), "--preset", "fast", "--seed", "3")
    assert p.returncode == 0, p.stderr
    assert "wrote" in p.stdout
    import trimesh

    gt = tmp_path / "gt.ply"
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=2.0)
    sphere.apply_translation([10.0, -5.0, 3.0])
    sphere.export(gt)
    p2 = surfrecon("evaluate", str(out), "--gt", str(gt), "--json", "--samples", "50000")
    assert p2.returncode == 0, p2.stderr
    m = json.loads(p2.stdout)
    # 50k samples on a radius-2 sphere are ~0.02 apart, which bounds Chamfer-L1 from below.
    assert m["f_score"] > 0.99 and m["chamfer_l1"] < 0.04
    assert set(m) >= {"chamfer_l2", "normal_consistency", "hausdorff"}


@pytest.mark.parametrize("content, needle", [
    ("", "empty"),
    (("ply\nformat ascii 1.0\nelement vertex 500\nproperty float x\nproperty float y\nproperty float z\n"
      "end_header\n0 0 0\n"), "500"),
    ("1 2 3\n" * 5, "points"),
])
def test_bad_inputs_exit_2_with_message(content, needle, tmp_path):
    suffix = ".ply" if content.startswith("ply") else ".xyz"
    bad = tmp_path / f"bad{suffix}"
    bad.write_text(content)
    p = surfrecon("reconstruct", str(bad), "-o", str(tmp_path / "o.ply"), "--method", "poisson", "--preset", "fast")
    assert p.returncode == 2
    assert "error:" in p.stderr and needle in p.stderr.lower()
    assert "Traceback" not in p.stderr


def test_missing_file_and_bad_output_suffix(tmp_path):
    p = surfrecon("reconstruct", str(tmp_path / "nope.ply"), "-o", str(tmp_path / "o.ply"))
    assert p.returncode == 2 and "not found" in p.stderr
    p = surfrecon("reconstruct", str(tmp_path / "nope.ply"), "-o", str(tmp_path / "o.fbx"))
    assert p.returncode == 2 and ".fbx" in p.stderr


def test_bbox_option_reaches_the_spec():
    from service.cli import build_parser
    from service.client import _spec

    args = build_parser().parse_args(["reconstruct", "photos/", "-o", "m.ply", "--method", "neus",
                                      "--bbox", "-1", "-2", "-3", "1", "2.5", "3"])
    assert args.bbox == [-1.0, -2.0, -3.0, 1.0, 2.5, 3.0]
    sub = build_parser().parse_args(["submit", "a.zip", "--method", "neus", "--bbox", "0", "0", "0", "1", "1", "1e-1"])
    assert _spec(sub)["bbox"] == [0.0, 0.0, 0.0, 1.0, 1.0, 0.1]
    assert "bbox" not in _spec(build_parser().parse_args(["submit", "a.zip"]))


def test_bad_bbox_exits_2_naming_it(tmp_path):
    (tmp_path / "photos").mkdir()
    p = surfrecon("reconstruct", str(tmp_path / "photos"), "-o", str(tmp_path / "o.ply"), "--method", "neus", "-q",
                  "--bbox", "0", "0", "0", "1", "-1", "1")
    assert p.returncode == 2 and "bbox" in p.stderr and "min < max" in p.stderr, p.stderr
    p = surfrecon("reconstruct", str(tmp_path / "photos"), "-o", str(tmp_path / "o.ply"), "--method", "neus",
                  "--bbox", "0", "0", "0", "1")
    assert p.returncode == 2 and "--bbox" in p.stderr


def test_summary_names_the_held_out_psnr_and_its_spread(tmp_path, capsys):
    """A photo job's summary line gives the held-out PSNR with its worst and best view."""
    from meshing.mesh import Mesh
    from service.cli import _report

    mesh = Mesh(np.zeros((3, 3)), np.array([[0, 1, 2]]))
    views = {"psnr_test": 22.7, "n_test": 3, "n_train": 21, "psnr_test_views": [24.1, 21.1, 23.9]}
    _report({"views": views, "timings_s": {"total": 1.0}}, mesh, tmp_path / "m.ply", None, quiet=False)
    assert "PSNR 22.70 dB over 3 views (21.1 to 24.1 dB, fitted on 21)" in capsys.readouterr().out
    _report({"views": {**views, "psnr_test_views": [22.7], "n_test": 1}}, mesh, tmp_path / "m.ply", None, quiet=False)
    assert "PSNR 22.70 dB over 1 view (fitted on 21)" in capsys.readouterr().out
