"""Real jobs over HTTP: a uvicorn server on a free port, jobs on the session's local Ray."""

from __future__ import annotations

import hashlib
import json

import pytest
from svc_helpers import PG_URL, POISSON, assert_problem, pg_available, read_sse, submit


def test_poisson_job_streams_progress_and_serves_artifacts(server, inputs):
    r = submit(server.client, inputs["sphere"], {**POISSON, "formats": ["ply", "glb"]})
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["input"]["name"] == "sphere.xyz"
    assert job["input"]["sha256"] == hashlib.sha256(inputs["sphere"].read_bytes()).hexdigest()
    assert job["spec"]["formats"] == ["ply", "glb"] and job["spec"]["preset"] == "fast"

    events = read_sse(server.client, f"/v1/jobs/{job['id']}/events")
    kinds = [e for e, _ in events]
    assert kinds[0] == "state" and kinds[-1] == "state"
    final = events[-1][1]
    assert final["status"] == "succeeded", final
    progress = [d["progress"] for e, d in events if e == "progress"]
    assert progress == sorted(progress), "progress went backwards"
    stages = {d["stage"] for _, d in events}
    assert "succeeded" in stages and len(stages) >= 2

    done = server.client.get(f"/v1/jobs/{job['id']}").json()
    assert done == final
    assert done["progress"] == 100.0 and done["error"] is None and done["attempt"] == 1
    assert done["started_at"] >= done["created_at"] and done["finished_at"] >= done["started_at"]
    assert done["metrics"]["input"] and done["metrics"]["method"] == "poisson"
    names = sorted(a["name"] for a in done["artifacts"])
    assert names == ["mesh.glb", "mesh.ply", "metrics.json"]
    for art in done["artifacts"]:
        got = server.client.get(art["url"])
        assert got.status_code == 200
        assert len(got.content) == art["size"] and hashlib.sha256(got.content).hexdigest() == art["sha256"]
        assert got.headers["etag"] == f'"{art["sha256"]}"'
        again = server.client.get(art["url"], headers={"If-None-Match": got.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
    ply = server.client.get(f"/v1/jobs/{job['id']}/artifacts/mesh.ply").content
    assert ply.startswith(b"ply")
    metrics = server.client.get(f"/v1/jobs/{job['id']}/artifacts/metrics.json").json()
    assert metrics["n_input_points"] == 2000
    assert_problem(server.client.get(f"/v1/jobs/{job['id']}/artifacts/mesh.obj"), 404, "artifact_not_found")


def test_digs_fast_job_succeeds(server, inputs):
    r = submit(server.client, inputs["sphere_npy"], {"method": "digs", "preset": "fast", "formats": ["obj"]})
    assert r.status_code == 202, r.text
    job = server.wait_for(r.json()["id"], timeout=300)
    assert job["status"] == "succeeded", job["error"]
    assert {a["name"] for a in job["artifacts"]} == {"mesh.obj", "metrics.json"}
    assert job["metrics"]["method"] == "digs"
    obj = server.client.get(f"/v1/jobs/{job['id']}/artifacts/mesh.obj").text
    assert obj.count("\nf ") > 100


def test_json_submission_over_uploads_with_ground_truth(server, inputs, tmp_path):
    import trimesh

    gt_path = tmp_path / "gt.ply"
    trimesh.creation.icosphere(subdivisions=3, radius=1.0).export(gt_path)
    up = server.client.post("/v1/uploads", files={"file": ("sphere.xyz", inputs["sphere"].read_bytes())})
    assert up.status_code == 201, up.text
    assert up.json()["kind"] == "points" and up.json()["size"] == inputs["sphere"].stat().st_size
    gt = server.client.post("/v1/uploads", params={"kind": "mesh"}, files={"file": ("gt.ply", gt_path.read_bytes())})
    assert gt.status_code == 201, gt.text
    assert server.client.get(f"/v1/uploads/{gt.json()['id']}").json()["kind"] == "mesh"

    r = server.client.post("/v1/jobs", json={"spec": POISSON, "upload_id": up.json()["id"],
                                             "gt_upload_id": gt.json()["id"]})
    assert r.status_code == 202, r.text
    job = server.wait_for(r.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    assert job["ground_truth"]["name"] == "gt.ply"
    assert "ground_truth" in job["metrics"]
    # An upload of the wrong kind is refused.
    bad = server.client.post("/v1/jobs", json={"spec": POISSON, "upload_id": gt.json()["id"]})
    assert_problem(bad, 422, "validation_error")


def test_batch_runs_all_jobs_and_aggregates(server, inputs):
    files = [("file", ("a.xyz", inputs["sphere"].read_bytes())), ("file", ("b.xyz", inputs["other"].read_bytes()))]
    r = server.client.post("/v1/batches", files=files, data={"spec": json.dumps(POISSON)})
    assert r.status_code == 202, r.text
    batch = r.json()
    assert r.headers["location"] == f"/v1/batches/{batch['id']}"
    assert [j["input"]["name"] for j in batch["jobs"]] == ["a.xyz", "b.xyz"]
    assert all(j["batch_id"] == batch["id"] for j in batch["jobs"])
    for j in batch["jobs"]:
        server.wait_for(j["id"])
    got = server.client.get(f"/v1/batches/{batch['id']}").json()
    assert got["status"] == "succeeded" and got["progress"] == 100.0
    assert got["counts"] == {"queued": 0, "running": 0, "succeeded": 2, "failed": 0, "canceled": 0}
    listed = server.client.get("/v1/jobs", params={"batch_id": batch["id"]}).json()["items"]
    assert {j["id"] for j in listed} == {j["id"] for j in batch["jobs"]}


def test_cancel_running_digs_job_stops_it_cooperatively(server, inputs):
    r = submit(server.client, inputs["sphere"], {"method": "digs", "preset": "quality"})
    job_id = r.json()["id"]
    running = server.wait_for(job_id, statuses=("running",), timeout=60)
    assert running["started_at"] is not None and running["heartbeat_at"] is not None
    c = server.client.post(f"/v1/jobs/{job_id}/cancel")
    assert c.status_code == 202 and c.json()["cancel_requested"] is True
    events = read_sse(server.client, f"/v1/jobs/{job_id}/events", timeout=60)
    assert events[-1] == ("state", events[-1][1]) and events[-1][1]["status"] == "canceled"
    final = server.client.get(f"/v1/jobs/{job_id}").json()
    assert final["error"] == {"code": "canceled", "message": "canceled"}  # stopped by itself, not killed
    assert final["artifacts"] == []
    assert_problem(server.client.post(f"/v1/jobs/{job_id}/artifacts/mesh.ply"), 405, "method_not_allowed")


def test_job_that_cannot_run_fails_with_a_reason(server, inputs):
    r = submit(server.client, inputs["sphere"], {**POISSON, "device": "cuda"})
    job = server.wait_for(r.json()["id"], timeout=30)
    assert job["status"] == "failed" and job["error"]["code"] == "no_gpu"


def test_events_of_finished_job_end_at_once(server, inputs):
    job = server.wait_for(submit(server.client, inputs["sphere"], POISSON).json()["id"])
    events = read_sse(server.client, f"/v1/jobs/{job['id']}/events", timeout=10)
    assert events == [("state", job)]


def test_readiness_reports_each_dependency(server):
    r = server.client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "checks": {"database": "ok", "storage": "ok", "dispatcher": "ok"}}
    assert server.client.get("/healthz").json()["status"] == "ok"


def test_openapi_documents_every_route_with_problems(server):
    doc = server.client.get("/openapi.json").json()
    paths = doc["paths"]
    for path in ("/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/events", "/v1/jobs/{job_id}/cancel",
                 "/v1/jobs/{job_id}/artifacts/{name}", "/v1/batches", "/v1/batches/{batch_id}", "/v1/uploads",
                 "/healthz", "/readyz"):
        assert path in paths
    post = paths["/v1/jobs"]["post"]
    assert set(post["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    assert "application/problem+json" in post["responses"]["422"]["content"]
    assert "example" in post["requestBody"]["content"]["application/json"]
    schemas = doc["components"]["schemas"]
    assert schemas["JobSpec"]["additionalProperties"] is False
    assert "examples" in schemas["JobPublic"]
    assert "HTTPValidationError" not in json.dumps(doc)


def test_status_filter_lists_only_matching_jobs(server, inputs):
    job = server.wait_for(submit(server.client, inputs["sphere"], POISSON).json()["id"])
    succeeded = server.client.get("/v1/jobs", params={"status": "succeeded", "limit": 200}).json()["items"]
    assert job["id"] in {j["id"] for j in succeeded}
    assert all(j["status"] == "succeeded" for j in succeeded)
    queued = server.client.get("/v1/jobs", params={"status": "queued"}).json()["items"]
    assert job["id"] not in {j["id"] for j in queued}


def test_event_stream_is_not_cached(server, inputs):
    job = server.wait_for(submit(server.client, inputs["sphere"], POISSON).json()["id"])
    with server.client.stream("GET", f"/v1/jobs/{job['id']}/events") as r:
        assert r.headers["cache-control"] == "no-cache"
        body = r.read().decode()
    assert body.startswith("retry: ") and body.count("event: state") == 1


def test_postgres_backed_server_runs_a_job(make_server, inputs):
    """The same flow with the job table in PostgreSQL (workers write to it from Ray processes)."""
    import uuid

    from service.jobs.db import DatabaseConfig, drop_schema

    if not pg_available():
        pytest.skip("PostgreSQL is not listening on 127.0.0.1:5432")
    schema = f"surfrecon_test_{uuid.uuid4().hex[:12]}"
    pg = make_server(database_url=PG_URL, database_schema=schema)
    try:
        r = submit(pg.client, inputs["sphere"], POISSON, headers={"Idempotency-Key": "pg-1"})
        assert r.status_code == 202, r.text
        events = read_sse(pg.client, f"/v1/jobs/{r.json()['id']}/events")
        assert events[-1][1]["status"] == "succeeded", events[-1]
        assert submit(pg.client, inputs["sphere"], POISSON, headers={"Idempotency-Key": "pg-1"}).status_code == 200
        assert pg.ctx.store.engine.dialect.name == "postgresql"
        assert pg.client.get("/v1/jobs").json()["items"][0]["id"] == r.json()["id"]
    finally:
        pg.stop()
        drop_schema(DatabaseConfig(url=PG_URL, schema=schema))


def test_closed_event_streams_are_unsubscribed(idle_server, inputs):
    import time

    job = submit(idle_server.client, inputs["sphere"], POISSON).json()  # stays queued here
    hub = idle_server.ctx.hub
    before = hub.listeners
    with idle_server.client.stream("GET", f"/v1/jobs/{job['id']}/events") as r:
        lines = r.iter_lines()
        assert next(lines).startswith("retry:")
        while not next(lines).startswith("data:"):
            pass
        assert hub.listeners == before + 1
    deadline = time.monotonic() + 10
    while hub.listeners != before:  # the server noticed the disconnect
        assert time.monotonic() < deadline, hub.listeners
        time.sleep(0.05)


def test_s3_artifact_store_end_to_end(make_server, s3_endpoint, inputs):
    """Uploads, checkpoints and artifacts in an S3-compatible store: workers fetch the input from
    it and put the artifacts there; the API streams them back."""
    s3 = make_server(artifact_url="s3://artifacts/e2e", s3_endpoint_url=s3_endpoint)
    r = submit(s3.client, inputs["sphere"], {**POISSON, "formats": ["ply"]})
    assert r.status_code == 202, r.text
    job = s3.wait_for(r.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    for art in job["artifacts"]:
        got = s3.client.get(art["url"])
        assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == art["sha256"]
        assert int(got.headers["content-length"]) == art["size"]
    store = s3.ctx.artifacts
    assert store.local_path("x") is None
    assert store.exists(f"jobs/{job['id']}/artifacts/mesh.ply")
    s3.stop()
