"""``EverySiteDeletes``: the storage garbage collection uses in a multi-site deployment.

GC decides in the database, then deletes bytes (docs/gc.md). With several sites the bytes of a
collected blob are in every site that holds a copy, so its batch delete goes to every site's
storage; everything else (the orphan sweep's listing) stays this site's. A site that cannot be
reached fails the batch like any storage error: the rows stay ``deleting`` and the next run tries
again, so no copy is forgotten while its site is down.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterable, AsyncIterator, Sequence

from moorage.storage import CheckResult, FileInfo, StorageDriver, WriteState

__all__ = ["EverySiteDeletes"]


class EverySiteDeletes:
    """This site's ``local`` storage, except that :meth:`delete_many` also deletes in ``others``."""

    def __init__(self, local: StorageDriver, others: Sequence[StorageDriver]) -> None:
        self.local = local
        self.others = list(others)
        self.name = local.name

    async def stat(self, path: str) -> FileInfo:
        return await self.local.stat(path)

    def read(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        return self.local.read(path, offset, length)

    async def put(self, path: str, data: bytes) -> None:
        await self.local.put(path, data)

    async def append(self, path: str, state: WriteState | None, chunks: AsyncIterable[bytes]) -> WriteState:
        return await self.local.append(path, state, chunks)

    async def commit(self, path: str, state: WriteState) -> None:
        await self.local.commit(path, state)

    async def move(self, source: str, destination: str) -> None:
        await self.local.move(source, destination)

    def list(self, prefix: str) -> AsyncIterator[FileInfo]:
        return self.local.list(prefix)

    async def delete(self, path: str) -> None:
        await self.local.delete(path)

    async def delete_many(self, paths: Sequence[str]) -> None:
        """Delete ``paths`` here, then at every other site (a path missing anywhere is no error)."""
        await self.local.delete_many(paths)
        for other in self.others:
            await other.delete_many(paths)

    async def url_for(self, path: str, method: str, expires_in: int) -> str | None:
        return await self.local.url_for(path, method, expires_in)

    async def self_check(self) -> builtins.list[CheckResult]:
        return await self.local.self_check()
