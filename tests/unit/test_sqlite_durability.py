"""SQLite syncs its log at every commit unless told otherwise: an acknowledged push must survive a power loss.

WAL mode with ``synchronous=NORMAL`` keeps committed transactions through a process crash but
not through a power loss or kernel crash, so a 201 could name a link row that is gone after the
reboot. ``database.sqlite_synchronous`` (default ``full``) decides; every connection the
application opens (inline reads, inline writes, the async engine) gets the same setting.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from moorage.config import load_settings
from moorage.db.session import Database

FULL, NORMAL = 2, 1  # what PRAGMA synchronous answers


async def _levels(db: Database) -> set[int]:
    async with db.write() as conn:
        written = int((await conn.execute(text("PRAGMA synchronous"))).scalar_one())
    async with db.read() as conn:
        read = int((await conn.execute(text("PRAGMA synchronous"))).scalar_one())
    async with db.engine.connect() as conn:
        pooled = int((await conn.execute(text("PRAGMA synchronous"))).scalar_one())
    return {written, read, pooled}


@pytest.mark.parametrize(("setting", "expected"), [(None, FULL), ("full", FULL), ("normal", NORMAL)])
async def test_every_sqlite_connection_uses_the_configured_sync_level(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str | None, expected: int
) -> None:
    monkeypatch.setenv("MOORAGE_DATA_DIR", str(tmp_path))
    if setting is not None:
        monkeypatch.setenv("MOORAGE_DATABASE__SQLITE_SYNCHRONOUS", setting)
    settings = load_settings(None)
    db = Database(settings.database_url, sqlite_synchronous=settings.database.sqlite_synchronous)
    try:
        assert await _levels(db) == {expected}
    finally:
        await db.dispose()


def test_an_unknown_level_is_refused_naming_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOORAGE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MOORAGE_DATABASE__SQLITE_SYNCHRONOUS", "off")
    with pytest.raises(Exception, match="sqlite_synchronous"):
        load_settings(None)
