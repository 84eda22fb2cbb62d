"""Fixtures for the service tests: one local Ray per session, real uvicorn servers on free
ports (in threads of this process, sharing its Ray), point-cloud files, and both job-store
backends (SQLite in a temp dir, PostgreSQL on 127.0.0.1:5432 in a throw-away schema).

The session's Ray workers load the stage hooks of ``hooks/stage_hooks.py``: a test holds a
server's jobs in a stage, or counts their attempts, with ``set_rules(stage_hooks, ...)``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from svc_helpers import PG_URL, free_port, pg_available, sphere_points

sys.path.insert(0, str(Path(__file__).resolve().parent / "hooks"))
from stage_hooks import hook_env

# Timings short enough for tests, long enough not to flap on 2 busy cores.
FAST_SETTINGS: dict[str, Any] = {
    "heartbeat_interval_s": 0.5, "heartbeat_timeout_s": 12.0, "cancel_grace_s": 3.0,
    "reconcile_interval_s": 0.25, "events_poll_s": 0.1, "checkpoint_every_s": 1.0,
}


@pytest.fixture(scope="session")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """Small input files: good clouds (.xyz, .npy, a second distinct one) and broken ones."""
    d = tmp_path_factory.mktemp("inputs")
    files = {"sphere": d / "sphere.xyz", "sphere_npy": d / "sphere.npy", "other": d / "other.xyz",
             "malformed": d / "broken.xyz", "unsupported": d / "cloud.abc", "too_few": d / "few.xyz",
             "nan": d / "nan.xyz"}
    np.savetxt(files["sphere"], sphere_points())
    np.save(files["sphere_npy"], sphere_points(seed=1))
    # seed 3: some random spheres trip a qhull precision error in the Poisson normal orientation
    np.savetxt(files["other"], sphere_points(seed=3, radius=2.0))
    files["malformed"].write_text("0.1 0.2 0.3\n0.4 zero 0.6\n")
    files["unsupported"].write_text("whatever\n")
    np.savetxt(files["too_few"], sphere_points(5))
    pts = sphere_points(500)
    pts[7, 1] = np.nan
    np.savetxt(files["nan"], pts)
    return files


@pytest.fixture(scope="session")
def stage_hooks(tmp_path_factory) -> Path:
    """The rules file of the stage hooks (none at first: the hooks do nothing)."""
    return tmp_path_factory.mktemp("stage_hooks") / "rules.json"


@pytest.fixture(scope="session")
def ray_session(stage_hooks) -> Iterator[str]:
    """One local Ray for the whole session (loopback, free ports, no dashboard)."""
    # Workers inherit the environment of Ray's start: credentials for the moto S3 server.
    for k, v in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(k, v)
    from service.jobs.executor import init_ray
    from service.settings import Settings

    # The service's own start-up path, as `surfrecon serve` takes it (servers started later
    # in this process find Ray initialised and share it). Ray's processes, and so its
    # workers, keep the environment of its start: the hooks' variables are set only for that.
    saved = {k: os.environ.get(k) for k in hook_env(stage_hooks)}
    os.environ.update(hook_env(stage_hooks))
    try:
        assert init_ray(Settings(_env_file=None, ray_address=None, ray_num_cpus=2, ray_object_store_bytes=128 << 20))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    import ray

    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def s3_endpoint(ray_session):
    """A moto S3 server on loopback with a bucket called 'artifacts'."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="artifacts")
    try:
        yield endpoint
    finally:
        server.stop()


@dataclass
class Server:
    """A running app: its base URL, its service context and an HTTP client."""

    url: str
    app: Any
    client: httpx.Client
    stop: Callable[[], None]
    """Shut the server down now (otherwise it runs until the end of the session)."""

    @property
    def ctx(self):
        return self.app.state.ctx

    def wait_for(self, job_id: str, statuses=("succeeded", "failed", "canceled"), timeout: float = 120.0,
                  headers=None) -> dict:
        """Poll the job until its status is in ``statuses``."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.client.get(f"/v1/jobs/{job_id}", headers=headers).json()
            if job["status"] in statuses:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {job['status']}/{job['stage']} after {timeout} s")
            time.sleep(0.1)


def _run_server(settings) -> tuple[Any, Any, threading.Thread, str]:
    import uvicorn

    from service.app import create_app

    app = create_app(settings)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2,
                            lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.05)
    return app, server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def make_server(tmp_path_factory, ray_session) -> Iterator[Callable[..., Server]]:
    """Factory: ``make_server(**settings)`` starts an app on a free port; all stop at session end."""
    from service.settings import Settings

    running = []

    def make(**overrides: Any) -> Server:
        data_dir = tmp_path_factory.mktemp("data")
        settings = Settings(_env_file=None, **{"data_dir": data_dir, **FAST_SETTINGS, **overrides})
        app, server, thread, url = _run_server(settings)
        client = httpx.Client(base_url=url, timeout=60)
        running.append((server, thread, client))

        def stop() -> None:
            server.should_exit = True
            thread.join(30)

        return Server(url=url, app=app, client=client, stop=stop)

    yield make
    for server, _thread, client in running:
        client.close()
        server.should_exit = True
    for _server, thread, _client in running:
        thread.join(30)


@pytest.fixture(scope="session")
def server(make_server) -> Server:
    """The default server: SQLite, local artifacts, jobs on the session's Ray."""
    return make_server()


@pytest.fixture(scope="session")
def idle_server(make_server) -> Server:
    """An API-only server (no dispatcher): jobs stay queued. Small caps to test the limits."""
    return make_server(dispatcher_enabled=False, max_upload_bytes=256 << 10, max_queued_per_key=1000)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_config(request, tmp_path):
    """A fresh, migrated-on-demand database config per test, on each backend."""
    from service.jobs.db import DatabaseConfig, drop_schema

    if request.param == "sqlite":
        yield DatabaseConfig(url=f"sqlite:///{tmp_path / 'jobs.db'}")
        return
    if not pg_available():
        pytest.skip("PostgreSQL is not listening on 127.0.0.1:5432")
    cfg = DatabaseConfig(url=PG_URL, schema=f"surfrecon_test_{uuid.uuid4().hex[:12]}")
    try:
        yield cfg
    finally:
        drop_schema(cfg)


@pytest.fixture
def store(db_config):
    from service.jobs.store import JobStore

    s = JobStore(db_config)
    s.migrate()
    try:
        yield s
    finally:
        s.close()
