"""RFC 9457 problem details: every error leaves the API as ``application/problem+json``.

Each problem has a stable machine-readable ``code``; ``type`` is a URN ending with it. Services
raise ``Problem``; the handlers here also turn FastAPI's validation errors, unknown routes and
anything unexpected into problems, so no bad input ever produces a bare 500.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:surfrecon:problem:"

TITLES: dict[str, str] = {
    "bad_request": "Bad request",
    "validation_error": "Request validation failed",
    "invalid_spec": "Invalid job spec",
    "malformed_file": "Malformed input file",
    "unsupported_format": "Unsupported input format",
    "truncated": "Truncated input file",
    "too_few_points": "Too few points",
    "too_many_points": "Too many points",
    "non_finite": "Non-finite coordinates",
    "degenerate": "Degenerate point cloud",
    "not_found": "Input not found",
    "unsafe_archive": "Unsafe archive",
    "archive_too_large": "Archive too large",
    "image_too_large": "Images too large",
    "missing_file": "No input file",
    "payload_too_large": "Upload too large",
    "unauthorized": "Missing or invalid API key",
    "job_not_found": "Job not found",
    "upload_not_found": "Upload not found",
    "batch_not_found": "Batch not found",
    "artifact_not_found": "Artifact not found",
    "route_not_found": "No such route",
    "method_not_allowed": "Method not allowed",
    "unsupported_media_type": "Unsupported media type",
    "idempotency_conflict": "Idempotency key reused with a different request",
    "job_finished": "Job already finished",
    "too_many_queued_jobs": "Too many queued jobs",
    "not_ready": "Service not ready",
    "internal_error": "Internal server error",
}


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
    errors: Optional[list[dict[str, Any]]] = Field(None, description="Field errors of a validation problem.")


class Problem(Exception):
    """Raise from services to answer with problem+json."""

    def __init__(self, status: int, code: str, detail: str, *, headers: Optional[dict[str, str]] = None,
                 errors: Optional[list[dict[str, Any]]] = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.headers = headers or {}
        self.errors = errors


def problem_body(status: int, code: str, detail: str, errors: Optional[list] = None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": TYPE_PREFIX + code, "title": TITLES.get(code, code.replace("_", " ")),
                            "status": status, "detail": detail, "code": code}
    if errors is not None:
        body["errors"] = errors
    return body


def problem_response(status: int, code: str, detail: str, *, headers: Optional[dict[str, str]] = None,
                     errors: Optional[list] = None) -> JSONResponse:
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


def validation_problem(errors: list[dict[str, Any]], *, code: str = "validation_error") -> Problem:
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
        code = {404: "route_not_found", 405: "method_not_allowed", 401: "unauthorized",
                415: "unsupported_media_type"}.get(exc.status_code, "bad_request")
        if exc.status_code >= 500:
            code = "internal_error"
        return problem_response(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "internal_error", "an unexpected error occurred; it has been logged")
