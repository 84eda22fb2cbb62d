"""NeuS fitting from posed images on the CPU: time, held-out PSNR and geometry against a known mesh.

Scenes:

* ``lego``: the 100-view, 100x100 NeRF lego (``tiny_lego_rgba_100.npz``), every 8th view held out;
* ``spot`` (synthetic): the spot mesh rendered by ``tests.support.render.render_dataset`` from 40 views
  at 128x128 (procedural texture, Lambert shading, exact masks), every 8th view held out; the
  fitted mesh is compared with the true one (Chamfer-L1 as a fraction of the diagonal, F-score
  at 1% of the diagonal);
* ``spot_scene`` (synthetic, unmasked): the spot mesh standing on a checkered ground inside a
  textured backdrop (``tests.support.render.render_scene_dataset``), 50 views at 128x128 (32 with
  ``--quick``) from all around (``--azimuth DEG``: from an arc of that many degrees, views from
  one side), no masks, every 8th view held out. Run through the ``neus`` method as a job runs
  it (region of interest, background field, cropped extraction); the mesh inside the object's
  box (above the ground) is scored against the object;
* ``spot_scene_masked``: the same views with the object's exact masks (a masked capture in a
  room: the masks leave out a textured ground and backdrop), through the ``neus`` method; the
  full-image PSNR shows whether the background is modelled;
* ``dtu24``: the real DTU scan 24 without masks (``dtu_scan24_384_nomask``: 49 views, real
  cameras), downscaled to ``--dtu-size`` pixels (default 192; 64 and 12 views with ``--quick``),
  every 8th view held out; no ground-truth geometry, so held-out PSNR only.

Columns: fit wall time, the process's CPU time during the fit (with one thread, about the wall
time on an idle core) and mean wall seconds per step, the 1-minute load average when the fit
ended (other processes on the machine inflate wall times), held-out PSNR over whole images, over
the masks' foreground, of the baseline that predicts the training images' mean colour and, for
method runs, of the held-out photos blurred by a 1-pixel Gaussian (``psnr_blur1``: a rendering
that is exact but for that blur scores this) and the share of the held-out pixels the
foreground leaves to the background (opacity below one half, ``bg_px``) with the share of the
squared error they carry (``bg_err``), the last batch's samples per ray and ``s``, and the
first step at which the training batch's PSNR (mean of the last 5 reports) reached 26 dB.
Method runs (``spot_scene``, ``spot_scene_masked``, ``dtu24``) add the whole job's reconstruct
time (fit, extraction, held-out rendering), where the region came from, the background model,
for the synthetic scenes precision and recall at 1% of the diagonal, and each held-out view's
PSNR (``psnr_views``, in view order).

    python bench/multiview.py                 # balanced preset, all scenes
    python bench/multiview.py --quick         # a smoke run: few steps, small scenes
    python bench/multiview.py --scenes lego --steps 1500 --threads 1
    python bench/multiview.py --scenes dtu24 --dtu-size 96 --background none   # without the field
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import fields, is_dataclass, replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meshing import mesh as mesh_ops
from meshing.export import load_mesh
from meshing.metrics import evaluate_meshes, point_to_mesh, psnr
from recon.io.dataset import select_views, split_views
from recon.io.multiview import load_multiview
from recon.methods import PRESET_NAMES, get_method
from recon.multiview import extract_mesh, fit_neus, render_views

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ELEVATION = (12.0, 60.0)
"""Camera elevations (degrees above the ground) of ``spot_scene``."""
AZIMUTH = 360.0
"""Arc of camera azimuths (degrees) of ``spot_scene``: 360 all around, less for views from one side."""


def load_scene(name: str, quick: bool, dtu_size: int = 192):
    """(dataset, ground-truth mesh in the dataset's input frame or None)."""
    if name == "lego":
        ds = load_multiview(DATA / "multiview" / "tiny_lego_100" / "tiny_lego_rgba_100.npz")
        return (select_views(ds, np.arange(0, 100, 4)) if quick else ds), None
    if name == "spot":
        from tests.support.render import render_dataset

        gt = load_mesh(DATA / "meshes" / "spot" / "spot.obj")
        n, size = (16, 48) if quick else (40, 128)
        return render_dataset(gt, n, size, size), gt
    if name in ("spot_scene", "spot_scene_masked"):
        from tests.support.render import render_scene_dataset

        gt = load_mesh(DATA / "meshes" / "spot" / "spot.obj")
        n, size = (24, 32) if quick else (50, 128)
        ds, masks = render_scene_dataset(gt, n, size, size, elevation_deg=ELEVATION, with_object_masks=True,
                                         azimuth_deg=AZIMUTH)
        return (replace(ds, masks=masks) if name == "spot_scene_masked" else ds), gt
    if name == "dtu24":
        from tests.support.dtu import DTU_VIEWS, write_dtu_subset

        views = range(0, DTU_VIEWS, 4) if quick else range(DTU_VIEWS)
        with tempfile.TemporaryDirectory(prefix="bench-dtu-") as tmp:
            root = write_dtu_subset(DATA, Path(tmp) / "scan24", views=tuple(views), size=64 if quick else dtu_size)
            return load_multiview(root), None
    raise ValueError(f"unknown scene {name!r}")


def object_score(mesh, gt) -> dict:
    """CD-L1 / diagonal and F@1% of the part of ``mesh`` (input frame) inside the object's box, cut
    just above the ground (its lowest 0.5% of the diagonal), against the object ``gt``."""
    lo, hi = gt.vertices.min(0), gt.vertices.max(0)
    diag = float(np.linalg.norm(hi - lo))
    lo = lo + np.array([0.0, 0.0, 0.005 * diag])
    inside = ((mesh.vertices >= lo) & (mesh.vertices <= hi)).all(1)
    crop = mesh_ops.select_faces(mesh, inside[mesh.faces].all(1))
    if crop.is_empty:
        return {"cd_diag": float("inf"), "f1": 0.0}
    ev = evaluate_meshes(crop, gt)
    # Precision (mesh samples near the object) and recall (object samples near the mesh) at 1%.
    pa, _ = mesh_ops.sample_surface(crop, 50_000, seed=0)
    pb, _ = mesh_ops.sample_surface(gt, 50_000, seed=1)
    prec = float((point_to_mesh(gt, pa)[0] <= 0.01 * diag).mean())
    rec = float((point_to_mesh(crop, pb)[0] <= 0.01 * diag).mean())
    return {"cd_diag": ev["chamfer_l1"] / diag, "f1": ev["f_score"], "precision": prec, "recall": rec}


def run_method(name: str, args, ds, gt) -> dict:
    """The scene through the ``neus`` method as a job runs it: region of interest, background field,
    extraction inside the region; held-out PSNR from the method's metrics."""
    from recon.methods import MethodContext
    from recon.pipeline import resolve_device

    method = get_method("neus")
    preset = method.presets[args.preset]
    cfg = replace(preset.fit, steps=args.steps or (60 if args.quick else preset.fit.steps), log_every=5,
                  rays_per_batch=args.rays or preset.fit.rays_per_batch, background_model=args.background,
                  random_background=args.random_background, **overrides(args, preset.fit))
    last = {}
    # The job's seed is the fit's (MethodContext.fit_config), so --set seed=N goes there.
    ctx = MethodContext(preset_name=args.preset, preset=replace(preset, fit=cfg), seed=cfg.seed, resolution=None,
                        extractor="marching_cubes", max_fit_points=None, device=resolve_device("cpu"),
                        progress=lambda ev: last.update(ev.losses), cancel=None, checkpoint_path=None)
    train, test = split_views(ds, 8)
    t0, c0 = time.perf_counter(), time.process_time()
    out = method.reconstruct(split_views(ds, 8), ctx)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    views = out.metrics()["views"]
    mesh = mesh_ops.transform(out.mesh, scale=ds.normalization.scale, translation=ds.normalization.center)
    row = {"scene": name, "rays": cfg.rays_per_batch, "views": f"{train.n_views}+{test.n_views}",
           "size": "x".join(map(str, ds.hw[::-1])), "steps": cfg.steps, "fit_s": ctx.timings["fit"],
           "total_s": wall, "cpu_s": cpu, "s_per_step": ctx.timings["fit"] / cfg.steps, "load": os.getloadavg()[0],
           "psnr": views.get("psnr_test"), "psnr_fg": views.get("psnr_test_foreground", float("nan")), "spr": last.get("samples_per_ray", 0.0),
           "bg_px": views.get("background_pixels_test"), "bg_err": views.get("background_error_share_test"),
           "inv_s": last.get("inv_s", 0.0), "region": views["region"]["source"],
           "bg": views["background_model"] + (" + random" if cfg.random_background else "")}
    mean_color = train.images.reshape(-1, 3).mean(axis=0)
    row["psnr_mean"] = psnr(np.broadcast_to(mean_color, test.images.shape), test.images)
    row["psnr_blur1"] = blur_ceiling(test.images, 1.0)
    row["psnr_views"] = "/".join(f"{v:.1f}" for v in views.get("psnr_test_views", []))
    if gt is not None:
        row.update(object_score(mesh, gt))
    if args.save:
        from meshing.export import save_mesh

        folder = Path(args.save) / name
        folder.mkdir(parents=True, exist_ok=True)
        save_mesh(mesh, folder / "mesh.ply")
        out.artifacts(folder)  # views.png
    return row


def blur_ceiling(images: np.ndarray, sigma: float) -> float:
    """PSNR of the photos blurred by a Gaussian of ``sigma`` pixels against themselves: what a
    rendering exact but for that blur would score (how sharp a fit must be to reach a PSNR)."""
    from scipy.ndimage import gaussian_filter

    blurred = np.stack([gaussian_filter(im, (sigma, sigma, 0)) for im in images])
    return psnr(blurred, images)


def merged(config, changes: dict):
    """``config`` (a dataclass) with the fields in ``changes`` replaced; a JSON object given for a
    nested config changes only the fields it names, at any depth."""
    out = {}
    for key, value in changes.items():
        if key not in {f.name for f in fields(config)}:
            raise TypeError(f"{type(config).__name__} has no field {key!r}")
        current = getattr(config, key)
        out[key] = merged(current, value) if is_dataclass(current) and isinstance(value, dict) else value
    return replace(config, **out)


def overrides(args, base) -> dict:
    """``--set key=value`` pairs as ``NeusConfig`` fields (values are JSON). A nested config takes
    a JSON object of the fields to change in ``base``'s (the preset's), at any depth, or in the
    defaults when ``base`` has none (``appearance``, ``grown_background``)."""
    from recon.encodings.hash_grid import HashGridConfig
    from recon.fields.background import BackgroundConfig
    from recon.multiview import NeusConfig

    known = {f.name for f in fields(NeusConfig)}
    out = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        if key not in known:
            raise SystemExit(f"--set {key}: not a NeusConfig field (one of {', '.join(sorted(known))})")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError as e:
            raise SystemExit(f"--set {key}: expected a JSON value, got {value!r} ({e.msg})") from None
        if isinstance(out[key], dict):
            current = getattr(base, key)
            if current is None and key == "appearance":
                current = HashGridConfig()
            elif current is None and key == "grown_background":
                current = BackgroundConfig()
            if not is_dataclass(current):
                raise SystemExit(f"--set {key}: takes a JSON value, not an object")
            try:
                out[key] = merged(current, out[key])
            except (TypeError, ValueError) as e:
                raise SystemExit(f"--set {key}: {e}") from None
    try:  # the fields together, as the run will use them (NeusConfig checks its values)
        replace(base, **out)
    except (TypeError, ValueError) as e:
        raise SystemExit(f"--set: {e}") from None
    return out


def run_scene(name: str, args) -> dict:
    ds, gt = load_scene(name, args.quick, args.dtu_size)
    if name in ("spot_scene", "spot_scene_masked", "dtu24"):
        return run_method(name, args, ds, gt)
    train, test = split_views(ds, 8)
    cfg = get_method("neus").presets[args.preset].fit
    steps = args.steps or (60 if args.quick else (cfg.steps if name != "dtu24" else 300))
    cfg = replace(cfg, steps=steps, log_every=5, rays_per_batch=args.rays or cfg.rays_per_batch, **overrides(args, cfg))
    reports: list[tuple[int, float]] = []
    last = {}

    def on_progress(ev):
        reports.append((ev.step, ev.losses["psnr"]))
        last.update(ev.losses)

    t0, c0 = time.perf_counter(), time.process_time()
    model = fit_neus(train, cfg, progress=on_progress)
    fit_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    load = os.getloadavg()[0]
    rgb, _ = render_views(model, test)
    row = {"scene": name, "rays": cfg.rays_per_batch, "views": f"{train.n_views}+{test.n_views}", "size": "x".join(map(str, ds.hw[::-1])),
           "steps": steps, "fit_s": fit_s, "cpu_s": cpu_s, "s_per_step": fit_s / steps, "load": load,
           "psnr": psnr(rgb, test.images), "spr": last.get("samples_per_ray", 0.0), "inv_s": last.get("inv_s", 0.0)}
    row["psnr_fg"] = psnr(rgb, test.images, mask=test.masks) if test.masks is not None else float("nan")
    mean_color = train.images.reshape(-1, 3).mean(axis=0)
    row["psnr_mean"] = psnr(np.broadcast_to(mean_color, test.images.shape), test.images)
    smooth = [np.mean([p for _, p in reports[max(0, i - 4): i + 1]]) for i in range(len(reports))]
    row["step_26db"] = next((reports[i][0] for i, p in enumerate(smooth) if p >= 26.0), None)
    if gt is not None:
        mesh = extract_mesh(model, resolution=128 if args.quick else 256)
        mesh = mesh_ops.transform(mesh, scale=ds.normalization.scale, translation=ds.normalization.center)
        mesh = mesh_ops.remove_small_components(mesh, min_fraction=0.01)
        ev = evaluate_meshes(mesh, gt)
        row["cd_diag"] = ev["chamfer_l1"] / mesh_ops.bounding_box_diagonal(gt)
        row["f1"] = ev["f_score"]
    return row


def main() -> None:
    global ELEVATION, AZIMUTH
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 60 steps, smaller scenes")
    p.add_argument("--scenes", default="lego,spot,spot_scene,spot_scene_masked,dtu24",
                   help="comma-separated: lego, spot, spot_scene, spot_scene_masked, dtu24")
    p.add_argument("--preset", default="balanced", choices=PRESET_NAMES)
    p.add_argument("--steps", type=int, default=None, help="override the preset's step count")
    p.add_argument("--background", default="auto", choices=["auto", "grid", "none"],
                   help="spot_scene(_masked), dtu24: the background model ('none': a constant colour)")
    p.add_argument("--random-background", action="store_true",
                   help="spot_scene, dtu24: a random colour at infinity behind the background field in training")
    p.add_argument("--save", default=None, help="write each method run's mesh and views.png into this folder (one subfolder a scene)")
    p.add_argument("--dtu-size", type=int, default=192, help="side of the downscaled DTU images (pixels)")
    p.add_argument("--rays", type=int, default=None, help="override the preset's rays per step")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1 is faster than 2 when other processes share the cores)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="override a NeusConfig field, e.g. --set w_eikonal=0.03 or "
                        "--set 'background_field={\"n_samples\": 32}' (repeatable; nested configs take a "
                        "JSON object of their fields)")
    p.add_argument("--elevation", default=None, help="spot_scene: camera elevations 'lo,hi' in degrees (default 12,60)")
    p.add_argument("--azimuth", type=float, default=AZIMUTH,
                   help="spot_scene: the arc of camera azimuths in degrees (default 360: all around; less: one side)")
    args = p.parse_args()
    if not 0.0 < args.azimuth <= 360.0:
        raise SystemExit(f"--azimuth: expected an arc in (0, 360] degrees, got {args.azimuth}")
    AZIMUTH = args.azimuth
    if args.elevation:
        ELEVATION = tuple(float(x) for x in args.elevation.split(","))
    torch.set_num_threads(args.threads)
    rows = [run_scene(s.strip(), args) for s in args.scenes.split(",") if s.strip()]
    cols = ["scene", "rays", "views", "size", "steps", "fit_s", "total_s", "cpu_s", "s_per_step", "load", "psnr",
            "psnr_fg", "psnr_mean", "psnr_blur1", "bg_px", "bg_err", "spr", "inv_s", "step_26db", "region", "bg", "cd_diag", "f1", "precision", "recall",
            "psnr_views"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            if v is None:
                cells.append("–")
            elif isinstance(v, float):
                cells.append(f"{v:.4f}" if c in ("cd_diag", "s_per_step") else f"{v:.3g}" if c in (
                    "f1", "precision", "recall", "bg_px", "bg_err") else f"{v:.1f}")
            else:
                cells.append(str(v))
        print("| " + " | ".join(cells) + " |")
    print(f"\npreset {args.preset}, {args.threads} torch thread(s), torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs; wall times include other processes' load")


if __name__ == "__main__":
    main()
