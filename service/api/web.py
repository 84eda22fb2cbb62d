"""The artists' web page: ``/`` serves it, ``/web/...`` its modules and three.js, and
``/v1/jobs/{id}/input-points`` gives the viewer a job's input cloud.

The page is plain ES modules with no build step. three.js comes from npm and is served from
here, because the page must work where no CDN is reachable: in a checkout from
``service/web/node_modules/three`` (set-up runs ``npm ci``), in a wheel or an image from the
copy of the files the page loads that the build put in the package (``service.webassets``).
Only three.js is exposed, never the rest of ``node_modules``. Without it the page still loads
and says that the 3D viewer is missing.

The input-points endpoint exists for jobs the browser cannot preview by itself: a job reopened
from the list (its file is no longer in the page) or a format the page does not parse
(LAS/LAZ, NPZ). It answers raw little-endian float32 ``x y z`` triples, subsampled with a
fixed seed, so the overlay is the same each time.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import anyio
import numpy as np
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from recon.io.errors import InputErrorCode
from service.api.deps import CtxDep, PrincipalDep
from service.context import ServiceContext
from service.jobs.models import Job
from service.problems import Problem, responses
from service.webassets import WEB_DIR, three_dir

MAX_PREVIEW_POINTS = 200_000
"""Largest number of points the viewer draws (the browser subsamples its own previews alike)."""

router = APIRouter(tags=["web"])


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    """The page itself; revalidated on every load so that a new release shows at once."""
    return FileResponse(WEB_DIR / "index.html", media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-cache"})


@router.get(
    "/v1/jobs/{job_id}/input-points", summary="The input cloud, subsampled, for viewers",
    description="Raw little-endian float32 `x y z` triples (12 bytes per point) of the job's input, in the "
                "input's frame, subsampled uniformly at random (fixed seed) to at most `max_points`. "
                "`X-Point-Count` is the number sent, `X-Input-Point-Count` the number in the file.",
    response_class=Response,
    responses={200: {"description": "float32 triples", "content": {"application/octet-stream": {
        "schema": {"type": "string", "format": "binary"}}}}, **responses(401, 404, 422)},
)
async def input_points(
    job_id: Annotated[str, PathParam(max_length=64)], request: Request, ctx: CtxDep, principal: PrincipalDep,
    max_points: Annotated[int, Query(ge=1, le=MAX_PREVIEW_POINTS, description="Most points to send.")]
    = MAX_PREVIEW_POINTS,
) -> Response:
    job = await anyio.to_thread.run_sync(lambda: ctx.store.get_job(owner=principal.owner, job_id=job_id))
    etag = f'"{job.input["sha256"]}-{max_points}"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=86400"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    points, total = await anyio.to_thread.run_sync(_load_points, ctx, job, max_points,
                                                   limiter=ctx.validation_limiter)
    headers.update({"X-Point-Count": str(len(points)), "X-Input-Point-Count": str(total)})
    return Response(points.astype("<f4").tobytes(), media_type="application/octet-stream", headers=headers)


def _load_points(ctx: ServiceContext, job: Job, max_points: int) -> tuple[np.ndarray, int]:
    """(<= max_points, 3) points of the job's stored input and the file's point count."""
    from recon.io import InputError, load_point_cloud, subsample

    key = job.input["key"]
    with tempfile.TemporaryDirectory(dir=ctx.settings.scratch_dir) as tmp:
        path = ctx.artifacts.local_path(key)
        if path is None:
            path = Path(tmp) / ("input" + Path(key).suffix)
            ctx.artifacts.get_file(key, path)
        if not path.is_file():
            raise Problem(404, InputErrorCode.NOT_FOUND, f"the input of job {job.id!r} is missing from storage")
        try:
            cloud = load_point_cloud(path, min_points=1)
        except InputError as e:  # only when the file changed after submission; name the client's file
            raise Problem(422, e.code, f"{job.input['name']}: {e.detail}") from e
    return subsample(cloud, max_points, seed=0).points, len(cloud)


def install(app: FastAPI) -> None:
    """Add the page, its static files and the input-points endpoint to ``app``."""
    app.include_router(router)
    # check_dir=False: without `npm ci` the page still loads; the three.js files are then 404s.
    app.mount("/web/vendor/three", StaticFiles(directory=three_dir(), check_dir=False), name="web-three")
    app.mount("/web", StaticFiles(directory=WEB_DIR / "app"), name="web")
