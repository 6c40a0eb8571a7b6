"""The checking layer every driver is wrapped in (Distribution's ``driver/base``).

It validates paths before any driver sees them and turns anything a driver lets slip
into a :class:`StorageError`, so a driver bug can never leak a vendor exception to the API.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import BinaryIO

from moorage.storage.driver import (
    CheckResult,
    FileInfo,
    InvalidOffsetError,
    InvalidPathError,
    LocalFiles,
    StorageDriver,
    StorageError,
    WriteState,
)

__all__ = ["CheckedDriver", "check_path"]

_PATH = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")


def check_path(path: str) -> str:
    """Return ``path`` if it is a relative ``/``-separated key without ``.``/``..`` parts.

    Raises :class:`InvalidPathError` otherwise.
    """
    if not _PATH.fullmatch(path) or any(part in (".", "..") for part in path.split("/")):
        raise InvalidPathError(f"invalid storage path {path!r}", path=path)
    return path


def check_prefix(prefix: str) -> str:
    """Like :func:`check_path`, but the empty prefix (the whole store) is allowed."""
    return prefix if prefix == "" else check_path(prefix.rstrip("/"))


class CheckedDriver:
    """Wraps a driver: validates paths and offsets, and normalises stray exceptions."""

    __slots__ = ("inner", "name")

    def __init__(self, inner: StorageDriver) -> None:
        self.inner = inner
        self.name = inner.name

    def _wrap(self, exc: Exception, path: str) -> StorageError:
        if isinstance(exc, StorageError):
            return exc
        return StorageError(f"{self.name} driver failed on {path!r}: {exc}", path=path, driver=self.name)

    async def stat(self, path: str) -> FileInfo:
        try:
            return await self.inner.stat(check_path(path))
        except Exception as exc:
            raise self._wrap(exc, path) from exc

    async def read(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        if offset < 0 or (length is not None and length < 0):
            raise InvalidOffsetError(f"invalid range offset={offset} length={length}", path=path)
        try:
            async for chunk in self.inner.read(check_path(path), offset, length):
                yield chunk
        except Exception as exc:
            raise self._wrap(exc, path) from exc

    async def open_local(self, path: str) -> BinaryIO | None:
        """The inner driver's :meth:`LocalFiles.open_local`, or ``None`` when it has no local files."""
        if not isinstance(self.inner, LocalFiles):
            return None
        try:
            return await self.inner.open_local(check_path(path))
        except Exception as exc:
            raise self._wrap(exc, path) from exc

    async def put(self, path: str, data: bytes) -> None:
        try:
            await self.inner.put(check_path(path), data)
        except Exception as exc:
            raise self._wrap(exc, path) from exc

    async def append(self, path: str, state: WriteState | None, chunks: AsyncIterable[bytes]) -> WriteState:
        try:
            new_state = await self.inner.append(check_path(path), state, chunks)
        except Exception as exc:
            raise self._wrap(exc, path) from exc
        if not isinstance(new_state.get("size"), int):
            raise StorageError(f"{self.name} driver returned a write state without size", path=path)
        return new_state

    async def commit(self, path: str, state: WriteState) -> None:
        try:
            await self.inner.commit(check_path(path), state)
        except Exception as exc:
            raise self._wrap(exc, path) from exc

    async def move(self, source: str, destination: str) -> None:
        try:
            await self.inner.move(check_path(source), check_path(destination))
        except Exception as exc:
            raise self._wrap(exc, source) from exc

    async def list(self, prefix: str) -> AsyncIterator[FileInfo]:
        try:
            async for info in self.inner.list(check_prefix(prefix)):
                yield info
        except Exception as exc:
            raise self._wrap(exc, prefix) from exc

    async def delete(self, path: str) -> None:
        try:
            await self.inner.delete(check_path(path))
        except Exception as exc:
            raise self._wrap(exc, path) from exc

    async def delete_many(self, paths: Sequence[str]) -> None:
        """Checks every path before the driver sees any: one bad path deletes nothing."""
        checked = [check_path(path) for path in paths]
        if not checked:
            return
        try:
            await self.inner.delete_many(checked)
        except Exception as exc:
            raise self._wrap(exc, checked[0]) from exc

    async def url_for(self, path: str, method: str, expires_in: int) -> str | None:
        if method not in ("GET", "HEAD"):
            raise InvalidPathError(f"url_for supports GET and HEAD, not {method}", path=path)
        try:
            return await self.inner.url_for(check_path(path), method, expires_in)
        except Exception as exc:
            raise self._wrap(exc, path) from exc

    async def self_check(self) -> builtins.list[CheckResult]:
        """The driver's own checks; a driver that raises is reported, never propagated."""
        try:
            return await self.inner.self_check()
        except Exception as exc:  # noqa: BLE001 - `moorage check` reports, it does not crash
            return [CheckResult(f"{self.name} self-check", False, f"{type(exc).__name__}: {exc}"[:400])]

    async def aclose(self) -> None:
        """Release the inner driver's connections, if it holds any."""
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()
