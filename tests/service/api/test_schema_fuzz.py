"""Schemathesis over the OpenAPI document: whatever it sends, no 5xx, and every error is
problem+json. Runs against the API-only server (nothing it submits is executed).

Cases are drawn per operation and per generation mode (valid and invalid data) through
Hypothesis directly, with a bounded number of examples each.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

EXAMPLES_PER_OPERATION = 15


def _content_type(response) -> str:
    value = {k.lower(): v for k, v in response.headers.items()}.get("content-type", "")
    return value[0] if isinstance(value, list) else value


def _operations(url: str):
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_no_server_errors_and_problem_json(idle_server, mode):
    operations = _operations(idle_server.url)
    assert len(operations) >= 11
    seen: dict[str, set[int]] = {}

    for op in operations:
        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            response = case.call(base_url=idle_server.url, timeout=30)
            seen.setdefault(op.label, set()).add(response.status_code)  # noqa: B023 - runs in this iteration
            assert response.status_code < 500, (case.method, case.formatted_path, response.status_code,
                                                response.text[:500])
            if response.status_code >= 400:
                assert _content_type(response).startswith("application/problem+json"), response.text[:300]
                body = response.json()
                assert body["status"] == response.status_code and body["code"], body

        try:
            check()
        except Unsatisfiable:  # no invalid variant exists (e.g. /healthz takes no input)
            assert mode == GenerationMode.NEGATIVE
            seen.setdefault(op.label, set())
    assert len(seen) == len(operations)
    assert sum(bool(codes) for codes in seen.values()) >= (len(operations) if mode == GenerationMode.POSITIVE else 8)
