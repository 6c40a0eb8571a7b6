"""The storage-driver contract: a small async interface that stores bytes at paths.

Drivers know nothing about registries, digests or repositories. The registry decides
*which* paths exist (see :mod:`moorage.registry.paths`); a driver only keeps bytes there.

Resumable writes are the one subtle part. A blob upload arrives in chunks that may reach
different processes, so a driver never keeps an in-progress write in memory between calls:
:meth:`StorageDriver.append` takes the previous :data:`WriteState` and returns the next
one, a JSON-serialisable dict that the registry persists in the database next to the
upload session (the quay ``stream_upload_chunk`` pattern). Whatever node receives the
next chunk passes that state back in.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, Protocol, runtime_checkable

__all__ = [
    "CheckResult",
    "FileInfo",
    "InvalidOffsetError",
    "InvalidPathError",
    "LocalFiles",
    "PathNotFoundError",
    "StorageDriver",
    "StorageError",
    "StorageUnavailableError",
    "UnsupportedMethodError",
    "WriteState",
]

#: Opaque, JSON-serialisable progress of an unfinished write. Always contains ``"size"``
#: (bytes accepted so far); drivers add what they need (multipart upload id, parts, ...).
WriteState = dict[str, Any]


@dataclass(frozen=True, slots=True)
class FileInfo:
    """What :meth:`StorageDriver.stat` and :meth:`StorageDriver.list` report for a path."""

    path: str
    size: int
    modified: datetime | None = None
    is_dir: bool = False


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One finding of ``moorage check``: what was tested, whether it passed, what to do if not.

    Defined here, at the bottom of the import graph, because drivers produce them
    (:meth:`StorageDriver.self_check`) and storage never imports upward.
    """

    name: str
    ok: bool
    detail: str
    fix: str = ""


class StorageError(Exception):
    """Base of every error a driver raises. Vendor exceptions never escape a driver."""

    def __init__(self, message: str, *, path: str = "", driver: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.driver = driver


class PathNotFoundError(StorageError):
    """Nothing is stored at the path."""


class InvalidPathError(StorageError):
    """The path is not a valid storage path (see :func:`moorage.storage.checked.check_path`)."""


class InvalidOffsetError(StorageError):
    """A read or append started at an offset the stored object does not have."""


class UnsupportedMethodError(StorageError):
    """The driver cannot do this (e.g. :meth:`StorageDriver.url_for` without redirect support)."""


class StorageUnavailableError(StorageError):
    """The backend could not be reached or refused the credentials; the message says what to check."""


@runtime_checkable
class StorageDriver(Protocol):
    """Async byte store keyed by ``/``-separated relative paths such as ``blobs/sha256/ab/<hex>/data``.

    Every method raises only :class:`StorageError` subclasses.
    """

    name: str

    async def stat(self, path: str) -> FileInfo:
        """Size and modification time of the object at ``path``.

        A path that is only a prefix of stored objects reports ``is_dir=True`` and size 0.
        Raises :class:`PathNotFoundError` when nothing is stored at or below ``path``.
        """
        ...

    def read(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Stream ``length`` bytes (or to the end) of the object at ``path`` from ``offset``.

        Never loads the whole object in memory. Raises :class:`PathNotFoundError`, or
        :class:`InvalidOffsetError` when ``offset`` is beyond the end, on first iteration.
        """
        ...

    async def put(self, path: str, data: bytes) -> None:
        """Store small content (manifests, probes) atomically, replacing what was there."""
        ...

    async def append(
        self, path: str, state: WriteState | None, chunks: AsyncIterable[bytes]
    ) -> WriteState:
        """Append ``chunks`` to the unfinished write at ``path`` and return its new state.

        ``state`` is ``None`` for a new write, otherwise exactly what the previous call
        returned (possibly in another process). Bytes written by an earlier call whose
        returned state was never persisted are discarded, so a retried chunk is safe.
        The bytes are not readable at ``path`` until :meth:`commit`.
        """
        ...

    async def commit(self, path: str, state: WriteState) -> None:
        """Finish the write at ``path``: afterwards the object is durable and readable there.

        Idempotent: committing a state that was already committed changes nothing (a retry
        after a lost answer). Raises :class:`InvalidOffsetError` when fewer bytes are stored
        than the state says.
        """
        ...

    async def move(self, source: str, destination: str) -> None:
        """Atomically place the object at ``source`` at ``destination`` and remove ``source``.

        Used to publish a verified upload under its content-addressed key; readers see either
        nothing or the whole object at ``destination``. Raises :class:`PathNotFoundError`.

        Idempotent and safe under concurrency: when ``destination`` already holds an object of
        the same size the move keeps it and only removes ``source`` (callers move only to
        content-addressed keys, where the same size means the same bytes; a different size is a
        damaged object, which the move replaces). Two moves of the same bytes to one key at once
        both succeed and leave the whole object; neither may delete what the other wrote.
        """
        ...

    def list(self, prefix: str) -> AsyncIterator[FileInfo]:
        """Every stored object below ``prefix`` (recursively), in no guaranteed order.

        Must not depend on optional listing fields of the backend (e.g. S3 ``KeyCount``).
        An empty or missing prefix yields nothing.
        """
        ...

    async def delete(self, path: str) -> None:
        """Remove the object at ``path`` and everything below it, unfinished writes included.

        Raises :class:`PathNotFoundError` when nothing was there.
        """
        ...

    async def delete_many(self, paths: Sequence[str]) -> None:
        """Remove the objects at exactly ``paths``, in as few requests as the backend allows.

        Garbage collection deletes thousands of blobs a run; one request per key (and the
        listings :meth:`delete` needs to find what lies below a prefix) is what makes it slow
        on object stores. So this removes only the objects themselves, with the pieces the
        driver stores for them (Swift segments), not what lies below them as a prefix nor their
        unfinished writes; on stores with real folders, an object's folder goes too when it is
        left empty. A path with nothing stored is no error (a crashed run's work, or a
        concurrent delete). Every path is attempted; then any other failure raises one
        :class:`StorageError` that names how many paths failed and the first of them.
        """
        ...

    async def url_for(self, path: str, method: str, expires_in: int) -> str | None:
        """A URL a client may use directly with ``method`` (GET or HEAD) for ``expires_in`` seconds.

        The URL is signed for exactly that method. ``None`` means the driver cannot redirect
        and the registry must stream the bytes itself.
        """
        ...

    async def self_check(self) -> builtins.list[CheckResult]:
        """What ``moorage check`` should verify beyond reading and writing a probe key.

        Backend specifics only the driver knows (the S3 listing fields, the Swift storage URL as
        reachable from this node...). Never raises: a failure is a result with its fix.
        """
        ...


@runtime_checkable
class LocalFiles(Protocol):
    """An optional capability: a driver whose objects are files on this machine (the filesystem driver).

    Not part of :class:`StorageDriver`: object stores have no such files and keep redirecting or
    streaming. With it, the registry can hand an open file to the HTTP server, which sends its
    bytes with ``sendfile(2)`` (no copy through Python; see ``moorage.api.files``). The file is
    opened *before* the answer's headers go out, so a missing object is still a clean 404, and
    an object deleted while it is being sent (garbage collection) stays readable until closed.
    The wrappers (checking, metrics, redirect) pass it through.
    """

    async def open_local(self, path: str) -> BinaryIO | None:
        """The object at ``path`` as an open, unbuffered, read-only file (the caller closes it).

        ``None`` when this driver's objects are not local files (a wrapper around a driver
        without the capability). Raises :class:`PathNotFoundError` when nothing is stored there.
        """
        ...
