"""``neus``: a coloured surface from posed images, by NeuS volume rendering of a hash-grid SDF,
meshed by marching cubes inside the unit sphere; held-out views are rendered and scored (PSNR).
See :mod:`recon.multiview`."""

from __future__ import annotations

from dataclasses import replace

from recon.methods.base import Method, MethodContext, Preset, Reconstruction, register_method


def presets() -> dict[str, Preset]:
    """One hidden layer of 64 for the SDF (its output also feeds the colour network); the march
    step follows the finest level. Resolution: of marching cubes over the normalised cube."""
    from recon.encodings.hash_grid import HashGridConfig
    from recon.fields.background import BackgroundConfig
    from recon.fields.color import ColorConfig
    from recon.fields.hash_sdf import HashSDFConfig
    from recon.multiview import NeusConfig

    def neus(steps: int, levels: int, finest: int, log2_table: int, rays: int, march_step: float,
             view_degree: int = 3, early_max_s: float = 0.0, **more) -> NeusConfig:
        grid = HashGridConfig(n_levels=levels, n_features_per_level=2, log2_hashmap_size=log2_table,
                              base_resolution=16, finest_resolution=finest)
        sdf = HashSDFConfig(encoding=grid, hidden_dim=64, n_hidden_layers=1, sphere_radius=0.5, start_levels=4,
                            full_levels_at=0.4)
        return NeusConfig(field=sdf, color=ColorConfig(view_degree=view_degree), steps=steps, rays_per_batch=rays,
                          march_step=march_step, early_max_s=early_max_s, **more)

    # balanced: a 2^19 table and view dependence of degree 1 (README, "Posed images", three seeds:
    # unmasked synthetic scene F@1% 0.897 -> 0.915, masked spot +0.5 dB; DTU scan24 +0.1 dB), and
    # s held at most 30 for the first 15% of training, so the foreground can grow into what lies
    # outside its first sphere (three seeds: DTU scan24 unmasked 22.4 / 21.7 / 21.5 -> 22.7 /
    # 22.2 / 22.4 dB at 1.2x the time; synthetic scene F@1% 0.907 / 0.918 / 0.908, each above the
    # goal of 0.9; README, "A wide density early"); 3000 steps instead of 2000 (README, "Longer
    # fits"; DTU scan24 unmasked, three seeds: 22.3 / 22.1 / 21.8 -> 23.0 / 23.2 / 22.8 dB at 1.45x
    # the time; synthetic scene F@1% 0.920 / 0.900 / 0.914). For views from one side only (the
    # mean unit direction to the cameras at least 0.7 long: DTU's arc 0.82, the synthetic
    # turntable 0.61), the foreground ball grown 1.5x towards the cameras and a background coarse
    # for the first 30% of training, so the foreground takes the parts of the object that stick
    # out of the overlap's ball (README, "Views from one side").
    one_sided = {"ball_growth": 1.5, "grow_min_pull": 0.7,
                 "grown_background": BackgroundConfig(start_levels=2, full_levels_at=0.3)}
    return {
        "fast": Preset(neus(500, 10, 256, 16, 1024, 2.0 / 128), resolution=128),
        "balanced": Preset(neus(3000, 12, 512, 19, 1024, 2.0 / 192, view_degree=1, early_max_s=30.0, **one_sided),
                           resolution=256),
        "quality": Preset(neus(3000, 14, 1024, 19, 2048, 2.0 / 256), resolution=384),
    }


def held_out_views(model, views, ctx: MethodContext, sheet: dict | None = None) -> dict:
    """View counts, how the unit sphere was chosen, and the PSNR of the held-out views rendered
    from the fitted ``NeusModel``: over whole images, over the masks' foreground and the
    opacity's mask error (when masks exist). Also which share of the held-out pixels the
    foreground leaves to what lies behind it (opacity below one half: the background field or
    colour) and which share of the squared error those pixels carry: where a fit without masks
    falls short, this tells whether the object or its surroundings are to blame.
    ``sheet['image']`` receives the views image (:func:`recon.multiview.views_image`) when a
    dict is given."""
    import numpy as np

    from meshing.metrics import psnr
    from recon.multiview import render_views, views_image

    train, test = views
    out: dict = {"n_train": train.n_views, "n_test": 0 if test is None else test.n_views,
                 "normalization_source": train.normalization_source}
    if test is not None:
        rgb, opacity, normals = render_views(model, test, cancel=ctx.cancel, normals=True)
        if sheet is not None:
            sheet["image"] = views_image(test.images, rgb, normals, opacity)
        out["psnr_test"] = psnr(rgb, test.images)
        out["psnr_test_views"] = [psnr(r, im) for r, im in zip(rgb, test.images)]
        behind = opacity < 0.5
        err = ((np.asarray(rgb, np.float64) - test.images) ** 2).sum(-1)
        out["background_pixels_test"] = float(behind.mean())
        out["background_error_share_test"] = float(err[behind].sum() / max(err.sum(), 1e-12))
        if test.masks is not None and (test.masks > 0.5).any():
            out["psnr_test_foreground"] = psnr(rgb, test.images, mask=test.masks)
            out["mask_error_test"] = float(np.abs(opacity - test.masks).mean())
    return out


