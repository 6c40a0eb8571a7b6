"""``Database.first``: one statement outside a transaction, with the rows ``Database.read`` would give.

It runs the manifest GET's lookup (SQLite: on a raw connection kept open with a statement compiled
once; PostgreSQL: a pool connection in autocommit), so what it must never do is what a kept
connection or a skipped type conversion would: serve a snapshot older than the last commit, leave
a transaction open, or hand back DBAPI values (strings for times) instead of Python ones.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import bindparam, column, delete, insert, select, table, update
from sqlalchemy.exc import SQLAlchemyError

from moorage.db.identity_tables import audit_log
from moorage.db.session import Database
from moorage.db.times import aware

_BY_ID = select(audit_log.c.username, audit_log.c.op_time, audit_log.c.detail).where(
    audit_log.c.id == bindparam("id")
)
_SINCE = select(audit_log.c.id, audit_log.c.op_time).where(
    audit_log.c.op_time > bindparam("since"), audit_log.c.username == bindparam("name")
)


async def _add(db: Database, name: str, at: datetime) -> int:
    async with db.write() as conn:
        inserted = await conn.execute(
            insert(audit_log).values(op_time=at, username=name, operation="pull", resource_type="artifact",
                                     resource="first/test:v1").returning(audit_log.c.id)
        )
        return int(inserted.scalar_one())


async def test_first_returns_what_read_returns_and_sees_every_commit_at_once(database_url: str) -> None:
    db = Database(database_url)
    try:
        at = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
        row_id = await _add(db, "first-reader", at)
        row = await db.first(_BY_ID, {"id": row_id})
        async with db.read() as conn:
            expected = (await conn.execute(_BY_ID, {"id": row_id})).first()
        assert expected is not None and row == tuple(expected)
        assert row is not None and isinstance(row[1], datetime) and aware(row[1]) == at  # processed, not a string
        # A bound datetime goes through the column type's bind processor too.
        since = await db.first(_SINCE, {"since": at - timedelta(seconds=1), "name": "first-reader"})
        assert since is not None and since[0] == row_id

        # The next call sees a commit made on another connection: no snapshot is held between calls.
        async with db.write() as conn:
            await conn.execute(update(audit_log).where(audit_log.c.id == row_id).values(detail="changed"))
        changed = await db.first(_BY_ID, {"id": row_id})
        assert changed is not None and changed[2] == "changed"
        async with db.write() as conn:
            await conn.execute(delete(audit_log).where(audit_log.c.id == row_id))
        assert await db.first(_BY_ID, {"id": row_id}) is None
    finally:
        await db.dispose()


async def test_first_leaves_no_transaction_open_for_writers(database_url: str) -> None:
    """On SQLite a reader left inside a transaction would pin the WAL and, once it had written, block
    every writer; here a write right after a read, on the same process, commits at once."""
    db = Database(database_url)
    try:
        row_id = await _add(db, "first-writer", datetime.now(UTC))
        for _ in range(3):
            assert await db.first(_BY_ID, {"id": row_id}) is not None
            async with db.write() as conn:
                await conn.execute(update(audit_log).where(audit_log.c.id == row_id).values(detail="w"))
        if db.sqlite:
            raw = db._first_conn.driver_connection
            assert raw.in_transaction is False
        async with db.write() as conn:
            await conn.execute(delete(audit_log).where(audit_log.c.id == row_id))
    finally:
        await db.dispose()


async def test_a_failing_statement_is_sqlalchemys_error_and_the_next_call_works(database_url: str) -> None:
    """The API answers a database failure 503 because it is a SQLAlchemy error; the raw SQLite path
    must raise one too, and not keep a connection that failed."""
    db = Database(database_url)
    try:
        missing = table("no_such_table", column("id"))
        broken = select(missing.c.id).where(missing.c.id == bindparam("id"))
        row_id = await _add(db, "first-error", datetime.now(UTC))
        with pytest.raises(SQLAlchemyError):
            await db.first(broken, {"id": row_id})
        assert await db.first(_BY_ID, {"id": row_id}) is not None
    finally:
        await db.dispose()


def test_first_works_from_one_event_loop_after_another(database_url: str) -> None:
    """asyncpg connections belong to the loop that opened them: a Database used by one ``asyncio.run``
    after another (each disposing it at its end, as the CLI does) opens a new pool in the next loop."""
    reader = Database(database_url)

    async def lookup(name: str) -> tuple[object, ...] | None:
        writer = Database(database_url)  # SQLAlchemy's own pool cannot change loops either
        try:
            row_id = await _add(writer, name, datetime.now(UTC))
            return await reader.first(_BY_ID, {"id": row_id})
        finally:
            await writer.dispose()
            await reader.dispose()

    for name in ("first-loop-1", "first-loop-2"):
        row = asyncio.run(lookup(name))
        assert row is not None and row[0] == name


async def test_the_urls_statement_cache_setting_reaches_firsts_own_pool(postgres_database: str) -> None:
    """PostgreSQL only: ``?prepared_statement_cache_size=0`` (PgBouncer in transaction mode) must hold
    for ``first``'s asyncpg pool as it does for SQLAlchemy's, or a lookup would prepare statements anyway."""
    db = Database(f"{postgres_database}?prepared_statement_cache_size=0")
    try:
        row_id = await _add(db, "first-no-cache", datetime.now(UTC))
        assert await db.first(_BY_ID, {"id": row_id}) is not None
        pool = await db._pool()
        async with pool.acquire() as conn:
            assert conn._stmt_cache.get_max_size() == 0
    finally:
        await db.dispose()
