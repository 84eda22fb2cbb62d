"""From a fitted distance field to a mesh: the extractors a job may name.

``marching_cubes`` extracts a level set: the zero set of a signed field, or ``f = UDF_MC_LEVEL``
of an unsigned one (which has no sign change, so the surface comes out doubled, two sheets that
far apart). ``dualmesh_udf`` meshes the zero set of an unsigned field (of ``|f|`` for a signed
one) and keeps open surfaces open. Both work in the normalised cube [-1, 1]^3.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the table is read by the thin CLI client: the extractors load on use
    import torch

    from meshing.mesh import Mesh
    from recon.fields.base import DistanceField

# Offset of the level set that marching cubes extracts from an unsigned field (normalised units):
# |f| has no sign change, so MC needs f - eps, which doubles the surface (two sheets eps apart).
UDF_MC_LEVEL = 0.005

# DualMesh-UDF closes holes whose perimeter is under this many finest cells: on a fitted field
# the extractor leaves many such holes (a missed crossing, a dropped fin), while a real opening
# of under two cells across cannot be told from them at that resolution anyway.
UDF_FILL_HOLES = 6.0


@dataclass(frozen=True)
class Extractor:
    """One way of meshing a fitted field."""

    run: Callable[..., Mesh]
    """``(field, *, signed, resolution, device) -> Mesh`` in the normalised frame."""
    note: str
    """What sets it apart, for the API's description (may be empty)."""


def _marching_cubes(model: DistanceField, *, signed: bool, resolution: int, device: torch.device) -> Mesh:
    from meshing.marching_cubes import extract_sdf

    return extract_sdf(model.evaluate, resolution=resolution, device=device, level=0.0 if signed else UDF_MC_LEVEL)


def _dualmesh_udf(model: DistanceField, *, signed: bool, resolution: int, device: torch.device) -> Mesh:
    from meshing.dualmesh_udf import extract_udf

    field = model if not signed else (lambda x: model(x).abs())
    depth = max(5, math.ceil(math.log2(resolution)))  # the octree's finest cells: at least `resolution`
    return extract_udf(field, depth=depth, device=device, fill_holes=UDF_FILL_HOLES)


EXTRACTORS: dict[str, Extractor] = {
    "marching_cubes": Extractor(_marching_cubes, ""),
    "dualmesh_udf": Extractor(_dualmesh_udf, "keeps open surfaces open"),
}
"""Extractor name -> extractor; the job spec's ``extractor`` choices."""


def extract_field(model: DistanceField, *, extractor: str, signed: bool, resolution: int,
                  device: torch.device) -> Mesh:
    """Mesh of ``model`` (a signed field if ``signed``, else unsigned) with the named extractor."""
    if extractor not in EXTRACTORS:
        raise ValueError(f"unknown extractor {extractor!r}; expected one of {sorted(EXTRACTORS)}")
    return EXTRACTORS[extractor].run(model, signed=signed, resolution=resolution, device=device)
