"""The method table: it drives the job spec and the pipeline, it is checked when entries
register, and every registered method runs end to end (a few steps on a tiny input)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from pydantic import ValidationError
from test_multiview import tiny_config
from test_pipeline_neus import write_nerf_npz

from recon.extraction import EXTRACTORS
from recon.methods import (
    DEFAULT_METHOD,
    METHODS,
    PRESET_NAMES,
    Method,
    Preset,
    get_method,
    method_names,
    register_method,
)
from recon.pipeline import run
from recon.spec import JobSpec


def test_the_spec_offers_exactly_the_table():
    schema = JobSpec.model_json_schema()["properties"]
    assert schema["method"]["enum"] == method_names() == ["auto", "digs", "poisson", "udf", "neus"]
    assert schema["method"]["default"] == DEFAULT_METHOD == JobSpec().method
    assert schema["extractor"]["anyOf"][0]["enum"] == list(EXTRACTORS)
    assert method_names("images") == ["neus"] and method_names("points") == ["auto", "digs", "poisson", "udf"]
    with pytest.raises(ValueError, match=r"unknown method 'marching'; expected one of \['auto', 'digs'"):
        get_method("marching")


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_entry_is_complete(name):
    m = get_method(name)
    assert set(m.presets) == set(PRESET_NAMES)
    assert m.label and m.description.endswith(".") and m.input_kind in ("points", "images")
    assert all(e in EXTRACTORS for e in m.extractors)
    fitted = m.field_kind != "none"
    assert all((p.resolution is not None) == fitted for p in m.presets.values())


def test_spec_options_follow_the_method():
    for name in method_names():
        m = get_method(name)
        for extractor in EXTRACTORS:
            if extractor in m.extractors:
                assert JobSpec(method=name, extractor=extractor).extractor == extractor
            else:
                with pytest.raises(ValidationError, match=f"{name} (builds its own mesh|fits a )"):
                    JobSpec(method=name, extractor=extractor)
        if m.input_kind == "points":
            assert JobSpec(method=name, max_fit_points=5000).max_fit_points == 5000
        else:
            with pytest.raises(ValidationError, match=f"{name} fits images, not points"):
                JobSpec(method=name, max_fit_points=5000)


def _entry(**kw) -> Method:
    base = {"name": "digs", "label": "x", "description": "x.", "input_kind": "points", "field_kind": "signed",
            "extractors": ("marching_cubes",), "make_presets": lambda: {p: Preset(None, 64) for p in PRESET_NAMES},
            "reconstruct": lambda data, ctx: None, "order": 99}
    return Method(**{**base, **kw})


def test_registering_a_name_twice_is_an_error():
    with pytest.raises(KeyError, match="'digs' is already registered"):
        register_method(_entry())
    assert METHODS["digs"] is get_method("digs") and get_method("digs").label == "Smooth closed surface (neural)"


def test_malformed_entries_are_refused():
    with pytest.raises(ValueError, match="input_kind"):
        _entry(name="video", input_kind="video")
    with pytest.raises(ValueError, match="extractors exactly when it fits a field"):
        _entry(name="direct", field_kind="none")
    with pytest.raises(ValueError, match="lower-case identifier"):
        _entry(name="Auto")
    with pytest.raises(ValueError, match="expected presets"):
        _ = _entry(name="partial", make_presets=lambda: {"fast": Preset(None)}).presets


# ---- every registered method runs, through the one pipeline path ----------------------------

TINY = {
    "digs": lambda cfg: replace(cfg, steps=6, surface_batch=1024, near_batch=512, space_batch=512, log_every=3),
    "udf": lambda cfg: replace(cfg, steps=6, pool_size=5000, log_every=3),
    "neus": lambda cfg: replace(tiny_config(steps=6), log_every=3),
}
"""A few steps of each fitter; methods not named here run their fast preset as it is."""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """One small input per input kind: a 3000-point sphere and 10 rendered views of a sphere."""
    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    p = rng.normal(size=(3000, 3))
    np.savetxt(d / "sphere.xyz", 2.0 * p / np.linalg.norm(p, axis=1, keepdims=True) + [10.0, -5.0, 3.0])
    write_nerf_npz(d / "views.npz")
    return {"points": d / "sphere.xyz", "images": d / "views.npz"}


@pytest.mark.parametrize("name", method_names())
def test_every_method_runs(name, inputs, tmp_path, monkeypatch):
    m = get_method(name)
    fast = m.presets["fast"]
    monkeypatch.setitem(m.presets, "fast", replace(fast, fit=TINY.get(name, lambda c: c)(fast.fit)))
    events = []
    spec = JobSpec(method=name, preset="fast", resolution=32, formats=["ply"], holdout_every=5)
    result = run(spec, inputs[m.input_kind], tmp_path, progress=events.append)
    assert result.mesh.n_faces > 0 and result.mesh.vertex_normals is not None
    metrics = json.loads(result.artifacts["metrics.json"].read_text())
    assert metrics["method"] == name and metrics["preset"] == "fast"
    assert {"load", "reconstruct", "metrics", "total"} <= set(metrics["timings_s"])
    assert ("n_input_points" in metrics) == (m.input_kind == "points") == ("input" in metrics)
    stages = [e.stage for e in events]
    assert stages[0] == "load" and stages[-1] == "export"
    if m.field_kind != "none":
        assert stages.index("fit") < stages.index("extract") < stages.index("metrics")
        assert [e.step for e in events if e.stage == "fit"] == [3, 6]


NEW_METHOD = '''
from recon.methods.base import Method, MethodContext, Preset, Reconstruction, register_method


def presets():
    from recon.pointcloud import DigsConfig
    return {name: Preset(DigsConfig(steps=4, surface_batch=512, near_batch=256, space_batch=256), resolution=32)
            for name in ("fast", "balanced", "quality")}


def reconstruct(cloud, ctx: MethodContext) -> Reconstruction:
    from recon.extraction import extract_field
    from recon.pointcloud import fit_sdf
    with ctx.timed("fit"):
        model = fit_sdf(cloud.points, cloud.normals, ctx.fit_config(), device=ctx.device,
                        progress=ctx.progress, cancel=ctx.cancel, checkpoint_path=ctx.checkpoint_path)
    with ctx.extract_stage():
        mesh = extract_field(model, extractor=ctx.extractor, signed=True, device=ctx.device,
                             resolution=ctx.resolution or ctx.preset.resolution)
    return Reconstruction(mesh, metrics=lambda: {"mine": 1})


METHOD = register_method(Method(
    name="mine", label="Mine", description="A method added as one module.", input_kind="points",
    field_kind="signed", extractors=("marching_cubes",), make_presets=presets, reconstruct=reconstruct,
    order=15))
'''

CHECK_NEW_METHOD = '''
import importlib.util, json, sys
from pathlib import Path
import recon
methods_dir = Path(recon.__file__).parent / "methods"
# recon.methods with one more folder on its path: the new module sits beside the others.
spec = importlib.util.spec_from_file_location("recon.methods", methods_dir / "__init__.py",
                                              submodule_search_locations=[str(methods_dir), sys.argv[1]])
pkg = importlib.util.module_from_spec(spec)
sys.modules["recon.methods"] = pkg
spec.loader.exec_module(pkg)

from recon.pipeline import run
from recon.spec import JobSpec
from service.api.methods import methods_public
from service.cli import build_parser

out = {"names": pkg.method_names()}
out["cli"] = build_parser().parse_args(["reconstruct", "x.xyz", "-o", "y.ply", "--method", "mine"]).method
out["api"] = [m.name for m in methods_public().methods]
try:
    JobSpec(method="mine", extractor="dualmesh_udf")
except ValueError as e:
    out["refused"] = str(e).splitlines()[1]
res = run(JobSpec(method="mine", preset="fast"), sys.argv[2], sys.argv[3])
out["faces"], out["mine"], out["method"] = res.mesh.n_faces, res.metrics["mine"], res.metrics["method"]
print(json.dumps(out))
'''


def test_a_new_module_is_a_new_method(inputs, tmp_path):
    """The README's recipe: one more module in recon/methods and the spec, the CLI, the API's
    list and the pipeline all know the method (in a fresh interpreter, so the table is rebuilt)."""
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "mine.py").write_text(NEW_METHOD)
    res = subprocess.run([sys.executable, "-c", CHECK_NEW_METHOD, str(extra), str(inputs["points"]),
                          str(tmp_path / "out")], check=False, capture_output=True, text=True,
                         timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["names"] == ["auto", "digs", "mine", "poisson", "udf", "neus"]  # placed by its order, 15
    assert out["cli"] == "mine" and out["api"] == out["names"]
    assert "mine fits a signed distance field: use extractor 'marching_cubes'" in out["refused"]
    assert out["method"] == "mine" and out["mine"] == 1 and out["faces"] > 0
