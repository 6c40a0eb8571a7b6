"""``--sweep-orphans``: bytes under ``blobs/`` that no database row knows (left by a crash, an
import, an old registry), last written before the grace window.

An orphan is not deleted from the listing: it is *adopted* as a ``deleting`` row, inserted only
if no row exists (``ON CONFLICT DO NOTHING``), and the ordinary sweep deletes it under its row
lock. So a writer publishing the same digest meanwhile either inserted its ``pending`` row
first (the orphan is not adopted: it is that writer's blob now) or finds the ``deleting`` row
and takes it over as it would from GC (docs/gc.md). The listing is the driver's paged ``list``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from moorage.db.session import Database
from moorage.db.tables import blobs
from moorage.registry.gc_fence import DELETING
from moorage.storage import StorageDriver

__all__ = ["find_orphans"]

#: Only a blob's data key names an orphan; anything else under it (segments, parts) goes with it.
_DATA_KEY = re.compile(r"^blobs/(?P<alg>[a-z0-9]+)/(?P<two>[0-9a-f]{2})/(?P<hex>[0-9a-f]+)/data$")
_BATCH = 500


async def find_orphans(
    db: Database,
    storage: StorageDriver,
    cutoff: datetime,
    *,
    adopt: bool,
    progress: Callable[[int], None] | None = None,
) -> list[tuple[str, int]]:
    """``(digest, size)`` of every orphan older than ``cutoff``; with ``adopt``, each becomes a ``deleting`` row.

    Returns the orphans found (dry run) or adopted (a real run; one adopted concurrently by a
    writer's own row is left to that writer and not returned).
    """
    found: list[tuple[str, int]] = []
    batch: dict[str, int] = {}
    async for info in storage.list("blobs"):
        match = _DATA_KEY.match(info.path)
        if match is None or match["hex"][:2] != match["two"]:
            continue
        modified = info.modified
        if modified is not None and modified.tzinfo is None:
            modified = modified.replace(tzinfo=UTC)
        if modified is None or modified >= cutoff:
            continue
        batch[f"{match['alg']}:{match['hex']}"] = info.size
        if len(batch) >= _BATCH:
            found += await _unknown(db, batch, adopt)
            batch = {}
    if batch:
        found += await _unknown(db, batch, adopt)
    if progress is not None and found:
        progress(len(found))
    return found


async def _unknown(db: Database, batch: dict[str, int], adopt: bool) -> list[tuple[str, int]]:
    async with db.read() as conn:
        known = set(
            (await conn.execute(select(blobs.c.digest).where(blobs.c.digest.in_(sorted(batch))))).scalars()
        )
    unknown = {digest: size for digest, size in batch.items() if digest not in known}
    if not adopt or not unknown:
        return sorted(unknown.items())
    adopted: list[tuple[str, int]] = []
    stamp = datetime.now(UTC)
    async with db.write() as conn:
        insert = sqlite.insert if conn.dialect.name == "sqlite" else postgresql.insert
        for digest, size in sorted(unknown.items()):
            row = {"digest": digest, "size": size, "created_at": stamp, "state": DELETING, "state_at": stamp}
            statement = insert(blobs).values(**row).on_conflict_do_nothing(index_elements=["digest"])
            if (await conn.execute(statement.returning(blobs.c.id))).scalar_one_or_none() is not None:
                adopted.append((digest, size))
    return adopted
