"""Login throttling per (login name, client address), kept in the database so it holds across nodes.

After ``max_failures`` wrong passwords within ``window`` seconds, that name is locked for that
client for ``lockout`` seconds; a success clears the counter. Keyed by client as well as name,
so a guesser cannot lock a real user out from everywhere (Harbor's ``user + IP`` rule).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select

from moorage.auth.identity import aware, utcnow
from moorage.db.identity_tables import login_failures
from moorage.db.session import Database
from moorage.db.upsert import upsert

__all__ = ["LoginThrottle"]


class LoginThrottle:
    def __init__(self, db: Database, *, max_failures: int, window: int, lockout: int) -> None:
        self.db = db
        self.max_failures = max_failures
        self.window = timedelta(seconds=window)
        self.lockout = timedelta(seconds=lockout)

    async def locked_until(self, username: str, client: str) -> datetime | None:
        """When the lock on ``username`` from ``client`` ends, or ``None`` when it may try now."""
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(login_failures.c.locked_until).where(
                        login_failures.c.username == username, login_failures.c.client == client
                    )
                )
            ).first()
        if row is None or row.locked_until is None:
            return None
        until = aware(row.locked_until)
        return until if until > utcnow() else None

    async def failed(self, username: str, client: str) -> None:
        now = utcnow()
        async with self.db.write() as conn:
            row = (
                await conn.execute(
                    select(login_failures).where(
                        login_failures.c.username == username, login_failures.c.client == client
                    )
                )
            ).first()
            failures, start = 1, now
            if row is not None and aware(row.window_start) + self.window > now:
                failures, start = int(row.failures) + 1, aware(row.window_start)
            locked = now + self.lockout if failures >= self.max_failures else None
            await upsert(
                conn,
                login_failures,
                {"username": username, "client": client, "failures": failures, "window_start": start,
                 "locked_until": locked},
                ["username", "client"],
                ["failures", "window_start", "locked_until"],
            )

    async def succeeded(self, username: str, client: str) -> None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(login_failures.c.failures).where(
                        login_failures.c.username == username, login_failures.c.client == client
                    )
                )
            ).first()
        if row is None:  # the common case: no write on every successful login
            return
        async with self.db.write() as conn:
            await conn.execute(
                delete(login_failures).where(login_failures.c.username == username, login_failures.c.client == client)
            )
