"""Reconciler decisions on both backends, with a recording stand-in for the Ray executor."""

from __future__ import annotations

from datetime import timedelta

from service.jobs import reconciler
from service.jobs.executor import Outcome
from service.jobs.models import Job, utcnow
from service.jobs.store import JobStore, NewJob


class FakeTasks:
    """Remembers which (job, attempt) it holds and which cancels were asked for."""

    def __init__(self, held=()) -> None:
        self.held = set(held)
        self.cancels: list[tuple[str, bool]] = []

    def holds(self, job_id: str, attempt: int) -> bool:
        return (job_id, attempt) in self.held

    def cancel(self, job_id: str, *, force: bool) -> bool:
        self.cancels.append((job_id, force))
        return any(j == job_id for j, _ in self.held)


def _running(store: JobStore, n: int = 1, max_attempts: int = 3) -> list[Job]:
    rows, _, _ = store.create_jobs(owner="o", jobs=[NewJob(spec={}, input={}) for _ in range(n)],
                                   max_attempts=max_attempts, max_queued=100)
    for r in rows:
        store.claim_start(job_id=r.id, attempt=1, worker={})
    return rows


def _age_heartbeat(store: JobStore, job_id: str, seconds: float) -> None:
    with store.writing() as s:
        s.get(Job, job_id).heartbeat_at = utcnow() - timedelta(seconds=seconds)


def test_stale_heartbeat_requeues_and_stops_the_old_task(store: JobStore):
    stale, fresh = _running(store, n=2)
    _age_heartbeat(store, stale.id, 60)
    tasks = FakeTasks(held={(stale.id, 1)})
    changed = reconciler.requeue_stale(store, tasks, now=utcnow(), heartbeat_timeout_s=30)
    assert changed == [stale.id]
    assert tasks.cancels == [(stale.id, True)]
    after = store.get_job(owner=None, job_id=stale.id)
    assert (after.status, after.attempt, after.dispatched_at, after.stage) == ("queued", 2, None, "requeued")
    assert store.get_job(owner=None, job_id=fresh.id).status == "running"
    # Re-queued jobs are dispatched again, with the new attempt number.
    assert [(j.id, j.attempt) for j in store.claim_for_dispatch(limit=5)] == [(stale.id, 2)]


def test_stale_job_with_pending_cancel_ends_canceled(store: JobStore):
    (job,) = _running(store)
    store.request_cancel(owner=None, job_id=job.id)
    _age_heartbeat(store, job.id, 60)
    reconciler.requeue_stale(store, FakeTasks(), now=utcnow(), heartbeat_timeout_s=30)
    assert store.get_job(owner=None, job_id=job.id).status == "canceled"


def test_lost_dispatches_are_freed_only_when_nobody_holds_them(store: JobStore):
    rows, _, _ = store.create_jobs(owner="o", jobs=[NewJob(spec={}, input={}) for _ in range(3)],
                                   max_attempts=3, max_queued=100)
    store.claim_for_dispatch(limit=3)
    held, orphan_old, orphan_new = rows
    now = utcnow()
    tasks = FakeTasks(held={(held.id, 1)})
    with store.writing() as s:  # orphan_old was dispatched before this process started
        s.get(Job, orphan_old.id).dispatched_at = now - timedelta(seconds=5)
    changed = reconciler.redispatch_lost(store, tasks, now=now, started_at=now - timedelta(seconds=1),
                                         stale_after_s=30)
    assert changed == [orphan_old.id]
    later = now + timedelta(seconds=31)
    assert reconciler.redispatch_lost(store, tasks, now=later, started_at=now - timedelta(seconds=1),
                                      stale_after_s=30) == [orphan_new.id]
    assert store.get_job(owner=None, job_id=held.id).dispatched_at is not None


def test_overdue_cancel_is_forced_only_after_the_grace_period(store: JobStore):
    (job,) = _running(store)
    store.request_cancel(owner=None, job_id=job.id)
    tasks = FakeTasks(held={(job.id, 1)})
    assert reconciler.force_overdue_cancels(store, tasks, now=utcnow(), grace_s=30) == []
    assert tasks.cancels == []
    assert reconciler.force_overdue_cancels(store, tasks, now=utcnow() + timedelta(seconds=31), grace_s=30) == [job.id]
    assert tasks.cancels == [(job.id, True)]
    after = store.get_job(owner=None, job_id=job.id)
    assert after.status == "canceled" and "force" in after.error["message"]


def test_crashed_task_requeues_at_once_and_clean_exits_change_nothing(store: JobStore):
    crashed, clean = _running(store, n=2)
    changed = reconciler.settle_outcomes(store, [
        Outcome(crashed.id, 1, None, "WorkerCrashedError: the worker died"),
        Outcome(clean.id, 1, "succeeded", None),
    ])
    assert changed == [crashed.id]
    after = store.get_job(owner=None, job_id=crashed.id)
    assert (after.status, after.attempt) == ("queued", 2)
    assert "WorkerCrashedError" in after.error["message"]
    assert store.get_job(owner=None, job_id=clean.id).status == "running"
    # An outcome about an attempt that is no longer current is ignored.
    assert reconciler.settle_outcomes(store, [Outcome(crashed.id, 1, None, "late")]) == []
