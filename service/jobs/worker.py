"""What runs inside a Ray task: one attempt of one job, from claim to artifacts.

The task talks to the job store directly (DB URL in ``WorkerConfig``): it claims the attempt,
reports progress and heartbeats, polls the cancel flag through the pipeline's ``CancelToken``
and records the outcome. Every write is fenced by the attempt number, so a worker that was
given up on cannot overwrite what happened since. Nothing here imports Ray. Every stage an
attempt enters passes through ``StageReporter.report``.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recon.progress import Cancelled, CancelToken, Stage
from service.jobs.db import DatabaseConfig
from service.jobs.states import JobErrorCode, JobStage, JobStatus
from service.jobs.store import JobStore
from service.storage import ArtifactStore, StorageConfig, sha256_file

log = logging.getLogger(__name__)

# Overall progress (percent) at the start and end of each stage; any stage not listed
# (method-specific reconstruction steps: Poisson's normals and solve) is mapped into the fit band.
STAGE_BANDS: dict[str, tuple[float, float]] = {
    JobStage.STARTING: (0.0, 0.0), Stage.LOAD: (0.0, 5.0), Stage.FIT: (5.0, 80.0), Stage.EXTRACT: (80.0, 90.0),
    Stage.METRICS: (90.0, 95.0), Stage.EXPORT: (95.0, 98.0), JobStage.UPLOAD: (98.0, 100.0),
}


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker needs, picklable for Ray."""

    db: DatabaseConfig
    storage: StorageConfig
    heartbeat_interval_s: float = 2.0
    checkpoint_every_s: float = 5.0
    progress_interval_s: float = 0.25
    cancel_poll_s: float = 0.5


def overall_progress(stage: str, fraction: float) -> float:
    lo, hi = STAGE_BANDS.get(stage, STAGE_BANDS[Stage.FIT])
    return lo + (hi - lo) * min(1.0, max(0.0, fraction))


_STORES: dict[DatabaseConfig, JobStore] = {}


def _store(cfg: DatabaseConfig) -> JobStore:
    """One engine per worker process and database (Ray reuses worker processes)."""
    if cfg not in _STORES:
        _STORES[cfg] = JobStore(cfg, pool_size=2)
    return _STORES[cfg]


class StageReporter:
    """The progress callback of one attempt: throttled, monotonic writes of stage and percent.

    A stage is always written when it is entered; a write the store refuses (the attempt is no
    longer current) cancels the attempt through ``token``.
    """

    def __init__(self, store: JobStore, job_id: str, attempt: int, start: float, interval: float, token) -> None:
        self.store, self.job_id, self.attempt = store, job_id, attempt
        self.best, self.interval, self.token = start, interval, token
        self.stage: str | None = None
        self.last_write = 0.0

    def __call__(self, event) -> None:
        self.report(event.stage, event.fraction)

    def report(self, stage: str, fraction: float, *, force: bool = False) -> None:
        """Record ``fraction`` (0-1) of ``stage`` done: a pipeline ``Stage`` or ``JobStage.UPLOAD``."""
        pct = max(self.best, overall_progress(stage, fraction))
        now = time.monotonic()
        if not force and stage == self.stage and (now - self.last_write < self.interval or pct - self.best < 0.1):
            return
        self.best, self.stage, self.last_write = pct, stage, now
        if not self.store.report_progress(job_id=self.job_id, attempt=self.attempt, stage=stage, progress=pct):
            self.token.cancel()


class _Heartbeat(threading.Thread):
    """Beats every ``interval``; copies the checkpoint to a remote store now and then."""

    def __init__(self, store: JobStore, job_id: str, attempt: int, cfg: WorkerConfig, token,
                 checkpoint: tuple[Path, ArtifactStore, str] | None) -> None:
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self.store, self.job_id, self.attempt, self.cfg, self.token = store, job_id, attempt, cfg, token
        self.checkpoint = checkpoint
        self.stopped = threading.Event()
        self._synced_mtime = 0.0
        self._last_sync = time.monotonic()

    def run(self) -> None:
        while not self.stopped.wait(self.cfg.heartbeat_interval_s):
            try:
                if not self.store.heartbeat(job_id=self.job_id, attempt=self.attempt):
                    self.token.cancel()  # re-queued or canceled elsewhere: this attempt is over
                    return
                if self.checkpoint and time.monotonic() - self._last_sync >= self.cfg.checkpoint_every_s:
                    self._sync_checkpoint()
            except Exception:  # a missed beat is survivable; a dead heartbeat thread is not
                log.exception("heartbeat of job %s failed", self.job_id)

    def _sync_checkpoint(self) -> None:
        local, artifacts, key = self.checkpoint
        self._last_sync = time.monotonic()
        if local.is_file() and local.stat().st_mtime != self._synced_mtime:
            mtime = local.stat().st_mtime
            artifacts.put_file(local, key)
            self._synced_mtime = mtime

    def stop(self) -> None:
        self.stopped.set()


SKIPPED = "skipped"
"""What ``run_job`` returns for an attempt it could not claim (taken, re-queued or canceled)."""


