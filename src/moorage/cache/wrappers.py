"""Cached views of the blob, manifest and repository services (cross-cutting concerns are wrappers).

Each wrapper takes any implementation of the service's Protocol
(:mod:`moorage.registry.interfaces`) and is one itself: every method forwards to the wrapped
service, and the ones that read or change cached data add caching around the call. Nothing is
rebuilt from the inner service's fields, so whatever else is in the chain stays in it. What is
cached, per repository:

* ``m:<reference>`` → a manifest read (by tag or by digest), up to ``MAX_CACHED_MANIFEST`` bytes;
* ``b:<digest>``    → the size of a blob linked into the repository.

Absence is never cached, so pushing (a new link, a new manifest) needs no invalidation for
correctness; anything that removes or moves (manifest or tag delete, tag overwrite, blob
unlink, repository or project delete) invalidates the repository after its commit. The
invalidation is shielded from cancellation: a client hanging up after the commit must not skip it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, BinaryIO

from sqlalchemy import ColumnElement

from moorage.cache.store import RegistryCache
from moorage.registry.blobs import ByteRange
from moorage.registry.digests import Digest
from moorage.registry.interfaces import Blobs, Manifests, Repositories
from moorage.registry.manifest_store import StoredManifest
from moorage.registry.manifests import ParsedManifest
from moorage.registry.repository_service import ArtifactInfo, RepositoryInfo

__all__ = ["MAX_CACHED_MANIFEST", "CachedBlobService", "CachedManifestStore", "CachedRepositories"]

#: Larger manifests are read from the database each time (keeps Redis memory predictable).
MAX_CACHED_MANIFEST = 256 * 1024


def _encode(manifest: StoredManifest) -> bytes:
    header = {"d": manifest.digest, "t": manifest.media_type, "s": manifest.size, "j": manifest.subject}
    return json.dumps(header).encode() + b"\n" + manifest.payload


def _decode(raw: bytes) -> StoredManifest:
    header, _, payload = raw.partition(b"\n")
    fields = json.loads(header)
    return StoredManifest(fields["d"], fields["t"], int(fields["s"]), payload, fields["j"])


class CachedManifestStore:
    """:class:`Manifests` whose reads go through the repository's cache entries."""

    def __init__(self, inner: Manifests, cache: RegistryCache) -> None:
        self.inner = inner
        self.cache = cache

    async def _invalidate(self, repository: str) -> None:
        await asyncio.shield(self.cache.invalidate(repository))

    async def read_payload(self, body: AsyncIterable[bytes], declared_length: int | None) -> bytes:
        return await self.inner.read_payload(body, declared_length)

    async def get(self, repository: str, reference: Digest | str) -> StoredManifest:
        field = f"m:{reference}"
        hit, token = await self.cache.lookup(repository, field)
        if hit is not None:
            return _decode(hit)
        manifest = await self.inner.get(repository, reference)
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
        result = await self.inner.put(repository, reference, payload, content_type, store_payload=store_payload)
        if isinstance(reference, str):  # a tag may have moved to another manifest
            await self._invalidate(repository)
        return result

    async def tag(self, repository: str, tag: str, digest: Digest, *, move: bool = True) -> None:
        await self.inner.tag(repository, tag, digest, move=move)  # the tag may have pointed elsewhere
        await self._invalidate(repository)

    async def delete(self, repository: str, reference: Digest | str) -> None:
        await self.inner.delete(repository, reference)
        await self._invalidate(repository)

    async def delete_tag(self, repository: str, tag: str, digest: Digest) -> None:
        await self.inner.delete_tag(repository, tag, digest)
        await self._invalidate(repository)

    async def tags(self, repository: str, limit: int, last: str | None) -> list[str]:
        return await self.inner.tags(repository, limit, last)

    async def catalog(self, limit: int, last: str | None, visible: ColumnElement[bool] | None = None) -> list[str]:
        return await self.inner.catalog(limit, last, visible)

    async def referrers(self, repository: str, subject: Digest, artifact_type: str | None) -> dict[str, Any]:
        return await self.inner.referrers(repository, subject, artifact_type)


class CachedBlobService:
    """:class:`Blobs` whose size (existence) checks go through the repository's cache entries."""

    def __init__(self, inner: Blobs, cache: RegistryCache) -> None:
        self.inner = inner
        self.cache = cache

    async def size(self, repository: str, digest: Digest) -> int:
        field = f"b:{digest}"
        hit, token = await self.cache.lookup(repository, field)
        if hit is not None:
            return int(hit)
        size = await self.inner.size(repository, digest)
        if token is not None:
            await self.cache.fill(repository, field, str(size).encode(), token)
        return size

    async def redirect_url(self, digest: Digest, method: str) -> str | None:
        return await self.inner.redirect_url(digest, method)

    async def open(self, digest: Digest, byte_range: ByteRange | None, size: int) -> AsyncIterator[bytes]:
        return await self.inner.open(digest, byte_range, size)

    async def local_file(self, digest: Digest) -> BinaryIO | None:
        return await self.inner.local_file(digest)

    async def mount(self, repository: str, source: str, digest: Digest) -> int | None:
        return await self.inner.mount(repository, source, digest)  # a new link: nothing cached is wrong

    async def unlink(self, repository: str, digest: Digest) -> None:
        await self.inner.unlink(repository, digest)
        await asyncio.shield(self.cache.invalidate(repository))


class CachedRepositories:
    """:class:`Repositories` that drop the cache entries of every repository they delete."""

    def __init__(self, inner: Repositories, cache: RegistryCache) -> None:
        self.inner = inner
        self.cache = cache

    async def of_project(
        self, project_id: int, offset: int, limit: int, *, contains: str | None = None, name: str | None = None
    ) -> tuple[list[RepositoryInfo], int]:
        return await self.inner.of_project(project_id, offset, limit, contains=contains, name=name)

    async def listing(
        self, offset: int, limit: int, *, contains: str | None = None, visible: ColumnElement[bool] | None = None
    ) -> tuple[list[RepositoryInfo], int]:
        return await self.inner.listing(offset, limit, contains=contains, visible=visible)

    async def count(self, project_id: int) -> int:
        return await self.inner.count(project_id)

    async def get(self, name: str) -> RepositoryInfo:
        return await self.inner.get(name)

    async def artifacts(
        self, name: str, offset: int, limit: int, digest: str | None = None, *, tag: str | None = None
    ) -> tuple[list[ArtifactInfo], int]:
        return await self.inner.artifacts(name, offset, limit, digest, tag=tag)

    async def delete(self, name: str) -> None:
        await self.inner.delete(name)
        await asyncio.shield(self.cache.invalidate(name))

    async def delete_project(self, project_id: int) -> list[str]:
        names = await self.inner.delete_project(project_id)
        for name in names:
            await asyncio.shield(self.cache.invalidate(name))
        return names
