"""``auto``: looks at the point cloud (outliers, noise, open or closed) and runs what serves it:
screened Poisson on the cleaned cloud with globally oriented normals for closed surfaces, the
unsigned distance field (``udf``) for open ones. It records what it chose and why in the metrics.
See :mod:`recon.auto`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from recon.methods.base import (
    Method,
    MethodContext,
    Preset,
    Reconstruction,
    get_method,
    register_method,
)
from recon.progress import ProgressEvent, Stage


@dataclass(frozen=True)
class AutoConfig:
    """Settings of one ``auto`` preset.

    poisson: the screened Poisson settings for closed surfaces.
    open_preset: the ``udf`` preset used for open surfaces.
    noisy_depth_drop: octree levels fewer for Poisson when the cloud is very noisy (its finest
        cells would otherwise be smaller than what the smoothed points can tell apart).
    seed, max_points: the job's seed and point budget (for the ``udf`` fit).
    """

    poisson: Any
    open_preset: str
    noisy_depth_drop: int = 1
    seed: int = 0
    max_points: int | None = None


def presets() -> dict[str, Preset]:
    """The ``poisson`` method's octree depths and the ``udf`` method's presets of the same name."""
    poisson = get_method("poisson").presets
    return {name: Preset(AutoConfig(poisson=poisson[name].fit, open_preset=name))
            for name in ("fast", "balanced", "quality")}


def poisson_depth(cfg: AutoConfig, a, points) -> int:
    """The preset's octree depth, lowered where the data cannot fill it: no cell finer than a
    quarter of the sample spacing (3k points on a bunny: depth 7 instead of 9, which costs less and
    does not invent detail), and ``noisy_depth_drop`` levels fewer for very noisy clouds."""
    import math

    from recon.auto import VERY_NOISY

    extent = float((points.max(axis=0) - points.min(axis=0)).max()) * cfg.poisson.scale
    depth = min(cfg.poisson.depth, max(6, math.ceil(math.log2(4 * extent / a.spacing))))
    if a.noise_ratio > VERY_NOISY:
        depth -= cfg.noisy_depth_drop
    return max(5, depth)


def reconstruct(cloud, ctx: MethodContext) -> Reconstruction:
    """Clean and orient the cloud, decide open or closed, mesh accordingly."""
    from scipy.spatial import cKDTree

    from recon.auto import describe_choice, drop_balloons, drop_unsupported_pieces, prepare_cloud
    from recon.classic import poisson_reconstruct
    from recon.io.pointcloud import PointCloud

    cfg: AutoConfig = ctx.fit_config()
    ctx.check_cancel()
    ctx.progress(ProgressEvent(Stage.CLEAN, 0, 1))
    with ctx.timed("clean"):
        prepared = prepare_cloud(cloud.points, cloud.normals, seed=cfg.seed)
    ctx.progress(ProgressEvent(Stage.CLEAN, 1, 1))
    a = prepared.analysis
    if a.open:
        chose = "udf"
        udf = get_method("udf")
        preset = udf.presets[cfg.open_preset]
        sub = replace(ctx, preset=preset, extractor=udf.default_extractor)
        mesh = udf.reconstruct(PointCloud(prepared.points, prepared.normals), sub).mesh
    else:
        chose = "poisson"
        poisson = replace(cfg.poisson, depth=poisson_depth(cfg, a, prepared.points))
        with ctx.timed("poisson"):
            mesh = poisson_reconstruct(prepared.points, prepared.normals, poisson, progress=ctx.progress,
                                       cancel=ctx.cancel)
            n_faces = mesh.n_faces
            # A piece is supported if it lies near the samples, as near as Poisson's cells allow.
            extent = float((prepared.points.max(axis=0) - prepared.points.min(axis=0)).max()) * poisson.scale
            radius = max(a.spacing, 2 * a.noise, extent / 2 ** poisson.depth)
            tree = cKDTree(prepared.points)  # one k-d tree of the samples for both clean-ups
            mesh = drop_unsupported_pieces(mesh, prepared.points, radius=radius, tree=tree)
            n_pieces = mesh.n_faces
            mesh = drop_balloons(mesh, prepared.points, prepared.normals, radius, tree=tree)
    info = {"chose": chose, "why": describe_choice(a, chose), "analysis": a.as_dict()}
    if chose == "poisson":
        info["poisson_depth"] = poisson.depth
        info["unsupported_faces_dropped"] = n_faces - n_pieces
        info["balloon_faces_dropped"] = n_pieces - mesh.n_faces
    return Reconstruction(mesh, metrics=lambda: {"auto": info}, from_field=chose == "udf")


METHOD = register_method(Method(
    name="auto",
    label="Automatic (recommended)",
    description="Looks at the scan (noise, outliers, open or closed) and picks the method and settings for it.",
    input_kind="points",
    field_kind="none",
    extractors=(),
    make_presets=presets,
    reconstruct=reconstruct,
    order=5,
))
