"""Request and response bodies of the HTTP API: one schema per direction (``JobCreate`` in,
``JobPublic`` out), with examples that end up in the OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from recon.methods import method_names, quoted
from recon.spec import JobSpec
from service.jobs.models import Batch, Job, Upload
from service.jobs.states import FINAL_STATUSES, JobStatus

# The values of JobStatus as a Literal: the OpenAPI document lists them inline, as it always has.
JobStatusName = Literal[tuple(s.value for s in JobStatus)]

_SPEC_EXAMPLE = {"method": "poisson", "preset": "fast", "formats": ["ply", "glb"]}
_JOB_EXAMPLE = {
    "id": "9b1deb4d3b7d4bad9bdd2b0d7b3dcb6d", "status": "succeeded", "stage": "succeeded", "progress": 100.0,
    "attempt": 1, "max_attempts": 3, "cancel_requested": False, "batch_id": None,
    "spec": {"method": "poisson", "preset": "fast", "resolution": None, "formats": ["ply", "glb"], "seed": 0,
             "max_fit_points": None, "decimate_faces": None, "min_component_fraction": 0.01, "device": "auto"},
    "input": {"upload_id": "1f0c3c5e8d5a4f5f9a8f2e1d0c9b8a7f", "name": "bunny.xyz", "size": 81234,
              "sha256": "3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b"},
    "ground_truth": None, "error": None,
    "metrics": {"input": {"distance_mean": 0.0012}, "timings_s": {"total": 1.2}},
    "artifacts": [{"name": "mesh.ply", "size": 523412,
                   "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                   "url": "/v1/jobs/9b1deb4d3b7d4bad9bdd2b0d7b3dcb6d/artifacts/mesh.ply"}],
    "created_at": "2026-11-24T10:00:00Z", "started_at": "2026-11-24T10:00:00.4Z",
    "finished_at": "2026-11-24T10:00:02Z", "updated_at": "2026-11-24T10:00:02Z", "heartbeat_at": None,
    "links": {"self": "/v1/jobs/9b1deb4d3b7d4bad9bdd2b0d7b3dcb6d",
              "events": "/v1/jobs/9b1deb4d3b7d4bad9bdd2b0d7b3dcb6d/events",
              "cancel": "/v1/jobs/9b1deb4d3b7d4bad9bdd2b0d7b3dcb6d/cancel"},
}


class JobCreate(BaseModel):
    """A job over an earlier upload (``POST /v1/uploads``); multipart bodies carry the file instead."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"spec": _SPEC_EXAMPLE, "upload_id": "1f0c3c5e8d5a4f5f9a8f2e1d0c9b8a7f"}]})

    spec: JobSpec = Field(default_factory=JobSpec, description="What to reconstruct and how.")
    upload_id: str = Field(min_length=1, max_length=64,
                           description="Id of an uploaded point cloud (kind=points), or image set (kind=images) "
                                       f"for {quoted(method_names('images'), quote='')}.")
    gt_upload_id: str | None = Field(None, min_length=1, max_length=64,
                                        description="Id of an uploaded ground-truth mesh (kind=mesh) for metrics.")


