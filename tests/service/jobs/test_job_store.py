"""The job store on SQLite and PostgreSQL: submission, idempotency, quotas, fencing, cancel,
pagination, concurrent writers, and that the migrations match the models."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from service.errors import BadCursor, IdempotencyConflict, JobFinished, JobNotFound, QuotaExceeded
from service.jobs.models import utcnow
from service.jobs.store import JobStore, NewJob


def _job(n: int = 0) -> NewJob:
    return NewJob(spec={"method": "poisson", "preset": "fast", "n": n},
                  input={"upload_id": f"u{n}", "name": "a.xyz", "key": f"uploads/u{n}/input.xyz", "size": 1,
                         "sha256": "0" * 64})


def _create(store: JobStore, owner: str = "alice", n: int = 1, **kw):
    kw.setdefault("max_attempts", 3)
    kw.setdefault("max_queued", 100)
    rows, _, _ = store.create_jobs(owner=owner, jobs=[_job(i) for i in range(n)], **kw)
    return rows


def test_migrations_are_idempotent_and_match_the_models(store: JobStore):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from service.jobs.models import Base

    store.migrate()  # second run: nothing to do, no error
    with store.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata)
    assert diffs == []


def test_create_and_read_back(store: JobStore):
    (job,) = _create(store)
    got = store.get_job(owner="alice", job_id=job.id)
    assert (got.status, got.stage, got.progress, got.attempt, got.version) == ("queued", "queued", 0.0, 1, 1)
    assert got.spec["method"] == "poisson" and got.created_at.tzinfo is not None
    assert abs((got.created_at - utcnow()).total_seconds()) < 60


def test_other_owner_sees_nothing(store: JobStore):
    (job,) = _create(store, owner="alice")
    with pytest.raises(JobNotFound, match=f"no job '{job.id}'") as e:
        store.get_job(owner="bob", job_id=job.id)
    assert e.value.job_id == job.id
    with pytest.raises(JobNotFound, match="no job"):
        store.request_cancel(owner="bob", job_id=job.id)
    assert store.list_jobs(owner="bob")[0] == []
    assert [j.id for j in store.list_jobs(owner=None)[0]] == [job.id]


def test_idempotency_key_returns_original_or_conflicts(store: JobStore):
    first = _create(store, idempotency_key="k1", request_hash="h1")
    rows, _, created = store.create_jobs(owner="alice", jobs=[_job()], max_attempts=3, max_queued=100,
                                         idempotency_key="k1", request_hash="h1")
    assert not created and rows[0].id == first[0].id
    with pytest.raises(IdempotencyConflict):
        store.create_jobs(owner="alice", jobs=[_job()], max_attempts=3, max_queued=100,
                          idempotency_key="k1", request_hash="other")
    # The same key from another owner is a different submission.
    rows, _, created = store.create_jobs(owner="bob", jobs=[_job()], max_attempts=3, max_queued=100,
                                         idempotency_key="k1", request_hash="h1")
    assert created and rows[0].id != first[0].id


def test_batch_idempotency(store: JobStore):
    rows, batch, created = store.create_jobs(owner="alice", jobs=[_job(0), _job(1)], max_attempts=3,
                                             max_queued=100, idempotency_key="b", request_hash="hb", as_batch=True)
    assert created and batch.job_ids == [r.id for r in rows]
    again, batch2, created2 = store.create_jobs(owner="alice", jobs=[_job(0), _job(1)], max_attempts=3,
                                                max_queued=100, idempotency_key="b", request_hash="hb", as_batch=True)
    assert not created2 and batch2.id == batch.id and [r.id for r in again] == batch.job_ids
    _, jobs = store.get_batch(owner="alice", batch_id=batch.id)
    assert [j.batch_id for j in jobs] == [batch.id, batch.id]


def test_quota_counts_only_queued_jobs_of_the_owner(store: JobStore):
    _create(store, n=2, max_queued=2)
    with pytest.raises(QuotaExceeded, match="2 jobs already queued for this key; the limit is 2") as e:
        _create(store, max_queued=2)
    assert (e.value.queued, e.value.limit) == (2, 2)
    _create(store, owner="bob", max_queued=2)  # other owners are not affected
    # A job leaving the queue frees a slot.
    (job,) = store.claim_for_dispatch(limit=1)
    assert store.claim_start(job_id=job.id, attempt=1, worker={"pid": 1}) is not None
    _create(store, max_queued=2)


def test_dispatch_claims_are_exclusive_and_oldest_first(store: JobStore):
    rows = _create(store, n=3)
    first = store.claim_for_dispatch(limit=2)
    second = store.claim_for_dispatch(limit=5)
    assert [j.id for j in first] == [rows[0].id, rows[1].id]
    assert [j.id for j in second] == [rows[2].id]
    assert store.claim_for_dispatch(limit=5) == []


def test_worker_writes_are_fenced_by_attempt(store: JobStore):
    (job,) = _create(store)
    assert store.claim_start(job_id=job.id, attempt=2, worker={}) is None  # wrong attempt
    started = store.claim_start(job_id=job.id, attempt=1, worker={"pid": 42})
    assert started.status == "running" and started.worker == {"pid": 42}
    assert store.claim_start(job_id=job.id, attempt=1, worker={}) is None  # only once
    assert store.report_progress(job_id=job.id, attempt=1, stage="fit", progress=40.0)
    requeued = store.requeue_or_fail(job_id=job.id, attempt=1, reason="test")
    assert (requeued.status, requeued.attempt, requeued.error["code"]) == ("queued", 2, "retrying")
    # The old attempt can no longer write anything.
    assert not store.report_progress(job_id=job.id, attempt=1, stage="fit", progress=90.0)
    assert not store.heartbeat(job_id=job.id, attempt=1)
    assert not store.finish(job_id=job.id, attempt=1, status="succeeded", metrics={}, artifacts=[])
    assert store.is_cancel_requested(job.id, 1)  # tells the stale worker to stop
    assert store.claim_start(job_id=job.id, attempt=2, worker={}) is not None
    assert not store.is_cancel_requested(job.id, 2)
    assert store.finish(job_id=job.id, attempt=2, status="succeeded", metrics={"x": 1.0},
                        artifacts=[{"name": "mesh.ply", "key": "k", "size": 3, "sha256": "a"}])
    done = store.get_job(owner=None, job_id=job.id)
    assert (done.status, done.progress, done.metrics, done.attempt) == ("succeeded", 100.0, {"x": 1.0}, 2)
    assert done.finished_at is not None and done.version > job.version


def test_requeue_gives_up_after_max_attempts(store: JobStore):
    (job,) = _create(store, max_attempts=2)
    for attempt in (1, 2):
        assert store.claim_start(job_id=job.id, attempt=attempt, worker={}) is not None
        after = store.requeue_or_fail(job_id=job.id, attempt=attempt, reason="worker vanished")
    assert (after.status, after.attempt, after.error["code"]) == ("failed", 2, "worker_lost")
    assert "gave up after 2 attempts" in after.error["message"]
    assert store.requeue_or_fail(job_id=job.id, attempt=2, reason="again") is None


def test_hand_backs_do_not_use_up_attempts(store: JobStore):
    """Three dispatcher restarts in a row on a job allowed two attempts: it is re-queued each time
    (old attempts fenced off), and a real loss after that still has the whole budget left."""
    (job,) = _create(store, max_attempts=2)
    for attempt in (1, 2, 3):
        assert store.claim_start(job_id=job.id, attempt=attempt, worker={}) is not None
        after = store.requeue_or_fail(job_id=job.id, attempt=attempt, reason="dispatcher stopped", charged=False)
        assert (after.status, after.attempt, after.max_attempts) == ("queued", attempt + 1, attempt + 2)
        assert not store.heartbeat(job_id=job.id, attempt=attempt)
    assert store.claim_start(job_id=job.id, attempt=4, worker={}) is not None
    lost = store.requeue_or_fail(job_id=job.id, attempt=4, reason="worker vanished")
    assert (lost.status, lost.attempt) == ("queued", 5)  # one failure of the two allowed
    assert store.claim_start(job_id=job.id, attempt=5, worker={}) is not None
    lost = store.requeue_or_fail(job_id=job.id, attempt=5, reason="worker vanished")
    assert (lost.status, lost.error["code"]) == ("failed", "worker_lost")


def test_cancel_queued_running_and_finished(store: JobStore):
    queued, running, done = _create(store, n=3)
    out = store.request_cancel(owner="alice", job_id=queued.id)
    assert (out.status, out.error["code"]) == ("canceled", "canceled")
    assert store.request_cancel(owner="alice", job_id=queued.id).status == "canceled"  # idempotent
    assert store.claim_start(job_id=queued.id, attempt=1, worker={}) is None

    store.claim_start(job_id=running.id, attempt=1, worker={})
    out = store.request_cancel(owner="alice", job_id=running.id)
    assert out.status == "running" and out.cancel_requested and out.cancel_requested_at is not None
    assert store.is_cancel_requested(running.id, 1)
    assert store.cancels_due(cutoff=utcnow() - timedelta(seconds=60)) == []
    assert [j.id for j in store.cancels_due(cutoff=utcnow() + timedelta(seconds=1))] == [running.id]
    assert store.force_canceled(job_id=running.id, attempt=1)
    assert store.get_job(owner=None, job_id=running.id).status == "canceled"

    store.claim_start(job_id=done.id, attempt=1, worker={})
    store.finish(job_id=done.id, attempt=1, status="succeeded", metrics={}, artifacts=[])
    with pytest.raises(JobFinished, match="already succeeded") as e:
        store.request_cancel(owner="alice", job_id=done.id)
    assert e.value.status == "succeeded"


def test_keyset_pagination_and_filters(store: JobStore):
    rows = _create(store, n=5)
    seen, cursor = [], None
    while True:
        page, cursor = store.list_jobs(owner="alice", limit=2, cursor=cursor)
        seen += [j.id for j in page]
        if cursor is None:
            break
    assert seen == [r.id for r in reversed(rows)]  # newest first, each exactly once
    store.request_cancel(owner="alice", job_id=rows[1].id)
    assert [j.id for j in store.list_jobs(owner="alice", status="canceled")[0]] == [rows[1].id]
    with pytest.raises(BadCursor, match="not a cursor from this API"):
        store.list_jobs(owner="alice", cursor="not-a-cursor")


def test_concurrent_writers_do_not_lock_up(store: JobStore, db_config):
    """Workers in other threads (own engines, like Ray processes) hammer progress while the API
    keeps submitting: nothing fails with 'database is locked' and every write lands."""
    running = _create(store, n=4)
    for j in running:
        store.claim_start(job_id=j.id, attempt=1, worker={})
    errors: list[BaseException] = []

    def worker(job_id: str) -> None:
        own = JobStore(db_config, pool_size=1)
        try:
            for i in range(40):
                assert own.report_progress(job_id=job_id, attempt=1, stage="fit", progress=float(i))
                own.heartbeat(job_id=job_id, attempt=1)
        except BaseException as e:  # noqa: BLE001 - collected and re-raised in the test thread
            errors.append(e)
        finally:
            own.close()

    def submitter() -> None:
        try:
            for _ in range(20):
                _create(store, owner="carol")
        except BaseException as e:  # noqa: BLE001 - as above
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(j.id,)) for j in running] + [threading.Thread(target=submitter)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert all(store.get_job(owner=None, job_id=j.id).progress == 39.0 for j in running)
    assert len(store.list_jobs(owner="carol", limit=100)[0]) == 20
