"""OpenAPI request bodies of the routes that stream their body themselves (so FastAPI cannot
infer them): job and batch submission and uploads. ``add_components`` puts the referenced
models into ``components/schemas``."""

from __future__ import annotations

from typing import Any

from recon.methods import method_names, quoted
from service.api.schemas import BatchCreate, JobCreate

_REF = "#/components/schemas/{model}"

_SPEC_FIELD = {"type": "string", "contentMediaType": "application/json",
               "description": "The JobSpec as JSON text (unknown fields are rejected); default {}.",
               "example": '{"method": "poisson", "preset": "fast", "formats": ["ply", "glb"]}'}
_FILE = {"type": "string", "format": "binary"}


def _image_methods() -> str:
    return quoted(method_names("images"), quote="")


def job_create_body() -> dict[str, Any]:
    return {"required": True, "content": {
        "multipart/form-data": {
            "schema": {"type": "object", "required": ["file"], "properties": {
                "file": {**_FILE, "description": "Point cloud: .ply .xyz .txt .pts .npy .npz .obj .off .stl .las .laz; "
                                           f"for {_image_methods()}, a .zip of posed images"},
                "spec": _SPEC_FIELD,
                "gt_file": {**_FILE, "description": "Optional ground-truth mesh for metrics: .ply .obj .glb .stl .off"},
            }},
            "encoding": {"spec": {"contentType": "application/json"}}},
        "application/json": {"schema": {"$ref": _REF.format(model="JobCreate")},
                             "example": JobCreate.model_config["json_schema_extra"]["examples"][0]},
    }}


def batch_create_body() -> dict[str, Any]:
    return {"required": True, "content": {
        "multipart/form-data": {
            "schema": {"type": "object", "required": ["file"], "properties": {
                "file": {"type": "array", "items": _FILE, "description": "One input per job (repeat the part): a point cloud, or a .zip of "
                                                                      f"posed images for {_image_methods()}."},
                "spec": _SPEC_FIELD,
            }},
            "encoding": {"spec": {"contentType": "application/json"}}},
        "application/json": {"schema": {"$ref": _REF.format(model="BatchCreate")},
                             "example": BatchCreate.model_config["json_schema_extra"]["examples"][0]},
    }}


def upload_body() -> dict[str, Any]:
    return {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"], "properties": {
            "file": {**_FILE, "description": "A point cloud (kind=points), a mesh (kind=mesh) or a .zip of posed images (kind=images)."}}}}}}


def add_components(schema: dict[str, Any]) -> dict[str, Any]:
    """Add JobCreate, BatchCreate and what they reference to ``components/schemas``, and document
    validation errors as the problem+json they are (not FastAPI's default body)."""
    comps = schema.setdefault("components", {}).setdefault("schemas", {})
    problem = {"$ref": _REF.format(model="ProblemDetail")}
    for ops in schema.get("paths", {}).values():
        for op in ops.values():
            resp = op.get("responses", {}).get("422")
            if resp and "HTTPValidationError" in str(resp.get("content", {})):
                resp["content"] = {"application/problem+json": {"schema": problem}}
                resp["description"] = "Invalid request"
    for name in ("HTTPValidationError", "ValidationError"):
        if name not in str(schema.get("paths")):
            comps.pop(name, None)
    for model in (JobCreate, BatchCreate):
        js = model.model_json_schema(ref_template=_REF)
        for name, sub in js.pop("$defs", {}).items():
            comps.setdefault(name, sub)
        comps[model.__name__] = js
    return schema
