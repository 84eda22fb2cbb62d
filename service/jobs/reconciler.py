"""Reconciling the job table with reality: lost workers, lost tasks, overdue cancels.

Each function looks at the table (and at the tasks this process holds), decides, and writes
through the fenced store operations, so running it in several API replicas at once is safe:
at most one of them wins each change. No job is left behind: a running job whose heartbeat
stops is re-queued (its checkpoint lets the next attempt resume) until ``max_attempts``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Protocol

from service.jobs.executor import Outcome
from service.jobs.states import JobStatus
from service.jobs.store import JobStore

log = logging.getLogger(__name__)


class Tasks(Protocol):
    """What the reconciler needs from an executor."""

    def holds(self, job_id: str, attempt: int) -> bool: ...

    def cancel(self, job_id: str, *, force: bool) -> bool: ...


def requeue_stale(store: JobStore, tasks: Tasks, *, now: datetime, heartbeat_timeout_s: float) -> list[str]:
    """Re-queue (or fail, when out of attempts) running jobs whose heartbeat is too old."""
    changed = []
    for job in store.stale_running(cutoff=now - timedelta(seconds=heartbeat_timeout_s)):
        if tasks.holds(job.id, job.attempt):
            tasks.cancel(job.id, force=True)  # alive but silent: make sure it stops using resources
        after = store.requeue_or_fail(job_id=job.id, attempt=job.attempt,
                                      reason=f"no heartbeat for over {heartbeat_timeout_s:g} s")
        if after is not None:
            log.warning("job %s attempt %d lost its worker: now %s", job.id, job.attempt, after.status)
            changed.append(job.id)
    return changed


def redispatch_lost(store: JobStore, tasks: Tasks, *, now: datetime, started_at: datetime,
                    stale_after_s: float) -> list[str]:
    """Queued jobs handed to a Ray task that nobody here holds: dispatch them again.

    Dispatched before this process started means their dispatcher is gone (Ray drops the tasks
    of a dead driver); otherwise another replica may still hold them, so wait ``stale_after_s``.
    Dispatching twice is harmless: only one task can claim the attempt.
    """
    changed = []
    for job in store.queued_dispatched_before(now):
        if tasks.holds(job.id, job.attempt):
            continue
        gone = job.dispatched_at < started_at or job.dispatched_at < now - timedelta(seconds=stale_after_s)
        if gone and store.undispatch(job_id=job.id, attempt=job.attempt):
            changed.append(job.id)
    return changed


def force_overdue_cancels(store: JobStore, tasks: Tasks, *, now: datetime, grace_s: float) -> list[str]:
    """Jobs still running ``grace_s`` after a cancel request: kill the worker, record the cancel."""
    changed = []
    for job in store.cancels_due(cutoff=now - timedelta(seconds=grace_s)):
        if (tasks.holds(job.id, job.attempt) and tasks.cancel(job.id, force=True)
                and store.force_canceled(job_id=job.id, attempt=job.attempt)):
            log.info("job %s did not stop within %g s: killed", job.id, grace_s)
            changed.append(job.id)
    return changed


def settle_outcomes(store: JobStore, outcomes: list[Outcome]) -> list[str]:
    """Ray tasks that ended: a crash of a running attempt re-queues it now (no need to wait for
    the heartbeat to go stale); a task that died before it started just frees the job."""
    changed = []
    for out in outcomes:
        if out.error is None:
            continue
        job = store.snapshots([out.job_id]).get(out.job_id)
        if job is None or job.attempt != out.attempt:
            continue
        if job.status == JobStatus.RUNNING:
            after = store.requeue_or_fail(job_id=job.id, attempt=job.attempt, reason=f"worker lost ({out.error})")
            if after is not None:
                log.warning("job %s attempt %d: %s; now %s", job.id, out.attempt, out.error, after.status)
                changed.append(job.id)
        elif (job.status == JobStatus.QUEUED and job.dispatched_at is not None
              and store.undispatch(job_id=job.id, attempt=job.attempt)):
            changed.append(job.id)
    return changed
