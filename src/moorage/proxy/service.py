"""The proxy cache as the ``/v2`` routes see it: which repositories it serves, their manifests and blobs.

Built once per process from settings (:meth:`ProxyCache.from_settings`); it holds the per-endpoint
upstream clients and the fetches in flight, so it is closed at shutdown.
"""

from __future__ import annotations

from moorage.config import ProxySettings, parse_duration
from moorage.db.session import Database
from moorage.jobs.queue import JobQueue
from moorage.net.tls import TrustStore
from moorage.proxy.bindings import ProxyBindings, ProxyTarget
from moorage.proxy.blobs import ProxiedBlob, ProxyBlobs
from moorage.proxy.eviction import Evictions
from moorage.proxy.flight import FetchLease
from moorage.proxy.manifests import ProxiedManifest, ProxyManifests
from moorage.proxy.upstreams import UpstreamPool
from moorage.registry.digests import Digest
from moorage.registry.guard import WriteGuard
from moorage.registry.interfaces import Blobs, Manifests
from moorage.registry.pull_times import PullTimes
from moorage.registry.uploads import UploadService
from moorage.upstream.endpoints import Endpoints

__all__ = ["ProxiedBlob", "ProxiedManifest", "ProxyCache", "ProxyTarget"]


class ProxyCache:
    """Pull-through reads of proxy projects; pushes into them are refused (:meth:`refuse_push`)."""

    def __init__(self, db: Database, endpoints: Endpoints, manifests: Manifests, blobs: Blobs,
                 uploads: UploadService, settings: ProxySettings, trust: TrustStore, *,
                 queue: JobQueue | None = None, pulls: PullTimes | None = None, guard: WriteGuard | None = None) -> None:
        self.bindings = ProxyBindings(db)
        #: Cache size limits (docs/proxy-cache.md): a cold fetch that leaves a project over its limit queues
        #: its eviction (with ``queue``; without one, only GC runs evict).
        self.evictions = Evictions(db, self.bindings, manifests, blobs, queue, low_water=settings.eviction_low_water,
                                   pulls=pulls, guard=guard)
        self.upstreams = UpstreamPool(endpoints, timeout=settings.timeout, concurrency=settings.concurrency,
                                      trust=trust)
        self.manifests = ProxyManifests(db, manifests, self.upstreams, tag_ttl=parse_duration(settings.tag_ttl))
        self.blobs = ProxyBlobs(blobs, uploads, self.upstreams, FetchLease(db, settings.fetch_lease),
                                self.manifests, poll_seconds=settings.poll_seconds, evictions=self.evictions)
        #: Mirror mode: the upstream host a client names in ``ns=`` → the proxy project serving it.
        self.mirrors = dict(settings.mirrors)
        self.default_mirror = settings.default_mirror

    async def mirrored_name(self, repository: str, namespace: str | None) -> str | None:
        """Mirror mode: the repository in its proxy project for a name a mirror client sent, else ``None``.

        With ``ns=<upstream host>`` (containerd sends it to a mirror) the configured project of that
        host; without it, ``proxy.default_mirror`` when the name's first component is no project here
        (podman and skopeo of containers/image 5.x send no ``ns``), so regular projects are unaffected.
        """
        if namespace:
            project = self.mirrors.get(namespace.strip().lower())
            return f"{project}/{repository}" if project else None
        if self.default_mirror and not await self.bindings.project_exists(repository.partition("/")[0]):
            return f"{self.default_mirror}/{repository}"
        return None

    async def target(self, repository: str, *, fresh: bool = False) -> ProxyTarget | None:
        return await self.bindings.target(repository, fresh=fresh)

    async def manifest(self, target: ProxyTarget, reference: Digest | str) -> ProxiedManifest:
        return await self.manifests.get(target, reference)

    async def blob_size(self, target: ProxyTarget, digest: Digest) -> int:
        return await self.blobs.size(target, digest)

    async def fetch_blob(self, target: ProxyTarget, digest: Digest) -> ProxiedBlob:
        return await self.blobs.fetch(target, digest)

    async def refuse_push(self, repository: str) -> None:
        await self.bindings.refuse_push(repository)

    async def aclose(self) -> None:
        await self.blobs.aclose()
        await self.upstreams.aclose()
