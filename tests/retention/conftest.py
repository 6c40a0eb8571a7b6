"""Retention tests get a database of their own per test (as GC's do), on SQLite and PostgreSQL:
a run lists every repository of a project, and the job runner claims any due job."""

from __future__ import annotations

from tests.gc.conftest import fresh_database_url, postgres_template, sqlite_template

__all__ = ["fresh_database_url", "postgres_template", "sqlite_template"]
