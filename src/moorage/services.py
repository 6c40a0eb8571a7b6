"""The services one process runs, built from settings and passed explicitly (no globals).

Imports point one way: the API layers import this module, and this module imports only the
domain (registry, auth), the infrastructure (db, storage, cache, jobs) and settings, never
``moorage.api``. Entry points take the service they use from here (REST handlers through
FastAPI dependencies, the ``/v2`` routes and the CLI through their constructors).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from moorage.auth.access import AccessController, OpenAccess
from moorage.auth.keys import SecretBox
from moorage.auth.service import IdentityService
from moorage.auth.token_access import TokenAccess
from moorage.cache import (
    CachedBlobService,
    CachedManifestStore,
    CachedRepositories,
    RegistryCache,
    cache_from_settings,
)
from moorage.config import Settings
from moorage.db.session import Database
from moorage.events import ArtifactEvents
from moorage.gc.executions import GcService
from moorage.gc.job import register_gc
from moorage.health import HealthChecker
from moorage.jobs import HandlerRegistry, JobQueue, Periodic
from moorage.jobs.builtin import register_builtin
from moorage.jobs.history import register_history
from moorage.jobs.runner import Tick
from moorage.net.tls import TrustStore
from moorage.proxy import ProxyCache
from moorage.proxy.eviction import register_eviction
from moorage.registry.blobs import BlobService
from moorage.registry.guard import WriteGuard
from moorage.registry.immutability import ImmutableRules
from moorage.registry.interfaces import Blobs, Manifests, Repositories
from moorage.registry.manifest_store import ManifestStore
from moorage.registry.pull_times import PullTimes
from moorage.registry.repository_service import RepositoryService
from moorage.registry.uploads import UploadService
from moorage.replication.local import LocalAdapter
from moorage.replication.service import Replication
from moorage.retention.job import RetentionRunner, register_retention
from moorage.retention.service import RetentionService
from moorage.sites import SiteBlobs, SiteCopier, Sites, copy_kind
from moorage.sites.build import peer_redis, sites_from_settings
from moorage.storage import StorageDriver
from moorage.storage.checked import CheckedDriver
from moorage.storage.factory import build_driver
from moorage.upstream.endpoints import Endpoints
from moorage.webhooks import Deliverer, WebhookService, build_webhooks

__all__ = ["Services"]


@dataclass(slots=True)
class Services:
    settings: Settings
    db: Database
    storage: CheckedDriver
    #: What may change (read-only maintenance, deletes, projects required); every service checks it.
    guard: WriteGuard
    blobs: Blobs
    uploads: UploadService
    manifests: Manifests
    repositories: Repositories
    access: AccessController
    jobs: JobQueue
    health: HealthChecker
    cache: RegistryCache | None = None
    job_handlers: HandlerRegistry = field(default_factory=HandlerRegistry)
    periodic_jobs: list[Periodic] = field(default_factory=list)
    #: Schedules kept in the database, checked on every poll (the GC cron schedule).
    job_ticks: list[Tick] = field(default_factory=list)
    #: Users, projects, robots, tokens and the audit log; ``None`` with ``auth.mode: none``.
    identity: IdentityService | None = None
    #: The CAs every outbound connection trusts (``outbound.ca_bundle``): OIDC, LDAP, replication,
    #: proxy cache and webhooks take it from here (storage got it when it was built).
    trust: TrustStore = field(default_factory=TrustStore)
    #: Project webhook policies and event delivery; ``None`` with ``auth.mode: none`` (no projects).
    webhooks: WebhookService | None = None
    #: Who hears of each finished push, pull and delete (webhooks, replication's event trigger).
    events: ArtifactEvents = field(default_factory=ArtifactEvents)
    _deliverer: Deliverer | None = None
    #: Last pull times, written behind (``None`` with ``retention.record_pull_time: false``).
    pull_times: PullTimes | None = None
    retention: RetentionService | None = None
    #: Registry endpoints and the proxy cache over them; ``None`` with ``auth.mode: none`` (no projects, no secret).
    endpoints: Endpoints | None = None
    proxy: ProxyCache | None = None
    #: Replication policies, executions and their trigger; ``None`` without endpoints.
    replication: Replication | None = None
    #: Every site's storage and the blob copies between them; ``None`` without ``site`` (one site).
    sites: Sites | None = None
    #: The storage garbage collection deletes in (``storage``, or every site's with several sites).
    gc_storage: StorageDriver | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.database_url, pool_size=settings.database.pool_size,
                      sqlite_synchronous=settings.database.sqlite_synchronous)
        #: One outbound CA trust for every connection this process opens (moorage.net.tls).
        trust = settings.outbound.trust_store()
        storage_settings = settings.storage
        storage = build_driver(
            storage_settings.driver_name,
            storage_settings.driver_settings,
            settings.data_dir,
            redirect=not storage_settings.redirect.disable,
            trust=trust,
            metrics=settings.metrics.enabled,
        )
        guard = WriteGuard(
            read_only=storage_settings.maintenance.readonly.enabled,
            delete_enabled=storage_settings.delete.enabled,
            projects_required=settings.auth.mode == "token",
        )
        queue = JobQueue(db, lease=timedelta(seconds=settings.jobs.lease_seconds))
        handlers = HandlerRegistry()
        #: Multi-site (docs/multi-site.md): every site's storage, who holds each blob, the copy jobs.
        sites = sites_from_settings(settings, db, queue, storage, trust)
        on_stored = sites.stored_here if sites is not None else None
        blobs: Blobs = BlobService(db, storage, redirect_expiry=storage_settings.redirect.expiry, guard=guard)
        if sites is not None:
            blobs = SiteBlobs(blobs, sites, redirect_expiry=storage_settings.redirect.expiry)
            handlers.register(copy_kind(sites.local), SiteCopier(sites))  # copies *to* this site
        manifests: Manifests = ManifestStore(db, storage, max_bytes=settings.limits.manifest_max_bytes, guard=guard,
                                             on_stored=on_stored)
        cache = cache_from_settings(settings.redis, db, peer_redis(settings))
        if cache is not None:
            blobs = CachedBlobService(blobs, cache)
            manifests = CachedManifestStore(manifests, cache)
        uploads = UploadService(db, storage, guard=guard, on_stored=on_stored)
        periodic = register_builtin(handlers, settings, uploads)
        #: What GC deletes bytes in: every site's storage with several sites (docs/multi-site.md).
        gc_storage = sites.deleting_everywhere() if sites is not None else storage
        identity = IdentityService(db, settings.auth, data_dir=settings.data_dir, trust=trust) if settings.auth.mode == "token" else None
        repositories: Repositories = RepositoryService(
            db, guard=guard, on_project_deleted=identity.store.on_change if identity is not None else None
        )
        if cache is not None:
            repositories = CachedRepositories(repositories, cache)
        webhooks = deliverer = None
        if identity is not None and settings.auth.secret_key:
            webhooks, deliverer = build_webhooks(settings.webhooks, db, queue, handlers, trust,
                                                 settings.auth.secret_key)
        pruners = [queue.prune] + ([webhooks.prune] if webhooks is not None else [])
        periodic += register_history(handlers, settings.jobs, pruners)
        pull_times = PullTimes(db) if settings.retention.record_pull_time else None
        retention = RetentionService(db, queue)
        register_retention(
            handlers,
            RetentionRunner(retention, repositories, manifests, ImmutableRules(db), guard=guard, pulls=pull_times),
        )
        read_only = storage_settings.maintenance.readonly.enabled
        events = ArtifactEvents([webhooks] if webhooks is not None else [])
        # Read-only maintenance refuses real GC, retention and replication runs: a schedule would only fail.
        ticks: list[Tick] = [] if read_only else [GcService(db, queue).tick, retention.tick]
        endpoints = proxy = replication = None
        if identity is not None and settings.auth.secret_key:
            endpoints = Endpoints(db, SecretBox(settings.auth.secret_key, b"registry-credentials"))
            proxy = ProxyCache(db, endpoints, manifests, blobs, uploads, settings.proxy, trust, queue=queue,
                               pulls=pull_times, guard=guard)
            register_eviction(handlers, proxy.evictions)
            replication = Replication(db, queue, handlers, LocalAdapter(blobs=blobs, manifests=manifests,
                                                                        uploads=uploads), endpoints, trust,
                                      events=events)
            events.subscribe(replication)
            if not read_only:
                ticks.append(replication.tick)
        # Every GC run first evicts in the proxy projects over their cache limit, so it frees their bytes too.
        register_gc(handlers, settings.gc, db, gc_storage, cache, guard=guard, queue=queue,
                    before_collect=proxy.evictions.evict_over_limit if proxy is not None else None)
        return cls(
            settings=settings,
            db=db,
            storage=storage,
            guard=guard,
            blobs=blobs,
            uploads=uploads,
            manifests=manifests,
            repositories=repositories,
            access=TokenAccess(identity) if identity is not None else OpenAccess(),
            jobs=queue,
            health=HealthChecker(db, storage, cache, site=settings.site,
                                 other_sites=sites.health_targets() if sites is not None else None),
            cache=cache,
            job_handlers=handlers,
            periodic_jobs=periodic,
            job_ticks=ticks,
            identity=identity,
            trust=trust,
            webhooks=webhooks,
            events=events,
            _deliverer=deliverer,
            pull_times=pull_times,
            retention=retention,
            endpoints=endpoints,
            proxy=proxy,
            replication=replication,
            sites=sites,
            gc_storage=gc_storage,
        )

    async def aclose(self) -> None:
        if self.proxy is not None:  # first: its fetches in flight write through the database and storage
            await self.proxy.aclose()
        if self.identity is not None:  # first: its queued audit rows need the database
            await self.identity.aclose()
        if self._deliverer is not None:
            await self._deliverer.aclose()
        if self.pull_times is not None:  # likewise the pull times waiting to be written
            await self.pull_times.aclose()
        if self.cache is not None:
            await self.cache.aclose()
        if self.sites is not None:
            await self.sites.aclose()
        await self.storage.aclose()
        await self.db.dispose()
