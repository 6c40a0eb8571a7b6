"""Repository rows and blob links: the small pieces every other service shares."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from moorage.db.ownership import owning_project_id, project_name_of
from moorage.db.session import Reader
from moorage.db.tables import blobs, repositories, repository_blobs
from moorage.db.upsert import insert_ignore
from moorage.errors import RegistryError
from moorage.registry.digests import Digest
from moorage.registry.gc_fence import ACTIVE, link_active
from moorage.registry.quota import reconcile

__all__ = ["ensure_repository", "find_repository", "link_blob", "linked_blob_size", "now"]


def now() -> datetime:
    return datetime.now(UTC)


async def find_repository(conn: Reader, name: str) -> int | None:
    """The repository's id, or ``None`` when it does not exist."""
    result = await conn.execute(select(repositories.c.id).where(repositories.c.name == name))
    return result.scalar_one_or_none()


# Built once: every push of a manifest, and every blob upload's start and end, runs it.
_EXISTING = select(repositories.c.id, repositories.c.project_id).where(repositories.c.name == bindparam("name"))


def _no_project(name: str) -> RegistryError:
    project = project_name_of(name) or name
    return RegistryError(
        "NAME_UNKNOWN",
        f"project {project!r} does not exist; create it (POST /api/v2.0/projects) or check the name",
        {"name": name},
    )


async def ensure_repository(conn: AsyncConnection, name: str, *, project_required: bool = False) -> int:
    """The repository's id, creating the row on first push (inside the caller's write transaction).

    The row is linked to the project its name starts with. ``project_required`` (token mode)
    refuses a name whose project does not exist with ``NAME_UNKNOWN``; the foreign key makes
    that check hold against a project deleted concurrently (the insert then fails, and so does
    the push). A repository created before its project (``auth.mode: none``) joins it here.

    A repository that exists is read, not inserted again: with its project (every push after the
    first in token mode) that one indexed read is all; without one, the project lookup decides
    whether it joins one. Its project exists (the foreign key cascades a project delete to it); a
    delete that commits after this read makes the caller's later inserts fail on their own keys.
    """
    found = (await conn.execute(_EXISTING, {"name": name})).first()
    if found is not None and found.project_id is not None:
        return int(found.id)
    project_id = await owning_project_id(conn, name)
    if project_id is None and project_required:
        raise _no_project(name)
    if found is not None and project_id is None:
        return int(found.id)  # no project to join (auth.mode: none)
    try:
        await insert_ignore(
            conn, repositories, {"name": name, "project_id": project_id, "created_at": now()}, ["name"]
        )
    except IntegrityError:
        # Only the project foreign key can fail here (the name conflict is ignored): the
        # project was deleted between the lookup above and this insert.
        raise _no_project(name) from None
    row = (
        await conn.execute(select(repositories.c.id, repositories.c.project_id).where(repositories.c.name == name))
    ).first()
    if row is None:  # pragma: no cover - the insert above guarantees a row
        raise RuntimeError(f"repository {name} vanished inside its own transaction")
    if row.project_id is None and project_id is not None:
        await conn.execute(update(repositories).where(repositories.c.id == row.id).values(project_id=project_id))
        await reconcile(conn, project_id)  # its blobs now count in the project's quota
    return int(row.id)


async def link_blob(
    conn: AsyncConnection, repository_id: int, digest: Digest, size: int, *, enforce: bool = True
) -> None:
    """Make an active blob pullable from the repository (``size`` is informative).

    Raises :class:`~moorage.registry.gc_fence.BlobNotActive` when the blob has no active row: bytes are
    recorded only by publishing (:func:`moorage.registry.gc_fence.publish_blob`) or importing
    (:func:`moorage.registry.gc_fence.record_existing`), never by linking (docs/gc.md).
    :class:`~moorage.registry.quota.QuotaExceeded` when it would take the project over its storage
    quota (``enforce=False``: counted, never refused).
    """
    await link_active(conn, repository_id, digest, enforce=enforce)


# Built once: every blob HEAD/GET runs it (see manifest_store for the measurement).
_LINKED_SIZE = (
    select(blobs.c.size)
    .select_from(blobs.join(repository_blobs).join(repositories))
    .where(
        repositories.c.name == bindparam("repository"),
        blobs.c.digest == bindparam("digest"),
        blobs.c.state == ACTIVE,  # a blob being published or garbage collected is not there (docs/gc.md)
    )
)


async def linked_blob_size(conn: Reader, repository: str, digest: Digest) -> int | None:
    """Size of ``digest`` if it is linked into ``repository``, else ``None``."""
    result = await conn.execute(_LINKED_SIZE, {"repository": repository, "digest": str(digest)})
    return result.scalar_one_or_none()
