"""``SiteBlobs``: a read at a site that lacks a blob's bytes is served from a site that has them.

A wrapper over :class:`moorage.registry.interfaces.Blobs` (like the cache wrappers). The database
is the same at every site, so a pull at site B of a blob pushed at site A finds its link and size
at once, while the bytes may still be on their way (the push's copy job). Then:

* ``redirect_url``: when this site holds the blob, this site's presigned URL; otherwise, with
  ``fallback: redirect``, the holding site's presigned URL, else ``None`` (the bytes are streamed).
* ``open``: this site's bytes; when they are missing, the first other site that can deliver them
  (recorded holders first) streams them through this node, and a copy to this site is queued
  (once per blob and site). When no site can deliver, ``UNAVAILABLE`` (503) names the sites'
  storage that failed, so the client retries and the operator knows what to bring back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import BinaryIO

import structlog

from moorage.errors import RegistryError
from moorage.registry.blobs import ByteRange
from moorage.registry.digests import Digest
from moorage.registry.interfaces import Blobs
from moorage.registry.paths import blob_path
from moorage.sites.model import Sites, SiteUnavailable
from moorage.storage import PathNotFoundError, StorageError

__all__ = ["SiteBlobs"]

log = structlog.get_logger("moorage.sites")


class SiteBlobs:
    """:class:`Blobs` that fall back to the other sites' storage for bytes this site lacks."""

    def __init__(self, inner: Blobs, sites: Sites, *, redirect_expiry: int) -> None:
        self.inner = inner
        self.sites = sites
        self.redirect_expiry = redirect_expiry

    async def size(self, repository: str, digest: Digest) -> int:
        return await self.inner.size(repository, digest)

    async def redirect_url(self, digest: Digest, method: str) -> str | None:
        url = await self.inner.redirect_url(digest, method)
        if url is None:
            return None  # this site streams: open() does the fallback
        blob_id, holders = await self.sites.holders(digest)
        if self.sites.local in holders:
            return url
        if self.sites.fallback == "redirect":
            for site in [s for s in self.sites.sources(holders) if s in holders]:
                try:
                    other = await self.sites.stores[site].storage.url_for(blob_path(digest), method, self.redirect_expiry)
                except StorageError:
                    continue
                if other is not None:
                    if blob_id is not None:
                        await self.sites.copy_here_later(blob_id)
                    return other
        return None  # stream it through this node (open), which also queues the copy here

    async def open(self, digest: Digest, byte_range: ByteRange | None, size: int) -> AsyncIterator[bytes]:
        try:
            return await self.inner.open(digest, byte_range, size)
        except RegistryError as exc:
            if exc.code != "BLOB_UNKNOWN":
                raise
        return await self._from_elsewhere(digest, byte_range, size)

    async def local_file(self, digest: Digest) -> BinaryIO | None:
        """This site's file; ``None`` when it lacks the bytes, so :meth:`open` reads another site's."""
        try:
            return await self.inner.local_file(digest)
        except RegistryError as exc:
            if exc.code != "BLOB_UNKNOWN":
                raise
        return None

    async def _from_elsewhere(self, digest: Digest, byte_range: ByteRange | None, size: int) -> AsyncIterator[bytes]:
        blob_id, holders = await self.sites.holders(digest)
        offset = byte_range.start if byte_range else 0
        length = byte_range.length if byte_range else size
        failures: list[str] = []
        down: list[str] = []
        for site in self.sites.sources(holders):
            store = self.sites.stores[site]
            stream = store.storage.read(blob_path(digest), offset, length)
            try:
                first = await anext(stream, b"")
            except PathNotFoundError:
                continue
            except StorageError as exc:
                log.warning("site_read_failed", site=site, digest=str(digest), error=str(exc))
                failures.append(f"{store.described}: {exc}")
                down.append(site)
                continue
            if blob_id is not None:
                await self.sites.copy_here_later(blob_id)
            log.info("site_fallback_read", digest=str(digest), source=site, site=self.sites.local)
            return _chain(first, stream)
        if failures:
            raise SiteUnavailable(
                "UNAVAILABLE",
                f"blob {digest} is not at site {self.sites.local!r} yet and cannot be read from "
                + "; ".join(failures)
                + ". Bring that storage back (see moorage check); the pull works again as soon as it answers",
                {"digest": str(digest), "site": self.sites.local, "unavailable_sites": down},
                status=503,
            )
        raise RegistryError(
            "BLOB_UNKNOWN",
            f"blob {digest} is recorded in the database but missing from the storage of every site "
            f"({', '.join(sorted(self.sites.stores))}); restore the storage backup or re-push the image",
            {"digest": str(digest)},
        )

    async def mount(self, repository: str, source: str, digest: Digest) -> int | None:
        return await self.inner.mount(repository, source, digest)

    async def unlink(self, repository: str, digest: Digest) -> None:
        await self.inner.unlink(repository, digest)


async def _chain(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first:
        yield first
    async for chunk in rest:
        yield chunk
