"""Every site's storage and the ``blob_sites`` rows: who holds a blob, recording a new holder.

Recording is the outbox of the copy jobs: the row saying "site A holds blob X" and the jobs
"copy X to B", "copy X to C" are written in one transaction, so a committed push always has its
copies queued, and the job table's dedup key (``site.copy:<blob id>:<site>``) makes them one
job per blob and site whatever the number of nodes that publish the same blob.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from moorage.db.session import Database
from moorage.db.site_tables import blob_sites
from moorage.db.tables import blobs
from moorage.db.upsert import insert_ignore
from moorage.errors import RegistryError
from moorage.jobs.queue import JobQueue
from moorage.registry.digests import Digest
from moorage.sites.deletes import EverySiteDeletes
from moorage.storage import StorageDriver
from moorage.storage.checked import CheckedDriver

__all__ = ["COPY_ATTEMPTS", "SiteUnavailable", "Sites", "copy_dedup_key", "copy_kind"]

#: Attempts of one copy job (backoff 2, 4, … 300 s: about 25 minutes); a pull at the site revives a failed one.
COPY_ATTEMPTS = 12


def copy_kind(site: str) -> str:
    """The job kind of copies *to* ``site``: only that site's nodes register it, so the destination
    pulls (it writes to its own storage and reads across sites; a site whose nodes are all down
    leaves its copies queued until they are back, which is when its clients need them)."""
    return f"site.copy.{site}"


def copy_dedup_key(blob_id: int, site: str) -> str:
    """One copy job per blob and destination site, across every node."""
    return f"site.copy:{blob_id}:{site}"


class SiteUnavailable(RegistryError):
    """The only sites holding a blob could not be read; 503 naming them, so the client retries."""


@dataclass(frozen=True, slots=True)
class SiteStore:
    """One site's storage and how the operator named it (``sites.<name>.storage.<driver>``)."""

    name: str
    storage: StorageDriver
    driver_name: str

    @property
    def described(self) -> str:
        return f"site {self.name!r} storage ({self.driver_name}, sites.{self.name}.storage)"


class Sites:
    """The sites of one deployment as seen from the node's own site ``local``."""

    def __init__(
        self, db: Database, queue: JobQueue, local: str, stores: Mapping[str, SiteStore], *, fallback: str = "stream"
    ) -> None:
        if local not in stores:
            raise ValueError(f"site {local!r} has no storage")
        self.db = db
        self.queue = queue
        self.local = local
        self.stores = dict(stores)
        self.fallback = fallback

    @property
    def others(self) -> list[str]:
        return sorted(name for name in self.stores if name != self.local)

    async def stored_here(self, conn: AsyncConnection, blob_id: int) -> None:
        """Record that this site holds ``blob_id`` and queue its copy to every site lacking it.

        Called inside the transaction that publishes the blob (after its bytes are under the key
        here). Idempotent: a blob already recorded here queues nothing new.
        """
        await self.record(conn, blob_id, self.local)
        held = set((await conn.execute(select(blob_sites.c.site).where(blob_sites.c.blob_id == blob_id))).scalars())
        for site in self.others:
            if site not in held:
                await self.queue.enqueue(
                    copy_kind(site), {"blob_id": blob_id, "site": site}, dedup_key=copy_dedup_key(blob_id, site),
                    max_attempts=COPY_ATTEMPTS, conn=conn,
                )

    @staticmethod
    async def record(conn: AsyncConnection, blob_id: int, site: str) -> None:
        """``site`` holds ``blob_id`` (insert-or-ignore)."""
        await insert_ignore(
            conn, blob_sites, {"blob_id": blob_id, "site": site, "created_at": datetime.now(UTC)}, ["blob_id", "site"]
        )

    async def holders(self, digest: Digest) -> tuple[int | None, list[str]]:
        """The blob's id and the sites recorded as holding it (``None``: no such blob)."""
        async with self.db.read() as conn:
            blob_id = (await conn.execute(select(blobs.c.id).where(blobs.c.digest == str(digest)))).scalar()
            if blob_id is None:
                return None, []
            rows = await conn.execute(select(blob_sites.c.site).where(blob_sites.c.blob_id == blob_id))
            return int(blob_id), sorted(rows.scalars())

    async def copy_here_later(self, blob_id: int) -> None:
        """Make sure a copy of ``blob_id`` to this site is queued (a read here found no bytes).

        The same dedup key as the push's copy, so this adds nothing while that job is queued or
        running. A job that already ended is queued again: it failed all its attempts (the source
        was down for long), or it succeeded and the bytes went since (a restored backup, a GC run
        that crashed after deleting); the copy itself starts with a stat, so it is cheap when done.
        """
        key = copy_dedup_key(blob_id, self.local)
        await self.queue.enqueue(
            copy_kind(self.local), {"blob_id": blob_id, "site": self.local}, dedup_key=key,
            max_attempts=COPY_ATTEMPTS,
        )
        await self.queue.rearm(key)

    def deleting_everywhere(self) -> StorageDriver:
        """This site's storage for garbage collection: its batch deletes reach every site."""
        return EverySiteDeletes(self.stores[self.local].storage, [self.stores[n].storage for n in self.others])

    def health_targets(self) -> dict[str, StorageDriver]:
        """The other sites' storage, for ``/api/v2.0/health`` (this site's own is ``storage`` there)."""
        return {name: self.stores[name].storage for name in self.others}

    async def aclose(self) -> None:
        """Close the other sites' drivers (this site's own belongs to the services)."""
        for name in self.others:
            storage = self.stores[name].storage
            if isinstance(storage, CheckedDriver):  # what build_driver returns; it owns the clients
                await storage.aclose()

    def sources(self, recorded: list[str]) -> list[str]:
        """Other sites to read from, recorded holders first, then the rest (blobs older than sites)."""
        others = self.others
        return [s for s in recorded if s in others] + [s for s in others if s not in recorded]
