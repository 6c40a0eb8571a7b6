"""What a caller may find: Harbor's ``/search`` results and ``/projects/{p}/summary`` counts.

The queries live here, not in the REST handlers; *which* rows a caller may see is not decided
here either: every query takes the access policy's condition (``Policy.visible_projects`` /
``visible_repositories``), so search answers exactly as ``/projects`` and ``_catalog`` do.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, exists, func, select

from moorage.db.identity_tables import project_members
from moorage.db.session import Database
from moorage.db.tables import manifests, repositories

__all__ = ["RepositoryHit", "SearchIndex"]


@dataclass(frozen=True, slots=True)
class RepositoryHit:
    """A repository whose name matched, with its number of artifacts (manifests)."""

    name: str
    artifact_count: int

    @property
    def project(self) -> str:
        return self.name.split("/", 1)[0]


class SearchIndex:
    """Read-only queries over repositories and members (nothing is indexed beyond the tables)."""

    #: The repository name column, for the policy's ``visible_repositories`` condition.
    NAME = repositories.c.name

    def __init__(self, db: Database) -> None:
        self.db = db

    async def repositories(
        self, text: str, visible: ColumnElement[bool] | None, limit: int
    ) -> list[RepositoryHit]:
        """Repositories with at least one artifact whose name contains ``text``, where ``visible`` holds."""
        artifacts = (
            select(func.count(manifests.c.id)).where(manifests.c.repository_id == repositories.c.id)
            .scalar_subquery()
        )
        query = select(repositories.c.name, artifacts.label("artifacts")).where(
            and_(
                repositories.c.name.contains(text, autoescape=True),
                exists().where(manifests.c.repository_id == repositories.c.id),
            )
        )
        if visible is not None:
            query = query.where(visible)
        async with self.db.read() as conn:
            rows = (await conn.execute(query.order_by(repositories.c.name).limit(limit))).all()
        return [RepositoryHit(str(row.name), int(row.artifacts)) for row in rows]

    async def role_counts(self, project_id: int) -> Counter[str]:
        """Members of a project per role name (``projectAdmin``, ``developer``…)."""
        query = (
            select(project_members.c.role, func.count(project_members.c.id).label("members"))
            .where(project_members.c.project_id == project_id)
            .group_by(project_members.c.role)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return Counter({str(row.role): int(row.members) for row in rows})
