"""Write-behind for rows too frequent to write one by one: what every manifest pull records.

Why: every manifest ``GET`` wrote its audit row in its own transaction, and on SQLite every
write takes the database's one write lock, so pulls queued behind each other (and behind
pushes) for a row nobody reads at once. Such rows are instead kept in memory and written in
batches, one transaction per batch, by a flusher task that exists only while rows wait.
Two users today, one mechanism: the pull audit rows (:class:`moorage.auth.audit.AuditLog`;
pushes, deletes and logins stay synchronous) and the artifacts' last pull times
(:class:`moorage.registry.pull_times.PullTimes`, which *coalesces*: many pulls of one
manifest within a batch are one row, the latest).

What a caller can rely on:

* **Bounded.** At most ``max_pending`` rows are unwritten at any time (waiting plus being
  written). A caller that would exceed that waits for the flusher (backpressure): memory stays
  bounded and no row is dropped for lack of room.
* **Prompt.** Rows are written within ``interval`` seconds of the first one queued, or at once
  when half of ``max_pending`` wait.
* **Read your writes.** :meth:`WriteBehind.flush` returns once every row queued before the call
  is committed (the audit-log query flushes first, so a node shows its own pulls at once).
* **Shutdown.** :meth:`WriteBehind.aclose` (the application's shutdown: SIGTERM, Ctrl-C) writes
  everything still waiting; rows queued after it are written at once, one by one.
* **kill -9 / power loss** loses the rows not yet committed: at most ``max_pending`` (one
  batch), and at most the last ``interval`` seconds of pulls of that process.
* A batch whose write fails is logged with its size and dropped, as a failed synchronous audit
  write is: auditing never fails the pull it records.
* **Coalescing** (``key``): a row whose key equals a waiting row's replaces it (keeps its
  place), so a hot manifest pulled thousands of times a second is one row per batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

import structlog

__all__ = ["DEFAULT_INTERVAL", "DEFAULT_MAX_PENDING", "BatchWriter", "WriteBehind"]

log = structlog.get_logger("moorage.write_behind")

#: Seconds a queued row may wait before its batch is written.
DEFAULT_INTERVAL = 1.0
#: Rows that may be unwritten at once: the most a kill -9 can lose.
DEFAULT_MAX_PENDING = 500

#: Writes one batch of rows in one transaction; raises on failure.
BatchWriter = Callable[[list[dict[str, Any]]], Awaitable[None]]
#: The identity of a row for coalescing: rows with equal keys are one row (the last one queued).
RowKey = Callable[[dict[str, Any]], Hashable]


class WriteBehind:
    """A bounded in-memory queue of rows, written in batches by an on-demand flusher task."""

    def __init__(
        self, write: BatchWriter, *, interval: float = DEFAULT_INTERVAL, max_pending: int = DEFAULT_MAX_PENDING,
        name: str = "audit", key: RowKey | None = None,
    ) -> None:
        if interval <= 0 or max_pending < 2:
            raise ValueError("write-behind needs interval > 0 and max_pending >= 2")
        self._write = write
        self.interval = interval
        self.max_pending = max_pending
        #: What the rows are: a failed batch logs ``<name>_write_failed`` (``audit``, ``pull_time``).
        self.name = name
        self._key = key
        #: Waiting rows in the order queued; with ``key``, one per key (dicts keep insertion order).
        self._pending: list[dict[str, Any]] = []
        self._keyed: dict[Hashable, dict[str, Any]] = {}
        self._in_flight = 0
        self._space = asyncio.Condition()
        self._wake = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def _waiting(self) -> int:
        return len(self._keyed) if self._key is not None else len(self._pending)

    @property
    def unwritten(self) -> int:
        """Rows queued or being written, not yet committed (what a kill -9 now would lose)."""
        return self._waiting + self._in_flight

    async def add(self, row: dict[str, Any]) -> None:
        """Queue ``row``; waits only while ``max_pending`` rows are already unwritten.

        With ``key``, a row that replaces a waiting one never waits (it takes no new room).
        """
        if self._closed:
            await self._write_logged([row])
            return
        # With room, the row goes in without the condition's lock: nothing awaits between the check
        # and the insert, and taking the lock was most of what queueing a pull cost.
        if self._key is not None:
            key = self._key(row)
            if key in self._keyed:
                self._keyed[key] = row
                return
            if self.unwritten >= self.max_pending:
                async with self._space:
                    await self._space.wait_for(lambda: self.unwritten < self.max_pending)
            self._keyed[key] = row
        else:
            if self.unwritten >= self.max_pending:
                async with self._space:
                    await self._space.wait_for(lambda: self.unwritten < self.max_pending)
            self._pending.append(row)
        if self._waiting * 2 >= self.max_pending:
            self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="audit-write-behind")

    async def flush(self) -> None:
        """Write every row queued so far; returns when they are committed (or their write failed)."""
        await self._flush_once()

    async def aclose(self) -> None:
        """Write what waits and stop the flusher; later rows are written synchronously."""
        self._closed = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            await task
        await self._flush_once()

    async def _run(self) -> None:
        """Flush every ``interval`` (or when woken) while rows wait; end when none do."""
        while self._waiting:
            try:
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            await self._flush_once()

    async def _flush_once(self) -> None:
        # One writer at a time: a flush() that comes while the flusher writes waits for that batch
        # too, so "every row queued before the call" holds.
        async with self._write_lock:
            if self._key is not None:
                batch, self._keyed = list(self._keyed.values()), {}
            else:
                batch, self._pending = self._pending, []
            if not batch:
                return
            self._in_flight = len(batch)
            try:
                await self._write_logged(batch)
            finally:
                self._in_flight = 0
                async with self._space:
                    self._space.notify_all()

    async def _write_logged(self, batch: list[dict[str, Any]]) -> None:
        try:
            await self._write(batch)
        except Exception as exc:  # noqa: BLE001 - recording a pull must never fail the pull
            log.error(f"{self.name}_write_failed", operation="pull", rows=len(batch), error=str(exc))
