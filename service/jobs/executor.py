"""Ray: starting or joining a cluster, submitting job attempts, cancelling them, noticing losses.

With no Ray address a local Ray starts in-process (free ports, loopback only, no dashboard);
with one (``SURFRECON_RAY_ADDRESS`` or ``RAY_ADDRESS``) the same code submits to that cluster,
where GPU nodes joined with ``ray start --address``. Tasks are never retried by Ray: retries
are the reconciler's business, so that they are counted in the job row.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import psutil

from service.jobs.worker import WorkerConfig, run_job
from service.settings import Settings

log = logging.getLogger(__name__)

LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray's switch for binding to 127.0.0.1 ("0"); read once, when Ray is imported."""
VITAL_RAY_PROCESSES = ("gcs_server", "raylet")
"""A local Ray without either of these runs no task."""


def init_ray(settings: Settings) -> bool:
    """Connect this process to Ray; returns True when it started (and so owns) the connection.

    Safe to call from any thread: ``ray.init`` itself always runs on one thread that lasts as
    long as the process (see ``_on_lasting_thread``).
    """
    if settings.local_ray:
        # The embedded Ray listens on loopback only (Ray would otherwise pick the LAN address).
        # Ray reads this when it is imported: `surfrecon serve` and `dispatcher` import it here.
        os.environ.setdefault(LOOPBACK_ENV, "0")
    import ray

    if ray.is_initialized():
        return False
    if settings.local_ray:
        _on_lasting_thread(lambda: ray.init(
            address="local", num_cpus=settings.ray_cpus(), include_dashboard=False,
            object_store_memory=settings.ray_object_store_bytes, log_to_driver=False,
            configure_logging=False, namespace="surfrecon"))
        _watch_local_ray()
        host = ray.get_runtime_context().gcs_address.rsplit(":", 1)[0]
        if host not in ("127.0.0.1", "localhost") and os.environ.get(LOOPBACK_ENV) in ("0", "false"):
            log.warning("the local Ray listens on %s, not on loopback only: Ray was imported before %s=0 was "
                        "set (set it in the environment)", host, LOOPBACK_ENV)
    else:
        _on_lasting_thread(lambda: ray.init(address=settings.ray_address, log_to_driver=False,
                                            configure_logging=False, namespace="surfrecon"))
    log.info("ray connected: %s", ray.get_runtime_context().gcs_address)
    return True


_owner_lock = threading.Lock()
_owner_calls: queue.Queue[tuple[Callable[[], Any], Future]] = queue.Queue()
_owner: threading.Thread | None = None


def _on_lasting_thread(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on the process's Ray-owner thread and return its result (or raise its error).

    A local Ray's GCS and raylet are started with ``PR_SET_PDEATHSIG``: Linux kills them when
    the *thread* that forked them ends, not the process. The service starts Ray from a worker
    thread (anyio's pool, which retires idle threads after a few seconds; a test client's portal
    thread), so ``ray.init`` there would lose the whole local Ray at some random later moment.
    This daemon thread never ends before the process does, so Ray lives exactly as long.
    """
    global _owner
    with _owner_lock:
        if _owner is None or not _owner.is_alive():
            _owner = threading.Thread(target=_serve_owner_calls, name="surfrecon-ray-owner", daemon=True)
            _owner.start()
    done: Future = Future()
    _owner_calls.put((fn, done))
    return done.result()


def _serve_owner_calls() -> None:
    while True:
        fn, done = _owner_calls.get()
        try:
            done.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 -- handed to the caller, who re-raises it
            done.set_exception(exc)


_local_ray: dict[str, psutil.Process] = {}
"""The vital processes of the local Ray this process started, by kind."""


def _watch_local_ray() -> None:
    # Ray starts its GCS and raylet as children of the process that calls ray.init; noting
    # them here lets the dispatcher see them die without Ray's private node handle.
    _local_ray.clear()
    for child in psutil.Process().children():
        try:
            name = child.name()
        except psutil.Error:
            continue
        if name in VITAL_RAY_PROCESSES:
            _local_ray[name] = child
    missing = set(VITAL_RAY_PROCESSES) - set(_local_ray)
    if missing:
        log.warning("the local Ray's %s not found among this process's children: its death will go unnoticed",
                    ", ".join(sorted(missing)))


def local_ray_dead() -> list[str]:
    """Kinds of the processes (``gcs_server``, ``raylet``) of the local Ray this process started
    that have died; empty when all live, or when this process joined a cluster."""
    dead = []
    for kind, proc in _local_ray.items():
        try:
            alive = proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            alive = False
        if not alive:
            dead.append(kind)
    return sorted(dead)


@dataclass
class Running:
    """A Ray task this process submitted, for one attempt of one job."""

    job_id: str
    attempt: int
    ref: Any
    forced: bool = False


@dataclass(frozen=True)
class Outcome:
    """A submitted task that ended: its status string, or the Ray error that ended it."""

    job_id: str
    attempt: int
    status: str | None
    error: str | None


class RayExecutor:
    """Submits ``run_job`` attempts as Ray tasks and keeps their object refs."""

    def __init__(self, worker_cfg: WorkerConfig, *, num_cpus: float = 1.0,
                 resources: dict[str, float] | None = None, task: Callable[..., str] = run_job) -> None:
        self.worker_cfg = worker_cfg
        self.num_cpus = num_cpus
        self.resources = dict(resources or {})
        self._task = task
        self._remote = None
        self.running: dict[str, Running] = {}

    def submit(self, *, job_id: str, attempt: int, device: str) -> None:
        import ray

        if self._remote is None:
            self._remote = ray.remote(self._task)
        opts: dict[str, Any] = {"num_cpus": self.num_cpus, "max_retries": 0, "name": f"job-{job_id[:8]}-{attempt}"}
        if device == "cuda":
            opts["num_gpus"] = 1
        if self.resources:
            opts["resources"] = self.resources
        ref = self._remote.options(**opts).remote(self.worker_cfg, job_id, attempt)
        self.running[job_id] = Running(job_id, attempt, ref)

    def has_gpus(self) -> bool:
        """Whether the cluster has any GPU now (a CUDA job could never be scheduled otherwise)."""
        import ray

        return ray.cluster_resources().get("GPU", 0) > 0

    def holds(self, job_id: str, attempt: int) -> bool:
        r = self.running.get(job_id)
        return r is not None and r.attempt == attempt

    def cancel(self, job_id: str, *, force: bool) -> bool:
        """Cancel the task of ``job_id``; force kills the worker process. False if not held here."""
        import ray

        r = self.running.get(job_id)
        if r is None or (r.forced and force):
            return False
        try:
            ray.cancel(r.ref, force=force)
        except Exception as e:  # noqa: BLE001 -- already finished, or its owner is gone
            log.info("ray.cancel of job %s: %s", job_id, e)
        r.forced = r.forced or force
        return True

    def collect(self) -> list[Outcome]:
        """Tasks that ended since the last call (they are forgotten afterwards)."""
        import ray

        if not self.running:
            return []
        by_ref = {r.ref: r for r in self.running.values()}
        done, _ = ray.wait(list(by_ref), num_returns=len(by_ref), timeout=0, fetch_local=False)
        out = []
        for ref in done:
            r = by_ref[ref]
            try:
                status, error = ray.get(ref, timeout=5), None
            except Exception as e:  # noqa: BLE001 -- any task error ends the attempt; its text is kept
                status, error = None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            out.append(Outcome(r.job_id, r.attempt, status, error))
            if self.running.get(r.job_id) is r:
                del self.running[r.job_id]
        return out
