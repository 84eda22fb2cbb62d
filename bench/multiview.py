"""NeuS fitting from posed images on the CPU: time, held-out PSNR and geometry against a known mesh.

Scenes:

* ``lego``: the 100-view, 100x100 NeRF lego (``tiny_lego_rgba_100.npz``), every 8th view held out;
* ``spot`` (synthetic): the spot mesh rendered by ``tests.support.render.render_dataset`` from 40 views
  at 128x128 (procedural texture, Lambert shading, exact masks), every 8th view held out; the
  fitted mesh is compared with the true one (Chamfer-L1 as a fraction of the diagonal, F-score
  at 1% of the diagonal);
* ``dtu24``: the real DTU scan 24 without masks (``dtu_scan24_384_nomask``: 49 views, real
  cameras), downscaled to ``--dtu-size`` pixels (default 192; 64 and 12 views with ``--quick``),
  every 8th view held out; no ground-truth geometry, so held-out PSNR only.

Columns: fit wall time, the process's CPU time during the fit (with one thread, about the wall
time on an idle core) and mean wall seconds per step, the 1-minute load average when the fit
ended (other processes on the machine inflate wall times), held-out PSNR over whole images, over
the masks' foreground, and of the baseline that predicts the training images' mean colour, the
last batch's samples per ray and ``s``, and the first step at which the training batch's PSNR
(mean of the last 5 reports) reached 26 dB.

    python bench/multiview.py                 # balanced preset, all scenes
    python bench/multiview.py --quick         # a smoke run: few steps, small scenes
    python bench/multiview.py --scenes lego --steps 1500 --threads 1
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meshing import mesh as mesh_ops
from meshing.export import load_mesh
from meshing.metrics import evaluate_meshes, psnr
from recon.io.dataset import select_views, split_views
from recon.io.multiview import load_multiview
from recon.methods import PRESET_NAMES, get_method
from recon.multiview import extract_mesh, fit_neus, render_views

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


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
    if name == "dtu24":
        from tests.support.dtu import DTU_VIEWS, write_dtu_subset

        views = range(0, DTU_VIEWS, 4) if quick else range(DTU_VIEWS)
        with tempfile.TemporaryDirectory(prefix="bench-dtu-") as tmp:
            root = write_dtu_subset(DATA, Path(tmp) / "scan24", views=tuple(views), size=64 if quick else dtu_size)
            return load_multiview(root), None
    raise ValueError(f"unknown scene {name!r}")


def run_scene(name: str, args) -> dict:
    ds, gt = load_scene(name, args.quick, args.dtu_size)
    train, test = split_views(ds, 8)
    cfg = get_method("neus").presets[args.preset].fit
    steps = args.steps or (60 if args.quick else (cfg.steps if name != "dtu24" else 300))
    cfg = replace(cfg, steps=steps, log_every=5, rays_per_batch=args.rays or cfg.rays_per_batch)
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
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 60 steps, smaller scenes")
    p.add_argument("--scenes", default="lego,spot,dtu24", help="comma-separated: lego, spot, dtu24")
    p.add_argument("--preset", default="balanced", choices=PRESET_NAMES)
    p.add_argument("--steps", type=int, default=None, help="override the preset's step count")
    p.add_argument("--dtu-size", type=int, default=192, help="side of the downscaled DTU images (pixels)")
    p.add_argument("--rays", type=int, default=None, help="override the preset's rays per step")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1 is faster than 2 when other processes share the cores)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = [run_scene(s.strip(), args) for s in args.scenes.split(",") if s.strip()]
    cols = ["scene", "rays", "views", "size", "steps", "fit_s", "cpu_s", "s_per_step", "load", "psnr", "psnr_fg",
            "psnr_mean", "spr", "inv_s", "step_26db", "cd_diag", "f1"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            if v is None:
                cells.append("–")
            elif isinstance(v, float):
                cells.append(f"{v:.4f}" if c in ("cd_diag", "s_per_step") else f"{v:.3g}" if c == "f1" else f"{v:.1f}")
            else:
                cells.append(str(v))
        print("| " + " | ".join(cells) + " |")
    print(f"\npreset {args.preset}, {args.threads} torch thread(s), torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs; wall times include other processes' load")


if __name__ == "__main__":
    main()
