"""The job spec: what to reconstruct and how, validated. Its method choices, the extractors each
method accepts and the option descriptions that name methods come from the method table
(:mod:`recon.methods`) and the extractor table (:mod:`recon.extraction`)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from recon.extraction import EXTRACTORS
from recon.methods import DEFAULT_METHOD, METHODS, PRESET_NAMES, method_names

Method = Literal[tuple(method_names())]  # type: ignore[valid-type]
Extractor = Literal[tuple(EXTRACTORS)]  # type: ignore[valid-type]
PresetName = Literal[PRESET_NAMES]  # type: ignore[valid-type]
MeshFormat = Literal["ply", "obj", "glb", "stl"]


def _extractor_help() -> str:
    """"Mesh extraction: 'marching_cubes' (default for digs) or ... Not used by poisson."""
    parts = []
    for name, ex in EXTRACTORS.items():
        notes = []
        users = [m for m in method_names() if METHODS[m].default_extractor == name]
        if users:
            notes.append(f"default for {', '.join(users)}")
        if ex.note:
            notes.append(ex.note)
        parts.append(f"'{name}'" + (f" ({'; '.join(notes)})" if notes else ""))
    unused = [m for m in method_names() if not METHODS[m].extractors]
    tail = f" Not used by {', '.join(unused)}." if unused else ""
    return f"Mesh extraction: {' or '.join(parts)}.{tail}"


def _holdout_help() -> str:
    return (f"{', '.join(method_names('images'))}: hold out every k-th view (0, k, 2k, ...) from fitting "
            "and report PSNR on them; 0 fits every view.")


def check_bbox(values) -> tuple[float, ...]:
    """``[xmin, ymin, zmin, xmax, ymax, zmax]`` as six floats; ValueError unless they are six finite
    numbers with each min below its max."""
    try:
        box = tuple(float(x) for x in values)
    except (TypeError, ValueError):
        raise ValueError(f"expected bbox as 6 numbers [xmin, ymin, zmin, xmax, ymax, zmax], got {values!r}") from None
    if len(box) != 6:
        raise ValueError(f"expected bbox as 6 numbers [xmin, ymin, zmin, xmax, ymax, zmax], got {len(box)}")
    if not all(math.isfinite(x) for x in box):
        raise ValueError(f"expected finite bbox numbers, got {list(box)}")
    bad = [a for a, lo, hi in zip("xyz", box[:3], box[3:]) if not lo < hi]
    if bad:
        raise ValueError(f"expected bbox min < max on every axis, got min >= max on {', '.join(bad)}")
    return box


class JobSpec(BaseModel):
    """What to reconstruct and how. Unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid")

    method: Method = Field(DEFAULT_METHOD, description="Reconstruction method.")
    preset: PresetName = Field("balanced", description="Speed/quality trade-off.")
    extractor: Extractor | None = Field(None, description=_extractor_help())
    resolution: int | None = Field(None, ge=32, le=1024, description="Extraction grid resolution (DualMesh-UDF: octree depth log2 of it); default from the preset.")
    formats: list[MeshFormat] = Field(default_factory=lambda: ["ply"], min_length=1, max_length=4, description="Mesh formats to export.")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Random seed of the fit.")
    max_fit_points: int | None = Field(None, ge=1000, le=10_000_000, description="Points used for fitting (subsampled above); metrics use all points.")
    decimate_faces: int | None = Field(None, ge=100, description="Simplify the mesh to about this many faces.")
    min_component_fraction: float = Field(0.01, ge=0.0, le=1.0, description="Drop connected components with fewer faces than this fraction of the largest "
                                          "(floating fragments of fitted fields; meshes built from the points, by "
                                          "auto's and poisson's screened Poisson, keep every piece).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to fit; 'auto' picks CUDA when present.")
    holdout_every: int = Field(8, ge=0, le=1000, description=_holdout_help())
    bbox: list[float] | None = Field(
        None, min_length=6, max_length=6,
        description=f"{', '.join(method_names('images'))}: the region to reconstruct, "
                    "[xmin, ymin, zmin, xmax, ymax, zmax] in the input's frame (the cameras' world frame); "
                    "the mesh is kept inside it. Default: found from the data (sparse points, where the "
                    "cameras look, or the masks).")

    @field_validator("bbox")
    @classmethod
    def _bbox_is_a_box(cls, v: list[float] | None) -> list[float] | None:
        return None if v is None else list(check_bbox(v))

    @model_validator(mode="after")
    def _options_fit_method(self) -> JobSpec:
        m = METHODS[self.method]
        if self.extractor is not None and self.extractor not in m.extractors:
            if not m.extractors:
                raise ValueError(f"{m.name} builds its own mesh: leave 'extractor' unset")
            choices = " or ".join(f"'{e}'" for e in m.extractors)
            raise ValueError(f"{m.name} fits a {m.field_kind} distance field: use extractor {choices} or leave it unset")
        if self.bbox is not None and m.input_kind != "images":
            raise ValueError(f"{m.name} fits {m.input_kind}: 'bbox' is for methods that take images")
        if m.input_kind != "points" and self.max_fit_points is not None:
            raise ValueError(f"{m.name} fits {m.input_kind}, not points: leave 'max_fit_points' unset")
        return self
