"""Hash-grid encoding benchmark: PyTorch reference vs compiled C++ kernel, plus Adam step cost.

    python bench/hashgrid.py                 # full table (several minutes: torch is slow)
    python bench/hashgrid.py --quick         # 16k/64k points, 2 repetitions
    python bench/hashgrid.py --no-torch      # C++ kernel and Adam only

Each cell is "best / median" wall-clock milliseconds over the repetitions after one warm-up.
Other processes sharing the cores inflate the median far more than the best; the load average
printed first says how much to trust either.
  fwd      forward(x) only (no Jacobian), under no_grad
  fwd+jac  forward_with_jacobian(x), under no_grad
  bwd      backward of a loss on both enc and jac (table gradient; x does not require grad)
The Adam section times one optimizer step over a parameter as large as the table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

from recon.encodings import HashGridConfig, _ext


def timings(fn: Callable[[], object], reps: int, setup: Callable[[], None] | None = None):
    """(best, median) ms of ``fn`` over ``reps`` runs after a warm-up; ``setup`` is untimed."""
    times = []
    for r in range(reps + 1):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        if r > 0:  # the first run is a warm-up (first touch of fresh buffers, lazy init)
            times.append((time.perf_counter() - t0) * 1e3)
    return min(times), statistics.median(times)


def bench_grid(log2: int, n: int, backend: str, reps: int):
    torch.manual_seed(0)
    grid = HashGridConfig(log2_hashmap_size=log2, backend=backend).build()
    x = torch.rand(n, 3) * 2 - 1
    g_enc = torch.randn(n, grid.out_dim)
    g_jac = torch.randn(n, grid.out_dim, 3) * 1e-3
    state: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def fwd():
        with torch.no_grad():
            return grid(x)

    def fwd_jac():
        with torch.no_grad():
            return grid.forward_with_jacobian(x)

    def make_graph():
        state["out"] = grid.forward_with_jacobian(x)
        grid.table.grad = None  # as optimizer.zero_grad(set_to_none=True)

    def bwd():
        torch.autograd.backward(list(state.pop("out")), [g_enc, g_jac])

    return timings(fwd, reps), timings(fwd_jac, reps), timings(bwd, reps, setup=make_graph)


def bench_adam(n_params: int, reps: int):
    variants = {
        "default (foreach)": {},
        "foreach=False": {"foreach": False},
        "fused=True": {"fused": True},
    }
    results = {}
    for name, kw in variants.items():
        p = torch.nn.Parameter(torch.zeros(n_params))
        p.grad = torch.randn(n_params) * 1e-3
        try:
            opt = torch.optim.Adam([p], lr=1e-2, eps=1e-15, **kw)
            results[name] = timings(opt.step, reps)
        except (RuntimeError, ValueError) as exc:  # fused may be unsupported on some builds
            print(f"  Adam {name}: unsupported ({exc})")
    return results


def fmt(t: tuple[float, float]) -> str:
    return f"{t[0]:7.1f} / {t[1]:7.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="16k/64k points, 2 reps")
    ap.add_argument("--reps", type=int, default=7, help="timed runs per cell (C++ and Adam)")
    ap.add_argument("--torch-reps", type=int, default=2, help="timed runs per torch cell")
    ap.add_argument("--no-torch", action="store_true", help="skip the slow reference backend")
    args = ap.parse_args()
    sizes = [16_384, 65_536] if args.quick else [16_384, 65_536, 262_144]
    reps = 2 if args.quick else args.reps
    backends = ["cpp"] if args.no_torch else ["torch", "cpp"]
    _ext.load(strict=True)

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {load}")
    print("config: 16 levels, F=2, base 16, finest 2048; cells: best / median wall ms")
    w = 17
    print(
        f"| {'T':>5} | {'n':>7} | {'backend':>7} | {'fwd':>{w}} | {'fwd+jac':>{w}} | {'bwd':>{w}} |"
    )
    print(f"|{'-' * 7}|{'-' * 9}|{'-' * 9}|{'-' * (w + 2)}|{'-' * (w + 2)}|{'-' * (w + 2)}|")
    for log2 in (19, 17):
        for n in sizes:
            for backend in backends:
                r = min(reps, args.torch_reps) if backend == "torch" else reps
                f, fj, b = bench_grid(log2, n, backend, r)
                print(f"| 2^{log2} | {n:>7} | {backend:>7} | {fmt(f)} | {fmt(fj)} | {fmt(b)} |")

    print("\nAdam step over a table-sized parameter (dense gradient), best / median ms:")
    for log2 in (19, 17):
        rows = HashGridConfig(log2_hashmap_size=log2, backend="torch").build().layout.n_rows
        n_params = rows * 2
        res = bench_adam(n_params, max(reps, 5))
        line = ", ".join(f"{k}: {v[0]:.1f} / {v[1]:.1f}" for k, v in res.items())
        print(f"  T=2^{log2} ({n_params / 1e6:.1f}M params): {line}")


if __name__ == "__main__":
    main()
