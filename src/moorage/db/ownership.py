"""Which project owns a repository: the one SQL rule every layer uses (no name-prefix matching elsewhere).

A repository belongs to the project named by its first path component, recorded in
``repositories.project_id`` when the repository is created (or when that project is created
after it, for repositories pushed with ``auth.mode: none``). Deletes, listings and counts
then follow the foreign key, so a project deleted and created again with the same name
starts empty.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, literal, select, update

from moorage.db.identity_tables import projects
from moorage.db.session import Reader
from moorage.db.tables import repositories

__all__ = ["adopt_repositories", "owning_project_id", "project_name_of"]


def project_name_of(repository: str) -> str | None:
    """The project a repository name would belong to (``None`` for a one-component name)."""
    project, sep, _ = repository.partition("/")
    return project if sep else None


async def owning_project_id(conn: Reader, repository: str) -> int | None:
    """Id of the project that owns ``repository``'s name, or ``None`` when there is none."""
    project = project_name_of(repository)
    if project is None:
        return None
    result = await conn.execute(select(projects.c.id).where(projects.c.name == project))
    found = result.scalar_one_or_none()
    return None if found is None else int(found)


async def adopt_repositories(conn: Any, project_id: int, project: str) -> None:
    """Give ``project`` the repositories under its name that have no project (call in its creating transaction).

    ``substr`` on the exact prefix, not ``LIKE``: ``_`` is a wildcard there and valid in project names.
    """
    prefix = project + "/"
    await conn.execute(
        update(repositories)
        .where(
            repositories.c.project_id.is_(None),
            func.substr(repositories.c.name, 1, len(prefix)) == literal(prefix),
        )
        .values(project_id=project_id)
    )
