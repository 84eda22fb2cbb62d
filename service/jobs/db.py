"""Engines for the job store and the Alembic migrations applied at start-up.

SQLite (the embedded default) gets WAL journaling and a busy timeout so the API process and
the Ray workers can write concurrently, and write transactions that read first start with
``BEGIN IMMEDIATE`` so they queue for the lock instead of failing on upgrade. PostgreSQL can
be confined to one schema (created on first use), which also lets test runs not collide.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
IMMEDIATE = "surfrecon_immediate"
"""Execution option asking SQLite to take the write lock when the transaction begins."""


@dataclass(frozen=True)
class DatabaseConfig:
    """Enough to open the job store anywhere (picklable, sent to Ray workers)."""

    url: str
    schema: str | None = None

    @property
    def is_sqlite(self) -> bool:
        return make_url(self.url).get_backend_name() == "sqlite"


def create_db_engine(cfg: DatabaseConfig, *, pool_size: int = 10) -> Engine:
    """An engine for ``cfg`` with the per-backend settings described in the module docstring."""
    url = make_url(cfg.url)
    if cfg.is_sqlite:
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                               pool_size=pool_size, max_overflow=20)
        _sqlite_setup(engine)
    else:
        engine = create_engine(url, pool_size=pool_size, max_overflow=20, pool_pre_ping=True)
        if cfg.schema:
            _pin_schema(engine, cfg.schema)
    return engine


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own handling defers it).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(IMMEDIATE) else "BEGIN")


def _pin_schema(engine: Engine, schema: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        cur = dbapi_conn.cursor()
        cur.execute(f'SET search_path TO "{schema}"')
        cur.close()
        dbapi_conn.commit()


def migrate(engine: Engine, cfg: DatabaseConfig) -> None:
    """Apply all Alembic migrations (idempotent; serialised across replicas on PostgreSQL)."""
    from alembic import command
    from alembic.config import Config

    alembic_cfg = Config()
    alembic_cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(727274)"))
            if cfg.schema:
                conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{cfg.schema}"'))
                conn.execute(text(f'SET LOCAL search_path TO "{cfg.schema}"'))
        alembic_cfg.attributes["connection"] = conn
        command.upgrade(alembic_cfg, "head")
    log.info("job store migrated to head")


def drop_schema(cfg: DatabaseConfig) -> None:
    """Remove a PostgreSQL schema and everything in it (used by tests)."""
    if cfg.is_sqlite or not cfg.schema:
        raise ValueError(f"expected a PostgreSQL config with a schema, got {cfg!r}")
    engine = create_engine(cfg.url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{cfg.schema}" CASCADE'))
    finally:
        engine.dispose()
