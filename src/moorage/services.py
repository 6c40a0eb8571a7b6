"""The services one process runs, built from settings and passed explicitly (no globals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from moorage.api.health import HealthChecker
from moorage.api.http import UrlBuilder
from moorage.auth.access import AccessController, OpenAccess
from moorage.auth.service import IdentityService
from moorage.auth.token_access import TokenAccess
from moorage.cache import CachedBlobService, CachedManifestStore, RegistryCache, cache_from_settings
from moorage.config import Settings
from moorage.db.session import Database
from moorage.jobs import HandlerRegistry, JobQueue, Periodic
from moorage.jobs.builtin import register_builtin
from moorage.registry.blobs import BlobService
from moorage.registry.manifest_store import ManifestStore
from moorage.registry.uploads import UploadService
from moorage.storage.checked import CheckedDriver
from moorage.storage.factory import build_driver

__all__ = ["Services"]


@dataclass(slots=True)
class Services:
    settings: Settings
    db: Database
    storage: CheckedDriver
    blobs: BlobService
    uploads: UploadService
    manifests: ManifestStore
    access: AccessController
    urls: UrlBuilder
    jobs: JobQueue
    health: HealthChecker
    cache: RegistryCache | None = None
    job_handlers: HandlerRegistry = field(default_factory=HandlerRegistry)
    periodic_jobs: list[Periodic] = field(default_factory=list)
    #: Users, projects, robots, tokens and the audit log; ``None`` with ``auth.mode: none``.
    identity: IdentityService | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.database_url, pool_size=settings.database.pool_size)
        storage_settings = settings.storage
        storage = build_driver(
            storage_settings.driver_name,
            storage_settings.driver_settings,
            settings.data_dir,
            redirect=not storage_settings.redirect.disable,
        )
        delete_enabled = storage_settings.delete.enabled
        blobs = BlobService(
            db, storage, delete_enabled=delete_enabled, redirect_expiry=storage_settings.redirect.expiry
        )
        manifests = ManifestStore(
            db, storage, max_bytes=settings.limits.manifest_max_bytes, delete_enabled=delete_enabled
        )
        cache = cache_from_settings(settings.redis, db)
        if cache is not None:
            blobs = CachedBlobService(blobs, cache)
            manifests = CachedManifestStore(manifests, cache)
        uploads = UploadService(db, storage)
        handlers = HandlerRegistry()
        periodic = register_builtin(handlers, settings, uploads)
        identity = IdentityService(db, settings.auth, data_dir=settings.data_dir) if settings.auth.mode == "token" else None
        return cls(
            settings=settings,
            db=db,
            storage=storage,
            blobs=blobs,
            uploads=uploads,
            manifests=manifests,
            access=TokenAccess(identity) if identity is not None else OpenAccess(),
            urls=UrlBuilder(settings.http),
            jobs=JobQueue(db, lease=timedelta(seconds=settings.jobs.lease_seconds)),
            health=HealthChecker(db, storage, cache),
            cache=cache,
            job_handlers=handlers,
            periodic_jobs=periodic,
            identity=identity,
        )

    async def aclose(self) -> None:
        if self.identity is not None:  # first: its queued audit rows need the database
            await self.identity.aclose()
        if self.cache is not None:
            await self.cache.aclose()
        await self.storage.aclose()
        await self.db.dispose()
