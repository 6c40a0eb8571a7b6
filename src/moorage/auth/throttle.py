"""Login throttling per (login name, client address), kept in the database so it holds across nodes.

After ``max_failures`` wrong passwords within ``window`` seconds, that name is locked for that
client for ``lockout`` seconds; a success clears the counter. Keyed by client as well as name,
so a guesser cannot lock a real user out from everywhere (Harbor's ``user + IP`` rule); behind a
trusted proxy the client is the address the proxy forwarded (see :mod:`moorage.auth.clients`).

An attempt is *reserved* (an atomic, conditional ``failures = failures + 1``) before the password
is checked, and given back on success. Checking a lock first and counting the failure afterwards
let a guesser with 20 parallel connections get 20 guesses past a limit of 3 on PostgreSQL (every
request read "not locked" before any failure was written); with the reservation, at most
``max_failures`` passwords are checked per window, however many requests race on however many
nodes. Attempts beyond the tries left wait for those in flight instead of failing, so parallel
logins with the right password (a CI farm behind one NAT address) all succeed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, select, update

from moorage.auth.identity import utcnow
from moorage.db.identity_tables import login_failures
from moorage.db.session import Database
from moorage.db.times import aware
from moorage.db.upsert import insert_ignore

__all__ = ["LoginThrottle"]


class LoginThrottle:
    def __init__(self, db: Database, *, max_failures: int, window: int, lockout: int) -> None:
        self.db = db
        self.max_failures = max_failures
        self.window = timedelta(seconds=window)
        self.lockout = timedelta(seconds=lockout)

    def _key(self, username: str, client: str) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
        return login_failures.c.username == username, login_failures.c.client == client

    async def state(self, username: str, client: str) -> tuple[datetime | None, bool]:
        """``(end of the current lock or None, whether failures are counted)`` for ``username`` from ``client``.

        A read only: the common login (no failures, no lock) writes nothing.
        """
        async with self.db.read() as conn:
            row = (await conn.execute(select(login_failures.c.locked_until).where(*self._key(username, client)))).first()
        if row is None:
            return None, False
        if row.locked_until is None:
            return None, True
        until = aware(row.locked_until)
        return (until if until > utcnow() else None), True

    async def reserve(self, username: str, client: str) -> tuple[bool, datetime | None]:
        """Count one attempt before its password is checked: ``(reserved, end of the lock or None)``.

        ``(False, None)`` means the tries left are all in flight (being checked right now, here or
        on another node): the caller waits briefly and asks again, so a burst of parallel logins
        with the right password succeeds while a burst of guesses gets only the tries left. Each
        statement is atomic under the row lock PostgreSQL's ``UPDATE`` takes (and under SQLite's
        single writer); a concurrent attempt re-evaluates it on the committed row, so no
        increment is lost.
        """
        now = utcnow()
        key = self._key(username, client)
        async with self.db.write() as conn:
            await insert_ignore(
                conn, login_failures,
                {"username": username, "client": client, "failures": 0, "window_start": now, "locked_until": None},
                ["username", "client"],
            )
            # A new window once the old one is over (unless locked), or once a lock has ended.
            await conn.execute(
                update(login_failures)
                .where(*key, (login_failures.c.locked_until < now)
                       | (login_failures.c.locked_until.is_(None) & (login_failures.c.window_start < now - self.window)))
                .values(failures=0, window_start=now, locked_until=None)
            )
            counted = await conn.execute(
                update(login_failures)
                .where(*key, login_failures.c.failures < self.max_failures, login_failures.c.locked_until.is_(None))
                .values(failures=login_failures.c.failures + 1)
            )
            if counted.rowcount == 1:
                return True, None
            row = (await conn.execute(select(login_failures.c.locked_until).where(*key))).first()
        if row is None or row.locked_until is None:  # row gone: a concurrent success cleared it
            return False, None
        return False, aware(row.locked_until)

    async def release(self, username: str, client: str) -> None:
        """Give a reserved try back unjudged (the check was cancelled or crashed, e.g. the client hung up).

        Without it, three cancelled logins would hold all the tries "in flight" until the window
        ends, and the right password would wait and then be refused.
        """
        async with self.db.write() as conn:
            await conn.execute(
                update(login_failures).where(*self._key(username, client), login_failures.c.failures > 0)
                .values(failures=login_failures.c.failures - 1)
            )

    async def failed(self, username: str, client: str) -> None:
        """The reserved attempt failed: lock the name for this client once the limit is reached."""
        now = utcnow()
        async with self.db.write() as conn:
            await conn.execute(
                update(login_failures)
                .where(*self._key(username, client), login_failures.c.failures >= self.max_failures,
                       login_failures.c.locked_until.is_(None) | (login_failures.c.locked_until < now))
                .values(locked_until=now + self.lockout)
            )

    async def succeeded(self, username: str, client: str) -> None:
        """The reserved attempt succeeded: forget this name's failures from this client."""
        async with self.db.write() as conn:
            await conn.execute(delete(login_failures).where(*self._key(username, client)))
