"""/v1/jobs: submit, list, read, follow (SSE) and cancel jobs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent

from service.api import openapi_bodies as bodies
from service.api.deps import CtxDep, IdempotencyKey, PrincipalDep
from service.api.schemas import JobPublic, JobsPublic, JobStatusName, job_public
from service.jobs.events import job_stream
from service.jobs.models import Job
from service.jobs.states import JobStatus
from service.problems import responses
from service.submissions import submit_job

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobId = Annotated[str, Path(max_length=64, description="Job id.", examples=["9b1deb4d3b7d4bad9bdd2b0d7b3dcb6d"])]


@router.post(
    "", status_code=202, response_model=JobPublic,
    summary="Submit a job",
    description="Multipart (`file` = point cloud, `spec` = JSON JobSpec, optional `gt_file` = ground-truth "
                "mesh) or JSON referring to an upload. The input is validated before the job is queued. "
                "Answers 202 with `Location`; 200 when an `Idempotency-Key` replays an earlier submission.",
    responses={200: {"model": JobPublic, "description": "Replay of an earlier submission with the same key"},
               **responses(400, 401, 404, 409, 413, 415, 422, 429)},
    openapi_extra={"requestBody": bodies.job_create_body()},
)
async def create_job(request: Request, response: Response, ctx: CtxDep, principal: PrincipalDep,
                     idempotency_key: IdempotencyKey = None) -> JobPublic:
    out = await submit_job(ctx, request, principal=principal, key=idempotency_key)
    job = out.jobs[0]
    response.status_code = 202 if out.created else 200
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    if not out.created:
        response.headers["Idempotent-Replayed"] = "true"
    return job_public(job)


@router.get("", response_model=JobsPublic, summary="List jobs",
            description="Newest first, keyset-paginated: follow `next_cursor`.",
            responses=responses(401, 422))
def list_jobs(
    ctx: CtxDep, principal: PrincipalDep,
    status: Annotated[JobStatusName | None, Query(description="Only jobs in this state.")] = None,
    batch_id: Annotated[str | None, Query(max_length=64, description="Only jobs of this batch.")] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="Page size.")] = 50,
    cursor: Annotated[str | None, Query(max_length=512, description="`next_cursor` of the previous page.")] = None,
) -> JobsPublic:
    rows, nxt = ctx.store.list_jobs(owner=principal.owner, status=status, batch_id=batch_id, limit=limit,
                                    cursor=cursor)
    return JobsPublic(items=[job_public(j) for j in rows], next_cursor=nxt)


@router.get("/{job_id}", response_model=JobPublic, summary="Get a job", responses=responses(401, 404))
def get_job(job_id: JobId, ctx: CtxDep, principal: PrincipalDep) -> JobPublic:
    return job_public(ctx.store.get_job(owner=principal.owner, job_id=job_id))


async def _watched_job(job_id: JobId, ctx: CtxDep, principal: PrincipalDep) -> Job:
    # A dependency, so that an unknown job is a 404 before the event stream starts.
    return await anyio.to_thread.run_sync(lambda: ctx.store.get_job(owner=principal.owner, job_id=job_id))


@router.get(
    "/{job_id}/events", summary="Follow a job (Server-Sent Events)",
    description="`state` events carry the whole job (the first one at once, the last one when it ends); "
                "`progress` events carry id, status, stage, progress and attempt. The stream closes after "
                "the final state.",
    response_class=EventSourceResponse,
    responses={200: {"description": "An event stream", "content": {"text/event-stream": {
        "schema": {"type": "string"},
        "example": 'event: progress\ndata: {"id":"9b1d...","status":"running","stage":"fit",'
                   '"progress":37.5,"attempt":1}\n\n'}}},
               **responses(401, 404)},
)
async def job_events(job: Annotated[Job, Depends(_watched_job)], ctx: CtxDep) -> AsyncIterator[ServerSentEvent]:
    async for e in job_stream(ctx.hub, job, lambda j: job_public(j).model_dump(mode="json"),
                              keepalive_s=ctx.settings.sse_keepalive_s):
        yield ServerSentEvent(event=e.event, id=e.id, raw_data=e.data, retry=e.retry, comment=e.comment)


@router.post("/{job_id}/cancel", response_model=JobPublic, summary="Cancel a job",
             description="A queued job is canceled at once (200). A running one is asked to stop (202): it "
                         "stops at its next step, or is killed after the grace period. Canceling a canceled "
                         "job is a no-op; a finished one is 409.",
             responses={202: {"model": JobPublic, "description": "Cancellation requested"},
                        **responses(401, 404, 409)})
def cancel_job(job_id: JobId, response: Response, ctx: CtxDep, principal: PrincipalDep) -> JobPublic:
    job = ctx.store.request_cancel(owner=principal.owner, job_id=job_id)
    ctx.wake_dispatcher()
    response.status_code = 202 if job.status == JobStatus.RUNNING else 200
    return job_public(job)
