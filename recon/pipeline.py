"""The one entry point from input data to a mesh with metrics and artifacts.

``run(spec, input_path, out_dir, ...)`` is called by the CLI's ``reconstruct``, by a local
worker and by a Ray task alike. It knows nothing of HTTP, databases or Ray: progress goes to a
callback, cancellation comes from a token, artifacts are files in ``out_dir``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from meshing import mesh as mesh_ops
from meshing.export import load_mesh, save_mesh
from meshing.marching_cubes import extract_sdf
from meshing.mesh import Mesh
from meshing.metrics import evaluate_against_points, evaluate_meshes
from recon.classic import poisson_reconstruct
from recon.io import load_point_cloud, normalize
from recon.pointcloud import fit_sdf
from recon.presets import get_preset, with_seed
from recon.progress import CancelToken, ProgressEvent, ProgressFn, no_progress
from recon.registry import lookup, register

log = logging.getLogger(__name__)

Method = Literal["digs", "poisson", "udf", "neus"]
Extractor = Literal["marching_cubes", "dualmesh_udf"]
PresetName = Literal["fast", "balanced", "quality"]
MeshFormat = Literal["ply", "obj", "glb", "stl"]


class JobSpec(BaseModel):
    """What to reconstruct and how. Unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid")

    method: Method = Field("digs", description="Reconstruction method.")
    preset: PresetName = Field("balanced", description="Speed/quality trade-off.")
    extractor: Extractor | None = Field(
        None, description="Mesh extraction: 'marching_cubes' (default for digs) or 'dualmesh_udf' (default for udf; "
                          "keeps open surfaces open). Not used by poisson.")
    resolution: int | None = Field(None, ge=32, le=1024, description="Extraction grid resolution (DualMesh-UDF: octree depth log2 of it); default from the preset.")
    formats: list[MeshFormat] = Field(default_factory=lambda: ["ply"], min_length=1, max_length=4, description="Mesh formats to export.")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Random seed of the fit.")
    max_fit_points: int | None = Field(None, ge=1000, le=10_000_000, description="Points used for fitting (subsampled above); metrics use all points.")
    decimate_faces: int | None = Field(None, ge=100, description="Simplify the mesh to about this many faces.")
    min_component_fraction: float = Field(0.01, ge=0.0, le=1.0, description="Drop connected components with fewer faces than this fraction of the largest.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to fit; 'auto' picks CUDA when present.")
    holdout_every: int = Field(8, ge=0, le=1000, description="neus: hold out every k-th view (0, k, 2k, ...) from fitting "
                                                            "and report PSNR on them; 0 fits every view.")

    @model_validator(mode="after")
    def _extractor_fits_method(self) -> JobSpec:
        if self.method == "poisson" and self.extractor is not None:
            raise ValueError("poisson builds its own mesh: leave 'extractor' unset")
        if self.method == "neus" and self.extractor not in (None, "marching_cubes"):
            raise ValueError("neus fits a signed distance field: use extractor 'marching_cubes' or leave it unset")
        if self.method == "neus" and self.max_fit_points is not None:
            raise ValueError("neus fits images, not points: leave 'max_fit_points' unset")
        return self


@dataclass
class Result:
    """What a run produced: the mesh in the input's frame, metrics and artifact paths."""

    mesh: Mesh
    metrics: dict
    artifacts: dict[str, Path] = field(default_factory=dict)


@dataclass
class _Context:
    spec: JobSpec
    progress: ProgressFn
    cancel: CancelToken | None
    device: torch.device
    checkpoint_path: Path | None


Reconstructor = Callable[[np.ndarray, np.ndarray | None, _Context], Mesh]
RECONSTRUCTORS: dict[str, Reconstructor] = {}


@register(RECONSTRUCTORS, "digs")
def _digs(points: np.ndarray, normals: np.ndarray | None, ctx: _Context) -> Mesh:
    preset = with_seed(get_preset(ctx.spec.preset), ctx.spec.seed)
    cfg = preset.digs
    if ctx.spec.max_fit_points:
        from dataclasses import replace

        cfg = replace(cfg, max_points=ctx.spec.max_fit_points)
    model = fit_sdf(points, normals, cfg, device=ctx.device, progress=ctx.progress, cancel=ctx.cancel,
                    checkpoint_path=ctx.checkpoint_path)
    return _extract(model, ctx, signed=True, resolution=ctx.spec.resolution or preset.resolution)


