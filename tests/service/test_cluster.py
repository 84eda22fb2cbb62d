"""Scale-out by configuration only, for real: a two-node Ray cluster started with ``ray start``,
the job store on PostgreSQL, artifacts on an S3 server (moto), the API and an external
dispatcher as separate processes.

* Jobs run on both nodes, and every artifact downloads with the sha256 its job recorded;
  nothing touches the API host's disk but uploads in flight.
* No lost jobs across restarts: with jobs running and queued, the API restarts (the jobs carry
  on untouched), then the dispatcher (it hands its attempts back; the next one resumes them
  from their checkpoints). Every job finishes exactly once, counted with the markers of the
  stage hooks (``hooks/stage_hooks.py``, loaded by the cluster's workers); the running attempts
  are held in 'extract' by the hooks rather than by hoping they are slow.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from stack import base_env, dispatcher_process, moto_s3, pg_schema, ray_cluster
from stage_hooks import hook_env, read_marks, set_rules
from svc_helpers import pg_available, serve_process, submit, wait_for_job

pytestmark = pytest.mark.skipif(not pg_available(), reason="PostgreSQL is not listening on 127.0.0.1:5432")

FINAL = ("succeeded", "failed", "canceled")
DIGS = {"method": "digs", "preset": "fast", "formats": ["ply"]}
POISSON = {"method": "poisson", "preset": "fast", "formats": ["ply", "obj"]}


@dataclass
class Stack:
    """The running stack; processes are restarted through ``restart``."""

    cluster: object
    env: dict
    hooks: Path
    """The stage hooks' rules file, read by the cluster's workers."""
    root: Path
    endpoint: str
    prefix: str
    db: tuple[str, str]
    url: str = ""
    procs: dict[str, contextlib.ExitStack] = field(default_factory=dict)

    def restart(self, name: str) -> None:
        """(Re)start 'api' or 'dispatcher'."""
        self.stop(name)
        stack = contextlib.ExitStack()
        if name == "api":
            self.url, _log = stack.enter_context(serve_process(self.root, self.env))
        else:
            stack.enter_context(dispatcher_process(self.root, self.env))
        self.procs[name] = stack

    def stop(self, name: str) -> None:
        if name in self.procs:
            self.procs.pop(name).close()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)

    def store(self):
        from service.jobs.db import DatabaseConfig
        from service.jobs.store import JobStore

        return JobStore(DatabaseConfig(url=self.db[0], schema=self.db[1]), pool_size=1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("stack")
    hooks = root / "stage_hooks.json"
    with ray_cluster(head_cpus=1, worker_nodes=[{"worker_node": 1}], env=hook_env(hooks)) as cluster, \
            moto_s3() as endpoint, pg_schema() as db:
        prefix = f"run-{root.name}"
        env = base_env(RAY_ADDRESS=cluster.address, SURFRECON_DATABASE_URL=db[0], SURFRECON_DATABASE_SCHEMA=db[1],
                       SURFRECON_ARTIFACT_URL=f"s3://artifacts/{prefix}", SURFRECON_S3_ENDPOINT_URL=endpoint,
                       SURFRECON_DISPATCHER="external")
        s = Stack(cluster=cluster, env=env, hooks=hooks, root=root, endpoint=endpoint, prefix=prefix, db=db)
        try:
            s.restart("api")
            s.restart("dispatcher")
            yield s
        finally:
            s.stop("dispatcher")
            s.stop("api")


def _s3_keys(s: Stack) -> set[str]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=s.endpoint, region_name="us-east-1", aws_access_key_id="test",
                      aws_secret_access_key="test")
    keys, token = set(), None
    while True:
        more = {"ContinuationToken": token} if token else {}
        page = s3.list_objects_v2(Bucket="artifacts", Prefix=s.prefix, **more)
        keys |= {o["Key"] for o in page.get("Contents", [])}
        if not page.get("IsTruncated"):
            return keys
        token = page["NextContinuationToken"]


def test_jobs_spread_over_the_cluster_with_postgresql_and_s3(stack: Stack, inputs):
    with stack.client() as client:
        assert client.get("/readyz").json()["checks"]["dispatcher"] == "external"  # this API only serves
        ids = [submit(client, inputs[name], POISSON).json()["id"]
               for name in ("sphere", "other", "sphere_npy", "sphere")]
        ids.append(submit(client, inputs["sphere"], DIGS).json()["id"])
        jobs = {i: wait_for_job(client, i, lambda j: j["status"] in FINAL, 150, "finished") for i in ids}
        assert [j["status"] for j in jobs.values()] == ["succeeded"] * 5, [j["error"] for j in jobs.values()]
        assert all(j["attempt"] == 1 for j in jobs.values())

        # Every artifact downloads through the API from S3, matching the recorded sha256.
        keys = _s3_keys(stack)
        for job_id, job in jobs.items():
            names = sorted(a["name"] for a in job["artifacts"])
            assert names == (["mesh.ply", "metrics.json"] if job_id == ids[-1]
                             else ["mesh.obj", "mesh.ply", "metrics.json"])
            for art in job["artifacts"]:
                body = client.get(f"/v1/jobs/{job_id}/artifacts/{art['name']}").content
                assert len(body) == art["size"] and hashlib.sha256(body).hexdigest() == art["sha256"]
                assert f"{stack.prefix}/jobs/{job_id}/artifacts/{art['name']}" in keys
            assert f"{stack.prefix}/jobs/{job_id}/checkpoint.pt" not in keys  # dropped once the job finished
    assert not (stack.root / "state" / "artifacts").exists()  # nothing went to the API host's disk

    # Where each attempt ran, as the workers recorded it: the second node took part.
    store = stack.store()
    try:
        nodes = {store.get_job(owner=None, job_id=i).worker["ray_node"] for i in ids}
    finally:
        store.close()
    resources = stack.cluster.node_ids()
    worker_node = next(n for n, r in resources.items() if r.get("worker_node"))
    assert len(resources) == 2 and nodes <= set(resources)
    assert worker_node in nodes, (nodes, resources)


def test_restarting_api_and_dispatcher_loses_no_job_and_runs_none_twice(stack: Stack, inputs):
    markers = stack.root / "markers"
    markers.mkdir()
    # Attempt 1 of each job lingers on entering 'extract' (ended early by a cancel or a re-queue):
    # that holds the DiGS jobs running across the restarts. Later attempts run straight through.
    set_rules(stack.hooks, *stack.db, linger={"extract@1": 60}, markers=markers)
    with stack.client() as client:
        # Two DiGS jobs take both CPUs of the cluster; three Poisson jobs queue behind them.
        running = [submit(client, inputs["sphere"], DIGS).json()["id"] for _ in range(2)]
        queued = [submit(client, inputs[n], POISSON).json()["id"] for n in ("sphere", "other", "sphere_npy")]
        for job_id in running:
            wait_for_job(client, job_id, lambda j: j["stage"] == "extract", 120, "reached extract")

    # API restart: the dispatcher and the jobs carry on untouched.
    stack.restart("api")
    with stack.client() as client:
        for job_id in running:
            job = client.get(f"/v1/jobs/{job_id}").json()
            assert (job["status"], job["stage"], job["attempt"]) == ("running", "extract", 1), job
        for job_id in queued:
            assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"

        # Dispatcher restart: on SIGTERM it hands its attempts back, so the running jobs are
        # re-queued as attempt 2 at once (and resume from their checkpoints in S3). A hand-back is
        # not a failure: the budget of attempts moves along with the attempt number.
        stack.stop("dispatcher")
        for job_id in running:
            job = client.get(f"/v1/jobs/{job_id}").json()
            assert (job["status"], job["attempt"], job["max_attempts"]) == ("queued", 2, 4), job
        for job_id in queued:
            job = client.get(f"/v1/jobs/{job_id}").json()
            assert (job["status"], job["attempt"]) == ("queued", 1), job
        stack.restart("dispatcher")
        finals = {j: wait_for_job(client, j, lambda x: x["status"] in FINAL, 180, "finished") for j in running + queued}
        for job_id, final in finals.items():
            for art in final["artifacts"]:
                body = client.get(f"/v1/jobs/{job_id}/artifacts/{art['name']}").content
                assert hashlib.sha256(body).hexdigest() == art["sha256"]

    assert {j: f["status"] for j, f in finals.items()} == dict.fromkeys(running + queued, "succeeded")
    assert [finals[j]["attempt"] for j in running + queued] == [2, 2, 1, 1, 1]
    for job_id, final in finals.items():
        marks = read_marks(markers, job_id)
        starts = [int(m[1]) for m in marks if m[0] == "start"]
        owned = [m for m in marks if m[0] == "finish" and m[3] == "owned"]
        assert len(owned) == 1 and owned[0][1:3] == [str(final["attempt"]), "succeeded"], marks  # finished once
        assert starts == list(range(1, final["attempt"] + 1)), marks  # each attempt ran once
        # The superseded first attempts stopped themselves and wrote nothing to the job.
        assert all(m[2:4] == ["canceled", "superseded"] for m in marks if m[0] == "finish" and m[3] != "owned")
    for job_id in running:
        marks = read_marks(markers, job_id)
        resumed_at = int(marks[-1][-1].split("=")[1])
        assert resumed_at > 50, marks  # attempt 2 began past the first checkpoint
