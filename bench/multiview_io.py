"""Benchmark the posed-image loaders, the computed unit sphere and the ground-truth renderer.

Prints a Markdown table: per input, the best-of-``--reps`` wall time of ``load_multiview``
(full load) and of ``probe_multiview`` (the header-level check run on upload), views and size,
where the unit sphere came from, and -- when the set has masks -- how well the sphere fits:
the mean ratio of the projected sphere's area to the mask's bounding box, and the largest
distance (in unit-sphere radii) from the centre to a ray through an object pixel (must be
< 1: the object is inside). Inputs: the shared NeuS scan and tiny lego npz, the scan zipped,
and spot rendered with ``render_dataset`` (timed too) then written as transforms.json.
The machine is shared: the best of the runs is the honest number.

    python bench/multiview_io.py [--reps 3] [--views 40] [--size 128]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meshing.export import load_mesh
from recon.io import load_multiview
from recon.io.dataset import OPENGL_TO_OPENCV
from recon.io.multiview import probe_multiview
from tests.support.render import pixel_rays, render_dataset

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def best(fn, reps):
    times, out = [], None
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def sphere_fit(ds):
    if ds.masks is None:
        return "–", "–"
    ratios, reach = [], 0.0
    for v in range(ds.n_views):
        o, d = pixel_rays(ds.intrinsics[v], ds.c2w[v], *ds.hw)
        d = d / np.linalg.norm(d, axis=-1, keepdims=True)
        t = np.clip(-(d @ o), 0, None)
        dist = np.linalg.norm(o + t[..., None] * d, axis=-1)
        m = ds.masks[v] > 0.5
        if not m.any():
            continue
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        ratios.append((dist <= 1).sum() / ((rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)))
        reach = max(reach, float(dist[m].max()))
    return f"{np.mean(ratios):.2f}", f"{reach:.3f}"


def write_transforms(ds, root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    frames = []
    for i in range(ds.n_views):
        px = np.dstack([ds.images[i], ds.masks[i]])
        Image.fromarray(np.round(px * 255).astype(np.uint8)).save(root / "images" / f"{i:03d}.png")
        c2w = ds.c2w[i].copy()
        c2w[:3, 3] = ds.normalization.from_unit(c2w[:3, 3])
        frames.append({"file_path": f"images/{i:03d}", "transform_matrix": (c2w @ OPENGL_TO_OPENCV).tolist()})
    K = ds.intrinsics[0]
    meta = {"w": ds.hw[1], "h": ds.hw[0], "fl_x": K[0, 0], "fl_y": K[1, 1], "cx": K[0, 2], "cy": K[1, 2],
            "frames": frames}
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--views", type=int, default=40)
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-mv-") as tmp:
        run(args, Path(tmp))


def run(args, tmp: Path) -> None:
    scan = DATA / "multiview" / "dtu_scan24_384_nomask"
    zipped = tmp / "scan.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(scan.rglob("*")):
            if p.is_file() and "fullres" not in p.name:
                zf.write(p, f"scan/{p.relative_to(scan).as_posix()}")
    spot = load_mesh(DATA / "meshes" / "spot" / "spot.obj")
    t_render, rendered = best(lambda: render_dataset(spot, args.views, args.size, args.size), args.reps)
    inputs = {"NeuS dir (DTU scan24)": scan, "NeuS zip (DTU scan24)": zipped,
              "NeRF npz (tiny lego)": DATA / "multiview" / "tiny_lego_100" / "tiny_lego_rgba_100.npz",
              "transforms.json (spot, rendered)": write_transforms(rendered, tmp / "spot")}
    print(f"render_dataset(spot, {args.views} views, {args.size}x{args.size}): {t_render:.2f} s\n")
    print("| input | views | H x W | load s | probe s | sphere from | sphere/bbox area | max ray reach |")
    print("|---|---:|---|---:|---:|---|---:|---:|")
    for name, path in inputs.items():
        t_load, ds = best(partial(load_multiview, path), args.reps)
        t_probe, _ = best(partial(probe_multiview, path), args.reps)
        ratio, reach = sphere_fit(ds)
        print(f"| {name} | {ds.n_views} | {ds.hw[0]} x {ds.hw[1]} | {t_load:.2f} | {t_probe:.2f} | "
              f"{ds.normalization_source} | {ratio} | {reach} |")


if __name__ == "__main__":
    main()
