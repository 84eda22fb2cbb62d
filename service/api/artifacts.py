"""/v1/jobs/{id}/artifacts/{name}: download what a job produced."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from service.api.deps import CtxDep, PrincipalDep
from service.jobs.states import JobStatus
from service.problems import Problem, ProblemCode, responses

router = APIRouter(prefix="/v1/jobs", tags=["artifacts"])

MEDIA_TYPES = {".ply": "application/octet-stream", ".obj": "model/obj", ".glb": "model/gltf-binary",
               ".stl": "model/stl", ".json": "application/json", ".png": "image/png"}


@router.get(
    "/{job_id}/artifacts/{name}", summary="Download an artifact",
    description="`mesh.<format>` for each requested format and `metrics.json`. `ETag` is the sha256.",
    response_class=Response,
    responses={200: {"description": "The file", "content": {"application/octet-stream": {
        "schema": {"type": "string", "format": "binary"}}}}, 304: {"description": "Not modified"},
               **responses(401, 404)},
)
def get_artifact(job_id: Annotated[str, Path(max_length=64)], name: Annotated[str, Path(max_length=128)],
                 request: Request, ctx: CtxDep, principal: PrincipalDep) -> Response:
    job = ctx.store.get_job(owner=principal.owner, job_id=job_id)
    art = next((a for a in job.artifacts or [] if a["name"] == name), None)
    if art is None:
        raise Problem(404, ProblemCode.ARTIFACT_NOT_FOUND, f"job {job_id!r} has no artifact {name!r}"
                      + ("" if job.status == JobStatus.SUCCEEDED else f" (the job is {job.status})"))
    etag = f'"{art["sha256"]}"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=31536000, immutable"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    media = MEDIA_TYPES.get("." + name.rsplit(".", 1)[-1].lower(), "application/octet-stream")
    local = ctx.artifacts.local_path(art["key"])
    if local is not None:
        if not local.is_file():
            raise Problem(404, ProblemCode.ARTIFACT_NOT_FOUND, f"artifact {name!r} of job {job_id!r} is missing from storage")
        return FileResponse(local, media_type=media, filename=name, headers=headers)
    headers["Content-Length"] = str(art["size"])
    headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return StreamingResponse(ctx.artifacts.iter_bytes(art["key"]), media_type=media, headers=headers)
