"""A finished attempt's checkpoint is gone before anyone can see the job final, even when the
heartbeat thread is in the middle of copying it to a remote store."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from service.jobs import worker
from service.jobs.models import JobStatus
from service.jobs.store import NewJob
from service.storage import ArtifactStore, StorageConfig


class SlowRemoteStore(ArtifactStore):
    """A local directory that behaves like a remote store (no local paths) whose checkpoint
    uploads take a while, as a large checkpoint to S3 does."""

    uploading = threading.Event()
    uploaded = threading.Event()

    def local_path(self, key: str) -> Path | None:
        return None

    def put_file(self, src: Path, key: str, *, move: bool = False) -> None:
        if key.endswith("checkpoint.pt"):
            data = Path(src).read_bytes()
            SlowRemoteStore.uploading.set()
            time.sleep(0.5)
            tmp = Path(self._path(key))
            tmp.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            SlowRemoteStore.uploaded.set()
            return
        super().put_file(src, key, move=move)


@pytest.fixture
def claimed_job(store):
    rows, _, _ = store.create_jobs(
        owner="alice", max_attempts=3, max_queued=10,
        jobs=[NewJob(spec={"method": "digs", "preset": "fast"},
                     input={"upload_id": "u", "name": "a.xyz", "key": "uploads/u/input.xyz", "size": 1,
                            "sha256": "0" * 64})])
    (job,) = store.claim_for_dispatch(limit=1)
    assert job.id == rows[0].id
    return job


def test_checkpoint_upload_in_flight_is_removed_before_the_job_is_final(store, db_config, claimed_job,
                                                                        tmp_path, monkeypatch):
    storage = StorageConfig(url=str(tmp_path / "remote"))
    remote = ArtifactStore(storage)
    key = f"jobs/{claimed_job.id}/checkpoint.pt"
    SlowRemoteStore.uploading.clear()
    SlowRemoteStore.uploaded.clear()

    def execute(job, artifacts, tmp, ckpt, reporter, token):
        ckpt.write_bytes(b"state")  # the fit saved a checkpoint ...
        assert SlowRemoteStore.uploading.wait(10)  # ... and the heartbeat is copying it when the fit ends
        return JobStatus.SUCCEEDED, {"metrics": {}, "artifacts": []}

    seen_at_finish = []
    finish = store.finish

    def finish_watched(**kw):
        seen_at_finish.append(remote.exists(key))
        return finish(**kw)

    monkeypatch.setattr(worker, "ArtifactStore", SlowRemoteStore)
    monkeypatch.setattr(worker, "_execute", execute)
    monkeypatch.setattr(worker, "_store", lambda cfg: store)
    monkeypatch.setattr(store, "finish", finish_watched)
    cfg = worker.WorkerConfig(db=db_config, storage=storage, heartbeat_interval_s=0.02, checkpoint_every_s=0.0)

    assert worker.run_job(cfg, claimed_job.id, claimed_job.attempt) == JobStatus.SUCCEEDED
    assert seen_at_finish == [False]
    assert SlowRemoteStore.uploaded.wait(5)  # the copy in flight has landed (and was not left behind)
    assert not remote.exists(key)
    assert store.get_job(owner=None, job_id=claimed_job.id).status == JobStatus.SUCCEEDED


def test_an_attempt_that_lost_the_job_leaves_the_checkpoint_to_the_next_one(store, db_config, claimed_job,
                                                                              tmp_path, monkeypatch):
    storage = StorageConfig(url=str(tmp_path / "remote"))
    remote = ArtifactStore(storage)
    key = f"jobs/{claimed_job.id}/checkpoint.pt"

    def execute(job, artifacts, tmp, ckpt, reporter, token):
        # Given up on meanwhile (say its heartbeat was late): attempt 2 took over and saved a checkpoint.
        assert store.requeue_or_fail(job_id=job.id, attempt=job.attempt, reason="stale") is not None
        remote.put_file(_write(tmp / "next.pt"), key)
        return JobStatus.SUCCEEDED, {"metrics": {}, "artifacts": []}

    monkeypatch.setattr(worker, "_execute", execute)
    monkeypatch.setattr(worker, "_store", lambda cfg: store)
    cfg = worker.WorkerConfig(db=db_config, storage=storage, heartbeat_interval_s=10.0)
    worker.run_job(cfg, claimed_job.id, claimed_job.attempt)
    assert remote.exists(key)
    job = store.get_job(owner=None, job_id=claimed_job.id)
    assert (job.status, job.attempt) == (JobStatus.QUEUED, claimed_job.attempt + 1)


def _write(path: Path) -> Path:
    path.write_bytes(b"state")
    return path
