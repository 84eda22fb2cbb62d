"""Helpers shared by the service tests (imported by name; pytest puts this folder on sys.path)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

PG_URL = os.environ.get("SURFRECON_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pg_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sphere_points(n: int = 2000, seed: int = 0, radius: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(n, 3))
    return radius * p / np.linalg.norm(p, axis=1, keepdims=True)


def read_sse(client, path: str, *, headers=None, timeout: float = 180.0) -> list[tuple[str, dict]]:
    """All (event, data) pairs of an SSE stream until the server closes it."""
    import json

    import httpx

    events, event, data = [], "message", []
    with client.stream("GET", path, headers=headers, timeout=httpx.Timeout(10.0, read=timeout)) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line == "":
                if data:
                    events.append((event, json.loads("\n".join(data))))
                event, data = "message", []
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
    return events


def submit(client, path, spec: dict, *, headers=None, gt=None):
    """POST /v1/jobs as multipart with the file at ``path`` and ``spec`` as JSON."""
    import json
    from pathlib import Path

    files = [("file", (Path(path).name, Path(path).read_bytes()))]
    if gt is not None:
        files.append(("gt_file", (Path(gt).name, Path(gt).read_bytes())))
    return client.post("/v1/jobs", files=files, data={"spec": json.dumps(spec)}, headers=headers)


def wait_for_job(client, job_id: str, ok, timeout: float, what: str, *, poll: float = 0.1) -> dict:
    """Poll ``GET /v1/jobs/{job_id}`` until ``ok(job)``; fails naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if ok(job):
            return job
        assert time.monotonic() < deadline, f"job {job_id} never {what}: {job['status']}/{job['stage']}"
        time.sleep(poll)


def assert_problem(response, status: int, code: str) -> dict:
    """The response is problem+json with this status and code; returns the body."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["status"] == status and body["code"] == code, body
    assert body["type"].endswith(code) and body["title"] and body["detail"]
    return body


POISSON = {"method": "poisson", "preset": "fast"}


@contextlib.contextmanager
def serve_process(data_dir: Path, env: dict, *, ready_timeout: float = 180.0):
    """Run ``surfrecon serve`` on a free port until the block ends; yields (url, log path).

    Waits for ``/readyz`` (failing with the server's log if it dies or times out) and always
    stops the process with SIGTERM, then SIGKILL after 60 s.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = data_dir / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port),
                                 "--data-dir", str(data_dir / "state")], stdout=log, stderr=subprocess.STDOUT,
                                env=env)
        try:
            deadline = time.monotonic() + ready_timeout
            while True:
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("surfrecon serve did not become ready:\n" + log_path.read_text()[-3000:])
                time.sleep(0.25)
            yield url, log_path
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
