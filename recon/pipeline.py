"""The one entry point from input data to a mesh with metrics and artifacts.

``run(spec, input_path, out_dir, ...)`` is called by the CLI's ``reconstruct``, by a local
worker and by a Ray task alike, for every method. It knows nothing of HTTP, databases or Ray:
progress goes to a callback, cancellation comes from a token, artifacts are files in ``out_dir``.

One path for every method: the method's input kind decides how the input is loaded (a point
cloud normalised into [-1, 1]^3, or posed images split into fitted and held-out views); the
method (:mod:`recon.methods`) returns a mesh in the normalised frame and its own metrics; the
mesh is mapped back to the input's frame and cleaned, measured (against the input, and a
ground-truth mesh when given) and exported.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from meshing import mesh as mesh_ops
from meshing.export import load_mesh, save_mesh
from meshing.mesh import Mesh
from meshing.metrics import evaluate_against_points, evaluate_meshes, mesh_stats
from recon.io import Normalization, load_multiview, load_point_cloud, normalize, split_views
from recon.methods import MethodContext, get_method
from recon.progress import CancelToken, ProgressEvent, ProgressFn, Stage, no_progress
from recon.spec import JobSpec

log = logging.getLogger(__name__)


@dataclass
class Result:
    """What a run produced: the mesh in the input's frame, metrics and artifact paths."""

    mesh: Mesh
    metrics: dict
    artifacts: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadedInput:
    """An input loaded the way its method's input kind asks."""

    data: Any
    """What the method reconstructs from, in the normalised frame."""
    normalization: Normalization
    """Normalised frame -> input frame."""
    evaluate: Callable[[Mesh], dict]
    """Metrics of the finished mesh (input frame) against the input."""
    size: dict[str, int]
    """How big the input was, reported in the metrics."""


def load_points(path: Path, spec: JobSpec) -> LoadedInput:
    """A point cloud, normalised into [-1, 1]^3; the mesh is measured against every input point."""
    cloud = load_point_cloud(path)
    unit, norm = normalize(cloud)
    return LoadedInput(unit, norm, lambda mesh: {"input": evaluate_against_points(mesh, cloud.points)},
                       {"n_input_points": len(cloud.points)})


def load_images(path: Path, spec: JobSpec) -> LoadedInput:
    """Posed images, every ``spec.holdout_every``-th view held out; the mesh's own statistics."""
    dataset = load_multiview(path)
    return LoadedInput(split_views(dataset, spec.holdout_every), dataset.normalization,
                       lambda mesh: {"mesh": mesh_stats(mesh)}, {"n_views": dataset.n_views})


LOADERS: dict[str, Callable[[Path, JobSpec], LoadedInput]] = {"points": load_points, "images": load_images}
"""Input kind -> loader."""


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

    Artifacts: ``mesh.<fmt>`` for each requested format, ``metrics.json`` and the method's own
    (``neus``: ``views.png``, each held-out view beside its rendering and normals). Raises
    ``recon.io.InputError`` (a ValueError) for bad input and ``Cancelled`` when cancelled.
    """
    # The ground truth is for the metrics: read before the clock starts, so that 'load' and
    # 'total' time the reconstruction alone.
    gt = load_mesh(gt_path) if gt_path is not None else None
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    method = get_method(spec.method)
    device = resolve_device(spec.device)

    progress(ProgressEvent(Stage.LOAD, 0, 1))
    loaded = LOADERS[method.input_kind](Path(input_path), spec)
    progress(ProgressEvent(Stage.LOAD, 1, 1))
    timings = {"load": time.perf_counter() - t0}

    t = time.perf_counter()
    ctx = MethodContext(preset_name=spec.preset, preset=method.presets[spec.preset], seed=spec.seed,
                        resolution=spec.resolution, extractor=spec.extractor or method.default_extractor,
                        max_fit_points=spec.max_fit_points, device=device, progress=progress, cancel=cancel,
                        checkpoint_path=checkpoint_path, bbox=None if spec.bbox is None else tuple(spec.bbox))
    out = method.reconstruct(loaded.data, ctx)
    timings["reconstruct"] = time.perf_counter() - t
    timings.update(ctx.timings)
    if out.mesh.is_empty:
        raise ValueError(f"the {spec.method} reconstruction produced an empty mesh")
    mesh = _finish_mesh(out.mesh, spec, loaded.normalization, drop_fragments=out.from_field)

    if cancel is not None:
        cancel.raise_if_cancelled()
    progress(ProgressEvent(Stage.METRICS, 0, 1))
    t = time.perf_counter()
    metrics: dict = {**out.metrics(), **loaded.evaluate(mesh)}
    if gt is not None:
        metrics["ground_truth"] = evaluate_meshes(mesh, gt, seed=spec.seed)
    timings["metrics"] = time.perf_counter() - t
    progress(ProgressEvent(Stage.METRICS, 1, 1))
    metrics.update(loaded.size)
    extra = out.artifacts(out_dir)
    result = _export(mesh, metrics, timings, spec, out_dir, progress, t0)
    result.artifacts.update(extra)
    return result


def _finish_mesh(mesh: Mesh, spec: JobSpec, norm: Normalization, drop_fragments: bool = True) -> Mesh:
    """Normalised frame -> input frame, then small-component removal (meshes of fields only),
    decimation and normals."""
    mesh = mesh_ops.transform(mesh, scale=norm.scale, translation=norm.center)
    if drop_fragments and spec.min_component_fraction > 0:
        mesh = mesh_ops.remove_small_components(mesh, min_fraction=spec.min_component_fraction)
    if spec.decimate_faces and mesh.n_faces > spec.decimate_faces:
        mesh = mesh_ops.decimate(mesh, target_faces=spec.decimate_faces)
    return mesh_ops.compute_vertex_normals(mesh)


def _export(mesh: Mesh, metrics: dict, timings: dict, spec: JobSpec, out_dir: Path, progress: ProgressFn,
            t0: float) -> Result:
    """Write ``mesh.<fmt>`` for each requested format and ``metrics.json``."""
    progress(ProgressEvent(Stage.EXPORT, 0, len(spec.formats)))
    artifacts: dict[str, Path] = {}
    for i, fmt in enumerate(spec.formats):
        path = out_dir / f"mesh.{fmt}"
        save_mesh(mesh, path, format=fmt)
        artifacts[path.name] = path
        progress(ProgressEvent(Stage.EXPORT, i + 1, len(spec.formats)))
    timings["total"] = time.perf_counter() - t0
    metrics["timings_s"] = timings
    metrics["method"] = spec.method
    metrics["preset"] = spec.preset
    metrics_path = out_dir / "metrics.json"
    metrics_path.write_text(json.dumps(metrics, indent=2, default=_json_default))
    artifacts[metrics_path.name] = metrics_path
    return Result(mesh=mesh, metrics=metrics, artifacts=artifacts)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
