"""The states of a job and the codes it ends with, named once.

The store writes them, the workers and the dispatcher report them, the API schema and the
client list them, and the web page has words for them (a test holds ``progress.js`` to these
names). They are ``StrEnum``s, so the plain strings read back from SQL compare equal to them.
"""

from __future__ import annotations

from recon.progress import Stage
from recon.strenum import StrEnum


class JobStatus(StrEnum):
    """Where a job is in its life; the last three are final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


FINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})


class JobStage(StrEnum):
    """The stages a job shows besides the pipeline's own (``recon.progress.Stage``); a finished
    job's stage is its final status."""

    QUEUED = "queued"
    """Waiting for a worker."""
    REQUEUED = "requeued"
    """Waiting again after its worker was lost or its dispatcher stopped."""
    STARTING = "starting"
    """Claimed by a worker that has not reported a pipeline stage yet."""
    UPLOAD = "upload"
    """The worker copies the artifacts into the artifact store."""


def stage_names() -> tuple[str, ...]:
    """Every stage a job can show, in the order it passes them."""
    return (JobStage.QUEUED, JobStage.REQUEUED, JobStage.STARTING, *Stage, JobStage.UPLOAD,
            JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED)


class JobErrorCode(StrEnum):
    """Codes of a job's ``error`` besides the input's own (``recon.io.InputErrorCode``)."""

    CANCELED = "canceled"
    """Canceled by its owner (before it started, by its worker, or by force after the grace period)."""
    RETRYING = "retrying"
    """Not final: the job was re-queued after its worker was lost; the message says why."""
    WORKER_LOST = "worker_lost"
    """Its workers kept vanishing until the job ran out of attempts."""
    NO_GPU = "no_gpu"
    """It asks for device 'cuda' and the Ray cluster has no GPU."""
    RECONSTRUCTION_FAILED = "reconstruction_failed"
    """The method could not make a mesh of this input (a ValueError from the pipeline)."""
    INTERNAL_ERROR = "internal_error"
    """An unexpected error in the worker; it is logged there."""
