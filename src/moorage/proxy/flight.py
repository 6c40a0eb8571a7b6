"""One upstream fetch per blob at a time, across processes and nodes: a lease row per digest.

The process that inserts the ``proxy_fetches`` row (or takes over one whose lease expired) fetches;
the others wait for the blob to be linked. The holder renews the lease while bytes flow and
deletes the row when done, whatever the outcome. A holder that dies stops renewing, and the next
puller takes over after at most one lease: nothing it wrote was linked (see :mod:`.blobs`).
The database rather than Redis because Redis is optional and losing it must not double fetches.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update

from moorage.db.proxy_tables import proxy_fetches
from moorage.db.session import Database
from moorage.db.upsert import insert_ignore

__all__ = ["FetchLease", "Lease"]


@dataclass(frozen=True, slots=True)
class Lease:
    digest: str
    holder: str


class FetchLease:
    """Claims, renews and releases the fetch of a digest; ``seconds`` is how long a claim lasts unrenewed."""

    def __init__(self, db: Database, seconds: float) -> None:
        self.db = db
        self.seconds = seconds

    async def claim(self, digest: str, repository: str) -> tuple[Lease | None, str | None]:
        """``(lease, None)`` when this caller fetches; ``(None, repository)`` of the live holder otherwise."""
        holder = uuid.uuid4().hex
        now = datetime.now(UTC)
        until = now + timedelta(seconds=self.seconds)
        async with self.db.write() as conn:
            await insert_ignore(conn, proxy_fetches, {"digest": digest, "repository": repository, "holder": holder,
                                                      "lease_until": until}, ["digest"])
            row = (await conn.execute(select(proxy_fetches).where(proxy_fetches.c.digest == digest))).first()
            if row is None:  # released between the insert and the read: try again
                return None, None
            if row.holder == holder:
                return Lease(digest, holder), None
            lease_until = row.lease_until if row.lease_until.tzinfo else row.lease_until.replace(tzinfo=UTC)
            if lease_until < now:  # its holder died: take over (compare-and-set on the old holder)
                result = await conn.execute(
                    update(proxy_fetches).where(proxy_fetches.c.digest == digest, proxy_fetches.c.holder == row.holder)
                    .values(holder=holder, repository=repository, lease_until=until))
                if result.rowcount == 1:
                    return Lease(digest, holder), None
            return None, str(row.repository)

    async def renew(self, lease: Lease) -> bool:
        """Extend the lease; ``False`` when another process took it over (this one was too slow)."""
        async with self.db.write() as conn:
            result = await conn.execute(
                update(proxy_fetches).where(proxy_fetches.c.digest == lease.digest,
                                            proxy_fetches.c.holder == lease.holder)
                .values(lease_until=datetime.now(UTC) + timedelta(seconds=self.seconds)))
        return result.rowcount == 1

    async def release(self, lease: Lease) -> None:
        async with self.db.write() as conn:
            await conn.execute(delete(proxy_fetches).where(proxy_fetches.c.digest == lease.digest,
                                                           proxy_fetches.c.holder == lease.holder))

    async def holder_of(self, digest: str) -> str | None:
        """The repository of a live fetch of ``digest``, ``None`` when none is in flight (or it expired)."""
        async with self.db.read() as conn:
            row = (await conn.execute(select(proxy_fetches).where(proxy_fetches.c.digest == digest))).first()
        if row is None:
            return None
        lease_until = row.lease_until if row.lease_until.tzinfo else row.lease_until.replace(tzinfo=UTC)
        return str(row.repository) if lease_until >= datetime.now(UTC) else None
