"""The cache generation: a number in the database that decides which Redis keys are valid.

Every cache key includes the generation (``moorage:g7:{repo}:entries``). Bumping it in the
database makes every existing entry unreachable on every node, without talking to Redis —
which is exactly what a node needs when it just deleted something and *could not* reach Redis
to invalidate it: without the bump, a stale entry would be served again once Redis answers.

Each node trusts the generation it read for ``lease`` seconds, measured from *before* the read
began, then reads it again (inline, at most once per lease, one tiny query). A node that bumps
waits ``lease`` seconds before answering its client: by then every node has either re-read the
new generation or stopped using its old one. So the delete is slower while Redis is away, but
no client can see the deleted thing from the cache after the delete returned.
"""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import select, update

from moorage.db.jobs_tables import cache_state
from moorage.db.session import Database

__all__ = ["GenerationFence"]


class GenerationFence:
    """The database-held cache generation with a per-node lease on the value last read."""

    def __init__(self, db: Database, *, lease: float = 2.0) -> None:
        self.db = db
        self.lease = lease
        self._generation: int | None = None
        self._valid_until = 0.0
        self._lock = asyncio.Lock()

    async def current(self) -> int | None:
        """The generation to use now, re-read when its lease ran out; ``None`` if unreadable."""
        if time.monotonic() < self._valid_until:
            return self._generation
        async with self._lock:
            if time.monotonic() < self._valid_until:
                return self._generation
            started = time.monotonic()
            try:
                async with self.db.read() as conn:
                    value = (await conn.execute(select(cache_state.c.generation).where(cache_state.c.id == 1))).scalar()
            except Exception:  # noqa: BLE001
                return None  # the database is down: requests fail on their own queries anyway
            if value is None:
                return None  # row missing (schema not migrated): run without the cache
            self._generation = int(value)
            self._valid_until = started + self.lease
            return self._generation

    async def bump(self) -> None:
        """Invalidate every cached entry on every node, then wait until no node trusts the old value."""
        async with self.db.write() as conn:
            await conn.execute(
                update(cache_state).where(cache_state.c.id == 1).values(generation=cache_state.c.generation + 1)
            )
        self._valid_until = 0.0  # this node re-reads at once
        await asyncio.sleep(self.lease)
