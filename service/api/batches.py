"""/v1/batches: many jobs in one request, and their aggregate progress."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from service.api import openapi_bodies as bodies
from service.api.deps import CtxDep, IdempotencyKey, PrincipalDep
from service.api.schemas import BatchPublic, batch_public
from service.problems import responses
from service.submissions import submit_batch

router = APIRouter(prefix="/v1/batches", tags=["batches"])


@router.post(
    "", status_code=202, response_model=BatchPublic, summary="Submit a batch",
    description="Multipart: one `spec` part for all jobs and one `file` part per job (the body cap applies "
                "to the whole request: upload large files first). JSON: a list of JobCreate over uploads. "
                "All jobs are queued or none is.",
    responses={200: {"model": BatchPublic, "description": "Replay of an earlier submission with the same key"},
               **responses(400, 401, 404, 409, 413, 415, 422, 429)},
    openapi_extra={"requestBody": bodies.batch_create_body()},
)
async def create_batch(request: Request, response: Response, ctx: CtxDep, principal: PrincipalDep,
                       idempotency_key: IdempotencyKey = None) -> BatchPublic:
    out = await submit_batch(ctx, request, principal=principal, key=idempotency_key)
    response.status_code = 202 if out.created else 200
    response.headers["Location"] = f"/v1/batches/{out.batch.id}"
    return batch_public(out.batch, out.jobs)


@router.get("/{batch_id}", response_model=BatchPublic, summary="Get a batch", responses=responses(401, 404))
def get_batch(batch_id: Annotated[str, Path(max_length=64)], ctx: CtxDep, principal: PrincipalDep) -> BatchPublic:
    batch, jobs = ctx.store.get_batch(owner=principal.owner, batch_id=batch_id)
    return batch_public(batch, jobs)
