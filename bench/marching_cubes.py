"""Benchmark sparse marching cubes on analytic SDFs.

Prints, for a sphere and a torus at several resolutions: wall time, field evaluations (and
their share of the dense (res + 1)^3 grid), blocks refined, faces, watertightness, and the
largest distance of a vertex from the true surface (in voxels).

    python bench/marching_cubes.py [--res 128 256 512] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meshing import mesh as M
from meshing.marching_cubes import ExtractStats, extract_sdf

R_SPHERE = 0.5
R_MAJOR, R_MINOR = 0.6, 0.25


def sphere(x: torch.Tensor) -> torch.Tensor:
    return x.norm(dim=1) - R_SPHERE


def torus(x: torch.Tensor) -> torch.Tensor:
    q = torch.stack([torch.sqrt(x[:, 0] ** 2 + x[:, 1] ** 2) - R_MAJOR, x[:, 2]], 1)
    return q.norm(dim=1) - R_MINOR


def sphere_error(v: np.ndarray) -> np.ndarray:
    return np.abs(np.linalg.norm(v, axis=1) - R_SPHERE)


def torus_error(v: np.ndarray) -> np.ndarray:
    return np.abs(np.hypot(np.hypot(v[:, 0], v[:, 1]) - R_MAJOR, v[:, 2]) - R_MINOR)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--res", type=int, nargs="+", default=[128, 256, 512])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    extract_sdf(sphere, resolution=32)  # warm-up (imports, allocator)
    header = (
        f"{'shape':<7} {'res':>4} {'time s':>7} {'evals':>11} {'% dense':>8} "
        f"{'blocks':>13} {'faces':>9} {'closed':>6} {'max err (vox)':>13}"
    )
    print(header)
    print("-" * len(header))
    for name, field, err in (("sphere", sphere, sphere_error), ("torus", torus, torus_error)):
        for res in args.res:
            stats = ExtractStats()
            mesh = extract_sdf(field, resolution=res, stats=stats)
            voxel = 2.0 / res
            print(
                f"{name:<7} {res:>4} {stats.seconds:>7.2f} {stats.evaluations:>11,} "
                f"{100 * stats.evaluations / (res + 1) ** 3:>7.2f}% "
                f"{stats.blocks_refined:>6,}/{stats.blocks_total:<6,} {mesh.n_faces:>9,} "
                f"{'yes' if M.is_watertight(mesh) else 'NO':>6} "
                f"{err(mesh.vertices).max() / voxel:>13.4f}"
            )


if __name__ == "__main__":
    main()
