"""Manifests of proxy projects: by digest from the cache, by tag re-validated upstream after a TTL.

A manifest fetched upstream is kept in ``proxy_manifests`` until every blob it references is
linked here; then it is *promoted*: stored through the ordinary :class:`Manifests` service (so it
appears in listings, the UI and GC's view like any pushed manifest) and the row goes. A tag's
upstream digest and when it was last checked live in ``proxy_tags``; within ``tag_ttl`` the
tag is answered locally, after it a ``HEAD`` upstream confirms it (or a new manifest is fetched
when the tag moved). When the upstream cannot answer (down, timeout, 5xx, 429, deleted endpoint)
a cached tag is served with a ``Warning`` and :data:`STALE_SERVED` counts it; an uncached one
fails with an error naming the upstream and what it answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import delete, select

from moorage.db.proxy_tables import proxy_manifests, proxy_tags
from moorage.db.session import Database
from moorage.db.times import aware
from moorage.db.upsert import insert_ignore, upsert
from moorage.errors import RegistryError
from moorage.proxy.bindings import ProxyTarget
from moorage.proxy.upstreams import STALE_SERVED, UPSTREAM_FETCHES, UpstreamPool, oci_error
from moorage.registry.digests import Digest, parse_digest
from moorage.registry.interfaces import Manifests
from moorage.registry.manifest_store import StoredManifest
from moorage.upstream import UpstreamError, UpstreamManifest

__all__ = ["ProxiedManifest", "ProxyManifests"]

log = structlog.get_logger("moorage.proxy")


@dataclass(frozen=True, slots=True)
class ProxiedManifest:
    manifest: StoredManifest
    #: A ``Warning`` header value when the answer is stale (the upstream could not confirm it).
    warning: str | None = None


def _stored(row: UpstreamManifest) -> StoredManifest:
    return StoredManifest(row.digest, row.media_type, row.size, row.payload, None)


class ProxyManifests:
    """Manifest reads of proxy projects over the cache tables, the upstream and the ordinary store."""

    def __init__(self, db: Database, manifests: Manifests, upstreams: UpstreamPool, *, tag_ttl: timedelta) -> None:
        self.db = db
        self.manifests = manifests
        self.upstreams = upstreams
        self.tag_ttl = tag_ttl

    async def get(self, target: ProxyTarget, reference: Digest | str) -> ProxiedManifest:
        if isinstance(reference, Digest):
            return ProxiedManifest(await self._by_digest(target, str(reference)))
        return await self._by_tag(target, reference)

    # -- by digest: immutable, never re-validated ------------------------------------------------
    async def _local(self, target: ProxyTarget, digest: str) -> StoredManifest | None:
        repository = target.repository
        try:
            return await self.manifests.get(repository, parse_digest(digest))
        except RegistryError as exc:
            if exc.code != "MANIFEST_UNKNOWN":
                raise
        async with self.db.read() as conn:
            row = (await conn.execute(select(proxy_manifests).where(
                proxy_manifests.c.repository == repository, proxy_manifests.c.digest == digest,
                proxy_manifests.c.fetched_at >= target.binding.bound_at))).first()
        if row is None:
            return None
        await self.promote(target)  # its blobs may have arrived since
        return StoredManifest(row.digest, row.media_type, len(row.payload), row.payload, None)

    async def _by_digest(self, target: ProxyTarget, digest: str) -> StoredManifest:
        local = await self._local(target, digest)
        if local is not None:
            return local
        fetched = await self._fetch(target, digest)
        return _stored(fetched)

    async def _fetch(self, target: ProxyTarget, reference: str) -> UpstreamManifest:
        """GET upstream, keep it in ``proxy_manifests``; errors become OCI errors naming the upstream."""
        what = f"manifest {target.upstream_repository}:{reference}"
        try:
            client = await self.upstreams.client(target)
            fetched = await client.manifest(target.upstream_repository, reference)
        except UpstreamError as exc:
            UPSTREAM_FETCHES.labels(target.binding.registry_name, "manifest_get", exc.kind).inc()
            raise oci_error(target, exc, what) from None
        UPSTREAM_FETCHES.labels(target.binding.registry_name, "manifest_get", "ok").inc()
        async with self.db.write() as conn:
            await insert_ignore(conn, proxy_manifests, {
                "repository": target.repository, "digest": fetched.digest, "media_type": fetched.media_type,
                "payload": fetched.payload, "fetched_at": datetime.now(UTC)}, ["repository", "digest"])
        await self.promote(target)
        return fetched

    # -- by tag: re-validated after the TTL ---------------------------------------------------------
    async def _by_tag(self, target: ProxyTarget, tag: str) -> ProxiedManifest:
        async with self.db.read() as conn:
            row = (await conn.execute(select(proxy_tags).where(
                proxy_tags.c.repository == target.repository, proxy_tags.c.tag == tag))).first()
        now = datetime.now(UTC)
        if row is not None and aware(row.checked_at) < target.binding.bound_at:
            row = None  # left by a deleted project of the same name
        cached = await self._local(target, row.digest) if row is not None else None
        if cached is not None and row is not None and aware(row.checked_at) + self.tag_ttl > now:
            return ProxiedManifest(cached)
        what = f"manifest {target.upstream_repository}:{tag}"
        try:
            client = await self.upstreams.client(target)
            head = await client.manifest(target.upstream_repository, tag, head=True)
        except RegistryError as exc:  # the endpoint was deleted
            if cached is None:
                raise
            return self._stale(target, cached, "endpoint_deleted", exc.message)
        except UpstreamError as exc:
            UPSTREAM_FETCHES.labels(target.binding.registry_name, "manifest_head", exc.kind).inc()
            if cached is not None and exc.upstream_down:
                return self._stale(target, cached, exc.kind, exc.message)
            raise oci_error(target, exc, what) from None
        UPSTREAM_FETCHES.labels(target.binding.registry_name, "manifest_head", "ok").inc()
        if cached is not None and head.digest == cached.digest:
            manifest = cached
        else:
            manifest = await self._local(target, head.digest) or _stored(
                await self._fetch(target, head.digest))
        async with self.db.write() as conn:
            await upsert(conn, proxy_tags, {"repository": target.repository, "tag": tag, "digest": manifest.digest,
                                            "checked_at": now}, ["repository", "tag"], ["digest", "checked_at"])
        await self._tag_promoted(target.repository, tag, manifest.digest)
        return ProxiedManifest(manifest)

    def _stale(self, target: ProxyTarget, cached: StoredManifest, reason: str, message: str) -> ProxiedManifest:
        STALE_SERVED.labels(target.binding.registry_name, reason).inc()
        log.warning("proxy_served_stale", repository=target.repository, endpoint=target.binding.registry_name,
                    reason=reason, upstream=message)
        text = message.replace('"', "'")[:300]
        return ProxiedManifest(cached, f'111 moorage "Revalidation Failed: upstream {target.binding.registry_name} '
                                       f'{reason}: {text}"')

    # -- promotion into the ordinary store -----------------------------------------------------------
    async def _tag_promoted(self, repository: str, tag: str, digest: str) -> None:
        """Point the ordinary tag at ``digest`` when that manifest is promoted already."""
        try:
            await self.manifests.tag(repository, tag, parse_digest(digest))
        except RegistryError as exc:
            if exc.code != "MANIFEST_UNKNOWN":
                log.warning("proxy_tag_failed", repository=repository, tag=tag, error=exc.message)

    async def promote(self, target: ProxyTarget) -> int:
        """Store every cached manifest of ``repository`` whose blobs (and children) are all linked now.

        Repeats while one succeeds, so an index follows its children in the same call. A manifest
        that cannot be stored yet stays cached; one the store refuses for another reason is logged
        and stays cached too (it is still served from here). Returns how many were promoted.
        """
        repository = target.repository
        promoted = 0
        while True:
            async with self.db.read() as conn:
                rows = (await conn.execute(select(proxy_manifests).where(
                    proxy_manifests.c.repository == repository,
                    proxy_manifests.c.fetched_at >= target.binding.bound_at).order_by(proxy_manifests.c.id))).all()
                tags = (await conn.execute(select(proxy_tags.c.tag, proxy_tags.c.digest).where(
                    proxy_tags.c.repository == repository))).all()
            progress = False
            for row in rows:
                try:
                    await self.manifests.put(repository, parse_digest(row.digest), row.payload, row.media_type)
                except RegistryError as exc:
                    if exc.code != "MANIFEST_BLOB_UNKNOWN":
                        log.warning("proxy_promote_failed", repository=repository, digest=row.digest,
                                    error=exc.message)
                    continue
                for tag in (t.tag for t in tags if t.digest == row.digest):
                    await self._tag_promoted(repository, tag, row.digest)
                async with self.db.write() as conn:
                    await conn.execute(delete(proxy_manifests).where(proxy_manifests.c.id == row.id))
                promoted += 1
                progress = True
            if not progress:
                return promoted
