"""Reading and changing project quotas (what ``/api/v2.0/quotas`` serves); callers check who may, with the policy.

The accounting itself happens in the push and delete transactions (:mod:`moorage.registry.quota`);
this service only reads its result and changes the limits. A limit below the current usage is
accepted (as in Harbor): nothing is deleted, further pushes that need room are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select, update

from moorage.db.identity_tables import projects, users
from moorage.db.quota_tables import quotas
from moorage.db.session import Database
from moorage.db.times import aware
from moorage.registry.quota import RESOURCES, InvalidLimit, Limits, count_used, lock_quota, parse_limit

__all__ = ["SORT_KEYS", "Quota", "QuotaService"]


@dataclass(frozen=True, slots=True)
class Quota:
    """One project's quota: its id is the project's id."""

    project_id: int
    project_name: str
    owner_name: str | None
    limits: Limits
    storage_used: int
    count_used: int
    created_at: datetime
    updated_at: datetime


_COLUMNS = (
    quotas.c.project_id,
    projects.c.name.label("project_name"),
    users.c.username.label("owner_name"),
    quotas.c.storage_limit,
    quotas.c.count_limit,
    quotas.c.storage_used,
    quotas.c.created_at,
    quotas.c.updated_at,
)
_FROM = quotas.join(projects, projects.c.id == quotas.c.project_id).outerjoin(
    users, users.c.id == projects.c.owner_id
)
#: Harbor's ``sort`` keys for ``GET /quotas`` (a ``-`` prefix sorts descending).
SORT_KEYS = {
    "id": quotas.c.project_id,
    "creation_time": quotas.c.created_at,
    "update_time": quotas.c.updated_at,
    "hard.storage": quotas.c.storage_limit,
    "used.storage": quotas.c.storage_used,
}


class QuotaService:
    """Project quotas: listed, read, changed; ``defaults`` are the limits of new projects (config ``quotas``)."""

    def __init__(self, db: Database, defaults: Limits | None = None) -> None:
        self.db = db
        self.defaults = defaults or Limits()

    def for_new_project(self, storage_limit: Any = None) -> Limits:
        """The limits a project created now gets: ``storage_limit`` if given (Harbor's ``ProjectReq``), else the defaults.

        Raises :class:`~moorage.registry.quota.InvalidLimit` naming ``storage_limit``.
        """
        if storage_limit is None:
            return self.defaults
        return Limits(parse_limit("storage_limit", storage_limit), self.defaults.count)

    async def _rows(self, conn: Any, where: list[ColumnElement[bool]], order: Any, offset: int,
                    limit: int) -> list[Quota]:
        rows = (
            await conn.execute(select(*_COLUMNS).select_from(_FROM).where(*where).order_by(*order)
                               .offset(offset).limit(limit))
        ).all()
        return [
            Quota(
                int(row.project_id), str(row.project_name), row.owner_name,
                Limits(int(row.storage_limit), int(row.count_limit)), int(row.storage_used),
                await count_used(conn, int(row.project_id)), aware(row.created_at), aware(row.updated_at),
            )
            for row in rows
        ]

    async def list(
        self, visible: ColumnElement[bool] | None, offset: int, limit: int, *, project_id: int | None = None,
        sort: str | None = None,
    ) -> tuple[list[Quota], int]:
        """Quotas of the projects where ``visible`` holds (the policy's condition; ``None``: all), and their total.

        ``sort``: one of :data:`SORT_KEYS`, ``-`` for descending (:class:`ValueError` otherwise).
        """
        where: list[ColumnElement[bool]] = []
        if visible is not None:
            where.append(visible)
        if project_id is not None:
            where.append(quotas.c.project_id == project_id)
        order: list[Any] = [quotas.c.project_id]
        if sort:
            column = SORT_KEYS.get(sort.removeprefix("-"))
            if column is None:
                raise ValueError(f"{sort!r} is not a sort key; use one of {', '.join(sorted(SORT_KEYS))} "
                                 "(prefix '-' for descending)")
            order = [column.desc() if sort.startswith("-") else column.asc(), quotas.c.project_id]
        async with self.db.read() as conn:
            total = (await conn.execute(select(func.count()).select_from(_FROM).where(*where))).scalar_one()
            found = await self._rows(conn, where, order, offset, limit)
        return found, int(total)

    async def get(self, project_id: int) -> Quota | None:
        async with self.db.read() as conn:
            found = await self._rows(conn, [quotas.c.project_id == project_id], [quotas.c.project_id], 0, 1)
        return found[0] if found else None

    async def update(self, project_id: int, hard: dict[str, Any]) -> Quota | None:
        """Set the limits in ``hard`` (resource → value, as the API received them); ``None`` when the project
        does not exist.

        Every value is validated before anything is written: :class:`~moorage.registry.quota.InvalidLimit`
        names the first bad one (``hard.storage``), and nothing is saved. Unknown resources are refused too.
        """
        values: dict[str, Any] = {}
        for resource, value in hard.items():
            if resource not in RESOURCES:
                raise InvalidLimit(f"hard.{resource}", "unknown resource; use 'storage' (bytes) or 'count' (artifacts)")
            values[f"{resource}_limit"] = parse_limit(f"hard.{resource}", value)
        async with self.db.write() as conn:
            exists_now = (
                await conn.execute(select(projects.c.id).where(projects.c.id == project_id))
            ).scalar_one_or_none()
            if exists_now is None:
                return None
            await lock_quota(conn, project_id)  # creates the row of a project that predates quotas
            if values:
                await conn.execute(
                    update(quotas).where(quotas.c.project_id == project_id).values(**values, updated_at=datetime.now(UTC))
                )
        return await self.get(project_id)
