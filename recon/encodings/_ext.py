"""Lazy just-in-time build and load of the C++ CPU hash-grid kernel.

The kernel is compiled with ``torch.utils.cpp_extension.load`` on first use (about a minute) and
cached; later processes only load the cached shared object. ``python -m recon.encodings.build``
does the compilation ahead of time (``make setup`` runs it).

Cache location: ``$SURFRECON_EXT_DIR/surfrecon_hashgrid_cpu`` if that variable is set, else
``$TORCH_EXTENSIONS_DIR/surfrecon_hashgrid_cpu`` if that is set, else inside the running virtual
environment (``<venv>/share/surfrecon/torch_extensions``), else the directory torch itself would
use (``~/.cache/torch_extensions/py<ver>_cpu``). One cache per environment: checkouts sharing a
home directory do not rebuild each other's kernel or wait on each other's lock.

torch serialises concurrent builds with a ``lock`` file in the build directory and waits for it
forever; a build killed half-way leaves it behind. A lock older than ``STALE_LOCK_S`` is removed
(a build takes about a minute), and a younger one is waited on with a message.

A failed build is reported once (``warnings`` + ``logging``) and remembered for the process, so
callers fall back to the pure-PyTorch backend instead of retrying a one-minute compile per call.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import warnings
from pathlib import Path
from types import ModuleType

logger = logging.getLogger(__name__)

NAME = "surfrecon_hashgrid_cpu"
SOURCE = Path(__file__).resolve().parent / "csrc" / "hash_grid_cpu.cpp"
# No -march=native: the cache directory may be shared between machines (e.g. baked into a docker
# layer), and an illegal instruction on another CPU is far worse than a few percent. No
# -ffast-math either: the kernel must agree with the PyTorch reference on cell assignment.
CFLAGS = ["-O3", "-fopenmp"]
LDFLAGS = ["-fopenmp"]

STALE_LOCK_S = 600.0
"""A build lock older than this (seconds) is left over from a killed build and removed."""

_lock = threading.Lock()
_module: ModuleType | None = None
_error: str | None = None


def build_directory() -> Path:
    """Directory holding the compiled kernel (created on demand by the build)."""
    override = os.environ.get("SURFRECON_EXT_DIR")
    if override:
        return Path(override).expanduser() / NAME
    import torch
    from torch.utils import cpp_extension

    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if root is None and sys.prefix != sys.base_prefix:  # a virtual environment: one cache per env
        root = os.path.join(sys.prefix, "share", "surfrecon", "torch_extensions")
    if root is None:
        # Same layout as torch's own default so the cache sits with other torch extensions.
        accel = "cpu" if torch.version.cuda is None else f"cu{torch.version.cuda.replace('.', '')}"
        py = f"py{sys.version_info.major}{sys.version_info.minor}{getattr(sys, 'abiflags', '')}"
        root = os.path.join(cpp_extension.get_default_build_root(), f"{py}_{accel}")
    return Path(root) / NAME


def _needs_compile(build_dir: Path) -> bool:
    """Best guess whether ``load`` will compile (for the log message only; ninja decides)."""
    so = build_dir / f"{NAME}.so"
    return not so.exists() or so.stat().st_mtime < SOURCE.stat().st_mtime


def load(strict: bool = False) -> ModuleType | None:
    """Return the compiled kernel module, compiling it first if needed.

    Returns ``None`` when the build failed (after warning once), or raises ``RuntimeError`` with
    the build error when ``strict``. Thread-safe; concurrent processes are serialised by torch's
    lock file in the build directory.
    """
    global _module, _error
    if _module is not None:
        return _module
    with _lock:
        if _module is None and _error is None:
            _module, _error = _compile()
            if _error is not None:
                msg = (
                    f"could not build the C++ hash-grid kernel; using the (slower) PyTorch "
                    f"backend instead. Reason: {_error}"
                )
                # Once per process. Both channels, but not twice on the console when logging
                # is unconfigured (its last-resort handler would repeat the warning).
                if logger.hasHandlers():
                    logger.warning(msg)
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
    if _module is None and strict:
        raise RuntimeError(f"C++ hash-grid kernel unavailable: {_error}")
    return _module


def error() -> str | None:
    """Why the build failed, or ``None`` if it succeeded or was not attempted yet."""
    return _error


def clear_stale_lock(build_dir: Path, max_age_s: float = STALE_LOCK_S) -> bool:
    """Remove torch's build ``lock`` in ``build_dir`` if a killed build left it; True if removed."""
    lock = build_dir / "lock"
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return False
    if age < max_age_s:
        msg = f"another process is building the hash-grid kernel in {build_dir} (lock {age:.0f} s old); waiting"
        logger.info(msg)
        print(f"surfrecon: {msg}", file=sys.stderr, flush=True)
        return False
    msg = f"removing a stale build lock ({age / 60:.0f} min old, left by a killed build): {lock}"
    logger.warning(msg)
    print(f"surfrecon: {msg}", file=sys.stderr, flush=True)
    lock.unlink(missing_ok=True)
    return True


def _compile() -> tuple[ModuleType | None, str | None]:
    try:
        from torch.utils import cpp_extension

        build_dir = build_directory()
        build_dir.mkdir(parents=True, exist_ok=True)
        clear_stale_lock(build_dir)
        if _needs_compile(build_dir):
            msg = f"compiling the CPU hash-grid kernel (first use, ~1 min) into {build_dir} ..."
            # INFO in the log plus a direct stderr line: a silent one-minute pause looks like a
            # hang, and logging at WARNING would print twice when logging is not configured.
            logger.info(msg)
            print(f"surfrecon: {msg}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        module = cpp_extension.load(
            name=NAME,
            sources=[str(SOURCE)],
            extra_cflags=CFLAGS,
            extra_ldflags=LDFLAGS,
            build_directory=str(build_dir),
            verbose=False,
        )
        logger.info("hash-grid kernel ready in %.1f s (%s)", time.perf_counter() - t0, build_dir)
        return module, None
    except Exception as exc:  # noqa: BLE001 - compiler or ninja missing, compile error, bad cache
        text = str(exc).strip() or type(exc).__name__
        # Compiler output can be long; the tail holds the actual error.
        if len(text) > 4000:
            text = "..." + text[-4000:]
        return None, f"{type(exc).__name__}: {text}"
