"""The dispatcher loop: hand queued jobs to Ray and keep the table honest.

One thread, woken at once by submissions and cancels, and otherwise every
``reconcile_interval_s``: dispatch queued jobs, settle finished or crashed tasks, stop
tasks whose job was canceled, force overdue cancels, and re-queue jobs whose worker vanished.
It runs inside the API process (``SURFRECON_DISPATCHER=embedded``) or on its own
(``surfrecon dispatcher``); several may run at once, each claiming different jobs.
"""

from __future__ import annotations

import logging
import threading
import time

from service.jobs import reconciler
from service.jobs.executor import RayExecutor, local_ray_dead
from service.jobs.models import utcnow
from service.jobs.states import JobErrorCode, JobStatus
from service.jobs.store import JobStore
from service.settings import Settings
from service.storage import ArtifactStore

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 256
"""Tasks one dispatcher keeps submitted to Ray at once (Ray queues them for resources)."""


class Dispatcher:
    """Owns the loop thread; ``wake()`` makes it act now rather than at the next tick."""

    def __init__(self, store: JobStore, executor: RayExecutor, settings: Settings,
                 artifacts: ArtifactStore | None = None) -> None:
        self.store, self.executor, self.settings = store, executor, settings
        self.artifacts = artifacts
        """Where killed attempts may have left objects; None skips that clean-up."""
        self.started_at = utcnow()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_tick: float = 0.0
        self.error: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="surfrecon-dispatcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """End the loop, then give back the attempts this process holds.

        Ray ends the tasks of a driver that exits, so they would be re-queued anyway once their
        heartbeat went stale; handing them back now lets the next dispatcher resume them at once
        (from their checkpoints) instead of after ``heartbeat_timeout_s``.
        """
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self.release_held()
        except Exception:  # the database is unreachable: the heartbeat timeout will catch up
            log.exception("could not hand back the running jobs")

    def release_held(self) -> list[str]:
        """Re-queue (or un-dispatch) every attempt this process submitted; returns their job ids."""
        released = []
        rows = self.store.snapshots(list(self.executor.running))
        for r in list(self.executor.running.values()):
            job = rows.get(r.job_id)
            if job is None or job.attempt != r.attempt:
                continue
            if job.status == JobStatus.RUNNING:  # the worker sees its attempt is over at its next poll
                if self.store.requeue_or_fail(job_id=job.id, attempt=job.attempt, reason="dispatcher stopped",
                                               charged=False):
                    released.append(job.id)
            elif job.status == JobStatus.QUEUED and self.store.undispatch(job_id=job.id, attempt=job.attempt):
                self.executor.cancel(r.job_id, force=False)
                released.append(job.id)
        if released:
            log.info("handed back %d jobs", len(released))
        return released

    def wake(self) -> None:
        self._wake.set()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.tick()
                self.error = None
            except Exception as e:  # the database or Ray hiccuped: log, keep looping
                self.error = f"{type(e).__name__}: {e}"
                log.exception("dispatcher tick failed")
            self.last_tick = time.monotonic()
            self._wake.wait(self.settings.reconcile_interval_s)

    def tick(self) -> None:
        s = self.settings
        dead = local_ray_dead()
        if dead:  # dispatching into it would strand jobs; /readyz reports this error
            raise RuntimeError(f"the local Ray lost its {', '.join(dead)}; this process must be restarted")
        reconciler.settle_outcomes(self.store, self.executor.collect())
        self._drop_canceled()
        now = utcnow()
        killed = reconciler.force_overdue_cancels(self.store, self.executor, now=now, grace_s=s.cancel_grace_s)
        self._drop_objects(killed)
        reconciler.requeue_stale(self.store, self.executor, now=now, heartbeat_timeout_s=s.heartbeat_timeout_s)
        reconciler.redispatch_lost(self.store, self.executor, now=now, started_at=self.started_at,
                                   stale_after_s=s.heartbeat_timeout_s)
        self._dispatch()

    def _dispatch(self) -> None:
        room = MAX_IN_FLIGHT - len(self.executor.running)
        if room <= 0:
            return
        gpus: bool | None = None  # asked of Ray at most once per tick
        for job in self.store.claim_for_dispatch(limit=room):
            device = job.spec.get("device", "auto")
            if device == "auto" and self.settings.auto_device_gpu:
                gpus = self.executor.has_gpus() if gpus is None else gpus
                # Ray hides GPUs from tasks that did not ask for one, so 'auto' must ask to get one.
                device = "cuda" if gpus else "cpu"
            if device == "cuda" and not self.executor.has_gpus():
                # Ray would keep an infeasible task pending forever: fail it now, saying why.
                self.store.fail_queued(job_id=job.id, attempt=job.attempt, code=JobErrorCode.NO_GPU,
                                       message="the job asks for device 'cuda' but the Ray cluster has no GPU")
                continue
            self.executor.submit(job_id=job.id, attempt=job.attempt, device=device)
            log.info("job %s attempt %d dispatched", job.id, job.attempt)

    def _drop_objects(self, job_ids: list[str]) -> None:
        """A worker killed mid-upload may leave part of a set of artifacts, and its checkpoint:
        the job ended canceled, so neither is wanted."""
        if self.artifacts is None:
            return
        for job_id in job_ids:
            self.artifacts.delete_prefix(f"jobs/{job_id}/artifacts")
            self.artifacts.delete(f"jobs/{job_id}/checkpoint.pt")

    def _drop_canceled(self) -> None:
        """Pending tasks of jobs canceled while queued: take them off Ray's queue."""
        held = [r for r in self.executor.running.values() if not r.forced]
        if not held:
            return
        rows = self.store.snapshots([r.job_id for r in held])
        for r in held:
            job = rows.get(r.job_id)
            # No heartbeat: the current attempt never started (a started one stops by itself).
            if job is not None and job.status == JobStatus.CANCELED and job.heartbeat_at is None:
                self.executor.cancel(r.job_id, force=False)
                r.forced = True  # asked once is enough


def build_dispatcher(settings: Settings, store: JobStore) -> tuple[Dispatcher, bool]:
    """Connect to Ray and make a dispatcher for ``settings`` (not started); returns it and whether
    this process started Ray (and so must shut it down)."""
    from service.jobs.db import DatabaseConfig
    from service.jobs.executor import init_ray
    from service.jobs.worker import WorkerConfig
    from service.storage import StorageConfig

    owns_ray = init_ray(settings)
    storage = StorageConfig(url=settings.artifact_url, endpoint_url=settings.s3_endpoint_url)
    worker_cfg = WorkerConfig(
        db=DatabaseConfig(url=settings.database_url, schema=settings.database_schema),
        storage=storage,
        heartbeat_interval_s=settings.heartbeat_interval_s, checkpoint_every_s=settings.checkpoint_every_s)
    executor = RayExecutor(worker_cfg, num_cpus=settings.job_num_cpus, resources=settings.job_resources)
    return Dispatcher(store, executor, settings, ArtifactStore(storage)), owns_ray