def foreground_views(views, region, cfg):
    """The views in the frame whose unit sphere is the foreground sphere, that frame's (centre,
    radius) in the views' normalised frame, and the factor ``ball_growth`` grew the region's
    ball by (1 when it did not).

    With a background field (no masks), the foreground sphere is the region's (the ball the
    views overlap in, or the box's bounding sphere): a tight foreground leaves the rest of the
    scene to the background. It never grows beyond the unit sphere unless the user's box asks,
    or ``ball_growth`` grows the overlap's ball towards cameras that look from one side (the
    balanced preset; see ``NeusConfig.grow_min_pull``).
    Otherwise the views are kept as they are.
    """
    import numpy as np

    from recon.io.dataset import ViewSplit, renormalized
    from recon.multiview import uses_background_field
    from recon.region import grown_toward_cameras

    center, radius, grown_by = np.zeros(3), 1.0, 1.0
    if uses_background_field(cfg, views.train):
        c, r = region.sphere()
        if region.source == "bbox" or (r < 1.0 and np.linalg.norm(c) + r <= 1.0 + 1e-6):
            center, radius = c, r
            if region.source == "cameras" and cfg.ball_growth > 1.0:
                center, radius = grown_toward_cameras(c, r, views.train.c2w[:, :3, 3], cfg.ball_growth,
                                                      min_pull=cfg.grow_min_pull)
                grown_by = radius / r
    if radius == 1.0 and not center.any():
        return views, center, radius, grown_by
    test = None if views.test is None else renormalized(views.test, center, radius)
    return ViewSplit(renormalized(views.train, center, radius), test), center, radius, grown_by


def reconstruct(views, ctx: MethodContext) -> Reconstruction:
    """Fit NeuS to the training views of ``views`` (a ``ViewSplit``) inside the foreground sphere of
    the region of interest (:mod:`recon.region`), then extract the coloured zero set inside that
    region (marching cubes, the only extractor it takes) and drop floating fragments."""
    from meshing import mesh as mesh_ops
    from recon.multiview import extract_mesh, fit_neus, uses_background_field
    from recon.region import find_region, keep_main_components

    cfg = ctx.fit_config()
    region = find_region(views.train, bbox=ctx.bbox)
    fg_views, center, radius, grown_by = foreground_views(views, region, cfg)
    if grown_by > 1.0:  # the overlap's ball was grown towards the cameras: the first sphere keeps its size
        cfg = replace(cfg, field=replace(cfg.field, sphere_radius=cfg.field.sphere_radius / grown_by),
                      background_field=cfg.grown_background or cfg.background_field)
    with ctx.timed("fit"):
        model = fit_neus(fg_views.train, cfg, device=ctx.device, progress=ctx.progress,
                         cancel=ctx.cancel, checkpoint_path=ctx.checkpoint_path)
    with ctx.extract_stage():
        local = region.mapped(center, radius)
        mesh = extract_mesh(model, resolution=ctx.resolution or ctx.preset.resolution, device=ctx.device,
                            box=(local.lo, local.hi))
        mesh = keep_main_components(mesh)
        mesh = mesh_ops.transform(mesh, scale=radius, translation=center)
    if mesh.is_empty:
        raise ValueError("the neus reconstruction produced an empty mesh (no surface inside the region of interest)")

    sheet: dict = {}

    def metrics() -> dict:
        out = {"views": held_out_views(model, fg_views, ctx, sheet)}
        out["views"]["background_model"] = "grid" if uses_background_field(cfg, views.train) else "constant"
        out["views"]["region"] = region.describe(views.train.normalization)
        return out

    def artifacts(out_dir):
        """``views.png``: each held-out photo, its rendering and the rendered normals (none
        without held-out views)."""
        from PIL import Image

        if "image" not in sheet:
            return {}
        path = out_dir / "views.png"
        Image.fromarray(sheet["image"]).save(path)
        return {path.name: path}

    return Reconstruction(mesh, metrics=metrics, artifacts=artifacts)


METHOD = register_method(Method(
    name="neus",
    label="From photos",
    description="Builds the surface from a zip of photos taken around the object.",
    input_kind="images",
    field_kind="signed",
    extractors=("marching_cubes",),
    make_presets=presets,
    reconstruct=reconstruct,
    order=40,
))
