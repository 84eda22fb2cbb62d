"""The background loop of an API process: hand queued jobs to Ray and keep the table honest.

One thread, woken at once by submissions and cancels, and otherwise every
``reconcile_interval_s``: dispatch queued jobs, settle finished or crashed tasks, stop
tasks whose job was canceled, force overdue cancels, and re-queue jobs whose worker vanished.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Optional

from service.jobs import reconciler
from service.jobs.executor import RayExecutor
from service.jobs.models import utcnow
from service.jobs.store import JobStore
from service.settings import Settings

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 256
"""Tasks one dispatcher keeps submitted to Ray at once (Ray queues them for resources)."""


class Dispatcher:
    """Owns the loop thread; ``wake()`` makes it act now rather than at the next tick."""

    def __init__(self, store: JobStore, executor: RayExecutor, settings: Settings) -> None:
        self.store, self.executor, self.settings = store, executor, settings
        self.started_at = utcnow()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.last_tick: float = 0.0
        self.error: Optional[str] = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="surfrecon-dispatcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

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
        reconciler.settle_outcomes(self.store, self.executor.collect())
        self._drop_canceled()
        now = utcnow()
        reconciler.force_overdue_cancels(self.store, self.executor, now=now, grace_s=s.cancel_grace_s)
        reconciler.requeue_stale(self.store, self.executor, now=now, heartbeat_timeout_s=s.heartbeat_timeout_s)
        reconciler.redispatch_lost(self.store, self.executor, now=now, started_at=self.started_at,
                                   stale_after_s=s.heartbeat_timeout_s)
        self._dispatch()

    def _dispatch(self) -> None:
        room = MAX_IN_FLIGHT - len(self.executor.running)
        if room <= 0:
            return
        for job in self.store.claim_for_dispatch(limit=room):
            device = job.spec.get("device", "auto")
            if device == "cuda" and not self.executor.has_gpus():
                # Ray would keep an infeasible task pending forever: fail it now, saying why.
                self.store.fail_queued(job_id=job.id, attempt=job.attempt, code="no_gpu",
                                       message="the job asks for device 'cuda' but the Ray cluster has no GPU")
                continue
            self.executor.submit(job_id=job.id, attempt=job.attempt, device=device)
            log.info("job %s attempt %d dispatched", job.id, job.attempt)

    def _drop_canceled(self) -> None:
        """Pending tasks of jobs canceled while queued: take them off Ray's queue."""
        held = [r for r in self.executor.running.values() if not r.forced]
        if not held:
            return
        rows = self.store.snapshots([r.job_id for r in held])
        for r in held:
            job = rows.get(r.job_id)
            # No heartbeat: the current attempt never started (a started one stops by itself).
            if job is not None and job.status == "canceled" and job.heartbeat_at is None:
                self.executor.cancel(r.job_id, force=False)
                r.forced = True  # asked once is enough
