"""This registry as a replication side: reads and writes through the domain services.

Pushing into this registry goes through the same :class:`~moorage.registry.uploads.UploadService`
and :class:`~moorage.registry.interfaces.Manifests` as a ``/v2`` push, so digests are verified,
quotas, immutability and read-only mode hold, and GC's fence protects what is being copied.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from moorage.errors import RegistryError
from moorage.registry.blobs import ByteRange
from moorage.registry.digests import Digest, parse_digest
from moorage.registry.interfaces import Blobs, Manifests
from moorage.registry.uploads import UploadService
from moorage.replication.adapters import BlobSource, Manifest, PeerError

__all__ = ["LocalAdapter"]

_PAGE = 1000
_MISSING = frozenset({"MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN"})
_RETRYABLE = frozenset({"UNAVAILABLE", "TOOMANYREQUESTS"})


def _reference(reference: str) -> Digest | str:
    """A digest string as a :class:`Digest` (the services take a ``str`` as a tag); tags have no ':'."""
    return parse_digest(reference) if ":" in reference else reference


def _peer_error(error: RegistryError, what: str) -> PeerError:
    return PeerError(f"this registry refused {what}: {error.code}: {error.message}",
                     retryable=error.code in _RETRYABLE)


class LocalAdapter:
    """This registry, seen by the copier (:class:`~moorage.replication.adapters.RegistryAdapter`)."""

    label = "local"

    def __init__(self, *, blobs: Blobs, manifests: Manifests, uploads: UploadService) -> None:
        self._blobs = blobs
        self._manifests = manifests
        self._uploads = uploads

    async def repositories(self) -> AsyncIterator[str]:
        last: str | None = None
        while True:
            page = await self._manifests.catalog(_PAGE, last)
            for name in page:
                yield name
            if len(page) < _PAGE:
                return
            last = page[-1]

    async def tags(self, repository: str) -> list[str]:
        found: list[str] = []
        last: str | None = None
        while True:
            try:
                page = await self._manifests.tags(repository, _PAGE, last)
            except RegistryError as error:
                if error.code in _MISSING:
                    return found
                raise _peer_error(error, f"the tag list of {repository}") from None
            found.extend(page)
            if len(page) < _PAGE:
                return found
            last = page[-1]

    async def manifest(self, repository: str, reference: str) -> Manifest | None:
        try:
            stored = await self._manifests.get(repository, _reference(reference))
        except RegistryError as error:
            if error.code in _MISSING:
                return None
            raise _peer_error(error, f"manifest {repository}:{reference}") from None
        return Manifest(stored.digest, stored.media_type, stored.payload)

    async def manifest_digest(self, repository: str, reference: str) -> str | None:
        found = await self.manifest(repository, reference)
        return None if found is None else found.digest

    async def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> None:
        try:
            await self._manifests.put(repository, _reference(reference), manifest.payload, manifest.media_type)
        except RegistryError as error:
            raise _peer_error(error, f"manifest {repository}@{manifest.digest}") from None

    async def delete_tag(self, repository: str, tag: str) -> None:
        try:
            await self._manifests.delete(repository, _reference(tag))
        except RegistryError as error:
            if error.code not in _MISSING:
                raise _peer_error(error, f"deleting tag {repository}:{tag}") from None

    async def blob_size(self, repository: str, digest: str) -> int | None:
        try:
            return await self._blobs.size(repository, parse_digest(digest))
        except RegistryError as error:
            if error.code in _MISSING:
                return None
            raise _peer_error(error, f"blob {repository}@{digest}") from None

    async def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        try:
            return await self._blobs.mount(repository, source, parse_digest(digest)) is not None
        except RegistryError:
            return False  # not mountable (unknown there, or no right): the copier uploads instead

    async def read_blob(self, repository: str, digest: str, size: int, offset: int = 0) -> AsyncIterator[bytes]:
        byte_range = ByteRange(offset, size - 1) if offset else None
        try:
            async for chunk in await self._blobs.open(parse_digest(digest), byte_range, size):
                yield chunk
        except RegistryError as error:
            raise _peer_error(error, f"reading blob {digest}") from None

    async def write_blob(self, repository: str, digest: str, size: int, source: BlobSource) -> None:
        try:
            await self._uploads.monolithic(repository, parse_digest(digest), source(0), size)
        except RegistryError as error:
            raise _peer_error(error, f"blob {repository}@{digest}") from None

    async def referrers(self, repository: str, digest: str) -> list[str]:
        try:
            index = await self._manifests.referrers(repository, parse_digest(digest), None)
        except RegistryError as error:
            if error.code in _MISSING:
                return []
            raise _peer_error(error, f"the referrers of {repository}@{digest}") from None
        return [str(item["digest"]) for item in index.get("manifests", [])]
