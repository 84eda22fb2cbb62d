"""The service's domain errors as problem+json: the one place that knows their HTTP side.

The job store and auth raise ``service.errors`` exceptions; this handler answers each with
its status, code and headers (``WWW-Authenticate`` on 401, ``Retry-After`` on 429), and the
exception's message as the detail.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from service import errors
from service.problems import ProblemCode, problem_response

RETRY_AFTER_S = 10
"""What a client over its queued-job quota is told to wait before trying again, seconds."""

PROBLEMS: dict[type[errors.ServiceError], tuple[int, ProblemCode, dict[str, str]]] = {
    errors.JobNotFound: (404, ProblemCode.JOB_NOT_FOUND, {}),
    errors.UploadNotFound: (404, ProblemCode.UPLOAD_NOT_FOUND, {}),
    errors.BatchNotFound: (404, ProblemCode.BATCH_NOT_FOUND, {}),
    errors.JobFinished: (409, ProblemCode.JOB_FINISHED, {}),
    errors.IdempotencyConflict: (409, ProblemCode.IDEMPOTENCY_CONFLICT, {}),
    errors.QuotaExceeded: (429, ProblemCode.TOO_MANY_QUEUED_JOBS, {"Retry-After": str(RETRY_AFTER_S)}),
    errors.BadCursor: (422, ProblemCode.VALIDATION_ERROR, {}),
    errors.Unauthorized: (401, ProblemCode.UNAUTHORIZED, {"WWW-Authenticate": "Bearer"}),
}
"""(status, code, headers) of each domain error."""


def answer(exc: errors.ServiceError) -> JSONResponse:
    """The problem+json response for ``exc``; an unmapped domain error is a 500 (and a bug)."""
    for cls in type(exc).__mro__:
        if cls in PROBLEMS:
            status, code, headers = PROBLEMS[cls]
            return problem_response(status, code, str(exc), headers=dict(headers))
    raise exc


def install(app: FastAPI) -> None:
    """Register the handler for every ``ServiceError``."""

    @app.exception_handler(errors.ServiceError)
    async def _domain(request: Request, exc: errors.ServiceError) -> JSONResponse:
        return answer(exc)
