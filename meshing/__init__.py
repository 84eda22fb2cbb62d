"""Meshing: iso-surface extraction, mesh operations, file export and quality metrics.

Submodules: ``mesh`` (the ``Mesh`` dataclass and pure operations), ``marching_cubes``
(``extract_sdf``), ``export`` (``save_mesh`` / ``load_mesh`` / ``EXPORTERS``) and ``metrics``.
The names below are re-exported lazily so that importing ``meshing`` does not import torch.
"""

from __future__ import annotations

import importlib

from meshing.mesh import Mesh

_LAZY = {
    "extract_sdf": "meshing.marching_cubes",
    "ExtractStats": "meshing.marching_cubes",
    "save_mesh": "meshing.export",
    "load_mesh": "meshing.export",
    "mesh_bytes": "meshing.export",
    "EXPORTERS": "meshing.export",
    "evaluate_meshes": "meshing.metrics",
    "evaluate_against_points": "meshing.metrics",
    "mesh_stats": "meshing.metrics",
}

__all__ = [
    "EXPORTERS",
    "ExtractStats",
    "Mesh",
    "evaluate_against_points",
    "evaluate_meshes",
    "extract_sdf",
    "load_mesh",
    "mesh_bytes",
    "mesh_stats",
    "save_mesh",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'meshing' has no attribute {name!r}")
