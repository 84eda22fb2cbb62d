"""The FastAPI app factory: ``create_app(settings)`` wires store, storage, Ray and routers.

Start-up applies the Alembic migrations, opens the artifact store, connects to Ray (starting
a local one when no address is set) and starts the dispatcher loop and the SSE event hub.
Nothing happens at import time.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI

from service.api import artifacts, batches, health, jobs, methods, uploads, web
from service.api import errors as domain_errors
from service.api.openapi_bodies import add_components
from service.context import ServiceContext
from service.jobs.db import DatabaseConfig
from service.jobs.events import EventHub
from service.jobs.store import JobStore
from service.problems import install as install_problems
from service.settings import Settings
from service.storage import ArtifactStore, StorageConfig

log = logging.getLogger(__name__)

DESCRIPTION = """Turns point clouds into meshes with quality metrics.

Submit a job (`POST /v1/jobs`, multipart with the file and a JSON spec), follow it
(`GET /v1/jobs/{id}/events`, Server-Sent Events) and download its artifacts. Errors are
`application/problem+json` with a stable `code`. When auth is enabled, send the API key as
`X-API-Key` or `Authorization: Bearer`; each key sees only its own jobs.
"""


def database_config(settings: Settings) -> DatabaseConfig:
    return DatabaseConfig(url=settings.database_url, schema=settings.database_schema)


def storage_config(settings: Settings) -> StorageConfig:
    return StorageConfig(url=settings.artifact_url, endpoint_url=settings.s3_endpoint_url)


def _open(settings: Settings) -> tuple[JobStore, ArtifactStore]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.scratch_dir.mkdir(parents=True, exist_ok=True)
    store = JobStore(database_config(settings), pool_size=20)
    store.migrate()
    return store, ArtifactStore(storage_config(settings))


def _start_dispatcher(settings: Settings, store: JobStore):
    from service.jobs.dispatcher import build_dispatcher

    dispatcher, owns_ray = build_dispatcher(settings, store)
    dispatcher.start()
    return dispatcher, owns_ray


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; ``settings`` default to ``Settings()`` (environment and ``.env``)."""
    settings = settings if settings is not None else Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        store, artifacts_store = await anyio.to_thread.run_sync(_open, settings)
        dispatcher, owns_ray = None, False
        if settings.dispatcher_enabled:
            dispatcher, owns_ray = await anyio.to_thread.run_sync(_start_dispatcher, settings, store)
        hub = EventHub(store, poll_s=settings.events_poll_s)
        hub.start()
        app.state.ctx = ServiceContext(settings=settings, store=store, artifacts=artifacts_store, hub=hub,
                                       validation_limiter=anyio.CapacityLimiter(2), dispatcher=dispatcher)
        if settings.ray_address and (store.cfg.is_sqlite or artifacts_store.cfg.is_local):
            log.warning("jobs run on the Ray cluster at %s, but the job store or the artifact store is local to "
                        "this machine: workers elsewhere cannot reach them (use PostgreSQL and s3://)",
                        settings.ray_address)
        log.info("surfrecon ready: data in %s, jobs in %s", settings.data_dir, store.engine.url.render_as_string())
        try:
            yield
        finally:
            await hub.stop()
            if dispatcher is not None:
                await anyio.to_thread.run_sync(dispatcher.stop)
            if owns_ray:
                import ray

                ray.shutdown()
            store.close()

    app = FastAPI(title="surfrecon", version="1.0.0", description=DESCRIPTION, lifespan=lifespan,
                  openapi_tags=[{"name": "jobs", "description": "Reconstruction jobs."},
                                {"name": "batches", "description": "Many jobs at once."},
                                {"name": "uploads", "description": "Input files, uploaded once."},
                                {"name": "artifacts", "description": "Meshes and metrics of finished jobs."},
                                {"name": "methods", "description": "The reconstruction methods."},
                                {"name": "health", "description": "Probes."}])
    install_problems(app)
    domain_errors.install(app)
    for module in (jobs, artifacts, batches, uploads, methods, health):
        app.include_router(module.router)
    web.install(app)

    default_openapi = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = add_components(default_openapi())
        return app.openapi_schema

    app.openapi = openapi
    return app