@register(RECONSTRUCTORS, "udf")
def _udf(points: np.ndarray, normals: np.ndarray | None, ctx: _Context) -> Mesh:
    from dataclasses import replace

    from recon.udf import UDF_PRESETS, fit_udf

    cfg = replace(UDF_PRESETS[ctx.spec.preset], seed=ctx.spec.seed)
    if ctx.spec.max_fit_points:
        cfg = replace(cfg, max_points=ctx.spec.max_fit_points)
    model = fit_udf(points, normals, cfg, device=ctx.device, progress=ctx.progress, cancel=ctx.cancel,
                    checkpoint_path=ctx.checkpoint_path)
    resolution = ctx.spec.resolution or UDF_RESOLUTION[ctx.spec.preset]
    return _extract(model, ctx, signed=False, resolution=resolution)


# Default extraction grids of the udf method. A fitted UDF's valley is blurred over about a
# cell of its finest levels, and one level finer than this picks up that noise: with the
# balanced fit, depth 8 instead of 7 gave normal consistency 0.83 instead of 0.93 and a larger
# Chamfer on the T-shirt of bench/udf.py.
UDF_RESOLUTION = {"fast": 128, "balanced": 128, "quality": 256}


# Offset of the level set that marching cubes extracts from an unsigned field (normalised units):
# |f| has no sign change, so MC needs f - eps, which doubles the surface (two sheets eps apart).
UDF_MC_LEVEL = 0.005

# DualMesh-UDF closes holes whose perimeter is under this many finest cells: on a fitted field
# the extractor leaves many such holes (a missed crossing, a dropped fin), while a real opening
# of under two cells across cannot be told from them at that resolution anyway.
UDF_FILL_HOLES = 6.0


def _extract(model, ctx: _Context, *, signed: bool, resolution: int) -> Mesh:
    """Mesh of the fitted field with the spec's extractor (default: MC for SDFs, DualMesh-UDF for UDFs)."""
    if ctx.cancel is not None:
        ctx.cancel.raise_if_cancelled()
    extractor = ctx.spec.extractor or ("marching_cubes" if signed else "dualmesh_udf")
    ctx.progress(ProgressEvent("extract", 0, 1))
    if extractor == "marching_cubes":
        mesh = extract_sdf(model.evaluate, resolution=resolution, device=ctx.device,
                           level=0.0 if signed else UDF_MC_LEVEL)
    else:
        from meshing.dualmesh_udf import extract_udf

        field = model if not signed else (lambda x: model(x).abs())
        depth = max(5, math.ceil(math.log2(resolution)))
        mesh = extract_udf(field, depth=depth, device=ctx.device, fill_holes=UDF_FILL_HOLES)
    ctx.progress(ProgressEvent("extract", 1, 1))
    return mesh


