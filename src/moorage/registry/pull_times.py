"""When each artifact was last pulled (``manifests.pulled_at``), recorded without slowing pulls.

Retention's ``latestPulledN`` and ``nDaysSinceLastPull`` rules need it, and Harbor's artifact
API shows it as ``pull_time``. Writing it in each manifest ``GET`` would put a write (on SQLite
the database's one write lock) in the hot read path, so pulls are queued in the shared
write-behind (:class:`moorage.db.write_behind.WriteBehind`, the mechanism the pull audit rows
use) keyed by repository and digest: any number of pulls of one manifest within a batch is one
row, the latest. A batch is one transaction of prebuilt ``UPDATE``s that only move a time
forward, so batches of several nodes may commit in any order.

What a caller can rely on is the write-behind's: written within a second, at most
``max_pending`` rows a ``kill -9`` can lose (a lost pull time only makes an artifact look
pulled a little earlier), :meth:`flush` before reading this node's own pulls (retention does).
"""

from __future__ import annotations

from collections.abc import Hashable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, or_, select, update

from moorage.db.session import Database
from moorage.db.tables import manifests, repositories
from moorage.db.write_behind import DEFAULT_INTERVAL, DEFAULT_MAX_PENDING, WriteBehind

__all__ = ["PullTimes"]

# Built once (as the manifest GET's queries are): only ever moves a pull time forward.
_TOUCH = (
    update(manifests)
    .where(
        manifests.c.repository_id
        == select(repositories.c.id).where(repositories.c.name == bindparam("p_repository")).scalar_subquery(),
        manifests.c.digest == bindparam("p_digest"),
        or_(manifests.c.pulled_at.is_(None), manifests.c.pulled_at < bindparam("p_at")),
    )
    .values(pulled_at=bindparam("p_at"))
)


def _key(row: dict[str, Any]) -> Hashable:
    return row["repository"], row["digest"]


class PullTimes:
    """Records manifest pulls; :meth:`aclose` at shutdown writes what waits."""

    def __init__(
        self, db: Database, *, interval: float = DEFAULT_INTERVAL, max_pending: int = DEFAULT_MAX_PENDING
    ) -> None:
        self.db = db
        self.queue = WriteBehind(self._write, interval=interval, max_pending=max_pending, name="pull_time", key=_key)

    async def record(self, repository: str, digest: str, at: datetime | None = None) -> None:
        """Note that ``repository@digest`` was pulled (now); returns at once unless the queue is full."""
        await self.queue.add({"repository": repository, "digest": digest, "at": at or datetime.now(UTC)})

    async def flush(self) -> None:
        """Write every pull recorded so far on this node."""
        await self.queue.flush()

    async def aclose(self) -> None:
        await self.queue.aclose()

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        # One order for every batch, so two nodes' batches lock rows in the same order.
        ordered = sorted(rows, key=lambda row: (row["repository"], row["digest"]))
        params = [{"p_repository": r["repository"], "p_digest": r["digest"], "p_at": r["at"]} for r in ordered]
        async with self.db.write() as conn:
            await conn.execute(_TOUCH, params)