class BatchCreate(BaseModel):
    """Many jobs in one request; each entry is a ``JobCreate``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"jobs": [
        {"spec": _SPEC_EXAMPLE, "upload_id": "1f0c3c5e8d5a4f5f9a8f2e1d0c9b8a7f"},
        {"spec": {"method": "digs", "preset": "fast"}, "upload_id": "5d41402abc4b2a76b9719d911017c592"}]}]})

    jobs: list[JobCreate] = Field(min_length=1, description="The jobs (at most the server's max_batch_jobs).")


class InputPublic(BaseModel):
    upload_id: str
    name: str = Field(description="File name as uploaded.")
    size: int = Field(description="Bytes.")
    sha256: str


class ArtifactPublic(BaseModel):
    name: str = Field(description="mesh.<format> or metrics.json.")
    size: int = Field(description="Bytes.")
    sha256: str
    url: str = Field(description="Download link, relative to the server.")


class JobError(BaseModel):
    code: str = Field(description="Stable error code, e.g. malformed_file, worker_lost, canceled.")
    message: str


class JobPublic(BaseModel):
    """A job as the API shows it."""

    model_config = ConfigDict(json_schema_extra={"examples": [_JOB_EXAMPLE]})

    id: str
    status: JobStatusName
    stage: str = Field(description="Pipeline stage: queued, starting, load, fit, extract, metrics, export, upload...")
    progress: float = Field(ge=0, le=100, description="Percent done.")
    attempt: int = Field(description="1 for the first run; raised each time the job is re-queued (a lost worker, "
                                     "or a dispatcher handing its jobs back as it stops).")
    max_attempts: int = Field(description="Attempts allowed; raised with each hand-back by a stopping dispatcher, "
                                          "so that restarts never use up the budget for failures.")
    cancel_requested: bool
    batch_id: str | None
    spec: dict[str, Any] = Field(description="The JobSpec, with defaults filled in.")
    input: InputPublic
    ground_truth: InputPublic | None
    error: JobError | None
    metrics: dict[str, Any] | None
    artifacts: list[ArtifactPublic]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    heartbeat_at: datetime | None
    links: dict[str, str]


class JobsPublic(BaseModel):
    """One page of jobs, newest first."""

    items: list[JobPublic]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last.")


class BatchPublic(BaseModel):
    """A batch with the aggregate state of its jobs."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "c4ca4238a0b923820dcc509a6f75849b", "status": "running", "progress": 42.5,
        "counts": {"queued": 0, "running": 1, "succeeded": 1, "failed": 0, "canceled": 0},
        "created_at": "2026-11-24T10:00:00Z", "jobs": [_JOB_EXAMPLE],
        "links": {"self": "/v1/batches/c4ca4238a0b923820dcc509a6f75849b"}}]})

    id: str
    status: JobStatusName = Field(description="queued until one starts; running until all end; then failed if any "
                                          "failed, else canceled if any was canceled, else succeeded.")
    progress: float = Field(ge=0, le=100, description="Mean progress of the jobs, percent.")
    counts: dict[str, int] = Field(description="Jobs per status.")
    created_at: datetime
    jobs: list[JobPublic]
    links: dict[str, str]


class UploadPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "1f0c3c5e8d5a4f5f9a8f2e1d0c9b8a7f", "name": "bunny.xyz", "kind": "points", "size": 81234,
        "sha256": "3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b",
        "created_at": "2026-11-24T10:00:00Z"}]})

    id: str
    name: str
    kind: Literal["points", "mesh", "images"]
    size: int
    sha256: str
    created_at: datetime


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"status": "ok", "checks": {"database": "ok", "storage": "ok", "ray": "ok"}}]})

    status: Literal["ok"]
    checks: dict[str, str] = Field(default_factory=dict)


# ---- conversions -----------------------------------------------------------------------------

def job_public(job: Job) -> JobPublic:
    base = f"/v1/jobs/{job.id}"
    links = {"self": base, "events": f"{base}/events", "cancel": f"{base}/cancel"}
    return JobPublic(
        id=job.id, status=job.status, stage=job.stage, progress=job.progress, attempt=job.attempt,
        max_attempts=job.max_attempts, cancel_requested=job.cancel_requested, batch_id=job.batch_id,
        spec=job.spec, input=_input(job.input), ground_truth=_input(job.ground_truth) if job.ground_truth else None,
        error=JobError(**job.error) if job.error else None, metrics=job.metrics,
        artifacts=[ArtifactPublic(name=a["name"], size=a["size"], sha256=a["sha256"], url=f"{base}/artifacts/{a['name']}")
                   for a in job.artifacts or []],
        created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
        updated_at=job.updated_at, heartbeat_at=job.heartbeat_at, links=links)


def _input(ref: dict[str, Any]) -> InputPublic:
    return InputPublic(upload_id=ref["upload_id"], name=ref["name"], size=ref["size"], sha256=ref["sha256"])


def batch_public(batch: Batch, jobs: list[Job]) -> BatchPublic:
    counts = dict.fromkeys(JobStatus, 0)
    for j in jobs:
        counts[j.status] += 1
    if all(j.status in FINAL_STATUSES for j in jobs):
        status = (JobStatus.FAILED if counts[JobStatus.FAILED] else JobStatus.CANCELED if counts[JobStatus.CANCELED]
                  else JobStatus.SUCCEEDED)
    elif counts[JobStatus.QUEUED] == len(jobs):
        status = JobStatus.QUEUED
    else:
        status = JobStatus.RUNNING
    progress = sum(100.0 if j.status in FINAL_STATUSES else j.progress for j in jobs) / max(1, len(jobs))
    return BatchPublic(id=batch.id, status=status, progress=round(progress, 2), counts=counts,
                       created_at=batch.created_at, jobs=[job_public(j) for j in jobs],
                       links={"self": f"/v1/batches/{batch.id}"})


def upload_public(up: Upload) -> UploadPublic:
    return UploadPublic(id=up.id, name=up.name, kind=up.kind, size=up.size, sha256=up.sha256,
                        created_at=up.created_at)
