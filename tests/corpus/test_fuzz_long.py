"""A long schemathesis run against a real ``surfrecon serve`` process: no 5xx, every error is
problem+json, and the server stays healthy. The OpenAPI document has no links, so this is a
larger example count per operation rather than a stateful run.

Off by default (the suite's own fuzz test draws 15 examples per operation); set
``SURFRECON_LONG_FUZZ=<examples per operation and mode>`` to run it, e.g. 300.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest

EXAMPLES = int(os.environ.get("SURFRECON_LONG_FUZZ", "0"))

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(EXAMPLES <= 0, reason="set SURFRECON_LONG_FUZZ=<examples> for the long fuzz run")]


def test_long_fuzz_no_server_errors(tmp_path):
    import httpx
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from svc_helpers import serve_process

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SURFRECON_", "RAY_"))}
    env.update(SURFRECON_DISPATCHER="external", SURFRECON_MAX_UPLOAD_BYTES=str(1 << 20),
               SURFRECON_MAX_QUEUED_PER_KEY="100000")
    statuses: Counter = Counter()
    calls = 0
    with serve_process(tmp_path, env) as (url, _log):
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        operations = [r.ok() for r in schema.get_all_operations()]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for op in operations:
                @given(case=op.as_strategy(generation_mode=mode))
                @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                          suppress_health_check=list(HealthCheck))
                def check(case):
                    nonlocal calls
                    response = case.call(base_url=url, timeout=60)
                    calls += 1
                    statuses[response.status_code] += 1
                    assert response.status_code < 500, (case.method, case.formatted_path, response.text[:500])
                    if response.status_code >= 400:
                        ctype = response.headers.get("content-type", "")
                        ctype = ctype[0] if isinstance(ctype, list) else ctype
                        assert ctype.startswith("application/problem+json"), response.text[:300]

                try:
                    check()
                except Unsatisfiable:  # an operation without any invalid variant
                    pass
        assert httpx.get(f"{url}/readyz", timeout=30).status_code == 200
    print(f"long fuzz: {len(operations)} operations, {calls} requests, statuses {dict(sorted(statuses.items()))}")
    assert calls > EXAMPLES * len(operations)
