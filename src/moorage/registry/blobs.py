"""Reading, redirecting, mounting and unlinking blobs of a repository."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from moorage.db.session import Database
from moorage.db.tables import blobs, manifest_references, manifests, repository_blobs
from moorage.errors import RegistryError
from moorage.numbers import parse_decimal
from moorage.registry.digests import Digest
from moorage.registry.gc_fence import BlobNotActive
from moorage.registry.guard import WriteGuard
from moorage.registry.paths import blob_path
from moorage.registry.quota import owner_of, release
from moorage.registry.repositories import ensure_repository, find_repository, link_blob, linked_blob_size
from moorage.storage import LocalFiles, PathNotFoundError, StorageDriver

__all__ = ["BlobService", "ByteRange", "parse_range"]


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_range(header: str, size: int) -> ByteRange | None:
    """The one ``bytes=`` range of a ``Range`` header within a blob of ``size`` bytes (RFC 9110 §14).

    ``None`` means "send the whole blob": no header, or a range unit other than ``bytes``
    (RFC 9110 §14.2: a server MUST ignore a unit it does not understand). ``bytes=-N`` asks for
    the last ``N`` bytes: on a blob shorter than ``N`` that is the whole blob (§14.1.3), on the
    empty blob nothing can be sent as a 206 (its ``Content-Range`` cannot name a byte), so every
    range on an empty blob is refused. Positions are ASCII digits only (:func:`parse_decimal`).

    Raises ``RANGE_INVALID`` (416 with ``Content-Range: bytes */<size>``) when the range is
    malformed, unsatisfiable, or asks for several ranges (we send single-part responses only).
    """
    if not header:
        return None
    unit, equals, spec = header.partition("=")
    if unit.strip().lower() != "bytes":
        return None
    invalid = RegistryError(
        "RANGE_INVALID",
        f"Range {header[:100]!r} cannot be served for a blob of {size} bytes; send one 'bytes=START-END' "
        "range (ASCII digits) that starts inside the blob",
        {"size": size},
        headers={"Content-Range": f"bytes */{size}"},
    )
    first, dash, last = spec.strip().partition("-")
    if not equals or "," in spec or not dash or size <= 0:
        raise invalid
    try:
        if first == "":
            suffix = parse_decimal(last)
            if suffix == 0:
                raise invalid
            return ByteRange(max(0, size - suffix), size - 1)
        start = parse_decimal(first)
        end = parse_decimal(last) if last else size - 1
    except ValueError:
        raise invalid from None
    if start >= size or end < start:
        raise invalid
    return ByteRange(start, min(end, size - 1))


class BlobService:
    """Blob operations on the database (links) and storage (bytes)."""

    def __init__(
        self, db: Database, storage: StorageDriver, *, redirect_expiry: int, guard: WriteGuard | None = None
    ) -> None:
        self.db = db
        self.storage = storage
        self.redirect_expiry = redirect_expiry
        self.guard = guard or WriteGuard()
        #: Decided once: a runtime Protocol check costs microseconds, and the driver never changes.
        self._local: LocalFiles | None = storage if isinstance(storage, LocalFiles) else None

    async def size(self, repository: str, digest: Digest) -> int:
        """Size of a blob linked into ``repository``; ``BLOB_UNKNOWN`` otherwise."""
        async with self.db.read() as conn:
            size = await linked_blob_size(conn, repository, digest)
        if size is None:
            raise RegistryError(
                "BLOB_UNKNOWN",
                f"blob {digest} is not in repository {repository}; push it first or check the digest",
                {"digest": str(digest), "repository": repository},
            )
        return size

    async def redirect_url(self, digest: Digest, method: str) -> str | None:
        """A storage URL signed for ``method``, when the driver redirects."""
        return await self.storage.url_for(blob_path(digest), method, self.redirect_expiry)

    async def local_file(self, digest: Digest) -> BinaryIO | None:
        """The blob's bytes as an open local file (the caller closes it), when storage keeps files here.

        ``None`` when the driver has no local files (object stores): then :meth:`open` streams.
        The HTTP layer sends such a file with ``sendfile(2)``. Raises ``BLOB_UNKNOWN`` when the
        database knows the blob but storage lost its bytes, like :meth:`open`.
        """
        if self._local is None:
            return None
        try:
            return await self._local.open_local(blob_path(digest))
        except PathNotFoundError:
            raise _lost(digest) from None

    async def open(self, digest: Digest, byte_range: ByteRange | None, size: int) -> AsyncIterator[bytes]:
        """Stream the blob's bytes (or ``byte_range``), failing before the first byte if storage lost them."""
        offset = byte_range.start if byte_range else 0
        length = byte_range.length if byte_range else size
        stream = self.storage.read(blob_path(digest), offset, length)
        try:
            first = await anext(stream, b"")
        except PathNotFoundError:
            raise _lost(digest) from None
        return self._chain(first, stream)

    @staticmethod
    async def _chain(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        if first:
            yield first
        async for chunk in rest:
            yield chunk

    async def mount(self, repository: str, source: str, digest: Digest) -> int | None:
        """Link ``digest`` from ``source`` into ``repository``; its size, or ``None`` when not mountable."""
        self.guard.writable()
        async with self.db.write() as conn:
            size = await linked_blob_size(conn, source, digest)
            if size is None:
                return None
            repository_id = await ensure_repository(conn, repository, project_required=self.guard.projects_required)
            try:
                await link_blob(conn, repository_id, digest, size)
            except BlobNotActive:
                return None  # GC is deleting it: the client pushes the blob instead (docs/gc.md)
        return size

    async def unlink(self, repository: str, digest: Digest) -> None:
        """Remove the blob from the repository (bytes stay until garbage collection).

        Refused with ``DENIED`` (409) while a manifest of the repository references the blob (as
        a config or layer) or is that blob: unlinking it would leave a manifest that serves but
        cannot be pulled. The error names the manifests; delete them first. ``BLOB_UNKNOWN``
        when the blob is not in the repository, ``UNSUPPORTED`` when deletes are disabled.
        """
        self.guard.deletable()
        async with self.db.write() as conn:
            repository_id = await find_repository(conn, repository)
            blob_id = (await conn.execute(select(blobs.c.id).where(blobs.c.digest == str(digest)))).scalar()
            deleted = 0
            if repository_id is not None and blob_id is not None:
                # Delete first, then look for holders in the same transaction (a holder found rolls
                # the delete back): on PostgreSQL the deleted row stays locked until commit, so a
                # manifest push that re-reads the links it needs inside its own write transaction
                # (FOR SHARE) waits for this one and then sees the link gone.
                result = await conn.execute(
                    delete(repository_blobs).where(
                        repository_blobs.c.repository_id == repository_id, repository_blobs.c.blob_id == blob_id
                    )
                )
                deleted = result.rowcount
                if deleted:
                    holders = await _holders(conn, repository_id, digest)
                    if holders:
                        raise _held(repository, digest, holders)
                    project_id = await owner_of(conn, repository_id)
                    if project_id is not None:  # after the delete (moorage.registry.quota)
                        await release(conn, project_id, [blob_id])
        if not deleted:
            raise RegistryError(
                "BLOB_UNKNOWN", f"blob {digest} is not in repository {repository}", {"digest": str(digest)}
            )


def _lost(digest: Digest) -> RegistryError:
    return RegistryError(
        "BLOB_UNKNOWN",
        f"blob {digest} is recorded in the database but missing from storage; restore the storage "
        "backup or re-push the image (see docs/troubleshooting.md)",
        {"digest": str(digest)},
    )


#: At most this many holders are named in the error (a base layer may be in thousands of manifests).
_HOLDERS_NAMED = 10


async def _holders(conn: AsyncConnection, repository_id: int, digest: Digest) -> list[str]:
    """Digests of the repository's manifests that reference ``digest`` or are it, in order."""
    referencing = select(manifest_references.c.manifest_id).where(manifest_references.c.digest == str(digest))
    query = (
        select(manifests.c.digest)
        .where(
            manifests.c.repository_id == repository_id,
            or_(manifests.c.digest == str(digest), manifests.c.id.in_(referencing)),
        )
        .order_by(manifests.c.digest)
        .limit(_HOLDERS_NAMED + 1)
    )
    return list((await conn.execute(query)).scalars())


def _held(repository: str, digest: Digest, holders: list[str]) -> RegistryError:
    first = holders[0]
    what = "is manifest" if first == str(digest) else "is referenced by manifest"
    more = ""
    if len(holders) > _HOLDERS_NAMED:
        more = f" (and at least {_HOLDERS_NAMED} other manifests)"
    elif len(holders) > 1:
        more = f" (and {len(holders) - 1} other manifest(s))"
    return RegistryError(
        "DENIED",
        f"blob {digest} {what} {first}{more} in repository {repository}; delete the "
        f"manifest first (DELETE /v2/{repository}/manifests/{first}), then the blob (unreferenced blobs are also "
        "removed by garbage collection)",
        {"digest": str(digest), "manifests": holders[:_HOLDERS_NAMED]},
        status=409,
    )
