"""``surfrecon dispatcher``: the dispatcher and reconciler as a process of their own.

With ``SURFRECON_DISPATCHER=external`` the API processes only serve HTTP, so restarting or
scaling them never touches running jobs; this process hands queued jobs to Ray (the cluster
at ``RAY_ADDRESS``, or a local Ray it starts) and reconciles the table. Several may run at
once: each claims different jobs. SIGTERM or SIGINT stops it cleanly, handing the attempts
it holds back to the queue so that the next dispatcher resumes them from their checkpoints.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading


def run_dispatcher(settings, *, ready_file: str | None = None) -> int:
    """Migrate the job store, start the loop and block until a stop signal arrives."""
    from service.jobs.db import DatabaseConfig
    from service.jobs.dispatcher import build_dispatcher
    from service.jobs.store import JobStore

    log = logging.getLogger("service.dispatcher")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = JobStore(DatabaseConfig(url=settings.database_url, schema=settings.database_schema), pool_size=4)
    store.migrate()
    dispatcher, owns_ray = build_dispatcher(settings, store)
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    dispatcher.start()
    log.info("dispatcher running: jobs in %s, Ray at %s", store.engine.url.render_as_string(),
             settings.ray_address or "a local Ray")
    if ready_file:
        with open(ready_file, "w") as f:
            f.write(str(os.getpid()))
    try:
        while not stop.wait(1.0):
            if not dispatcher.alive:
                log.error("dispatcher loop died")
                return 1
        return 0
    finally:
        dispatcher.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if owns_ray:
            import ray

            ray.shutdown()
        store.close()


def cmd_dispatcher(args: argparse.Namespace) -> int:
    from service.serve import settings_from_args

    settings = settings_from_args(args)
    if settings is None:
        return 2
    logging.getLogger("service").setLevel(logging.INFO)
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_dispatcher(settings, ready_file=args.ready_file)


def add_parser(sub) -> None:
    p = sub.add_parser("dispatcher",
                       help="run jobs from the job store on Ray (pair with SURFRECON_DISPATCHER=external)")
    p.add_argument("--data-dir", default=None, help="local state (env SURFRECON_DATA_DIR; default ./data)")
    p.add_argument("--ready-file", default=None, help="write the pid here once the loop runs (for supervisors)")
    p.set_defaults(func=cmd_dispatcher)