def run_job(cfg: WorkerConfig, job_id: str, attempt: int) -> str:
    """Run one attempt; returns the ``JobStatus`` it ended in, or ``SKIPPED``."""
    store = _store(cfg.db)
    job = store.claim_start(job_id=job_id, attempt=attempt, worker=_where())
    if job is None:
        return SKIPPED
    last_poll = [0.0, False]

    def cancel_requested() -> bool:
        now = time.monotonic()
        if now - last_poll[0] >= cfg.cancel_poll_s:
            last_poll[0], last_poll[1] = now, store.is_cancel_requested(job_id, attempt)
        return bool(last_poll[1])

    token = CancelToken(check=cancel_requested)
    reporter = StageReporter(store, job_id, attempt, job.progress, cfg.progress_interval_s, token)
    artifacts = ArtifactStore(cfg.storage)
    ckpt_key = f"jobs/{job_id}/checkpoint.pt"
    with tempfile.TemporaryDirectory(prefix=f"surfrecon-{job_id[:8]}-") as tmp:
        tmp_dir = Path(tmp)
        ckpt_local = artifacts.local_path(ckpt_key)
        ckpt_sync = None
        if ckpt_local is None:  # remote store: work on a local copy, sync it back now and then
            ckpt_local = tmp_dir / "checkpoint.pt"
            if artifacts.exists(ckpt_key):
                artifacts.get_file(ckpt_key, ckpt_local)
            ckpt_sync = (ckpt_local, artifacts, ckpt_key)
        ckpt_local.parent.mkdir(parents=True, exist_ok=True)
        beat = _Heartbeat(store, job_id, attempt, cfg, token, ckpt_sync)
        beat.start()
        try:
            status, fields = _execute(job, artifacts, tmp_dir, ckpt_local, reporter, token)
        finally:
            beat.stop()
            # An upload of the checkpoint in flight would land after the delete below.
            beat.join(timeout=max(60.0, 2 * cfg.heartbeat_interval_s))
        # Objects are tidied before the job is marked final, so whoever sees it final sees them
        # gone; and only while this attempt still owns the job (a re-queued attempt may resume
        # from the checkpoint).
        if store.heartbeat(job_id=job_id, attempt=attempt):
            _tidy_objects(artifacts, job_id, ckpt_key, succeeded=status == JobStatus.SUCCEEDED)
        store.finish(job_id=job_id, attempt=attempt, status=status, **fields)
    return status


def _tidy_objects(artifacts: ArtifactStore, job_id: str, ckpt_key: str, *, succeeded: bool) -> None:
    """Drop the checkpoint of a finished attempt and, unless it succeeded, any half-uploaded set
    of artifacts. A store that fails here must not lose the job's outcome: logged, not raised."""
    try:
        artifacts.delete(ckpt_key)
        if not succeeded:
            artifacts.delete_prefix(f"jobs/{job_id}/artifacts")
    except Exception:
        log.exception("could not remove the objects of finished job %s", job_id)


def _where() -> dict[str, Any]:
    """Where this attempt runs: host, pid and, inside Ray, the node id (hosts may run several nodes)."""
    where: dict[str, Any] = {"node": socket.gethostname(), "pid": os.getpid()}
    ray = sys.modules.get("ray")  # only when Ray runs this task; never imported from here
    if ray is not None and ray.is_initialized():
        where["ray_node"] = ray.get_runtime_context().get_node_id()
    return where


def _execute(job, artifacts: ArtifactStore, tmp: Path, ckpt: Path, reporter: StageReporter, token):
    """Run the pipeline and upload its artifacts; returns (final status, fields for finish())."""
    from recon.io import InputError

    try:
        from recon.pipeline import JobSpec, run

        spec = JobSpec.model_validate(job.spec)
        input_path = _fetch(artifacts, job.input["key"], tmp / "in")
        gt_path = _fetch(artifacts, job.ground_truth["key"], tmp / "gt") if job.ground_truth else None
        result = run(spec, input_path, tmp / "out", gt_path=gt_path, progress=reporter, cancel=token,
                     checkpoint_path=ckpt)
        records = []
        for i, (name, path) in enumerate(sorted(result.artifacts.items())):
            token.raise_if_cancelled()  # also stops an attempt that was given up on
            key = f"jobs/{job.id}/artifacts/{name}"
            records.append({"name": name, "key": key, "size": Path(path).stat().st_size,
                            "sha256": sha256_file(Path(path))})
            artifacts.put_file(Path(path), key)
            reporter.report(JobStage.UPLOAD, (i + 1) / len(result.artifacts), force=i == 0)
        token.raise_if_cancelled()
        return JobStatus.SUCCEEDED, {"metrics": jsonable(result.metrics), "artifacts": records}
    except Cancelled:
        return JobStatus.CANCELED, {"error": {"code": JobErrorCode.CANCELED, "message": "canceled"}}
    except InputError as e:
        return JobStatus.FAILED, {"error": {"code": e.code, "message": _short(str(e))}}
    except ValueError as e:
        return JobStatus.FAILED, {"error": {"code": JobErrorCode.RECONSTRUCTION_FAILED, "message": _short(str(e))}}
    except Exception as e:
        log.exception("job %s failed", job.id)
        return JobStatus.FAILED, {"error": {"code": JobErrorCode.INTERNAL_ERROR,
                                            "message": _short(f"{type(e).__name__}: {e}")}}


def _short(message: str, limit: int = 1000) -> str:
    """Error messages go into the job row and API answers: keep them readable."""
    return message if len(message) <= limit else message[: limit - 3] + "..."


def _fetch(artifacts: ArtifactStore, key: str, dest_dir: Path) -> Path:
    local = artifacts.local_path(key)
    if local is not None:
        return local
    dest = dest_dir / key.rsplit("/", 1)[-1]
    artifacts.get_file(key, dest)
    return dest


def jsonable(value: Any) -> Any:
    """Plain JSON types only: numpy scalars unwrapped, NaN/inf as None (PostgreSQL rejects them)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
