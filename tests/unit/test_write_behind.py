"""The write-behind queue of pull audit rows: bounded, flushed on demand and on close, never failing a pull.

The writer here is a plain coroutine that keeps the batches it was given (the queue's contract
is about batches, whatever stores them); tests/integration/test_audit_pulls.py runs the real
audit table on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from moorage.db.write_behind import WriteBehind

#: Long enough that only a flush, a close or a half-full queue writes anything during a test.
NEVER = 3600.0


class Store:
    """Keeps written batches; ``gate`` (when set) holds every write until it opens."""

    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.gate: asyncio.Event | None = None
        self.fail_next = 0

    async def write(self, batch: list[dict[str, Any]]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("database is gone")
        self.batches.append(list(batch))

    @property
    def rows(self) -> list[int]:
        return [row["n"] for batch in self.batches for row in batch]


async def test_rows_wait_until_flush_then_are_written_in_one_batch() -> None:
    store = Store()
    queue = WriteBehind(store.write, interval=NEVER, max_pending=100)
    for n in range(5):
        await queue.add({"n": n})
    assert store.batches == [] and queue.unwritten == 5
    await queue.flush()
    assert store.batches == [[{"n": n} for n in range(5)]] and queue.unwritten == 0
    await queue.aclose()


async def test_close_writes_what_waits_and_later_rows_are_written_at_once() -> None:
    store = Store()
    queue = WriteBehind(store.write, interval=NEVER, max_pending=100)
    await queue.add({"n": 1})
    await queue.add({"n": 2})
    await queue.aclose()
    assert store.rows == [1, 2]
    await queue.add({"n": 3})  # after shutdown began: written synchronously
    assert store.rows == [1, 2, 3] and queue.unwritten == 0


async def test_half_full_queue_is_written_without_waiting_for_the_interval() -> None:
    store = Store()
    queue = WriteBehind(store.write, interval=NEVER, max_pending=4)
    await queue.add({"n": 1})
    await queue.add({"n": 2})  # half of max_pending: the flusher is woken
    await queue.flush()  # waits for the flusher's write if it already started
    assert store.rows == [1, 2]
    await queue.aclose()


async def test_at_most_max_pending_rows_are_unwritten_and_callers_wait_for_room() -> None:
    """What a kill -9 can lose is bounded: the sixth pull waits while five rows are unwritten."""
    store = Store()
    store.gate = asyncio.Event()
    queue = WriteBehind(store.write, interval=NEVER, max_pending=5)
    for n in range(5):
        await queue.add({"n": n})
    assert queue.unwritten == 5
    sixth = asyncio.ensure_future(queue.add({"n": 5}))
    for _ in range(20):  # let every ready task run: the sixth cannot get room while the gate is shut
        await asyncio.sleep(0)
    assert not sixth.done() and queue.unwritten == 5 and store.batches == []
    store.gate.set()
    await sixth
    await queue.aclose()
    assert sorted(store.rows) == [0, 1, 2, 3, 4, 5]


async def test_a_failed_batch_is_logged_and_dropped_and_the_next_one_is_written(
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = Store()
    store.fail_next = 1
    queue = WriteBehind(store.write, interval=NEVER, max_pending=100)
    await queue.add({"n": 1})
    await queue.flush()  # raises nothing: auditing never fails the pull
    await queue.add({"n": 2})
    await queue.aclose()
    assert store.rows == [2]
    assert "audit_write_failed" in capsys.readouterr().out


def test_bad_parameters_are_refused() -> None:
    async def write(batch: list[dict[str, Any]]) -> None:
        return None

    with pytest.raises(ValueError, match="max_pending >= 2"):
        WriteBehind(write, max_pending=1)
    with pytest.raises(ValueError, match="interval > 0"):
        WriteBehind(write, interval=0)


async def test_keyed_rows_coalesce_to_the_latest_and_take_no_new_room() -> None:
    """Pull times: many pulls of one manifest before a flush are one row, the last one queued."""
    store = Store()
    queue = WriteBehind(store.write, interval=NEVER, max_pending=4, key=lambda row: row["k"])
    for n in range(1000):  # would block on a full queue if each took room
        await queue.add({"k": n % 3, "n": n})
    assert queue.unwritten == 3
    await queue.flush()
    assert store.batches == [[{"k": 0, "n": 999}, {"k": 1, "n": 997}, {"k": 2, "n": 998}]]
    await queue.add({"k": 0, "n": 1000})  # a key already written is queued again
    await queue.aclose()
    assert store.rows[-1] == 1000
