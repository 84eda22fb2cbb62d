"""Failure handling on a real Ray: a killed worker's job is re-queued and finishes on its next
attempt; a job that ignores its cancel flag is killed after the grace period."""

from __future__ import annotations

import os
import signal
import time

from stage_hooks import read_marks, set_rules
from svc_helpers import submit


def _running_fit(server, inputs, *, past: float = 0.0) -> tuple[str, int]:
    """Submit a DiGS job and wait until its fit is under way (progress above ``past`` percent);
    returns (job id, worker pid)."""
    r = submit(server.client, inputs["sphere"], {"method": "digs", "preset": "fast", "formats": ["ply"]})
    job_id = r.json()["id"]
    deadline = time.monotonic() + 90
    while True:
        job = server.client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] == "running" and job["stage"] == "fit" and job["progress"] > past:
            break
        assert job["status"] in ("queued", "running") and time.monotonic() < deadline, job
        time.sleep(0.05)
    return job_id, server.ctx.store.get_job(owner=None, job_id=job_id).worker["pid"]


def test_killed_worker_is_requeued_and_resumes_from_its_checkpoint(make_server, stage_hooks, inputs, tmp_path):
    """SIGKILL in the middle of a DiGS fit (after its first checkpoint at step 50 of 150): the job
    is re-queued with attempt 2, whose fit starts from the checkpoint instead of step 0."""
    from recon.methods import get_method

    cfg = get_method("digs").presets["fast"].fit
    server = make_server()
    set_rules(stage_hooks, server.ctx.settings.database_url, markers=tmp_path)  # count the attempts
    first_ckpt = cfg.checkpoint_every
    # Fit band is 5-80 % of overall progress: wait until the fit is past its first checkpoint.
    job_id, pid = _running_fit(server, inputs, past=5.0 + 75.0 * (first_ckpt + cfg.log_every) / cfg.steps)
    assert server.ctx.artifacts.exists(f"jobs/{job_id}/checkpoint.pt")
    os.kill(pid, signal.SIGKILL)

    final = server.wait_for(job_id, timeout=240)
    assert final["status"] == "succeeded", final["error"]
    assert final["attempt"] == 2
    assert final["error"] is None and [a["name"] for a in final["artifacts"]] == ["mesh.ply", "metrics.json"]
    row = server.ctx.store.get_job(owner=None, job_id=job_id)
    assert row.worker["pid"] != pid
    marks = read_marks(tmp_path, job_id)
    assert [m[:2] for m in marks] == [["start", "1"], ["start", "2"], ["finish", "2"]], marks
    resumed_at = int(marks[-1][-1].split("=")[1])
    assert first_ckpt < resumed_at <= cfg.steps, marks  # a fresh fit would first report at log_every
    assert not server.ctx.artifacts.exists(f"jobs/{job_id}/checkpoint.pt")


def test_frozen_worker_loses_its_heartbeat_and_the_job_moves_on(server, inputs):
    """SIGSTOP: the process exists but stops beating; after heartbeat_timeout_s the reconciler
    re-queues the job (and kills the frozen task)."""
    job_id, pid = _running_fit(server, inputs)
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        while (job := server.client.get(f"/v1/jobs/{job_id}").json())["attempt"] == 1:
            assert job["status"] == "running" and time.monotonic() - t0 < 60, job
            time.sleep(0.05)
        # Re-queued only once the heartbeat was stale, not before.
        assert time.monotonic() - t0 >= server.ctx.settings.heartbeat_timeout_s - 1.5
        final = server.wait_for(job_id, timeout=240)
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGCONT)
    assert final["status"] == "succeeded" and final["attempt"] == 2, final
    assert not _alive(pid)


def test_stubborn_job_is_killed_after_the_grace_period(ray_session, tmp_path):
    """A task that never looks at its cancel flag: the dispatcher force-cancels it via Ray."""
    from service.jobs.db import DatabaseConfig
    from service.jobs.dispatcher import Dispatcher
    from service.jobs.executor import RayExecutor
    from service.jobs.store import JobStore, NewJob
    from service.jobs.worker import WorkerConfig
    from service.settings import Settings
    from service.storage import ArtifactStore, StorageConfig

    def stubborn(cfg: WorkerConfig, job_id: str, attempt: int) -> str:
        import os
        import time
        from pathlib import Path

        from service.jobs.store import JobStore
        from service.storage import ArtifactStore

        store = JobStore(cfg.db, pool_size=1)
        store.claim_start(job_id=job_id, attempt=attempt, worker={"pid": os.getpid()})
        part = Path(cfg.storage.url) / "part.ply"
        part.write_bytes(b"ply\n")  # half a set of artifacts, as if killed mid-upload
        ArtifactStore(cfg.storage).put_file(part, f"jobs/{job_id}/artifacts/mesh.ply", move=True)
        while True:  # beats, but never checks for cancellation
            store.heartbeat(job_id=job_id, attempt=attempt)
            time.sleep(0.2)

    settings = Settings(_env_file=None, data_dir=tmp_path, cancel_grace_s=1.0, reconcile_interval_s=0.2,
                        heartbeat_interval_s=0.5, heartbeat_timeout_s=30)
    db = DatabaseConfig(url=settings.database_url)
    store = JobStore(db)
    store.migrate()
    executor = RayExecutor(WorkerConfig(db=db, storage=StorageConfig(url=settings.artifact_url)), task=stubborn)
    artifacts = ArtifactStore(StorageConfig(url=settings.artifact_url))
    dispatcher = Dispatcher(store, executor, settings, artifacts)
    dispatcher.start()
    try:
        (job,), _, _ = store.create_jobs(owner="o", jobs=[NewJob(spec={"device": "cpu"}, input={})],
                                         max_attempts=3, max_queued=10)
        dispatcher.wake()
        deadline = time.monotonic() + 60
        while (row := store.get_job(owner=None, job_id=job.id)).status != "running":
            assert time.monotonic() < deadline, row.status
            time.sleep(0.05)
        pid = row.worker["pid"]
        while not artifacts.exists(f"jobs/{job.id}/artifacts/mesh.ply"):
            assert time.monotonic() < deadline, "the stubborn task never wrote its partial artifact"
            time.sleep(0.05)
        store.request_cancel(owner=None, job_id=job.id)
        t0 = time.monotonic()
        while (row := store.get_job(owner=None, job_id=job.id)).status != "canceled":
            assert time.monotonic() - t0 < 30, row.status
            time.sleep(0.05)
        assert time.monotonic() - t0 >= 0.9  # the grace period was honoured
        assert "force" in row.error["message"]
        deadline = time.monotonic() + 10
        while artifacts.exists(f"jobs/{job.id}/artifacts/mesh.ply"):  # the killed upload is dropped
            assert time.monotonic() < deadline, "a killed attempt's artifacts stayed behind"
            time.sleep(0.05)
        deadline = time.monotonic() + 20
        while _alive(pid):  # the worker process is really gone
            assert time.monotonic() < deadline, f"worker {pid} survived ray.cancel(force=True)"
            time.sleep(0.1)
    finally:
        dispatcher.stop()
        store.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead too
        return f.read().split(") ")[1][0] != "Z"
