"""SQL tables: jobs (the source of truth), batches, uploads and API keys.

The schema itself is created by the Alembic migrations in ``service/jobs/migrations``; these
declarations must stay in step with them (a test compares the two).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from service.jobs.states import JobStage, JobStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"expected an aware datetime, got naive {value!r}")
        value = value.astimezone(UTC)
        # SQLite stores text: keep it naive UTC so values compare (and sort) as strings correctly.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("owner", "idempotency_key", name="uq_jobs_owner_idempotency_key"),
        Index("ix_jobs_owner_created", "owner", "created_at", "id"),
        Index("ix_jobs_status", "status"),
        Index("ix_jobs_batch", "batch_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    """API key id, or 'anonymous' when auth is off."""
    batch_id: Mapped[str | None] = mapped_column(String(32))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    input: Mapped[dict[str, Any]] = mapped_column(JSON)
    """Upload reference: {upload_id, name, key, size, sha256}."""
    ground_truth: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    """A ``JobStatus``."""
    stage: Mapped[str] = mapped_column(String(32), default=JobStage.QUEUED)
    """A ``JobStage``, a pipeline ``Stage`` or, once finished, the final status."""
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    """Percent, 0-100."""
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When a dispatcher handed the current attempt to Ray; NULL while waiting for one."""
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    worker: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """Where the current attempt runs: {node, pid}."""
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    artifacts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    """[{name, key, size, sha256}]"""
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(BigInteger, default=1)
    """Bumped by every update; SSE streams compare it to spot changes."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Batch(Base):
    __tablename__ = "batches"
    __table_args__ = (UniqueConstraint("owner", "idempotency_key", name="uq_batches_owner_idempotency_key"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    job_ids: Mapped[list[str]] = mapped_column(JSON)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Upload(Base):
    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(255))
    """File name as the client sent it (display only)."""
    key: Mapped[str] = mapped_column(String(512))
    """Object key in the artifact store."""
    kind: Mapped[str] = mapped_column(String(16))
    """'points' (a point cloud) or 'mesh' (a ground-truth mesh)."""
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    """sha256 hex of the key; the key itself is never stored."""
    prefix: Mapped[str] = mapped_column(String(16))
    """First characters of the key, to recognise it in listings."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
