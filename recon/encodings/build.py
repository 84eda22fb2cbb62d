"""Compile the CPU hash-grid kernel ahead of time: ``python -m recon.encodings.build``.

Prints where the kernel is cached. On failure it prints why, and the library falls back to the
pure-PyTorch backend at run time; the exit status is then 0, or 1 with ``--strict`` (set-up and
the images use it: a missing compiler is a set-up error there, not a silent slow path).
"""

from __future__ import annotations

import logging
import sys
import time


def main(argv: list[str] | None = None) -> int:
    """Build (or load the cached) kernel, smoke-test it, report; returns the exit status."""
    strict = "--strict" in (sys.argv[1:] if argv is None else argv)
    # WARNING: the INFO "compiling ..." line is already printed to stderr by _ext.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from recon.encodings import _ext

    t0 = time.perf_counter()
    try:
        module = _ext.load(strict=True)
    except Exception as exc:  # noqa: BLE001 - report and carry on: torch backend still works
        print(f"hash-grid kernel: build FAILED ({exc})", file=sys.stderr)
        print("hash-grid kernel: the pure-PyTorch backend will be used instead", file=sys.stderr)
        return 1 if strict else 0
    try:
        import torch

        from recon.encodings.hash_grid import HashGridConfig, encode_torch

        grid = HashGridConfig(
            n_levels=4, log2_hashmap_size=12, finest_resolution=128, backend="cpp"
        ).build()
        x = torch.rand(257, 3) * 2 - 1
        ok = torch.allclose(grid(x), encode_torch(x, grid.table, grid.layout, 4, False)[0])
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable"
        ok = False
        print(f"hash-grid kernel: smoke test raised {exc!r}", file=sys.stderr)
    print(
        f"hash-grid kernel: {'ready' if ok else 'built but smoke test FAILED'} "
        f"({time.perf_counter() - t0:.1f} s) at {module.__file__}"
    )
    return 0 if ok or not strict else 1


if __name__ == "__main__":
    sys.exit(main())
