"""Holding a job's stage open, and counting its attempts, from outside the product.

The fault, recovery and cluster tests must cancel a job *in* a given stage, keep jobs running
across restarts, and count how often each attempt started and finished. The service has no
switch for that. Instead, the tests start every process that may run a job (the workers of a
local Ray, the nodes of a test cluster) with this folder on ``PYTHONPATH`` and
``SURFRECON_STAGE_HOOKS`` naming a rules file; the ``sitecustomize`` here then patches
``service.jobs.worker`` as it is imported:

* **linger**: on entering a stage, an attempt waits the seconds its rule gives that stage
  (``{"extract": 60}``; a key ``"extract@1"`` applies to attempt 1 only), polling its cancel
  token, so a cancel or a re-queue ends the wait at once, as it would end real work.
* **markers**: one line per event in ``<markers>/<job id>``: ``start <attempt> <pid>`` once the
  attempt is claimed, and as its last act ``finish <attempt> <status> owned|superseded
  first_fit_step=<n>`` (owned: its final write reached the job; the first fit step it reported,
  above one report interval when it resumed from a checkpoint).

Rules are keyed by the job store the worker writes to (URL and schema), so servers sharing one
Ray each have their own; workers read the file at the start of every attempt, so a test may set
rules while workers live. Test side: ``hook_env``, ``set_rules``, ``read_marks``.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV = "SURFRECON_STAGE_HOOKS"
HERE = Path(__file__).resolve().parent
TARGET = "service.jobs.worker"


def rule_key(database_url: str, database_schema: str | None = None) -> str:
    return f"{database_url}#{database_schema or ''}"


# ---- the tests' side -------------------------------------------------------------------------

def hook_env(rules_file: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """The variables that make processes started with them (and their children) load the hooks."""
    base = os.environ if base is None else base
    path = os.pathsep.join(p for p in (str(HERE), base.get("PYTHONPATH", "")) if p)
    return {ENV: str(rules_file), "PYTHONPATH": path}


def set_rules(rules_file: Path, database_url: str, database_schema: str | None = None, *,
              linger: dict[str, float] | None = None, markers: Path | None = None) -> None:
    """Hooks for the workers of the job store at ``database_url`` (and schema), replacing any."""
    rules = json.loads(rules_file.read_text()) if rules_file.exists() else {}
    rules[rule_key(database_url, database_schema)] = {
        "linger": dict(linger or {}), "markers": str(markers) if markers is not None else None}
    tmp = rules_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(rules, indent=1))
    os.replace(tmp, rules_file)  # workers never read half a file


def read_marks(markers: Path, job_id: str) -> list[list[str]]:
    """The job's marker lines, split into words."""
    path = Path(markers) / job_id
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


# ---- the workers' side -----------------------------------------------------------------------

@dataclass
class _Attempt:
    """What the hooks know of the attempt running on this thread."""

    job_id: str
    attempt: int
    linger: dict[str, float]
    markers: Path | None
    started: bool = False
    owned: bool = False
    first_fit_step: int | None = None

    def mark(self, line: str) -> None:
        if self.markers is not None:
            with open(self.markers / self.job_id, "a") as f:
                f.write(line + "\n")


_current = threading.local()


def _attempt(job_id: str, attempt: int) -> _Attempt | None:
    a = getattr(_current, "attempt", None)
    return a if a is not None and (a.job_id, a.attempt) == (job_id, attempt) else None


def _rule(db) -> dict[str, Any] | None:
    path = Path(os.environ[ENV])
    rules = json.loads(path.read_text()) if path.exists() else {}
    return rules.get(rule_key(db.url, db.schema))


def _patch(worker) -> None:
    """Wrap the worker's attempt, its claim and final write, and its stage reports."""
    from recon.progress import Stage

    store_cls, reporter_cls = worker.JobStore, worker.StageReporter
    run_job, claim_start, finish = worker.run_job, store_cls.claim_start, store_cls.finish
    call, report = reporter_cls.__call__, reporter_cls.report

    @functools.wraps(run_job)
    def run_job_hooked(cfg, job_id: str, attempt: int):
        rule = _rule(cfg.db)
        if rule is None:
            return run_job(cfg, job_id, attempt)
        a = _Attempt(job_id, attempt, dict(rule["linger"]), Path(rule["markers"]) if rule["markers"] else None)
        _current.attempt = a
        try:
            status = run_job(cfg, job_id, attempt)
        finally:
            _current.attempt = None
        if a.started:
            a.mark(f"finish {attempt} {status} {'owned' if a.owned else 'superseded'} "
                   f"first_fit_step={a.first_fit_step}")
        return status

    @functools.wraps(claim_start)
    def claim_start_hooked(self, *, job_id: str, attempt: int, **kw):
        job = claim_start(self, job_id=job_id, attempt=attempt, **kw)
        a = _attempt(job_id, attempt)
        if a is not None and job is not None:
            a.started = True
            a.mark(f"start {attempt} {os.getpid()}")
        return job

    @functools.wraps(finish)
    def finish_hooked(self, *, job_id: str, attempt: int, **kw):
        owned = finish(self, job_id=job_id, attempt=attempt, **kw)
        a = _attempt(job_id, attempt)
        if a is not None:
            a.owned = owned
        return owned

    @functools.wraps(call)
    def call_hooked(self, event):
        a = _attempt(self.job_id, self.attempt)
        if a is not None and event.stage == Stage.FIT and a.first_fit_step is None:
            a.first_fit_step = event.step
        return call(self, event)

    @functools.wraps(report)
    def report_hooked(self, stage, fraction, **kw):
        before = self.stage
        report(self, stage, fraction, **kw)
        a = _attempt(self.job_id, self.attempt)
        if a is None or self.stage == before:
            return
        seconds = a.linger.pop(f"{stage}@{self.attempt}", None) or a.linger.pop(str(stage), 0.0)
        end = time.monotonic() + seconds
        while time.monotonic() < end:  # stay in the stage just entered until canceled or done
            self.token.raise_if_cancelled()
            time.sleep(0.05)
        self.token.raise_if_cancelled()

    worker.run_job = run_job_hooked
    store_cls.claim_start, store_cls.finish = claim_start_hooked, finish_hooked
    reporter_cls.__call__, reporter_cls.report = call_hooked, report_hooked


class _PatchedLoader(importlib.abc.Loader):
    """Runs the module as its own loader would, then patches it."""

    def __init__(self, loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        _patch(module)

    def __getattr__(self, name: str):  # get_source and friends, for tracebacks and inspect
        return getattr(self._loader, name)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds ``service.jobs.worker`` as usual and hands it a patching loader."""

    _busy = False

    def find_spec(self, name, path, target=None):
        if name != TARGET or self._busy:
            return None
        self._busy = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._busy = False
        if spec is not None and spec.loader is not None:
            spec.loader = _PatchedLoader(spec.loader)
        return spec


def install() -> None:
    """Patch the worker module when this process imports it (now, if it already has)."""
    if TARGET in sys.modules:
        _patch(sys.modules[TARGET])
    elif not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
