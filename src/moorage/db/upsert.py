"""Portable ``INSERT … ON CONFLICT`` for the two supported dialects (SQLite and PostgreSQL).

The statements are built once per shape (dialect, table, columns, conflict and update columns)
with bind parameters, and reused: building ``on_conflict_do_update`` anew made SQLAlchemy set
up the ``excluded`` alias's column collection on every call, and every new statement object
recomputed its cache key. On a blob push's completion (a link upsert, two inserts) that was a
visible share of the request's CPU (py-spy, docs/architecture.md "Performance choices").
Values that are SQL expressions (not plain Python values) are inlined as before, uncached.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ClauseElement, Table, bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["insert_ignore", "insert_ignore_many", "upsert"]

#: (dialect, table, columns, conflict, update) → the statement with one bind parameter per column.
_BUILT: dict[tuple[str, Table, tuple[str, ...], tuple[str, ...], tuple[str, ...] | None], Any] = {}
#: Shapes are few (a dozen call sites); the bound only guards against a caller that varies them.
_MAX_BUILT = 256


def _insert(dialect: str, table: Table) -> Any:
    return (sqlite.insert if dialect == "sqlite" else postgresql.insert)(table)


def _statement(
    dialect: str, table: Table, values: dict[str, Any], conflict: Sequence[str], update: Sequence[str] | None
) -> tuple[Any, dict[str, Any] | None]:
    """The statement for these values, and the parameters to run it with (``None``: values are inline)."""
    if any(isinstance(value, ClauseElement) for value in values.values()):
        built = _build(dialect, table, values, conflict, update)
        return built, None
    key = (dialect, table, tuple(values), tuple(conflict), None if update is None else tuple(update))
    statement = _BUILT.get(key)
    if statement is None:
        statement = _build(dialect, table, {name: bindparam(f"v_{name}") for name in values}, conflict, update)
        if len(_BUILT) < _MAX_BUILT:
            _BUILT[key] = statement
    return statement, {f"v_{name}": value for name, value in values.items()}


def _build(
    dialect: str, table: Table, values: dict[str, Any], conflict: Sequence[str], update: Sequence[str] | None
) -> Any:
    statement = _insert(dialect, table).values(**values)
    if update is None:
        return statement.on_conflict_do_nothing(index_elements=list(conflict))
    return statement.on_conflict_do_update(
        index_elements=list(conflict), set_={name: statement.excluded[name] for name in update}
    )


async def insert_ignore(
    conn: AsyncConnection, table: Table, values: dict[str, Any], conflict: Sequence[str]
) -> None:
    """Insert ``values`` unless a row with the same ``conflict`` columns exists."""
    statement, parameters = _statement(conn.dialect.name, table, values, conflict, None)
    await conn.execute(statement, parameters)


async def insert_ignore_many(
    conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]], conflict: Sequence[str]
) -> None:
    """:func:`insert_ignore` of several rows in one statement (one round trip instead of one per row)."""
    if rows:
        statement = _insert(conn.dialect.name, table).on_conflict_do_nothing(index_elements=list(conflict))
        await conn.execute(statement, list(rows))


async def upsert(
    conn: AsyncConnection, table: Table, values: dict[str, Any], conflict: Sequence[str], update: Sequence[str]
) -> None:
    """Insert ``values``, or update the ``update`` columns of the row that has the same ``conflict`` columns."""
    statement, parameters = _statement(conn.dialect.name, table, values, conflict, update)
    await conn.execute(statement, parameters)
