"""SQLite writers of one process queue for the write lock instead of each holding a pooled connection.

64 concurrent upload POSTs on ``moorage serve --workers 2`` (benchmarks/memory.py) had one worker
wait for the other's write lock with more coroutines than the pool's 15 connections, each spinning
on ``BEGIN IMMEDIATE`` with a connection checked out: the next checkout blocked the event loop for
the pool's 30 s timeout, then failed. Here another connection holds the lock (as the other worker
would) while 40 writers wait; nothing measures time.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from sqlalchemy import text

from moorage.db.session import Database


async def test_writers_waiting_for_another_process_lock_hold_one_connection(tmp_path: Path) -> None:
    path = tmp_path / "writers.db"
    db = Database(f"sqlite:///{path}")
    try:
        async with db.write() as conn:
            await conn.execute(text("CREATE TABLE t (n INTEGER)"))
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")

        async def writer(n: int) -> None:
            async with db.write() as conn:
                await conn.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})

        tasks = [asyncio.create_task(writer(n)) for n in range(40)]
        for _ in range(5):
            await asyncio.sleep(0)  # every writer has run up to its wait
        assert not any(task.done() for task in tasks)
        assert db._inline_writer is not None
        assert db._inline_writer.pool.checkedout() == 1
        other.execute("COMMIT")
        other.close()
        await asyncio.gather(*tasks)
        async with db.read() as reader:
            assert (await reader.execute(text("SELECT count(*) FROM t"))).scalar_one() == 40
    finally:
        await db.dispose()
