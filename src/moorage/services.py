"""The services one process runs, built from settings and passed explicitly (no globals)."""

from __future__ import annotations

from dataclasses import dataclass

from moorage.api.http import UrlBuilder
from moorage.auth.access import AccessController, OpenAccess
from moorage.config import Settings
from moorage.db.session import Database
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
        return cls(
            settings=settings,
            db=db,
            storage=storage,
            blobs=BlobService(
                db, storage, delete_enabled=delete_enabled, redirect_expiry=storage_settings.redirect.expiry
            ),
            uploads=UploadService(db, storage),
            manifests=ManifestStore(
                db, storage, max_bytes=settings.limits.manifest_max_bytes, delete_enabled=delete_enabled
            ),
            access=OpenAccess(),
            urls=UrlBuilder(settings.http),
        )

    async def aclose(self) -> None:
        await self.storage.aclose()
        await self.db.dispose()
