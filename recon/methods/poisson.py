"""``poisson``: screened Poisson surface reconstruction (Open3D), the classical baseline; it builds
its mesh directly, without a field to extract. See :mod:`recon.classic`."""

from __future__ import annotations

from recon.methods.base import Method, MethodContext, Preset, Reconstruction, register_method


def presets() -> dict[str, Preset]:
    """Octree depth 7 / 9 / 10 (each +1 costs about 3-4x time and memory)."""
    from recon.classic import PoissonConfig

    return {
        "fast": Preset(PoissonConfig(depth=7)),
        "balanced": Preset(PoissonConfig(depth=9)),
        "quality": Preset(PoissonConfig(depth=10)),
    }


def reconstruct(cloud, ctx: MethodContext) -> Reconstruction:
    """Screened Poisson on the normalised cloud (a ``PointCloud``), normals estimated if missing."""
    from recon.classic import poisson_reconstruct

    return Reconstruction(poisson_reconstruct(cloud.points, cloud.normals, ctx.preset.fit, progress=ctx.progress,
                                              cancel=ctx.cancel), from_field=False)


METHOD = register_method(Method(
    name="poisson",
    label="Classic (Screened Poisson)",
    description="The classic method: fast and faithful on clean, dense scans.",
    input_kind="points",
    field_kind="none",
    extractors=(),
    make_presets=presets,
    reconstruct=reconstruct,
    order=20,
))
