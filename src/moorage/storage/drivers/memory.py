"""An in-process driver for tests and throwaway registries. Nothing survives a restart."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from moorage.net.tls import TrustStore
from moorage.storage.driver import CheckResult, FileInfo, InvalidOffsetError, PathNotFoundError, WriteState

__all__ = ["MemoryDriver"]

_CHUNK = 1 << 20


class MemoryDriver:
    """Keeps objects in a dict. Unfinished writes live in a second dict keyed by path."""

    name = "inmemory"

    class Settings(BaseModel):
        """``storage.inmemory`` takes no options."""

        model_config = ConfigDict(extra="forbid")

    def __init__(self) -> None:
        self._objects: dict[str, tuple[bytes, datetime]] = {}
        self._pending: dict[str, bytearray] = {}

    @classmethod
    def from_config(cls, settings: Settings, data_dir: Path, trust: TrustStore) -> MemoryDriver:
        return cls()

    def _prefix_exists(self, path: str) -> bool:
        prefix = path + "/"
        return any(key.startswith(prefix) for key in self._objects) or any(
            key.startswith(prefix) for key in self._pending
        )

    async def stat(self, path: str) -> FileInfo:
        if path in self._objects:
            data, modified = self._objects[path]
            return FileInfo(path, len(data), modified)
        if self._prefix_exists(path):
            return FileInfo(path, 0, None, is_dir=True)
        raise PathNotFoundError(f"no object at {path!r}", path=path, driver=self.name)

    async def read(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        if path not in self._objects:
            raise PathNotFoundError(f"no object at {path!r}", path=path, driver=self.name)
        data = self._objects[path][0]
        if offset > len(data):
            raise InvalidOffsetError(f"offset {offset} beyond size {len(data)}", path=path)
        end = len(data) if length is None else min(len(data), offset + length)
        for start in range(offset, end, _CHUNK):
            yield data[start : min(end, start + _CHUNK)]

    async def put(self, path: str, data: bytes) -> None:
        self._objects[path] = (bytes(data), datetime.now(UTC))

    async def append(self, path: str, state: WriteState | None, chunks: AsyncIterable[bytes]) -> WriteState:
        size = 0 if state is None else int(state["size"])
        buffer = self._pending.setdefault(path, bytearray())
        if len(buffer) < size:
            raise InvalidOffsetError(f"write state says {size} bytes but {len(buffer)} are stored", path=path)
        del buffer[size:]  # bytes of an attempt whose state was never persisted
        async for chunk in chunks:
            buffer += chunk
        return {"size": len(buffer)}

    async def commit(self, path: str, state: WriteState) -> None:
        size = int(state["size"])
        committed = self._objects.get(path)
        if path not in self._pending and committed is not None and len(committed[0]) == size:
            return  # committed before: a retried commit changes nothing
        buffer = self._pending.pop(path, bytearray())
        if len(buffer) < size:
            raise InvalidOffsetError(f"write state says {size} bytes but {len(buffer)} are stored", path=path)
        del buffer[size:]
        self._objects[path] = (bytes(buffer), datetime.now(UTC))

    async def move(self, source: str, destination: str) -> None:
        if source not in self._objects:
            raise PathNotFoundError(f"no object at {source!r}", path=source, driver=self.name)
        moved = self._objects.pop(source)
        kept = self._objects.get(destination)
        if kept is None or len(kept[0]) != len(moved[0]):
            self._objects[destination] = moved

    async def list(self, prefix: str) -> AsyncIterator[FileInfo]:
        start = prefix.rstrip("/") + "/" if prefix else ""
        for key, (data, modified) in list(self._objects.items()):
            if key.startswith(start):
                yield FileInfo(key, len(data), modified)

    async def delete(self, path: str) -> None:
        prefix = path + "/"
        doomed = [k for k in self._objects if k == path or k.startswith(prefix)]
        pending = [k for k in self._pending if k == path or k.startswith(prefix)]
        if not doomed and not pending:
            raise PathNotFoundError(f"no object at {path!r}", path=path, driver=self.name)
        for key in doomed:
            del self._objects[key]
        for key in pending:
            del self._pending[key]

    async def delete_many(self, paths: Sequence[str]) -> None:
        for path in paths:
            self._objects.pop(path, None)

    async def url_for(self, path: str, method: str, expires_in: int) -> str | None:
        return None

    async def self_check(self) -> builtins.list[CheckResult]:
        return [CheckResult("inmemory storage", True, "nothing survives a restart; for tests only")]
