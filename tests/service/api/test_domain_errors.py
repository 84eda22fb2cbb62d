"""Domain errors at the edge: each one the store and auth raise has exactly one problem+json
answer (status, code, title, detail, headers), and the layers below the API never load FastAPI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from svc_helpers import assert_problem

from recon.io.errors import InputErrorCode
from service import errors
from service.api.errors import PROBLEMS, answer
from service.problems import TITLES, ProblemCode

CASES = [
    (errors.JobNotFound("j1"), 404, "job_not_found", "Job not found", "no job 'j1'", {}),
    (errors.UploadNotFound("u1"), 404, "upload_not_found", "Upload not found", "no upload 'u1'", {}),
    (errors.BatchNotFound("b1"), 404, "batch_not_found", "Batch not found", "no batch 'b1'", {}),
    (errors.JobFinished("j1", "failed"), 409, "job_finished", "Job already finished", "job 'j1' already failed", {}),
    (errors.IdempotencyConflict("k1"), 409, "idempotency_conflict", "Idempotency key reused with a different request",
     "Idempotency-Key 'k1' was used before with a different request", {}),
    (errors.QuotaExceeded(3, 3), 429, "too_many_queued_jobs", "Too many queued jobs",
     "3 jobs already queued for this key; the limit is 3", {"retry-after": "10"}),
    (errors.BadCursor("ValueError"), 422, "validation_error", "Request validation failed",
     "cursor: not a cursor from this API (ValueError)", {}),
    (errors.Unauthorized(missing=True), 401, "unauthorized", "Missing or invalid API key",
     "an API key is required (X-API-Key header or Bearer token)", {"www-authenticate": "Bearer"}),
    (errors.Unauthorized(missing=False), 401, "unauthorized", "Missing or invalid API key",
     "the API key is not valid", {"www-authenticate": "Bearer"}),
]


@pytest.mark.parametrize("exc, status, code, title, detail, headers", CASES, ids=[type(c[0]).__name__ for c in CASES])
def test_each_domain_error_answers_as_before(exc, status, code, title, detail, headers):
    r = answer(exc)
    body = json.loads(r.body)
    assert r.status_code == status and r.media_type == "application/problem+json"
    assert body == {"type": f"urn:surfrecon:problem:{code}", "title": title, "status": status, "detail": detail,
                    "code": code}
    assert {k: v for k, v in r.headers.items() if k in ("retry-after", "www-authenticate")} == headers


def _leaves(cls):
    subs = cls.__subclasses__()
    return [cls] if not subs else [leaf for s in subs for leaf in _leaves(s)]


def test_every_domain_error_is_mapped_and_every_code_has_a_title():
    assert set(_leaves(errors.ServiceError)) == set(PROBLEMS)
    assert {type(c[0]) for c in CASES} == set(PROBLEMS)  # and each is pinned above
    assert not set(ProblemCode) & set(InputErrorCode)
    assert set(TITLES) == set(ProblemCode) | set(InputErrorCode)


def test_a_bad_cursor_is_a_422_at_the_edge(idle_server):
    body = assert_problem(idle_server.client.get("/v1/jobs", params={"cursor": "bm90IGpzb24"}), 422,
                          "validation_error")
    assert body["detail"].startswith("cursor: not a cursor from this API")


# The job store, the workers, the dispatcher and the `keys` command run where no HTTP is served.
NO_HTTP = """
import importlib, pkgutil, sys
import service.jobs
names = [m.name for m in pkgutil.walk_packages(service.jobs.__path__, "service.jobs.") if ".migrations" not in m.name]
names += ["service.errors", "service.auth", "service.admin", "service.dispatch_main"]
for name in names:
    importlib.import_module(name)
print(sorted(names))
print(sorted(m for m in sys.modules if m.split(".")[0] in ("fastapi", "starlette")))
"""


def test_the_layers_below_the_api_do_not_import_fastapi():
    out = subprocess.run([sys.executable, "-c", NO_HTTP], capture_output=True, text=True, timeout=300, check=True)
    names, http = out.stdout.strip().splitlines()[-2:]
    assert "service.jobs.worker" in names and "service.jobs.store" in names
    assert http == "[]", http
