"""Domain errors of the service: what the job store, auth and the workers raise.

They say what went wrong in the service's own terms and know nothing of HTTP: the API maps
each to a problem+json answer in one place (``service.api.errors``), the ``keys`` command and
the workers see plain exceptions. ``str(err)`` is the message for people; the attributes
carry the facts a caller may act on.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of the service's domain errors."""


class NotFound(ServiceError):
    """No such thing, or it belongs to another owner (the two are not told apart)."""


class JobNotFound(NotFound):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id!r}")
        self.job_id = job_id


class UploadNotFound(NotFound):
    def __init__(self, upload_id: str) -> None:
        super().__init__(f"no upload {upload_id!r}")
        self.upload_id = upload_id


class BatchNotFound(NotFound):
    def __init__(self, batch_id: str) -> None:
        super().__init__(f"no batch {batch_id!r}")
        self.batch_id = batch_id


class Conflict(ServiceError):
    """The request contradicts the state it meets."""


class JobFinished(Conflict):
    """A cancel for a job that already succeeded or failed."""

    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"job {job_id!r} already {status}")
        self.job_id, self.status = job_id, status


class IdempotencyConflict(Conflict):
    """The same idempotency key came back with a different request."""

    def __init__(self, key: str | None) -> None:
        super().__init__(f"Idempotency-Key {key!r} was used before with a different request")
        self.key = key


class QuotaExceeded(ServiceError):
    """An owner would have more queued jobs than allowed."""

    def __init__(self, queued: int, limit: int) -> None:
        super().__init__(f"{queued} jobs already queued for this key; the limit is {limit}")
        self.queued, self.limit = queued, limit


class BadCursor(ServiceError):
    """A pagination cursor that this service did not hand out."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"cursor: not a cursor from this API ({reason})")
        self.reason = reason


class Unauthorized(ServiceError):
    """No API key, or one that is unknown or revoked."""

    def __init__(self, *, missing: bool) -> None:
        super().__init__("an API key is required (X-API-Key header or Bearer token)" if missing
                         else "the API key is not valid")
        self.missing = missing
