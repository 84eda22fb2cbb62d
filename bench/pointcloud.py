"""Point-cloud benchmark: digs vs screened Poisson on the shared meshes and scans.

For every mesh in ../shared/data/meshes, 50k unoriented points are sampled (fixed seed); for
every scan in ../shared/data/point_clouds the scanned points are loaded as they are. Each
(shape, method) runs in its own process so that peak memory (max RSS) is its own. Prints a
Markdown table: wall time (load + fit/solve + extraction + cleaning + export, metrics
excluded), peak RSS, Chamfer-L1, F-score at 1% of the GT diagonal, normal consistency, and
the digs/poisson ratios.

    python bench/pointcloud.py [--preset balanced] [--shapes spot,cow] [--large]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))


def cases(large: bool) -> list[tuple[str, str, str]]:
    """(name, kind, path) of every benchmark input; kind is 'mesh' or 'scan'."""
    out = []
    for p in sorted((DATA / "meshes").glob("*/*")):
        if p.suffix.lower() in (".obj", ".stl", ".ply"):
            out.append((p.stem, "mesh", str(p)))
    scans = DATA / "point_clouds" / "abc_points2surf_minimal"
    for p in sorted((scans / "04_pts").glob("*.xyz.npy")):
        stem = p.name[: -len(".xyz.npy")]
        out.append((stem.split("_")[0], "scan", str(p)))
    if large:
        out.append(("armadillo-3M", "large", str(DATA / "meshes" / "armadillo_correspondence" / "armadillo.obj")))
    return out


def _prepare(kind: str, path: str, workdir: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write the input points to a .npy; return (points file, ground-truth mesh)."""
    from meshing.export import load_mesh
    from meshing.mesh import sample_surface

    if kind == "scan":
        gt = Path(path).parents[1] / "03_meshes" / (Path(path).name[: -len(".xyz.npy")] + ".ply")
        return Path(path), gt
    n = 3_000_000 if kind == "large" else 50_000
    pts, _ = sample_surface(load_mesh(path), n, seed=seed)
    out = workdir / f"{Path(path).stem}-{n}.npy"
    np.save(out, pts.astype(np.float32))
    return out, Path(path)


def run_one(points: str, gt: str, method: str, preset: str) -> dict:
    """Run one reconstruction in this process; returns metrics, time and peak RSS."""
    from recon.pipeline import JobSpec, run

    with tempfile.TemporaryDirectory() as tmp:
        res = run(JobSpec(method=method, preset=preset), points, tmp, gt_path=gt)
    t = res.metrics["timings_s"]
    g = res.metrics["ground_truth"]
    return {
        "time_s": t["total"] - t["metrics"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "chamfer_l1": g["chamfer_l1"],
        "f_score": g["f_score"],
        "normal_consistency": g["normal_consistency"],
        "faces": res.mesh.n_faces,
        "n_points": res.metrics["n_input_points"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="balanced")
    ap.add_argument("--shapes", default="", help="comma-separated subset of names")
    ap.add_argument("--methods", default="digs,poisson")
    ap.add_argument("--large", action="store_true", help="add a 3M-point cloud (digs only)")
    ap.add_argument("--json", default="", help="also write the rows to this JSON file")
    ap.add_argument("--_one", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._one:
        print("RESULT " + json.dumps(run_one(*args._one)))
        return

    wanted = {s for s in args.shapes.split(",") if s}
    methods = args.methods.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, kind, path in cases(args.large):
            if wanted and name not in wanted:
                continue
            pts, gt = _prepare(kind, path, Path(tmp))
            row = {"shape": name, "kind": kind}
            for method in methods:
                if kind == "large" and method == "poisson":
                    continue
                proc = subprocess.run([sys.executable, __file__, "--_one", str(pts), str(gt), method, args.preset],
                                      capture_output=True, text=True, cwd=ROOT)
                line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
                if proc.returncode != 0 or not line:
                    print(f"{name}/{method} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                    continue
                row[method] = json.loads(line[0][7:])
            rows.append(row)
            print(_format_row(row, methods), flush=True)
    print()
    print(table(rows, methods, args.preset))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


def _format_row(row: dict, methods: list[str]) -> str:
    parts = [f"{row['shape']:>14}"]
    for m in methods:
        r = row.get(m)
        if r:
            parts.append(f"{m}: {r['time_s']:.1f}s {r['peak_rss_mb']:.0f}MB CD={r['chamfer_l1']:.5f} "
                         f"F={r['f_score']:.4f} NC={r['normal_consistency']:.4f}")
    return " | ".join(parts)


def table(rows: list[dict], methods: list[str], preset: str) -> str:
    """Markdown table with the digs/poisson ratios."""
    cpu = _cpu_name()
    head = (f"preset `{preset}`, {time.strftime('%Y-%m-%d')}, {cpu}, {os.cpu_count()} cores, "
            f"torch threads {_threads()}\n\n")
    cols = ["shape", "points"]
    for m in methods:
        cols += [f"{m} s", f"{m} MB", f"{m} CD-L1", f"{m} F@1%", f"{m} NC"]
    if "digs" in methods and "poisson" in methods:
        cols += ["time d/p", "CD d/p", "F d-p"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        any_r = next((row[m] for m in methods if m in row), None)
        cells = [row["shape"], f"{any_r['n_points']:,}" if any_r else "-"]
        for m in methods:
            r = row.get(m)
            cells += ([f"{r['time_s']:.1f}", f"{r['peak_rss_mb']:.0f}", f"{r['chamfer_l1']:.5f}",
                       f"{r['f_score']:.4f}", f"{r['normal_consistency']:.4f}"] if r else ["-"] * 5)
        if "digs" in methods and "poisson" in methods:
            d, p = row.get("digs"), row.get("poisson")
            cells += ([f"{d['time_s'] / p['time_s']:.2f}", f"{d['chamfer_l1'] / p['chamfer_l1']:.2f}",
                       f"{d['f_score'] - p['f_score']:+.4f}"] if d and p else ["-"] * 3)
        lines.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(lines)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main()
