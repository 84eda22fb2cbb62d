"""/v1/methods: the method table as the web page and API clients read it.

Public (no API key), like the health probes: it describes the service, not anyone's data, and the
web page builds its method list from it before a key is entered.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from recon.methods import DEFAULT_METHOD, METHODS, PRESET_NAMES, method_names
from recon.spec import JobSpec

router = APIRouter(prefix="/v1/methods", tags=["methods"])


class PresetPublic(BaseModel):
    name: str = Field(description="Preset name, the job spec's `preset`.")
    resolution: int | None = Field(description="Default extraction resolution; null when the method meshes directly.")


class MethodPublic(BaseModel):
    name: str = Field(description="The job spec's `method`.")
    label: str = Field(description="A few plain words naming it in lists.")
    description: str = Field(description="One sentence: what it is for.")
    input_kind: Literal["points", "images"] = Field(
        description="`points`: a point cloud file; `images`: a .zip of posed images (upload kind `images`).")
    field_kind: Literal["signed", "unsigned", "none"] = Field(
        description="The distance field it fits; `none` when it builds the mesh directly.")
    extractors: list[str] = Field(description="Values the job spec's `extractor` may take with it; empty: none.")
    default_extractor: str | None = Field(description="The extractor used when the spec names none.")
    presets: list[PresetPublic] = Field(description="Its presets, fastest first.")


class MethodsPublic(BaseModel):
    model_config = {"json_schema_extra": {"examples": [{"default": "digs", "default_preset": "balanced", "methods": [
        {"name": "digs", "label": "Smooth closed surface (neural)",
         "description": "Learns a smooth, closed (watertight) surface. Works on raw scans without normals.",
         "input_kind": "points", "field_kind": "signed", "extractors": ["marching_cubes", "dualmesh_udf"],
         "default_extractor": "marching_cubes",
         "presets": [{"name": "fast", "resolution": 128}, {"name": "balanced", "resolution": 256},
                     {"name": "quality", "resolution": 384}]}]}]}}

    default: str = Field(description="The method of a job spec that names none.")
    default_preset: str = Field(description="The preset of a job spec that names none.")
    methods: list[MethodPublic] = Field(description="Every method, in the order lists show them.")


def methods_public() -> MethodsPublic:
    out = []
    for name in method_names():
        m = METHODS[name]
        out.append(MethodPublic(name=m.name, label=m.label, description=m.description, input_kind=m.input_kind,
                                field_kind=m.field_kind, extractors=list(m.extractors),
                                default_extractor=m.default_extractor,
                                presets=[PresetPublic(name=p, resolution=m.presets[p].resolution)
                                         for p in PRESET_NAMES]))
    return MethodsPublic(default=DEFAULT_METHOD, default_preset=JobSpec.model_fields["preset"].default, methods=out)


@router.get("", response_model=MethodsPublic, summary="List the reconstruction methods",
            description="Every method a job spec may name, with its input kind, extractors and presets. "
                        "Needs no API key.")
def list_methods() -> MethodsPublic:
    return methods_public()
