"""``moorage db upgrade``: Alembic migrations that are safe when many nodes start at once.

One process takes a database-wide lock (PostgreSQL advisory lock; on SQLite an exclusive
file lock beside the database file), migrates, and releases it; the others wait on the
lock, then find nothing left to do.

On SQLite migrations run with foreign-key enforcement off, as Alembic's batch mode requires
(it rebuilds a table by copy, drop and rename, and the drop would otherwise cascade into every
referencing table), and ``PRAGMA foreign_key_check`` must come back empty before the commit.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection

from moorage.db.session import configure_sqlite, is_sqlite, sync_url

__all__ = ["current_heads", "downgrade", "pending", "upgrade"]

#: Arbitrary constant naming Moorage's migration lock among PostgreSQL advisory locks.
_ADVISORY_LOCK_ID = 0x6D6F6F72  # "moor"
_MIGRATIONS = Path(__file__).with_name("migrations")


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@contextmanager
def _locked(url: str) -> Iterator[Connection]:
    engine = create_engine(sync_url(url), poolclass=None)
    if is_sqlite(url):
        configure_sqlite(engine, foreign_keys=False)
        database = sync_url(url).database
        lock_path = Path(f"{database}.migrate.lock") if database else None
        if lock_path is not None:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path or "/dev/null", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with engine.connect() as conn:
                    yield conn
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
                engine.dispose()
        return
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _ADVISORY_LOCK_ID})
            conn.commit()
            try:
                yield conn
            finally:
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _ADVISORY_LOCK_ID})
                conn.commit()
    finally:
        engine.dispose()


def _check_foreign_keys(conn: Connection) -> None:
    """Refuse to commit a SQLite migration that left rows pointing at nothing (enforcement was off)."""
    if conn.dialect.name != "sqlite":
        return
    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        conn.rollback()
        raise RuntimeError(
            f"the migration left {len(broken)} row(s) with dangling foreign keys (first: {tuple(broken[0])}); "
            "nothing was committed: restore the backup and report this"
        )


def upgrade(url: str, revision: str = "heads") -> None:
    """Bring the database to ``revision`` (all heads by default) under the migration lock."""
    with _locked(url) as conn:
        command.upgrade(_config(conn), revision)
        _check_foreign_keys(conn)
        conn.commit()


def downgrade(url: str, revision: str) -> None:
    """Step the schema back to ``revision`` (``base`` drops everything) under the migration lock."""
    with _locked(url) as conn:
        command.downgrade(_config(conn), revision)
        _check_foreign_keys(conn)
        conn.commit()


def current_heads(url: str) -> set[str]:
    """Revisions the database is at."""
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            return set(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()


def pending(url: str) -> set[str]:
    """Head revisions of the code that the database does not have yet (empty when migrated)."""
    script = ScriptDirectory.from_config(_config(None))  # type: ignore[arg-type]
    return set(script.get_heads()) - current_heads(url)