@register(RECONSTRUCTORS, "poisson")
def _poisson(points: np.ndarray, normals: np.ndarray | None, ctx: _Context) -> Mesh:
    cfg = get_preset(ctx.spec.preset).poisson
    return poisson_reconstruct(points, normals, cfg, progress=ctx.progress, cancel=ctx.cancel)


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a device is a ValueError."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("expected a CUDA device for device='cuda', got none on this machine")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def run(
    spec: JobSpec,
    input_path: str | Path,
    out_dir: str | Path,
    *,
    gt_path: str | Path | None = None,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
    checkpoint_path: Path | None = None,
) -> Result:
    """Reconstruct ``input_path`` according to ``spec`` and write artifacts into ``out_dir``.

    Artifacts: ``mesh.<fmt>`` for each requested format and ``metrics.json``. Raises
    ``recon.io.InputError`` (a ValueError) for bad input and ``Cancelled`` when cancelled.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if spec.method == "neus":
        return _run_multiview(spec, Path(input_path), out_dir, gt_path=gt_path, progress=progress, cancel=cancel,
                              checkpoint_path=checkpoint_path)
    reconstruct = lookup(RECONSTRUCTORS, spec.method, "method")
    device = resolve_device(spec.device)
    gt = load_mesh(gt_path) if gt_path is not None else None

    progress(ProgressEvent("load", 0, 1))
    cloud = load_point_cloud(input_path)
    unit, norm = normalize(cloud)
    progress(ProgressEvent("load", 1, 1))
    timings = {"load": time.perf_counter() - t0}

    t = time.perf_counter()
    ctx = _Context(spec, progress, cancel, device, checkpoint_path)
    mesh = reconstruct(unit.points, unit.normals, ctx)
    timings["reconstruct"] = time.perf_counter() - t
    if mesh.is_empty:
        raise ValueError(f"the {spec.method} reconstruction produced an empty mesh")

    mesh = _finish_mesh(mesh, spec, norm)

    if cancel is not None:
        cancel.raise_if_cancelled()
    progress(ProgressEvent("metrics", 0, 1))
    t = time.perf_counter()
    metrics: dict = {"input": evaluate_against_points(mesh, cloud.points)}
    if gt is not None:
        metrics["ground_truth"] = evaluate_meshes(mesh, gt, seed=spec.seed)
    timings["metrics"] = time.perf_counter() - t
    progress(ProgressEvent("metrics", 1, 1))
    metrics["n_input_points"] = len(cloud.points)
    return _export(mesh, metrics, timings, spec, out_dir, progress, t0)


def _finish_mesh(mesh: Mesh, spec: JobSpec, norm) -> Mesh:
    """Normalised frame -> input frame, then small-component removal, decimation and normals."""
    mesh = mesh_ops.transform(mesh, scale=norm.scale, translation=norm.center)
    if spec.min_component_fraction > 0:
        mesh = mesh_ops.remove_small_components(mesh, min_fraction=spec.min_component_fraction)
    if spec.decimate_faces and mesh.n_faces > spec.decimate_faces:
        mesh = mesh_ops.decimate(mesh, target_faces=spec.decimate_faces)
    return mesh_ops.compute_vertex_normals(mesh)


def _export(mesh: Mesh, metrics: dict, timings: dict, spec: JobSpec, out_dir: Path, progress: ProgressFn,
            t0: float) -> Result:
    """Write ``mesh.<fmt>`` for each requested format and ``metrics.json``."""
    progress(ProgressEvent("export", 0, len(spec.formats)))
    artifacts: dict[str, Path] = {}
    for i, fmt in enumerate(spec.formats):
        path = out_dir / f"mesh.{fmt}"
        save_mesh(mesh, path, format=fmt)
        artifacts[path.name] = path
        progress(ProgressEvent("export", i + 1, len(spec.formats)))
    timings["total"] = time.perf_counter() - t0
    metrics["timings_s"] = timings
    metrics["method"] = spec.method
    metrics["preset"] = spec.preset
    metrics_path = out_dir / "metrics.json"
    metrics_path.write_text(json.dumps(metrics, indent=2, default=_json_default))
    artifacts[metrics_path.name] = metrics_path
    return Result(mesh=mesh, metrics=metrics, artifacts=artifacts)


def _run_multiview(spec: JobSpec, input_path: Path, out_dir: Path, *, gt_path, progress: ProgressFn,
                   cancel: CancelToken | None, checkpoint_path: Path | None) -> Result:
    """Posed images -> NeuS fit on the training views -> coloured mesh, held-out PSNR, GT metrics.

    Every ``spec.holdout_every``-th view is left out of the fit and rendered from the fitted
    field afterwards; ``metrics["views"]`` holds PSNR over whole images and over the masks'
    foreground when masks exist. The mesh is mapped back to the input's frame.
    """
    from meshing.metrics import mesh_stats, psnr
    from recon.io import load_multiview, split_views
    from recon.multiview import extract_mesh, fit_neus, render_views

    t0 = time.perf_counter()
    device = resolve_device(spec.device)
    gt = load_mesh(gt_path) if gt_path is not None else None
    progress(ProgressEvent("load", 0, 1))
    dataset = load_multiview(input_path)
    train, test = split_views(dataset, spec.holdout_every)
    progress(ProgressEvent("load", 1, 1))
    timings = {"load": time.perf_counter() - t0}

    t = time.perf_counter()
    preset = with_seed(get_preset(spec.preset), spec.seed)
    model = fit_neus(train, preset.neus, device=device, progress=progress, cancel=cancel,
                     checkpoint_path=checkpoint_path)
    timings["fit"] = time.perf_counter() - t
    if cancel is not None:
        cancel.raise_if_cancelled()
    t = time.perf_counter()
    progress(ProgressEvent("extract", 0, 1))
    mesh = extract_mesh(model, resolution=spec.resolution or preset.resolution, device=device)
    progress(ProgressEvent("extract", 1, 1))
    timings["extract"] = time.perf_counter() - t
    if mesh.is_empty:
        raise ValueError("the neus reconstruction produced an empty mesh (no surface inside the unit sphere)")
    mesh = _finish_mesh(mesh, spec, dataset.normalization)

    progress(ProgressEvent("metrics", 0, 1))
    t = time.perf_counter()
    views: dict = {"n_train": train.n_views, "n_test": 0 if test is None else test.n_views,
                   "normalization_source": dataset.normalization_source}
    if test is not None:
        rgb, opacity = render_views(model, test, cancel=cancel)
        views["psnr_test"] = psnr(rgb, test.images)
        if test.masks is not None and (test.masks > 0.5).any():
            views["psnr_test_foreground"] = psnr(rgb, test.images, mask=test.masks)
            views["mask_error_test"] = float(np.abs(opacity - test.masks).mean())
    metrics: dict = {"views": views, "mesh": mesh_stats(mesh)}
    if gt is not None:
        metrics["ground_truth"] = evaluate_meshes(mesh, gt, seed=spec.seed)
    timings["metrics"] = time.perf_counter() - t
    progress(ProgressEvent("metrics", 1, 1))
    metrics["n_views"] = dataset.n_views
    return _export(mesh, metrics, timings, spec, out_dir, progress, t0)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
