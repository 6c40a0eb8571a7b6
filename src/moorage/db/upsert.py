"""Portable ``INSERT … ON CONFLICT`` for the two supported dialects (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["insert_ignore", "insert_ignore_many", "upsert"]


def _insert(conn: AsyncConnection, table: Table) -> Any:
    return (sqlite.insert if conn.dialect.name == "sqlite" else postgresql.insert)(table)


async def insert_ignore(
    conn: AsyncConnection, table: Table, values: dict[str, Any], conflict: Sequence[str]
) -> None:
    """Insert ``values`` unless a row with the same ``conflict`` columns exists."""
    await conn.execute(_insert(conn, table).values(**values).on_conflict_do_nothing(index_elements=list(conflict)))


async def insert_ignore_many(
    conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]], conflict: Sequence[str]
) -> None:
    """:func:`insert_ignore` of several rows in one statement (one round trip instead of one per row)."""
    if rows:
        statement = _insert(conn, table).on_conflict_do_nothing(index_elements=list(conflict))
        await conn.execute(statement, list(rows))


async def upsert(
    conn: AsyncConnection, table: Table, values: dict[str, Any], conflict: Sequence[str], update: Sequence[str]
) -> None:
    """Insert ``values``, or update the ``update`` columns of the row that has the same ``conflict`` columns."""
    statement = _insert(conn, table).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=list(conflict), set_={name: statement.excluded[name] for name in update}
    )
    await conn.execute(statement)
