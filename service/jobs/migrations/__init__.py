"""Alembic migrations of the job store (applied programmatically at start-up)."""
