"""Hash-grid encoding benchmark: PyTorch reference vs compiled C++ kernel, plus Adam step cost.

    python bench/hashgrid.py                 # full table (takes a few minutes, torch is slow)
    python bench/hashgrid.py --quick         # 16k/64k points, 2 repetitions

Times are the best (minimum) wall-clock milliseconds over ``--reps`` runs after one warm-up; the
minimum is the most stable statistic when other processes share the cores:
  fwd      forward(x) only (no Jacobian)
  fwd+jac  forward_with_jacobian(x)
  bwd      backward of a loss on both enc and jac (table gradient; x does not require grad)
The Adam section times one optimizer step over a table of the given size (dense gradients).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch

from recon.encodings import HashGridConfig, _ext


def best_ms(fn: Callable[[], object], reps: int) -> float:
    fn()  # warm-up (also first-touch of freshly allocated outputs)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return min(times)


def bench_grid(log2: int, n: int, backend: str, reps: int) -> tuple[float, float, float]:
    torch.manual_seed(0)
    grid = HashGridConfig(log2_hashmap_size=log2, backend=backend).build()
    x = torch.rand(n, 3) * 2 - 1
    g_enc = torch.randn(n, grid.out_dim)
    g_jac = torch.randn(n, grid.out_dim, 3) * 1e-3

    def fwd():
        with torch.no_grad():
            return grid(x)

    def fwd_jac():
        with torch.no_grad():
            return grid.forward_with_jacobian(x)

    state: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def bwd():
        enc, jac = state.pop("out")
        grid.table.grad = None  # as optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward([enc, jac], [g_enc, g_jac])

    t_fwd = best_ms(fwd, reps)
    t_jac = best_ms(fwd_jac, reps)
    times = []
    for _ in range(reps + 1):  # forward outside the timed region, backward inside
        state["out"] = grid.forward_with_jacobian(x)
        t0 = time.perf_counter()
        bwd()
        times.append((time.perf_counter() - t0) * 1e3)
    return t_fwd, t_jac, min(times[1:])


def bench_adam(n_params: int, reps: int) -> dict[str, float]:
    results = {}
    variants = {
        "default (foreach)": {},
        "foreach=False": {"foreach": False},
        "fused=True": {"fused": True},
    }
    for name, kw in variants.items():
        p = torch.nn.Parameter(torch.zeros(n_params))
        p.grad = torch.randn(n_params) * 1e-3
        try:
            opt = torch.optim.Adam([p], lr=1e-2, eps=1e-15, **kw)
            results[name] = best_ms(opt.step, reps)
        except (RuntimeError, ValueError) as exc:  # fused may be unsupported on some builds
            results[name] = float("nan")
            print(f"  Adam {name}: unsupported ({exc})")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="16k/64k points, 2 reps")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-torch", action="store_true", help="skip the slow reference backend")
    args = ap.parse_args()
    sizes = [16_384, 65_536] if args.quick else [16_384, 65_536, 262_144]
    reps = 2 if args.quick else args.reps
    backends = ["cpp"] if args.no_torch else ["torch", "cpp"]
    _ext.load(strict=True)

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    # Other processes on the cores inflate wall times; the load average says how much to trust them.
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {load}")
    print("config: 16 levels, F=2, base 16, finest 2048; best-of-reps wall time in ms")
    print(f"| {'T':>5} | {'n':>7} | {'backend':>7} | {'fwd':>8} | {'fwd+jac':>8} | {'bwd':>8} |")
    print(f"|{'-' * 7}|{'-' * 9}|{'-' * 9}|{'-' * 10}|{'-' * 10}|{'-' * 10}|")
    for log2 in (19, 17):
        for n in sizes:
            for backend in backends:
                f, fj, b = bench_grid(log2, n, backend, reps)
                print(f"| 2^{log2} | {n:>7} | {backend:>7} | {f:8.1f} | {fj:8.1f} | {b:8.1f} |")

    print("\nAdam step over the whole table (dense gradient), ms:")
    for log2 in (19, 17):
        rows = HashGridConfig(log2_hashmap_size=log2, backend="torch").build().layout.n_rows
        n_params = rows * 2
        res = bench_adam(n_params, reps)
        line = ", ".join(f"{k}: {v:.1f}" for k, v in res.items())
        print(f"  T=2^{log2} ({n_params / 1e6:.1f}M params): {line}")


if __name__ == "__main__":
    main()
