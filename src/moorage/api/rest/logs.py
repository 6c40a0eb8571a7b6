"""``/audit-logs``: every change and every push, pull and delete (admins see all, members their projects')."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from moorage.api.rest.common import CallerDep, PageDep, paginate
from moorage.auth.audit import AuditEntry
from moorage.auth.roles import member_viewer_roles

router = APIRouter(tags=["auditlog"])


class AuditLogItem(BaseModel):
    id: int
    username: str
    resource: str
    resource_type: str
    operation: str
    op_time: datetime
    project: str | None
    client: str | None
    #: How the caller authenticated: basic, robot, token, session, anonymous; on logins the method.
    auth_method: str | None = None
    #: What changed (``role developer -> guest``), or why a login failed.
    detail: str | None = None


def audit_items(entries: list[AuditEntry]) -> list[AuditLogItem]:
    return [
        AuditLogItem(id=e.id, username=e.username, resource=e.resource, resource_type=e.resource_type,
                     operation=e.operation, op_time=e.op_time, project=e.project, client=e.client,
                     auth_method=e.auth_method, detail=e.detail)
        for e in entries
    ]


@router.get("/audit-logs", response_model=list[AuditLogItem])
async def audit_logs(
    request: Request, response: Response, who: CallerDep, page: PageDep,
    username: Annotated[str | None, Query(max_length=255)] = None,
    operation: Annotated[str | None, Query(max_length=32)] = None,
    resource: Annotated[str | None, Query(max_length=255)] = None,
) -> list[AuditLogItem]:
    """Harbor filters with ``q=``; Moorage takes ``username``, ``operation`` and ``resource`` parameters."""
    who.require_login()
    projects_in: dict[str, datetime] | None = None
    if not who.subject.sysadmin:  # members see the logs of their projects (guest and above)
        projects_in = await who.identity.store.projects_with_role(who.subject.user_id, member_viewer_roles())
    entries, total = await who.identity.audit.query(
        page.offset, page.page_size, projects_in=projects_in, username=username, operation=operation,
        resource=resource,
    )
    paginate(request, response, page, total)
    return audit_items(entries)
