"""The reconstruction methods, one module each, and the table they register in.

Every module of this package except ``base`` (and private ``_`` modules) defines one method and registers it with
:func:`~recon.methods.base.register_method`; importing the package imports them all, so adding
a method means adding a module here (see "Adding a method" in the README).
"""

from __future__ import annotations

import importlib
import pkgutil

from recon.methods.base import (
    METHODS,
    PRESET_NAMES,
    Method,
    MethodContext,
    Preset,
    Reconstruction,
    default_extractors,
    describe_methods,
    get_method,
    method_names,
    quoted,
    register_method,
)

DEFAULT_METHOD = "auto"
"""The method of a job that names none."""

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module != "base" and not _module.startswith("_"):  # private helpers register nothing
        importlib.import_module(f"{__name__}.{_module}")

if DEFAULT_METHOD not in METHODS:
    raise RuntimeError(f"the default method {DEFAULT_METHOD!r} is not registered")

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "PRESET_NAMES",
    "Method",
    "MethodContext",
    "Preset",
    "Reconstruction",
    "default_extractors",
    "describe_methods",
    "get_method",
    "method_names",
    "quoted",
    "register_method",
]
