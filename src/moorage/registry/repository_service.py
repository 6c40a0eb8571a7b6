"""Repositories and projects as wholes: listings with their artifacts, and deletes in one transaction.

A repository delete removes its tags, manifests (with their references), blob links, upload
sessions and the row itself in one transaction, so no request can see half of it: after the
commit nothing of it answers by tag, by digest, as a blob or in the catalog. Bytes stay in
storage for garbage collection (the database decides, storage follows).

A project delete takes the project's row lock first; a push into the project then either
committed before (and the delete sees its manifests and refuses) or waits and fails on the
foreign key (see :func:`moorage.registry.repositories.ensure_repository`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from moorage.db.identity_tables import project_members, projects, robots
from moorage.db.session import Database
from moorage.db.tables import manifest_references, manifests, repositories, repository_blobs, tags, uploads
from moorage.db.times import aware
from moorage.errors import RegistryError
from moorage.registry.guard import WriteGuard
from moorage.registry.immutability import ImmutableTagError, guarding_repository
from moorage.registry.quota import release, release_repositories

__all__ = [
    "ArtifactInfo",
    "ProjectNotEmptyError",
    "RepositoryInfo",
    "RepositoryService",
    "TagInfo",
]


@dataclass(frozen=True, slots=True)
class RepositoryInfo:
    id: int
    name: str
    project_id: int | None
    artifact_count: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class TagInfo:
    id: int
    repository_id: int
    manifest_id: int
    name: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ArtifactInfo:
    """A manifest of a repository with its tags and the manifests it lists (an index's children)."""

    id: int
    repository_id: int
    digest: str
    size: int
    media_type: str
    artifact_type: str | None
    created_at: datetime
    tags: list[TagInfo] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    #: When a client last pulled it (``None``: never, as far as the registry recorded; see pull_times).
    pulled_at: datetime | None = None
    #: The digest of the manifest it refers to (a signature, an SBOM), if any.
    subject: str | None = None


class ProjectNotEmptyError(RegistryError):
    """A project delete refused because repositories of the project still hold artifacts."""

    def __init__(self, project: str, names: Sequence[str]) -> None:
        super().__init__(
            "DENIED",
            f"project {project!r} still has {len(names)} repositories with artifacts (first: {names[0]}); "
            "delete them first",
            {"repositories": list(names)[:10]},
            status=412,
        )


def _unknown(name: str) -> RegistryError:
    return RegistryError(
        "NAME_UNKNOWN", f"repository {name!r} does not exist; push an image to create it", {"name": name}
    )


#: A repository counts (in listings, counts and the project-delete check) once it holds a manifest.
_HAS_ARTIFACTS = exists().where(manifests.c.repository_id == repositories.c.id)
_ARTIFACT_COUNT = (
    select(func.count(manifests.c.id)).where(manifests.c.repository_id == repositories.c.id).scalar_subquery()
)


async def _delete_repositories(conn: AsyncConnection, ids: list[int]) -> None:
    """Delete every row of the repositories ``ids`` (children first; the foreign keys would cascade too),
    and take the blobs they alone linked out of their projects' quota usage."""
    if not ids:
        return
    owners = await release_repositories(conn, ids)
    in_ids = manifests.c.repository_id.in_(ids)
    await conn.execute(delete(tags).where(tags.c.repository_id.in_(ids)))
    await conn.execute(
        delete(manifest_references).where(manifest_references.c.manifest_id.in_(select(manifests.c.id).where(in_ids)))
    )
    await conn.execute(delete(manifests).where(in_ids))
    await conn.execute(delete(repository_blobs).where(repository_blobs.c.repository_id.in_(ids)))
    await conn.execute(delete(uploads).where(uploads.c.repository_id.in_(ids)))
    await conn.execute(delete(repositories).where(repositories.c.id.in_(ids)))
    for project_id, blob_ids in sorted(owners.items()):  # after the deletes (moorage.registry.quota)
        await release(conn, project_id, blob_ids)


class RepositoryService:
    """Repository listings, artifacts, and whole-repository and whole-project deletes."""

    def __init__(
        self, db: Database, *, guard: WriteGuard | None = None, on_project_deleted: Callable[[], None] | None = None
    ) -> None:
        self.db = db
        self.guard = guard or WriteGuard()
        #: Called after a project delete commits (drops this node's cache of projects and rights).
        self.on_project_deleted = on_project_deleted or (lambda: None)

    async def of_project(
        self, project_id: int, offset: int, limit: int, *, contains: str | None = None, name: str | None = None
    ) -> tuple[list[RepositoryInfo], int]:
        """The project's repositories that hold artifacts, by name, and how many there are in all.

        ``contains``: only names containing it (LIKE wildcards escaped); ``name``: only that full name.
        """
        where: list[ColumnElement[bool]] = [repositories.c.project_id == project_id, _HAS_ARTIFACTS]
        if contains:
            where.append(repositories.c.name.contains(contains, autoescape=True))
        if name is not None:
            where.append(repositories.c.name == name)
        return await self._page(where, offset, limit)

    async def listing(
        self, offset: int, limit: int, *, contains: str | None = None, visible: ColumnElement[bool] | None = None
    ) -> tuple[list[RepositoryInfo], int]:
        """Every repository holding artifacts where ``visible`` holds (the policy's condition, ``None``:
        all), by name, and their total: the registry-wide list, with or without projects.

        ``contains``: only names containing it (LIKE wildcards escaped).
        """
        where: list[ColumnElement[bool]] = [_HAS_ARTIFACTS]
        if contains:
            where.append(repositories.c.name.contains(contains, autoescape=True))
        if visible is not None:
            where.append(visible)
        return await self._page(where, offset, limit)

    async def _page(
        self, where: list[ColumnElement[bool]], offset: int, limit: int
    ) -> tuple[list[RepositoryInfo], int]:
        query = select(
            repositories.c.id, repositories.c.name, repositories.c.project_id, repositories.c.created_at,
            _ARTIFACT_COUNT.label("n"),
        ).where(*where)
        async with self.db.read() as conn:
            total = (await conn.execute(select(func.count()).select_from(repositories).where(*where))).scalar_one()
            rows = (await conn.execute(query.order_by(repositories.c.name).offset(offset).limit(limit))).all()
        return [RepositoryInfo(r.id, r.name, r.project_id, int(r.n), aware(r.created_at)) for r in rows], int(total)

    async def count(self, project_id: int) -> int:
        """How many of the project's repositories hold artifacts."""
        query = select(func.count()).select_from(repositories).where(
            repositories.c.project_id == project_id, _HAS_ARTIFACTS
        )
        async with self.db.read() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def get(self, name: str) -> RepositoryInfo:
        """One repository; ``NAME_UNKNOWN`` when there is no such repository."""
        query = select(
            repositories.c.id, repositories.c.name, repositories.c.project_id, repositories.c.created_at,
            _ARTIFACT_COUNT.label("n"),
        ).where(repositories.c.name == name)
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise _unknown(name)
        return RepositoryInfo(row.id, row.name, row.project_id, int(row.n), aware(row.created_at))

    async def artifacts(
        self, name: str, offset: int, limit: int, digest: str | None = None, *, tag: str | None = None
    ) -> tuple[list[ArtifactInfo], int]:
        """The repository's manifests, newest first (only ``digest`` when given; only those with a tag
        containing ``tag``, LIKE wildcards escaped, when given), with the total. Paged in SQL: a
        repository of 10,000 tags costs one page of rows."""
        async with self.db.read() as conn:
            found = (await conn.execute(select(repositories.c.id).where(repositories.c.name == name))).scalar()
            if found is None:
                raise _unknown(name)
            repository_id = int(found)
            query = select(
                manifests.c.id, manifests.c.digest, manifests.c.size, manifests.c.media_type,
                manifests.c.artifact_type, manifests.c.created_at, manifests.c.pulled_at, manifests.c.subject_digest,
            ).where(manifests.c.repository_id == repository_id)
            if digest is not None:
                query = query.where(manifests.c.digest == digest)
            if tag:
                query = query.where(
                    exists().where(tags.c.manifest_id == manifests.c.id, tags.c.name.contains(tag, autoescape=True))
                )
            total = (await conn.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
            rows = (
                await conn.execute(
                    query.order_by(manifests.c.created_at.desc(), manifests.c.id.desc()).offset(offset).limit(limit)
                )
            ).all()
            ids = [row.id for row in rows]
            tag_rows = (await conn.execute(select(tags).where(tags.c.manifest_id.in_(ids)).order_by(tags.c.name))).all()
            child_rows = (
                await conn.execute(
                    select(manifest_references.c.manifest_id, manifest_references.c.digest).where(
                        manifest_references.c.manifest_id.in_(ids), manifest_references.c.kind == "manifest"
                    )
                )
            ).all()
        out = {
            row.id: ArtifactInfo(
                row.id, repository_id, row.digest, row.size, row.media_type, row.artifact_type,
                aware(row.created_at), pulled_at=aware(row.pulled_at) if row.pulled_at is not None else None,
                subject=row.subject_digest,
            )
            for row in rows
        }
        for t in tag_rows:
            out[t.manifest_id].tags.append(TagInfo(t.id, repository_id, t.manifest_id, t.name, aware(t.updated_at)))
        for c in child_rows:
            out[c.manifest_id].children.append(c.digest)
        return [out[i] for i in ids], int(total)

    async def delete(self, name: str) -> None:
        """Delete the repository whole, in one transaction; ``NAME_UNKNOWN`` when there is none."""
        self.guard.deletable()
        async with self.db.write() as conn:
            found = (
                await conn.execute(select(repositories.c.id).where(repositories.c.name == name).with_for_update())
            ).scalar()
            if found is None:
                raise _unknown(name)
            held = await guarding_repository(conn, int(found), name)
            if held is not None:
                raise ImmutableTagError(held[0], name, held[1], "deleted (with its repository)")
            await _delete_repositories(conn, [int(found)])

    async def delete_project(self, project_id: int) -> list[str]:
        """Delete a project with its repositories, members and robot accounts in one transaction.

        Refused with :class:`ProjectNotEmptyError` (412) while a repository holds artifacts
        (Harbor's rule: delete those first); repositories that only hold blobs or upload sessions
        go with the project. Returns the names of the repositories deleted.

        Refused in read-only mode; ``storage.delete.enabled: false`` does not stop it, since it
        never deletes an artifact (as before, when a project delete was an identity change only).
        """
        self.guard.writable()
        async with self.db.write() as conn:
            project = (
                await conn.execute(select(projects.c.name).where(projects.c.id == project_id).with_for_update())
            ).scalar()
            if project is None:
                raise RegistryError(
                    "NAME_UNKNOWN", f"project {project_id} does not exist (deleted meanwhile?); list the projects",
                    {"project_id": project_id},
                )
            owned = repositories.c.project_id == project_id
            # Lock first, then look: on PostgreSQL the lock waits for pushes that already wrote into
            # these rows, and only a statement started after it sees what they committed.
            ids = list(
                (await conn.execute(select(repositories.c.id).where(owned).with_for_update())).scalars()
            )
            names = list(
                (await conn.execute(select(repositories.c.name).where(owned).order_by(repositories.c.name))).scalars()
            )
            used = list(
                (
                    await conn.execute(
                        select(repositories.c.name).where(owned, _HAS_ARTIFACTS).order_by(repositories.c.name)
                    )
                ).scalars()
            )
            if used:
                raise ProjectNotEmptyError(str(project), used)
            await _delete_repositories(conn, [int(i) for i in ids])
            await conn.execute(delete(robots).where(robots.c.project_id == project_id))
            await _revoke_system_robot_rights(conn, str(project))
            await conn.execute(delete(project_members).where(project_members.c.project_id == project_id))
            await conn.execute(delete(projects).where(projects.c.id == project_id))
        self.on_project_deleted()
        return names


async def _revoke_system_robot_rights(conn: AsyncConnection, project: str) -> None:
    """Drop ``project`` from the permissions of system-level robots, inside the project delete.

    Their rights name projects, not project ids: left alone, a robot once granted push on a
    deleted project would hold it on any new project created later under the same name.
    """
    rows = (
        await conn.execute(
            select(robots.c.id, robots.c.permissions).where(robots.c.project_id.is_(None)).with_for_update()
        )
    ).all()
    for row in rows:
        permissions = json.loads(row.permissions)
        if project in permissions:
            del permissions[project]
            await conn.execute(
                update(robots).where(robots.c.id == row.id).values(permissions=json.dumps(permissions))
            )
