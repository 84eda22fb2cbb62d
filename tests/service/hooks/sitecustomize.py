"""Imported by every Python process started with this folder on PYTHONPATH (see stage_hooks.py).

It does nothing unless ``SURFRECON_STAGE_HOOKS`` names a rules file; then it arranges for the
job worker module to be patched when (and if) the process imports it. A ``sitecustomize`` that
this one shadows (a distribution's, further down ``sys.path``) still runs.
"""

import importlib.machinery
import importlib.util
import os
import sys

if os.environ.get("SURFRECON_STAGE_HOOKS"):
    import stage_hooks

    stage_hooks.install()

_here = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.machinery.PathFinder.find_spec(
    "sitecustomize", [p for p in sys.path if os.path.abspath(p or os.curdir) != _here])
if _spec is not None and _spec.loader is not None:
    _spec.loader.exec_module(importlib.util.module_from_spec(_spec))
