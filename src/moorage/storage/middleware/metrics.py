"""A wrapper that times every driver call and counts its outcome (Distribution's metrics middleware).

Labels are the driver's name and the operation; the outcome is ``ok``, ``not_found`` (a
:class:`PathNotFoundError`, which is routine: a HEAD of a blob nobody pushed) or ``error``. A
read is timed to its first chunk (the backend's latency, not the client's download speed) and
its outcome counted when the stream ends. ``list`` is counted when the listing ends.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Sequence
from typing import BinaryIO, TypeVar

from moorage.metrics import STORAGE_OPERATIONS, STORAGE_SECONDS
from moorage.storage.driver import (
    CheckResult,
    FileInfo,
    LocalFiles,
    PathNotFoundError,
    StorageDriver,
    WriteState,
)

__all__ = ["InstrumentedDriver"]

T = TypeVar("T")


def _outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    return "not_found" if isinstance(exc, PathNotFoundError) else "error"


class InstrumentedDriver:
    """Delegates to ``inner``, recording ``moorage_storage_operation_duration_seconds`` and
    ``moorage_storage_operations_total``."""

    def __init__(self, inner: StorageDriver) -> None:
        self.inner = inner
        self.name = inner.name

    def _record(self, operation: str, started: float, exc: BaseException | None) -> None:
        STORAGE_SECONDS.labels(self.name, operation).observe(time.perf_counter() - started)
        STORAGE_OPERATIONS.labels(self.name, operation, _outcome(exc)).inc()

    async def _timed(self, operation: str, call: Awaitable[T]) -> T:
        started = time.perf_counter()
        try:
            result = await call
        except Exception as exc:
            self._record(operation, started, exc)
            raise
        self._record(operation, started, None)
        return result

    async def stat(self, path: str) -> FileInfo:
        return await self._timed("stat", self.inner.stat(path))

    async def read(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        started = time.perf_counter()
        first = True
        try:
            async for chunk in self.inner.read(path, offset, length):
                if first:
                    STORAGE_SECONDS.labels(self.name, "read").observe(time.perf_counter() - started)
                    first = False
                yield chunk
        except Exception as exc:
            if first:
                STORAGE_SECONDS.labels(self.name, "read").observe(time.perf_counter() - started)
            STORAGE_OPERATIONS.labels(self.name, "read", _outcome(exc)).inc()
            raise
        if first:
            STORAGE_SECONDS.labels(self.name, "read").observe(time.perf_counter() - started)
        STORAGE_OPERATIONS.labels(self.name, "read", "ok").inc()

    async def open_local(self, path: str) -> BinaryIO | None:
        """Counted as a ``read`` (timed to the open: what follows is the client's download)."""
        if not isinstance(self.inner, LocalFiles):
            return None
        return await self._timed("read", self.inner.open_local(path))

    async def put(self, path: str, data: bytes) -> None:
        await self._timed("put", self.inner.put(path, data))

    async def append(self, path: str, state: WriteState | None, chunks: AsyncIterable[bytes]) -> WriteState:
        return await self._timed("append", self.inner.append(path, state, chunks))

    async def commit(self, path: str, state: WriteState) -> None:
        await self._timed("commit", self.inner.commit(path, state))

    async def move(self, source: str, destination: str) -> None:
        await self._timed("move", self.inner.move(source, destination))

    async def list(self, prefix: str) -> AsyncIterator[FileInfo]:
        started = time.perf_counter()
        try:
            async for info in self.inner.list(prefix):
                yield info
        except Exception as exc:
            self._record("list", started, exc)
            raise
        self._record("list", started, None)

    async def delete(self, path: str) -> None:
        await self._timed("delete", self.inner.delete(path))

    async def delete_many(self, paths: Sequence[str]) -> None:
        await self._timed("delete_many", self.inner.delete_many(paths))

    async def url_for(self, path: str, method: str, expires_in: int) -> str | None:
        return await self._timed("url_for", self.inner.url_for(path, method, expires_in))

    async def self_check(self) -> builtins.list[CheckResult]:
        return await self.inner.self_check()

    async def aclose(self) -> None:
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()
