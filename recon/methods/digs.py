"""``digs``: a neural signed distance field fitted to a point cloud with DiGS losses, meshed by
marching cubes (closed, watertight surfaces). See :mod:`recon.pointcloud`."""

from __future__ import annotations

from recon.methods.base import Method, MethodContext, Preset, Reconstruction, register_method


def presets() -> dict[str, Preset]:
    """Chosen by measurement on 50k-point clouds (bench/pointcloud.py): two hidden layers matter
    more than their width, and a finest level of 512 beats 192/256 at this density. A wider MLP
    with a 2048 finest level and 1200 steps made armadillo worse (ghost sheets), hence the narrow
    MLP in ``quality`` too. Resolution: of marching cubes over the normalised cube."""
    from recon.encodings.hash_grid import HashGridConfig
    from recon.fields.hash_sdf import HashSDFConfig
    from recon.pointcloud import DigsConfig

    def digs(steps: int, levels: int, finest: int, log2_table: int, batch: int, hidden: int) -> DigsConfig:
        # Half of each batch on the input points, a quarter jittered near them, a quarter uniform.
        grid = HashGridConfig(n_levels=levels, n_features_per_level=2, log2_hashmap_size=log2_table,
                              base_resolution=16, finest_resolution=finest)
        return DigsConfig(field=HashSDFConfig(encoding=grid, hidden_dim=hidden, n_hidden_layers=2), steps=steps,
                          surface_batch=batch // 2, near_batch=batch // 4, space_batch=batch // 4)

    return {
        "fast": Preset(digs(150, 8, 128, 15, 4096, 32), resolution=128),
        "balanced": Preset(digs(300, 12, 512, 17, 8192, 32), resolution=256),
        "quality": Preset(digs(800, 14, 1024, 19, 8192, 32), resolution=384),
    }


def reconstruct(cloud, ctx: MethodContext) -> Reconstruction:
    """Fit the SDF to the normalised cloud (a ``PointCloud``), then extract its zero set."""
    from recon.extraction import extract_field
    from recon.pointcloud import fit_sdf

    with ctx.timed("fit"):
        model = fit_sdf(cloud.points, cloud.normals, ctx.fit_config(), device=ctx.device, progress=ctx.progress,
                        cancel=ctx.cancel, checkpoint_path=ctx.checkpoint_path)
    with ctx.extract_stage():
        mesh = extract_field(model, extractor=ctx.extractor, signed=True, device=ctx.device,
                             resolution=ctx.resolution or ctx.preset.resolution)
    return Reconstruction(mesh)


METHOD = register_method(Method(
    name="digs",
    label="Smooth closed surface (neural)",
    description="Learns a smooth, closed (watertight) surface. Works on raw scans without normals.",
    input_kind="points",
    field_kind="signed",
    extractors=("marching_cubes", "dualmesh_udf"),
    make_presets=presets,
    reconstruct=reconstruct,
    order=10,
))
