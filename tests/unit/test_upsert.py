"""``insert_ignore``/``upsert`` build each statement shape once and reuse it, with the same results.

Building ``on_conflict_do_update`` anew on every call set up the ``excluded`` alias and a fresh
cache key each time, a visible share of a blob push's completion (docs/architecture.md
"Performance choices"). Values that are SQL expressions still work (inlined, not cached).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, func, select

from moorage.db import upsert as upsert_module
from moorage.db.session import Database
from moorage.db.upsert import insert_ignore, upsert

_metadata = MetaData()
_items = Table(
    "upsert_items",
    _metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(50), nullable=False, unique=True),
    Column("count", Integer, nullable=False),
    Column("at", DateTime(timezone=True)),
)


async def test_statements_are_reused_and_behave_as_built_each_time(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'upsert.db'}")
    try:
        async with db.write() as conn:
            await conn.run_sync(_metadata.create_all)
        stamp = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        for count in (1, 2, 3):
            async with db.write() as conn:
                await upsert(conn, _items, {"name": "a", "count": count, "at": stamp}, ["name"], ["count"])
                await insert_ignore(conn, _items, {"name": "b", "count": count, "at": None}, ["name"])
        shapes = len(upsert_module._BUILT)
        async with db.write() as conn:
            await upsert(conn, _items, {"name": "a", "count": 4, "at": stamp}, ["name"], ["count"])
            await insert_ignore(conn, _items, {"name": "b", "count": 9, "at": None}, ["name"])
            # An SQL expression as a value: inlined, not cached, still right.
            await insert_ignore(conn, _items, {"name": func.lower("C"), "count": 7, "at": None}, ["name"])
        assert len(upsert_module._BUILT) == shapes
        async with db.read() as reader:
            rows = (await reader.execute(select(_items.c.name, _items.c.count, _items.c.at).order_by(_items.c.name))).all()
        assert [(row.name, row.count) for row in rows] == [("a", 4), ("b", 1), ("c", 7)]
        assert rows[0].at is not None and rows[0].at.replace(tzinfo=UTC) == stamp
    finally:
        await db.dispose()
