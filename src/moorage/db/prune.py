"""Deleting many old rows without holding a write lock for long."""

from __future__ import annotations

from sqlalchemy import ColumnElement, Table, delete, select

from moorage.db.session import Database

__all__ = ["BATCH", "prune_rows"]

#: Rows deleted per transaction: a first prune of a large table never holds SQLite's write lock
#: (or PostgreSQL's row locks) for more than a few milliseconds at a time.
BATCH = 500


async def prune_rows(db: Database, table: Table, *where: ColumnElement[bool]) -> int:
    """Delete ``table``'s rows matching ``where``, :data:`BATCH` ids per transaction; how many went."""
    key = table.c.id
    total = 0
    while True:
        async with db.write() as conn:
            ids = [row.id for row in await conn.execute(select(key).where(*where).order_by(key).limit(BATCH))]
            if ids:
                await conn.execute(delete(table).where(key.in_(ids)))
        total += len(ids)
        if len(ids) < BATCH:
            return total
