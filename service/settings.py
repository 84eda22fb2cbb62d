"""Service settings: one validated ``Settings`` from ``SURFRECON_*`` variables and a ``.env`` file.

Built by the app factory (or the CLI), never at import time. Everything that is not given
is derived from ``data_dir``: the SQLite job store, the local artifact directory and the
scratch space for uploads in flight.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """All knobs of the service; env names are ``SURFRECON_<FIELD>`` (upper case)."""

    model_config = SettingsConfigDict(env_prefix="SURFRECON_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("data"), description="Root of all local state (SQLite file, artifacts, scratch).")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the job store; default sqlite:///<data_dir>/jobs.db.")
    database_schema: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
        description="PostgreSQL schema holding the tables (created if missing); default the search_path.")
    artifact_url: str | None = Field(
        None, description="Artifact store: a local directory or s3://bucket/prefix; default <data_dir>/artifacts.")
    s3_endpoint_url: str | None = Field(
        None, description="Endpoint of an S3-compatible store (MinIO, Ceph...); credentials from AWS_* variables.")
    ray_address: str | None = Field(
        None, validation_alias=AliasChoices("SURFRECON_RAY_ADDRESS", "RAY_ADDRESS"),
        description="Ray cluster to submit to; unset: start a local Ray in-process.")
    ray_num_cpus: int | None = Field(None, ge=1, description="CPUs of the local Ray; default all of the machine.")
    ray_object_store_bytes: int = Field(256 << 20, ge=80 << 20, description="Object store size of the local Ray.")
    job_num_cpus: float = Field(1.0, gt=0, description="CPUs reserved on Ray per job.")
    job_resources: dict[str, float] = Field(
        default_factory=dict,
        description='Extra Ray resources each job asks for, JSON (e.g. {"worker_node": 1} keeps jobs off the head).')
    auto_device_gpu: bool = Field(
        False, description="Jobs with device 'auto' ask Ray for a GPU when the cluster has any (GPU clusters).")
    dispatcher: Literal["embedded", "external"] = Field(
        "embedded", description="embedded: `serve` dispatches jobs itself; external: `surfrecon dispatcher` does.")
    dispatcher_enabled: bool = Field(
        True, description="Run jobs from this process; false makes an API-only replica (jobs stay queued).")
    auth_enabled: bool = Field(False, description="Require an API key (X-API-Key or Bearer) on /v1.")
    max_upload_bytes: int = Field(512 << 20, ge=1024, description="Largest accepted input file, bytes.")
    max_input_points: int = Field(20_000_000, ge=1000, description="Largest accepted point count per input.")
    max_archive_bytes: int = Field(
        2 << 30, ge=1024, description="Largest total uncompressed size of an image-set .zip, bytes.")
    max_archive_members: int = Field(4096, ge=1, description="Most entries (files and folders) in an image-set .zip.")
    max_queued_per_key: int = Field(100, ge=1, description="Queued jobs allowed per API key before 429.")
    max_batch_jobs: int = Field(100, ge=1, description="Jobs allowed in one batch.")
    validate_inputs: bool = Field(
        True, description="Load input files at submission so bad files fail with 422 at once.")
    max_attempts: int = Field(3, ge=1, description="Attempts per job before a lost worker fails it.")
    heartbeat_interval_s: float = Field(2.0, gt=0, description="How often a running job writes its heartbeat.")
    heartbeat_timeout_s: float = Field(30.0, gt=0, description="Heartbeat age after which a job is re-queued.")
    cancel_grace_s: float = Field(10.0, ge=0, description="Wait after a cooperative cancel before ray.cancel(force).")
    reconcile_interval_s: float = Field(1.0, gt=0, description="Period of the dispatcher/reconciler loop.")
    events_poll_s: float = Field(0.2, gt=0, description="How often SSE streams look for job changes.")
    sse_keepalive_s: float = Field(15.0, gt=0, description="Comment line sent on idle SSE streams.")
    checkpoint_every_s: float = Field(5.0, gt=0, description="How often a worker copies its fit checkpoint to the store.")

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        if self.database_url is None:
            self.database_url = f"sqlite:///{self.data_dir / 'jobs.db'}"
        if self.artifact_url is None:
            self.artifact_url = str(self.data_dir / "artifacts")
        if self.dispatcher == "external":
            self.dispatcher_enabled = False  # the API serves; `surfrecon dispatcher` runs the jobs
        for name, amount in self.job_resources.items():
            if amount < 0 or name in ("CPU", "GPU", "memory"):
                raise ValueError(f"expected custom Ray resources with amounts >= 0, got {name}={amount}")
        if self.heartbeat_timeout_s <= self.heartbeat_interval_s:
            raise ValueError(
                f"expected heartbeat_timeout_s > heartbeat_interval_s, got "
                f"{self.heartbeat_timeout_s} <= {self.heartbeat_interval_s}")
        return self

    @property
    def scratch_dir(self) -> Path:
        """Where uploads are streamed before they move into the artifact store."""
        return self.data_dir / "tmp"

    @property
    def local_ray(self) -> bool:
        return not self.ray_address

    def ray_cpus(self) -> int:
        return self.ray_num_cpus or os.cpu_count() or 1
