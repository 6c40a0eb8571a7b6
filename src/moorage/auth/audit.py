"""The audit log: every change to users, projects, members and robots, every push, pull and delete, every login.

Rows are written in their own short transaction after the operation succeeded; a failure to
write one is logged and never fails the operation the user asked for (the registry must not
refuse a pull because the audit table is unavailable). Pulls are the exception to "own
transaction": they are written behind, in batches (:mod:`moorage.db.write_behind`), so
that pulls on SQLite do not each take the write lock; :meth:`AuditLog.query` flushes them
first, and a kill -9 loses at most the last batch.

Each row records how the caller authenticated (``auth_method``, see :func:`auth_method`), so a
credential used where it should not be can be told from normal use. Logins are rows too
(:meth:`AuditLog.login`): successes, failures and throttled attempts, with the name, the client
address and the login method. Basic auth logs in on every request, so a success is recorded
once per (name, client, method) per :data:`LOGIN_QUIET` seconds in a process, and so is a
throttled refusal; every failure that reached the password check is recorded (the throttle
bounds them).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import and_, false, func, insert, or_, select

from moorage.auth.identity import utcnow
from moorage.db.identity_tables import audit_log
from moorage.db.session import Database
from moorage.db.times import aware
from moorage.db.write_behind import WriteBehind

__all__ = ["LOGIN_METHODS", "LOGIN_QUIET", "AuditEntry", "AuditLog", "auth_method", "printable"]

log = structlog.get_logger("moorage.audit")

#: How a login proved who it is: ``cli_secret`` is an OIDC user's CLI secret, ``oidc`` a browser
#: login through the provider.
LOGIN_METHODS = ("password", "robot", "refresh_token", "cli_secret", "oidc")
#: Seconds during which a repeated login success (or throttled refusal) of the same name from the
#: same client is not recorded again by this process.
LOGIN_QUIET = 60.0
_QUIET_MAX = 10_000


def auth_method(scheme: str, subject_kind: str) -> str:
    """The ``auth_method`` of a request: ``scheme`` as parsed (basic, bearer, none, session) and who it was."""
    scheme = scheme.lower()
    if scheme in ("", "none") or subject_kind == "anonymous":
        return "anonymous"
    if scheme == "bearer":
        return "token"
    if scheme == "basic":
        return "robot" if subject_kind == "robot" else "basic"
    return scheme[:32]


def printable(name: str) -> str:
    """``name`` with control and invisible characters escaped (``admin\\n`` is never shown as ``admin``)."""
    return name if name.isprintable() else name.encode("unicode_escape").decode("ascii")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    op_time: datetime
    username: str
    operation: str
    resource_type: str
    resource: str
    project: str | None
    client: str | None
    detail: str | None
    auth_method: str | None = None


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._quiet: dict[tuple[str, ...], float] = {}
        #: Pull rows, written in batches; :meth:`aclose` (at shutdown) writes what waits.
        self.pulls = WriteBehind(self._insert)

    async def record(
        self, username: str, operation: str, resource_type: str, resource: str, *,
        project: str | None = None, client: str | None = None, detail: str | None = None,
        auth: str | None = None, behind: bool = False,
    ) -> None:
        """Write one row now; ``behind=True`` (pulls only) queues it for the next batch instead."""
        row: dict[str, Any] = {
            "op_time": utcnow(), "username": printable(username)[:255], "operation": operation,
            "resource_type": resource_type, "resource": printable(resource)[:512], "project": project,
            "client": (client or "")[:64] or None, "detail": detail, "auth_method": auth,
        }
        if behind:
            await self.pulls.add(row)
            return
        try:
            await self._insert([row])
        except Exception as exc:  # noqa: BLE001 - auditing must not fail the audited operation
            log.error("audit_write_failed", operation=operation, resource=resource, error=str(exc))

    async def _insert(self, rows: list[dict[str, Any]]) -> None:
        """One transaction for ``rows`` (one row, or a batch of pulls)."""
        async with self.db.write() as conn:
            await conn.execute(insert(audit_log), rows)

    async def aclose(self) -> None:
        """Write the pulls still queued (application shutdown)."""
        await self.pulls.aclose()

    def _quieted(self, key: tuple[str, ...]) -> bool:
        """Whether ``key`` was recorded within :data:`LOGIN_QUIET` seconds (and note it now if not)."""
        now = time.monotonic()
        last = self._quiet.get(key)
        if last is not None and now - last < LOGIN_QUIET:
            return True
        if len(self._quiet) >= _QUIET_MAX:  # bounded: forget the old entries
            self._quiet = {k: t for k, t in self._quiet.items() if now - t < LOGIN_QUIET}
            if len(self._quiet) >= _QUIET_MAX:
                self._quiet.clear()
        self._quiet[key] = now
        return False

    async def login(
        self, username: str, client: str, method: str, outcome: str, *, detail: str | None = None,
        fingerprint: str = "",
    ) -> None:
        """Record a login: ``outcome`` is ``success``, ``failure`` or ``throttled``; ``method`` one of
        :data:`LOGIN_METHODS`. Operations: ``login``, ``login_failure``, ``login_throttled``.

        ``fingerprint`` (of the credential) keys the de-duplication of successes, so a login with a
        new password is recorded even inside the quiet window.
        """
        if outcome in ("success", "throttled") and self._quieted((outcome, username, client, method, fingerprint)):
            return
        operation = "login" if outcome == "success" else f"login_{outcome}"
        kind = "robot" if method == "robot" or username.startswith("robot$") else "user"
        await self.record(username, operation, kind, username, client=client, detail=detail, auth=method)

    async def query(
        self, offset: int, limit: int, *, project: str | None = None,
        projects_in: Mapping[str, datetime] | None = None,
        username: str | None = None, operation: str | None = None, resource: str | None = None,
    ) -> tuple[list[AuditEntry], int]:
        await self.pulls.flush()  # this node's own pulls are listed at once
        query = select(audit_log)
        if project is not None:
            query = query.where(audit_log.c.project == project)
        if projects_in is not None:  # each project's rows since it was created (not a deleted namesake's)
            since = [and_(audit_log.c.project == name, audit_log.c.op_time >= created)
                     for name, created in projects_in.items()]
            query = query.where(or_(*since) if since else false())
        if username:
            query = query.where(audit_log.c.username == username)
        if operation:
            query = query.where(audit_log.c.operation == operation)
        if resource:
            query = query.where(audit_log.c.resource.contains(resource))
        async with self.db.read() as conn:
            total = (await conn.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
            rows = (
                await conn.execute(query.order_by(audit_log.c.id.desc()).offset(offset).limit(limit))
            ).all()
        return [_entry(row) for row in rows], int(total)


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(
        row.id, aware(row.op_time), row.username, row.operation, row.resource_type, row.resource, row.project,
        row.client, row.detail, row.auth_method,
    )
