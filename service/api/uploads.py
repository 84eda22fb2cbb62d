"""/v1/uploads: store an input file once, refer to it from JSON job and batch submissions."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response

from recon.methods import method_names, quoted
from service.api import openapi_bodies as bodies
from service.api.deps import CtxDep, PrincipalDep
from service.api.schemas import UploadPublic, upload_public
from service.problems import responses
from service.submissions import receive_upload

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])


@router.post("", status_code=201, response_model=UploadPublic, summary="Upload an input file",
             description="Streams the `file` part to storage (refused with 413 past the size cap) and validates "
                         "it: a point cloud for `kind=points`, a mesh for `kind=mesh`, a .zip of posed images "
                         f"(for {quoted(method_names('images'), quote='`')}) for `kind=images`.",
             responses=responses(400, 401, 413, 415, 422), openapi_extra={"requestBody": bodies.upload_body()})
async def create_upload(
    request: Request, response: Response, ctx: CtxDep, principal: PrincipalDep,
    kind: Annotated[Literal["points", "mesh", "images"], Query(description="What the file holds.")] = "points",
) -> UploadPublic:
    up = await receive_upload(ctx, request, principal=principal, kind=kind)
    response.headers["Location"] = f"/v1/uploads/{up.id}"
    return upload_public(up)


@router.get("/{upload_id}", response_model=UploadPublic, summary="Get an upload", responses=responses(401, 404))
def get_upload(upload_id: Annotated[str, Path(max_length=64)], ctx: CtxDep, principal: PrincipalDep) -> UploadPublic:
    return upload_public(ctx.store.get_upload(owner=principal.owner, upload_id=upload_id))
