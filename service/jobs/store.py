"""The job store: every state change of a job is one SQL statement or transaction here.

Writers from different processes (API, dispatcher, Ray workers) never trample each other:
worker writes are *fenced* by ``(id, attempt, status='running')`` so a worker that was given
up on (its job re-queued or canceled) cannot overwrite the newer state, and claims are
conditional updates that only one contender can win. Refusals are domain errors
(``service.errors``): the API turns them into answers, other callers see plain exceptions.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.errors import (
    BadCursor,
    BatchNotFound,
    IdempotencyConflict,
    JobFinished,
    JobNotFound,
    QuotaExceeded,
    UploadNotFound,
)
from service.jobs.db import IMMEDIATE, DatabaseConfig, create_db_engine, migrate
from service.jobs.models import Batch, Job, Upload, utcnow
from service.jobs.states import FINAL_STATUSES, JobErrorCode, JobStage, JobStatus


@dataclass(frozen=True)
class NewJob:
    """What a submission adds to the table."""

    spec: dict[str, Any]
    input: dict[str, Any]
    ground_truth: dict[str, Any] | None = None


class JobStore:
    """Typed access to the job tables; one instance per process."""

    def __init__(self, cfg: DatabaseConfig, *, pool_size: int = 10) -> None:
        self.cfg = cfg
        self.engine: Engine = create_db_engine(cfg, pool_size=pool_size)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.engine.execution_options(**{IMMEDIATE: True}), expire_on_commit=False)

    def migrate(self) -> None:
        migrate(self.engine, self.cfg)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with self._read() as s:
            yield s

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """A transaction that commits on success; on SQLite it holds the write lock from the start."""
        with self._write.begin() as s:
            yield s

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    # ---- uploads -----------------------------------------------------------------------------

    def add_upload(self, upload: Upload) -> Upload:
        with self.writing() as s:
            s.add(upload)
        return upload

    def get_upload(self, *, owner: str, upload_id: str) -> Upload:
        with self.reading() as s:
            up = s.get(Upload, upload_id)
        if up is None or up.owner != owner:
            raise UploadNotFound(upload_id)
        return up

    # ---- submission --------------------------------------------------------------------------

    def find_idempotent(self, s: Session, model, *, owner: str, key: str | None, request_hash: str):
        """The earlier row for ``(owner, key)``, or None; IdempotencyConflict if its request differs."""
        if key is None:
            return None
        row = s.execute(select(model).where(model.owner == owner, model.idempotency_key == key)).scalar_one_or_none()
        if row is not None and row.request_hash != request_hash:
            raise IdempotencyConflict(key)
        return row

    def create_jobs(
        self, *, owner: str, jobs: Sequence[NewJob], max_attempts: int, max_queued: int,
        idempotency_key: str | None = None, request_hash: str = "", as_batch: bool = False,
    ) -> tuple[list[Job], Batch | None, bool]:
        """Insert ``jobs`` (as one batch when ``as_batch``); returns (jobs, batch, created).

        With an ``idempotency_key`` seen before for this owner, returns the original rows and
        created=False. Raises QuotaExceeded when the owner's queued jobs would exceed ``max_queued``,
        IdempotencyConflict when the key was used with a different request.
        """
        try:
            return self._create_jobs(owner=owner, jobs=jobs, max_attempts=max_attempts, max_queued=max_queued,
                                     idempotency_key=idempotency_key, request_hash=request_hash,
                                     as_batch=as_batch)
        except IntegrityError:
            # A concurrent request with the same key won the insert: answer with its rows.
            if idempotency_key is None:
                raise
            return self._create_jobs(owner=owner, jobs=jobs, max_attempts=max_attempts, max_queued=max_queued,
                                     idempotency_key=idempotency_key, request_hash=request_hash,
                                     as_batch=as_batch)

    def _create_jobs(self, *, owner, jobs, max_attempts, max_queued, idempotency_key, request_hash, as_batch):
        with self.writing() as s:
            model = Batch if as_batch else Job
            prior = self.find_idempotent(s, model, owner=owner, key=idempotency_key, request_hash=request_hash)
            if prior is not None:
                if as_batch:
                    rows = self._jobs_by_ids(s, prior.job_ids)
                    return rows, prior, False
                return [prior], None, False
            queued = s.execute(select(func.count()).select_from(Job).where(
                Job.owner == owner, Job.status == JobStatus.QUEUED)).scalar_one()
            if queued + len(jobs) > max_queued:
                raise QuotaExceeded(queued, max_queued)
            now = utcnow()
            batch = Batch(id=new_id(), owner=owner, job_ids=[], idempotency_key=idempotency_key,
                          request_hash=request_hash, created_at=now) if as_batch else None
            rows = []
            for i, nj in enumerate(jobs):
                rows.append(Job(
                    id=new_id(), owner=owner, batch_id=batch.id if batch else None, spec=nj.spec,
                    input=nj.input, ground_truth=nj.ground_truth, status=JobStatus.QUEUED, stage=JobStage.QUEUED,
                    progress=0.0, attempt=1, max_attempts=max_attempts, cancel_requested=False,
                    artifacts=[], version=1, created_at=now + timedelta(microseconds=i), updated_at=now,
                    idempotency_key=None if as_batch else idempotency_key,
                    request_hash=None if as_batch else request_hash))
            if batch is not None:
                batch.job_ids = [r.id for r in rows]
                s.add(batch)
            s.add_all(rows)
        return rows, batch, True

    def check_quota(self, *, owner: str, adding: int, max_queued: int) -> None:
        """QuotaExceeded when ``adding`` more jobs would exceed the owner's queued-job limit.

        A cheap early check (before files are stored); ``create_jobs`` checks again atomically."""
        with self.reading() as s:
            queued = s.execute(select(func.count()).select_from(Job).where(
                Job.owner == owner, Job.status == JobStatus.QUEUED)).scalar_one()
        if queued + adding > max_queued:
            raise QuotaExceeded(queued, max_queued)

    # ---- reads -------------------------------------------------------------------------------

    def get_job(self, *, owner: str | None, job_id: str) -> Job:
        """The job; JobNotFound when it does not exist *or belongs to another owner*."""
        with self.reading() as s:
            job = s.get(Job, job_id)
        if job is None or (owner is not None and job.owner != owner):
            raise JobNotFound(job_id)
        return job

    def get_batch(self, *, owner: str | None, batch_id: str) -> tuple[Batch, list[Job]]:
        with self.reading() as s:
            batch = s.get(Batch, batch_id)
            if batch is None or (owner is not None and batch.owner != owner):
                raise BatchNotFound(batch_id)
            return batch, self._jobs_by_ids(s, batch.job_ids)

    @staticmethod
    def _jobs_by_ids(s: Session, ids: Sequence[str]) -> list[Job]:
        found = {j.id: j for j in s.execute(select(Job).where(Job.id.in_(list(ids)))).scalars()}
        return [found[i] for i in ids if i in found]

    def list_jobs(self, *, owner: str | None, status: str | None = None, batch_id: str | None = None,
                  limit: int = 50, cursor: str | None = None) -> tuple[list[Job], str | None]:
        """Newest first; returns (page, next_cursor or None). BadCursor for a cursor not from here."""
        q = select(Job)
        if owner is not None:
            q = q.where(Job.owner == owner)
        if status is not None:
            q = q.where(Job.status == status)
        if batch_id is not None:
            q = q.where(Job.batch_id == batch_id)
        if cursor is not None:
            created, last_id = decode_cursor(cursor)
            q = q.where(or_(Job.created_at < created, and_(Job.created_at == created, Job.id < last_id)))
        q = q.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
        with self.reading() as s:
            rows = list(s.execute(q).scalars())
        nxt = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
        return rows[:limit], nxt

    def snapshots(self, ids: Sequence[str]) -> dict[str, Job]:
        """Current rows for the given ids (one query; used by the SSE hub)."""
        if not ids:
            return {}
        with self.reading() as s:
            return {j.id: j for j in s.execute(select(Job).where(Job.id.in_(list(ids)))).scalars()}

    def is_cancel_requested(self, job_id: str, attempt: int) -> bool:
        """True when the job wants to stop *or is no longer this attempt's to run*."""
        with self.reading() as s:
            row = s.execute(select(Job.cancel_requested, Job.status, Job.attempt).where(Job.id == job_id)).first()
        return row is None or bool(row[0]) or row[1] != JobStatus.RUNNING or row[2] != attempt

    # ---- cancellation ------------------------------------------------------------------------

    def request_cancel(self, *, owner: str | None, job_id: str) -> Job:
        """Queued jobs are canceled at once; running ones get the flag their worker polls.

        JobNotFound as ``get_job``; JobFinished for a job that succeeded or failed."""
        now = utcnow()
        with self.writing() as s:
            job = s.get(Job, job_id)
            if job is None or (owner is not None and job.owner != owner):
                raise JobNotFound(job_id)
            if job.status == JobStatus.CANCELED:
                return job
            if job.status in FINAL_STATUSES:
                raise JobFinished(job_id, job.status)
            job.cancel_requested = True
            job.cancel_requested_at = job.cancel_requested_at or now
            if job.status == JobStatus.QUEUED:
                job.status, job.stage, job.finished_at = JobStatus.CANCELED, JobStatus.CANCELED, now
                job.error = {"code": JobErrorCode.CANCELED, "message": "canceled before it started"}
            job.version += 1
            job.updated_at = now
        return job

    # ---- dispatcher --------------------------------------------------------------------------

    def claim_for_dispatch(self, *, limit: int) -> list[Job]:
        """Mark up to ``limit`` undispatched queued jobs as dispatched and return them, oldest first.

        Several dispatchers may run at once: on PostgreSQL the candidate rows are locked with
        ``FOR UPDATE SKIP LOCKED`` (each dispatcher takes different jobs, none waits); on SQLite
        the write transaction holds the database lock. The conditional update is the final word
        either way: a job is handed out once per attempt.
        """
        now = utcnow()
        with self.writing() as s:
            q = (select(Job.id).where(Job.status == JobStatus.QUEUED, Job.dispatched_at.is_(None))
                 .order_by(Job.created_at).limit(limit))
            if s.get_bind().dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True)
            ids = list(s.execute(q).scalars())
            claimed = []
            for job_id in ids:
                res = s.execute(update(Job).where(Job.id == job_id, Job.status == JobStatus.QUEUED,
                                                  Job.dispatched_at.is_(None)).values(dispatched_at=now))
                if res.rowcount == 1:
                    claimed.append(job_id)
            return self._jobs_by_ids(s, claimed)

    def undispatch(self, *, job_id: str, attempt: int) -> bool:
        """Let a queued job be dispatched again (its Ray task was lost before it started)."""
        with self.writing() as s:
            res = s.execute(update(Job).where(Job.id == job_id, Job.attempt == attempt,
                                              Job.status == JobStatus.QUEUED)
                            .values(dispatched_at=None, version=Job.version + 1, updated_at=utcnow()))
            return res.rowcount == 1

    def fail_queued(self, *, job_id: str, attempt: int, code: JobErrorCode, message: str) -> bool:
        """Fail a queued job that cannot run at all (e.g. it wants a GPU and the cluster has none)."""
        now = utcnow()
        with self.writing() as s:
            res = s.execute(update(Job).where(Job.id == job_id, Job.attempt == attempt,
                                              Job.status == JobStatus.QUEUED)
                            .values(status=JobStatus.FAILED, stage=JobStatus.FAILED, finished_at=now, updated_at=now,
                                    error={"code": code, "message": message}, version=Job.version + 1))
            return res.rowcount == 1

    def queued_dispatched_before(self, cutoff: datetime) -> list[Job]:
        with self.reading() as s:
            return list(s.execute(select(Job).where(Job.status == JobStatus.QUEUED,
                                                    Job.dispatched_at < cutoff)).scalars())

    def cancels_due(self, *, cutoff: datetime) -> list[Job]:
        """Running jobs whose cancel was requested before ``cutoff`` and that have not stopped."""
        with self.reading() as s:
            return list(s.execute(select(Job).where(Job.status == JobStatus.RUNNING, Job.cancel_requested.is_(True),
                                                    Job.cancel_requested_at < cutoff)).scalars())

    def stale_running(self, *, cutoff: datetime) -> list[Job]:
        """Running jobs whose last heartbeat is older than ``cutoff``."""
        with self.reading() as s:
            return list(s.execute(select(Job).where(Job.status == JobStatus.RUNNING,
                                                    Job.heartbeat_at < cutoff)).scalars())

    def requeue_or_fail(self, *, job_id: str, attempt: int, reason: str, charged: bool = True) -> Job | None:
        """Give up on ``attempt`` of a running job: re-queue it with attempt+1, or fail it when out of
        attempts (or canceled when a cancel was pending). None if the attempt is no longer current.

        ``charged=False`` is for attempts the service itself ended (a dispatcher handing its jobs
        back as it stops): the attempt number still moves on, fencing the old worker, but
        ``max_attempts`` moves with it, so restarts never use up a job's budget for failures.
        """
        now = utcnow()
        with self.writing() as s:
            job = s.get(Job, job_id)
            if job is None or job.attempt != attempt or job.status != JobStatus.RUNNING:
                return None
            if job.cancel_requested:
                job.status, job.stage, job.finished_at = JobStatus.CANCELED, JobStatus.CANCELED, now
                job.error = {"code": JobErrorCode.CANCELED, "message": "canceled"}
            elif charged and job.attempt >= job.max_attempts:
                job.status, job.stage, job.finished_at = JobStatus.FAILED, JobStatus.FAILED, now
                job.error = {"code": JobErrorCode.WORKER_LOST,
                             "message": f"{reason}; gave up after {job.attempt} attempts"}
            else:
                job.status, job.stage, job.attempt = JobStatus.QUEUED, JobStage.REQUEUED, job.attempt + 1
                if not charged:
                    job.max_attempts += 1
                job.dispatched_at = job.heartbeat_at = None
                job.error = {"code": JobErrorCode.RETRYING,
                             "message": f"{reason}; retrying (attempt {job.attempt})"}
            job.version += 1
            job.updated_at = now
            return job

    def force_canceled(self, *, job_id: str, attempt: int) -> bool:
        """Record that a running attempt was stopped by force after its grace period."""
        now = utcnow()
        with self.writing() as s:
            res = s.execute(update(Job).where(Job.id == job_id, Job.attempt == attempt,
                                              Job.status == JobStatus.RUNNING)
                            .values(status=JobStatus.CANCELED, stage=JobStatus.CANCELED, finished_at=now,
                                    updated_at=now,
                                    error={"code": JobErrorCode.CANCELED, "message": "canceled (stopped by force)"},
                                    version=Job.version + 1))
            return res.rowcount == 1

    # ---- worker (all fenced by attempt) ------------------------------------------------------

    def claim_start(self, *, job_id: str, attempt: int, worker: dict[str, Any]) -> Job | None:
        """queued -> running for this attempt; None when someone else has it or it was canceled."""
        now = utcnow()
        with self.writing() as s:
            res = s.execute(update(Job).where(Job.id == job_id, Job.attempt == attempt,
                                              Job.status == JobStatus.QUEUED, Job.cancel_requested.is_(False))
                            .values(status=JobStatus.RUNNING, stage=JobStage.STARTING, started_at=now, heartbeat_at=now,
                                    worker=worker, error=None, updated_at=now, version=Job.version + 1))
            if res.rowcount != 1:
                return None
            return s.get(Job, job_id)

    def _fenced(self, job_id: str, attempt: int, **values: Any) -> bool:
        now = utcnow()
        values.setdefault("heartbeat_at", now)
        with self.writing() as s:
            res = s.execute(update(Job).where(Job.id == job_id, Job.attempt == attempt, Job.status == JobStatus.RUNNING)
                            .values(updated_at=now, version=Job.version + 1, **values))
            return res.rowcount == 1

    def heartbeat(self, *, job_id: str, attempt: int) -> bool:
        """Refresh the heartbeat; False when this attempt no longer owns the job."""
        now = utcnow()
        with self.writing() as s:
            res = s.execute(update(Job).where(Job.id == job_id, Job.attempt == attempt, Job.status == JobStatus.RUNNING)
                            .values(heartbeat_at=now))
            return res.rowcount == 1

    def report_progress(self, *, job_id: str, attempt: int, stage: str, progress: float) -> bool:
        """Record the stage (a pipeline ``Stage`` or ``JobStage.UPLOAD``) and overall percent."""
        return self._fenced(job_id, attempt, stage=stage, progress=round(float(progress), 2))

    def finish(self, *, job_id: str, attempt: int, status: JobStatus, error: dict | None = None,
               metrics: dict | None = None, artifacts: list | None = None) -> bool:
        if status not in FINAL_STATUSES:
            raise ValueError(f"expected a final status, got {status!r}")
        values: dict[str, Any] = {"status": status, "stage": status, "finished_at": utcnow(), "error": error}
        if status == JobStatus.SUCCEEDED:
            values.update(progress=100.0, metrics=metrics, artifacts=artifacts or [])
        return self._fenced(job_id, attempt, **values)


def new_id() -> str:
    import uuid

    return uuid.uuid4().hex


def encode_cursor(job: Job) -> str:
    raw = json.dumps([job.created_at.isoformat(), job.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, job_id = json.loads(raw)
        when = datetime.fromisoformat(created)
        if when.tzinfo is None or not isinstance(job_id, str):
            raise ValueError("bad cursor")
        return when, job_id
    except (ValueError, TypeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadCursor(e.__class__.__name__) from None
