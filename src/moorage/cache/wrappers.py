"""Cached views of the manifest store and blob service (cross-cutting concerns are wrappers).

They subclass the services only to keep their types (the API layer asks for a
``ManifestStore`` and a ``BlobService``); each overridden method calls the original and adds
caching around it, nothing else. What is cached, per repository:

* ``m:<reference>`` → a manifest read (by tag or by digest), up to ``MAX_CACHED_MANIFEST`` bytes;
* ``b:<digest>``    → the size of a blob linked into the repository.

Absence is never cached, so pushing (a new link, a new manifest) needs no invalidation for
correctness; anything that removes or moves (manifest or tag delete, tag overwrite, blob
unlink) invalidates the repository after its commit. The invalidation is shielded from
cancellation: a client hanging up after the commit must not skip it.
"""

from __future__ import annotations

import asyncio
import json

from moorage.cache.store import RegistryCache
from moorage.registry.blobs import BlobService
from moorage.registry.digests import Digest
from moorage.registry.manifest_store import ManifestStore, StoredManifest
from moorage.registry.manifests import ParsedManifest

__all__ = ["MAX_CACHED_MANIFEST", "CachedBlobService", "CachedManifestStore"]

#: Larger manifests are read from the database each time (keeps Redis memory predictable).
MAX_CACHED_MANIFEST = 256 * 1024


def _encode(manifest: StoredManifest) -> bytes:
    header = {"d": manifest.digest, "t": manifest.media_type, "s": manifest.size, "j": manifest.subject}
    return json.dumps(header).encode() + b"\n" + manifest.payload


def _decode(raw: bytes) -> StoredManifest:
    header, _, payload = raw.partition(b"\n")
    fields = json.loads(header)
    return StoredManifest(fields["d"], fields["t"], int(fields["s"]), payload, fields["j"])


class CachedManifestStore(ManifestStore):
    """``ManifestStore`` whose reads go through the repository's cache entries."""

    def __init__(self, inner: ManifestStore, cache: RegistryCache) -> None:
        super().__init__(inner.db, inner.storage, max_bytes=inner.max_bytes, delete_enabled=inner.delete_enabled)
        self.cache = cache

    async def get(self, repository: str, reference: Digest | str) -> StoredManifest:
        field = f"m:{reference}"
        hit, token = await self.cache.lookup(repository, field)
        if hit is not None:
            return _decode(hit)
        manifest = await super().get(repository, reference)
        if token is not None and manifest.size <= MAX_CACHED_MANIFEST:
            await self.cache.fill(repository, field, _encode(manifest), token)
        return manifest

    async def put(
        self,
        repository: str,
        reference: Digest | str,
        payload: bytes,
        content_type: str | None,
        *,
        store_payload: bool = True,
    ) -> tuple[Digest, ParsedManifest]:
        result = await super().put(repository, reference, payload, content_type, store_payload=store_payload)
        if isinstance(reference, str):  # a tag may have moved to another manifest
            await asyncio.shield(self.cache.invalidate(repository))
        return result

    async def delete(self, repository: str, reference: Digest | str) -> None:
        await super().delete(repository, reference)
        await asyncio.shield(self.cache.invalidate(repository))

    async def tag(self, repository: str, tag: str, digest: Digest) -> None:
        await super().tag(repository, tag, digest)  # the tag may have pointed elsewhere
        await asyncio.shield(self.cache.invalidate(repository))


class CachedBlobService(BlobService):
    """``BlobService`` whose size (existence) checks go through the repository's cache entries."""

    def __init__(self, inner: BlobService, cache: RegistryCache) -> None:
        super().__init__(
            inner.db, inner.storage, delete_enabled=inner.delete_enabled, redirect_expiry=inner.redirect_expiry
        )
        self.cache = cache

    async def size(self, repository: str, digest: Digest) -> int:
        field = f"b:{digest}"
        hit, token = await self.cache.lookup(repository, field)
        if hit is not None:
            return int(hit)
        size = await super().size(repository, digest)
        if token is not None:
            await self.cache.fill(repository, field, str(size).encode(), token)
        return size

    async def unlink(self, repository: str, digest: Digest) -> None:
        await super().unlink(repository, digest)
        await asyncio.shield(self.cache.invalidate(repository))
