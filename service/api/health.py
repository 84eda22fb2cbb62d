"""/healthz (the process is up) and /readyz (it can serve: database, storage, Ray)."""

from __future__ import annotations

import time

from fastapi import APIRouter

from service.api.deps import CtxDep
from service.api.schemas import Health
from service.problems import Problem, ProblemCode, responses

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness")
def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Health, summary="Readiness", responses=responses(503))
def readyz(ctx: CtxDep) -> Health:
    checks: dict[str, str] = {}
    failed = []
    for name, probe in (("database", ctx.store.ping), ("storage", ctx.artifacts.check)):
        try:
            probe()
            checks[name] = "ok"
        except Exception as e:  # noqa: BLE001 - any failure of a probe means "not ready"
            checks[name] = f"error: {type(e).__name__}"
            failed.append(name)
    d = ctx.dispatcher
    if d is None:
        checks["dispatcher"] = "external" if ctx.settings.dispatcher == "external" else "disabled"
    elif not d.alive or d.error or time.monotonic() - d.last_tick > 10 * ctx.settings.reconcile_interval_s + 5:
        checks["dispatcher"] = f"error: {d.error or 'not running'}"
        failed.append("dispatcher")
    else:
        checks["dispatcher"] = "ok"
    if failed:
        raise Problem(503, ProblemCode.NOT_READY, f"not ready: {', '.join(failed)}; checks: {checks}")
    return Health(status="ok", checks=checks)
