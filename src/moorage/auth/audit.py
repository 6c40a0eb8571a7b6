"""The audit log: every change to users, projects, members and robots, and every push, pull and delete.

Rows are written in their own short transaction after the operation succeeded; a failure to
write one is logged and never fails the operation the user asked for (the registry must not
refuse a pull because the audit table is unavailable).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import func, insert, select

from moorage.auth.identity import aware, utcnow
from moorage.db.identity_tables import audit_log
from moorage.db.session import Database

__all__ = ["AuditEntry", "AuditLog"]

log = structlog.get_logger("moorage.audit")


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


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(
        self, username: str, operation: str, resource_type: str, resource: str, *,
        project: str | None = None, client: str | None = None, detail: str | None = None,
    ) -> None:
        try:
            async with self.db.write() as conn:
                await conn.execute(
                    insert(audit_log).values(
                        op_time=utcnow(), username=username, operation=operation, resource_type=resource_type,
                        resource=resource[:512], project=project, client=(client or "")[:64] or None, detail=detail,
                    )
                )
        except Exception as exc:  # noqa: BLE001 - auditing must not fail the audited operation
            log.error("audit_write_failed", operation=operation, resource=resource, error=str(exc))

    async def query(
        self, offset: int, limit: int, *, project: str | None = None, projects_in: list[str] | None = None,
        username: str | None = None, operation: str | None = None, resource: str | None = None,
    ) -> tuple[list[AuditEntry], int]:
        query = select(audit_log)
        if project is not None:
            query = query.where(audit_log.c.project == project)
        if projects_in is not None:
            query = query.where(audit_log.c.project.in_(projects_in))
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
        row.client, row.detail,
    )
