"""RFC 9457 problem details: every error leaves the API as ``application/problem+json``.

Each problem has a stable machine-readable ``code`` (a ``ProblemCode``, or the
``InputErrorCode`` of a bad input file); ``type`` is a URN ending with it. Request handling
raises ``Problem``; the service's domain errors are mapped to problems in ``service.api.errors``;
the handlers here also turn FastAPI's validation errors, unknown routes and anything
unexpected into problems, so no bad input ever produces a bare 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from recon.io.errors import InputErrorCode
from recon.strenum import StrEnum

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:surfrecon:problem:"


class ProblemCode(StrEnum):
    """The API's own problem codes; a bad input file answers with its ``InputErrorCode``."""

    BAD_REQUEST = "bad_request"
    VALIDATION_ERROR = "validation_error"
    INVALID_SPEC = "invalid_spec"
    MISSING_FILE = "missing_file"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNAUTHORIZED = "unauthorized"
    JOB_NOT_FOUND = "job_not_found"
    UPLOAD_NOT_FOUND = "upload_not_found"
    BATCH_NOT_FOUND = "batch_not_found"
    ARTIFACT_NOT_FOUND = "artifact_not_found"
    ROUTE_NOT_FOUND = "route_not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    JOB_FINISHED = "job_finished"
    TOO_MANY_QUEUED_JOBS = "too_many_queued_jobs"
    NOT_READY = "not_ready"
    INTERNAL_ERROR = "internal_error"


TITLES: dict[str, str] = {
    ProblemCode.BAD_REQUEST: "Bad request",
    ProblemCode.VALIDATION_ERROR: "Request validation failed",
    ProblemCode.INVALID_SPEC: "Invalid job spec",
    ProblemCode.MISSING_FILE: "No input file",
    ProblemCode.PAYLOAD_TOO_LARGE: "Upload too large",
    ProblemCode.UNAUTHORIZED: "Missing or invalid API key",
    ProblemCode.JOB_NOT_FOUND: "Job not found",
    ProblemCode.UPLOAD_NOT_FOUND: "Upload not found",
    ProblemCode.BATCH_NOT_FOUND: "Batch not found",
    ProblemCode.ARTIFACT_NOT_FOUND: "Artifact not found",
    ProblemCode.ROUTE_NOT_FOUND: "No such route",
    ProblemCode.METHOD_NOT_ALLOWED: "Method not allowed",
    ProblemCode.UNSUPPORTED_MEDIA_TYPE: "Unsupported media type",
    ProblemCode.IDEMPOTENCY_CONFLICT: "Idempotency key reused with a different request",
    ProblemCode.JOB_FINISHED: "Job already finished",
    ProblemCode.TOO_MANY_QUEUED_JOBS: "Too many queued jobs",
    ProblemCode.NOT_READY: "Service not ready",
    ProblemCode.INTERNAL_ERROR: "Internal server error",
    InputErrorCode.MALFORMED_FILE: "Malformed input file",
    InputErrorCode.UNSUPPORTED_FORMAT: "Unsupported input format",
    InputErrorCode.TRUNCATED: "Truncated input file",
    InputErrorCode.TOO_FEW_POINTS: "Too few points",
    InputErrorCode.TOO_MANY_POINTS: "Too many points",
    InputErrorCode.NON_FINITE: "Non-finite coordinates",
    InputErrorCode.DEGENERATE: "Degenerate point cloud",
    InputErrorCode.NOT_FOUND: "Input not found",
    InputErrorCode.UNSAFE_ARCHIVE: "Unsafe archive",
    InputErrorCode.ARCHIVE_TOO_LARGE: "Archive too large",
    InputErrorCode.IMAGE_TOO_LARGE: "Images too large",
}
"""Title of each problem code (every ``ProblemCode`` and ``InputErrorCode`` has one)."""


class ProblemDetail(BaseModel):
    """An error response (RFC 9457) with a stable ``code``."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "type": "urn:surfrecon:problem:job_not_found", "title": "Job not found", "status": 404,
        "detail": "no job 3f2a9c", "code": "job_not_found"}]})

    type: str = Field(description="URN identifying the problem type; ends with the code.")
    title: str = Field(description="Short human-readable summary of the problem type.")
    status: int = Field(description="HTTP status code.")
    detail: str = Field(description="What went wrong in this request.")
    code: str = Field(description="Stable machine-readable error code.")
    errors: list[dict[str, Any]] | None = Field(None, description="Field errors of a validation problem.")


class Problem(Exception):
    """Raise from services to answer with problem+json."""

    def __init__(self, status: int, code: str, detail: str, *, headers: dict[str, str] | None = None,
                 errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.headers = headers or {}
        self.errors = errors


def problem_body(status: int, code: str, detail: str, errors: list | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": TYPE_PREFIX + code, "title": TITLES.get(code, code.replace("_", " ")),
                            "status": status, "detail": detail, "code": code}
    if errors is not None:
        body["errors"] = errors
    return body


def problem_response(status: int, code: str, detail: str, *, headers: dict[str, str] | None = None,
                     errors: list | None = None) -> JSONResponse:
    return JSONResponse(problem_body(status, code, detail, errors), status_code=status,
                        media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries documenting problem+json answers."""
    return {s: {"model": ProblemDetail, "content": {PROBLEM_MEDIA_TYPE: {}},
                "description": _DESCRIPTIONS.get(s, "Problem")} for s in statuses}


_DESCRIPTIONS = {400: "Bad request", 401: "Missing or invalid API key", 404: "Not found",
                 409: "Conflict", 413: "Upload over the size cap", 415: "Unsupported media type",
                 422: "Invalid spec or input file", 429: "Too many queued jobs", 503: "Not ready"}


def _clean_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validation errors without the echoed input (may be large or binary) and with JSON-safe ctx."""
    out = []
    for e in errors:
        item = {"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", "")),
                "type": str(e.get("type", ""))}
        out.append(item)
    return out


def validation_problem(errors: list[dict[str, Any]], *, code: str = ProblemCode.VALIDATION_ERROR) -> Problem:
    errors = _clean_errors(errors)
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(x for x in first["loc"] if x not in ("body",)) or "request"
    return Problem(422, code, f"{where}: {first['msg']}", errors=errors)


def install(app: FastAPI) -> None:
    """Register the exception handlers that turn every error into problem+json."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.code, exc.detail, headers=exc.headers, errors=exc.errors)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        p = validation_problem(list(exc.errors()))
        return problem_response(p.status, p.code, p.detail, errors=p.errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: ProblemCode.ROUTE_NOT_FOUND, 405: ProblemCode.METHOD_NOT_ALLOWED,
                401: ProblemCode.UNAUTHORIZED, 415: ProblemCode.UNSUPPORTED_MEDIA_TYPE}.get(
            exc.status_code, ProblemCode.BAD_REQUEST)
        if exc.status_code >= 500:
            code = ProblemCode.INTERNAL_ERROR
        return problem_response(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, ProblemCode.INTERNAL_ERROR, "an unexpected error occurred; it has been logged")
