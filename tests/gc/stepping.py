"""Deterministic interleavings of several "nodes" in one event loop, chosen by a seeded random schedule.

Each node's database and storage are the real ones behind a thin wrapper that stops the node
at a *gate* before every transaction and every storage operation done outside a transaction.
The :class:`Scheduler` lets exactly one node run at a time, from one gate to its next, and picks
which one with its ``random.Random`` (with random relative speeds per run): the same seed gives
the same interleaving, and no sleep or timing is involved.

Storage operations inside a transaction are not gated: a node never stops while it holds a
transaction (and its locks), so the node that runs can never wait for one that is stopped.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from moorage.db.session import Database, Reader
from moorage.storage import FileInfo, StorageDriver, WriteState
from moorage.storage.checked import CheckedDriver

__all__ = ["Scheduler", "SteppedDatabase", "SteppedDriver"]

_IN_TRANSACTION: contextvars.ContextVar[bool] = contextvars.ContextVar("in_transaction", default=False)


class Scheduler:
    """Runs coroutines ("actors") one step at a time in a seeded random order."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.steps = 0
        self._parked: dict[str, asyncio.Future[None]] = {}
        self._done: set[str] = set()
        self._changed = asyncio.Event()

    async def gate(self, actor: str) -> None:
        """Stop ``actor`` here until the scheduler picks it."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._parked[actor] = future
        self._changed.set()
        await future

    async def run(self, actors: dict[str, Coroutine[Any, Any, None]]) -> None:
        """Run every actor to its end; re-raises the first actor failure after all have stopped."""
        self._parked.clear()
        self._done.clear()

        async def wrapped(name: str, coro: Awaitable[None]) -> None:
            try:
                await coro
            finally:
                self._done.add(name)
                self._changed.set()

        # Random relative speeds per run (PCT-style): sometimes one node does many steps while
        # another is stopped between two of its own, which is where races hide.
        weights = {name: self.rng.choice((1, 1, 2, 5, 20)) for name in sorted(actors)}
        tasks = [asyncio.create_task(wrapped(name, coro), name=name) for name, coro in actors.items()]
        names = set(actors)
        try:
            while self._done != names:
                while any(name not in self._parked and name not in self._done for name in names):
                    self._changed.clear()
                    await self._changed.wait()
                if not self._parked:
                    continue
                parked = sorted(self._parked)
                chosen = self.rng.choices(parked, [weights[name] for name in parked])[0]
                self.steps += 1
                self._parked.pop(chosen).set_result(None)
                await asyncio.sleep(0)
        finally:
            for future in self._parked.values():
                future.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result


class SteppedDatabase(Database):
    """A real :class:`Database` whose transactions each start at a gate of ``actor``."""

    def __init__(self, url: str, scheduler: Scheduler, actor: str) -> None:
        super().__init__(url, pool_size=2)
        self.scheduler = scheduler
        self.actor = actor

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Reader]:
        await self.scheduler.gate(self.actor)
        token = _IN_TRANSACTION.set(True)
        try:
            async with super().read() as conn:
                yield conn
        finally:
            _IN_TRANSACTION.reset(token)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        await self.scheduler.gate(self.actor)
        token = _IN_TRANSACTION.set(True)
        try:
            async with super().write() as conn:
                yield conn
        finally:
            _IN_TRANSACTION.reset(token)


class SteppedDriver(CheckedDriver):
    """A real driver whose operations outside a transaction each start at a gate of ``actor``."""

    def __init__(self, inner: StorageDriver, scheduler: Scheduler, actor: str) -> None:
        super().__init__(inner)
        self.scheduler = scheduler
        self.actor = actor

    async def _gate(self) -> None:
        if not _IN_TRANSACTION.get():
            await self.scheduler.gate(self.actor)

    async def stat(self, path: str) -> FileInfo:
        await self._gate()
        return await super().stat(path)

    async def read(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        await self._gate()
        async for chunk in super().read(path, offset, length):
            yield chunk

    async def put(self, path: str, data: bytes) -> None:
        await self._gate()
        await super().put(path, data)

    async def append(self, path: str, state: WriteState | None, chunks: AsyncIterable[bytes]) -> WriteState:
        await self._gate()
        return await super().append(path, state, chunks)

    async def commit(self, path: str, state: WriteState) -> None:
        await self._gate()
        await super().commit(path, state)

    async def move(self, source: str, destination: str) -> None:
        await self._gate()
        await super().move(source, destination)

    async def delete(self, path: str) -> None:
        await self._gate()
        await super().delete(path)

    async def delete_many(self, paths: Sequence[str]) -> None:
        await self._gate()
        await super().delete_many(paths)
