"""``udf``: a neural unsigned distance field fitted to a point cloud, meshed by DualMesh-UDF, for
open surfaces (garments, leaves, single-sided scans). See :mod:`recon.udf`."""

from __future__ import annotations

from recon.methods.base import Method, MethodContext, Preset, Reconstruction, register_method


def presets() -> dict[str, Preset]:
    """Fits measured on 50k points of a T-shirt on 2 CPU cores, idle: fast 6.6 s, balanced 8.9 s
    (mean f on the true surface 0.0021 / 0.0009, mean |f - d| within 0.2 of it 0.0060 / 0.0042,
    normalised units); under load from other jobs 10 s / 22 s. Quality took 115 s under load
    (0.0007 / 0.0027, with the earlier w_eikonal 2, near_knn 10). A balanced batch of 16384 gave
    12.5 s for 0.0040. Per step the cost grows with batch x levels; the grids are those of digs.

    Resolution (DualMesh-UDF: octree depth log2 of it): a fitted UDF's valley is blurred over
    about a cell of its finest levels, and one level finer picks up that noise: with the balanced
    fit, depth 8 instead of 7 gave normal consistency 0.83 instead of 0.93 and a larger Chamfer
    on the T-shirt of bench/udf.py."""
    from recon.encodings.hash_grid import HashGridConfig
    from recon.fields.hash_udf import HashUDFConfig
    from recon.udf import UdfConfig

    def udf(steps: int, levels: int, finest: int, log2_table: int, batch: int, hidden: int) -> UdfConfig:
        # A quarter of each batch on the input points and a quarter on each query pool.
        grid = HashGridConfig(n_levels=levels, n_features_per_level=2, log2_hashmap_size=log2_table,
                              base_resolution=16, finest_resolution=finest)
        return UdfConfig(field=HashUDFConfig(encoding=grid, hidden_dim=hidden, n_hidden_layers=2), steps=steps,
                         surface_batch=batch // 4, near_batch=batch // 4, band_batch=batch // 4,
                         space_batch=batch // 4)

    return {
        "fast": Preset(udf(150, 8, 128, 15, 8192, 32), resolution=128),
        "balanced": Preset(udf(300, 12, 512, 17, 8192, 32), resolution=128),
        "quality": Preset(udf(600, 14, 1024, 19, 16384, 32), resolution=256),
    }


def reconstruct(cloud, ctx: MethodContext) -> Reconstruction:
    """Fit the UDF to the normalised cloud (a ``PointCloud``), then mesh its zero set."""
    from recon.extraction import extract_field
    from recon.udf import fit_udf

    with ctx.timed("fit"):
        model = fit_udf(cloud.points, cloud.normals, ctx.fit_config(), device=ctx.device, progress=ctx.progress,
                        cancel=ctx.cancel, checkpoint_path=ctx.checkpoint_path)
    with ctx.extract_stage():
        mesh = extract_field(model, extractor=ctx.extractor, signed=False, device=ctx.device,
                             resolution=ctx.resolution or ctx.preset.resolution)
    return Reconstruction(mesh)


METHOD = register_method(Method(
    name="udf",
    label="Open surface (garments, sheets)",
    description="For surfaces with open edges: clothing, leaves, sheets, single-sided scans.",
    input_kind="points",
    field_kind="unsigned",
    extractors=("dualmesh_udf", "marching_cubes"),
    make_presets=presets,
    reconstruct=reconstruct,
    order=30,
))
