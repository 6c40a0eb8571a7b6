"""Project quotas: the accounting done inside the transactions that link and unlink blobs.

A project's storage usage is the size of every blob linked into at least one of its
repositories, each blob counted once (as Harbor counts it). The set is kept in
``project_blobs`` and its sum in ``quotas.storage_used``; both change only here, together, in
the transactions that change the links. Every path that adds a link charges it
(:func:`charge_link`, called by :func:`moorage.registry.gc_fence.link_blob_id`), every path that
removes links releases them (:func:`release`, :func:`release_blobs`) after its deletes. Why that
keeps the usage exact with any number of nodes is argued in docs/lifecycle.md ("Quotas").

Row locks, not a project-wide lock: a push holds the set row of the blob it links (inserting it,
or ``FOR SHARE``) and takes the quota row only in the last statement that adds to the usage and
checks the limit; a release locks the set rows it may drop (``FOR UPDATE``) before it looks at
the links. Pushes of blobs the project already holds never wait for each other.

Lock order, the same for everyone: the repository row (:func:`charge_link` takes it ``FOR KEY
SHARE`` first, a repository delete ``FOR UPDATE``), the blob rows, the set rows (in blob order),
then the quota row. GC takes blob rows, then per project (in project order) set rows and the
quota row.

The artifact count is not kept: it is counted (the project's manifests) under the quota row's
lock when a manifest push needs it, so no delete path has anything to keep in step.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, exists, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from moorage.db.identity_tables import projects
from moorage.db.ownership import owning_project_id
from moorage.db.quota_tables import project_blobs, quotas
from moorage.db.session import Reader
from moorage.db.tables import blobs, manifests, repositories, repository_blobs
from moorage.db.upsert import insert_ignore
from moorage.errors import RegistryError
from moorage.numbers import INT64_MAX

__all__ = [
    "RESOURCES",
    "UNLIMITED",
    "InvalidLimit",
    "Limits",
    "QuotaExceeded",
    "charge_link",
    "charge_manifest",
    "count_used",
    "create_quota",
    "human_size",
    "lock_quota",
    "owner_of",
    "parse_limit",
    "precheck",
    "reconcile",
    "release",
    "release_blobs",
    "release_repositories",
]

#: A limit of ``-1`` means no limit (Harbor's value).
UNLIMITED = -1
#: The resources a quota limits: ``storage`` in bytes, ``count`` in artifacts (manifests).
RESOURCES = ("storage", "count")
#: Ids per ``IN (...)`` list (SQLite builds before 3.32 allow 999 bound parameters).
_CHUNK = 500


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Limits:
    """Hard limits of one project (``-1``: unlimited)."""

    storage: int = UNLIMITED
    count: int = UNLIMITED


class InvalidLimit(ValueError):
    """A limit that is not ``-1`` or a whole number ``>= 0``; ``field`` names where it came from."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def parse_limit(field: str, value: Any) -> int:
    """``value`` as a limit: ``-1`` (unlimited) or an integer from 0 to 2^63-1; :class:`InvalidLimit` otherwise.

    Booleans, floats (``1.5``, but also ``10.0``) and strings are refused rather than converted:
    a limit typed as ``"10G"`` or ``1e9`` should be corrected, not guessed at.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidLimit(field, f"{value!r} is not an integer; give a number of bytes (storage) or artifacts "
                                  "(count), or -1 for unlimited")
    if value < UNLIMITED:
        raise InvalidLimit(field, f"{value} is negative; give -1 for unlimited or a limit of 0 or more")
    if value > INT64_MAX:
        raise InvalidLimit(field, f"{value} is larger than {INT64_MAX}; give -1 for unlimited")
    return value


def human_size(size: int) -> str:
    """``size`` bytes for a message: ``1.5 MiB (1572864 bytes)``; the exact figure is what limits are set in."""
    if size < 1024:
        return f"{size} bytes"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        value /= 1024
        if value < 1024 or unit == "EiB":
            return f"{value:.1f} {unit} ({size} bytes)"
    raise AssertionError("unreachable")  # pragma: no cover


def _raise_hint(project_id: int, resource: str) -> str:
    # No double quotes: clients print the message inside quotes of their own and escape ours
    # (skopeo and podman showed {\"hard\": ...}).
    unit = "bytes" if resource == "storage" else "artifacts"
    return (
        f"ask a system administrator to raise the limit: PUT /api/v2.0/quotas/{project_id} with hard.{resource} "
        f"set to the new limit in {unit} (-1 for unlimited)"
    )


class QuotaExceeded(RegistryError):
    """A push refused because it would take the project over its quota (OCI ``DENIED``, 403)."""

    def __init__(self, project: str, project_id: int, resource: str, used: int, limit: int, needed: int) -> None:
        if resource == "storage":
            message = (
                f"quota exceeded: project {project!r} uses {human_size(used)} of its storage limit of "
                f"{human_size(limit)} and this push needs {human_size(needed)} more; delete artifacts and run "
                f"garbage collection, or {_raise_hint(project_id, resource)}"
            )
        else:
            message = (
                f"quota exceeded: project {project!r} holds {used} artifacts, its limit is {limit}; delete "
                f"artifacts, or {_raise_hint(project_id, resource)}"
            )
        super().__init__(
            "DENIED",
            message,
            {"project": project, "quota_id": project_id, "resource": resource, "used": used, "limit": limit,
             "needed": needed},
        )


@dataclass(frozen=True, slots=True)
class _QuotaRow:
    project_id: int
    storage_limit: int
    count_limit: int
    storage_used: int


async def create_quota(conn: AsyncConnection, project_id: int, limits: Limits) -> None:
    """The new project's quota row (call in the transaction that creates the project)."""
    stamp = _now()
    await conn.execute(
        insert(quotas).values(
            project_id=project_id, storage_limit=limits.storage, count_limit=limits.count, storage_used=0,
            created_at=stamp, updated_at=stamp,
        )
    )


async def lock_quota(conn: AsyncConnection, project_id: int) -> _QuotaRow:
    """The project's quota row, locked until the transaction ends (``FOR NO KEY UPDATE``: the lock an
    ``UPDATE`` of it takes, which the key checks of ``project_blobs`` inserts do not wait for).

    A project without a row (created by a path that predates quotas) gets an unlimited one.
    """
    query = (
        select(quotas.c.project_id, quotas.c.storage_limit, quotas.c.count_limit, quotas.c.storage_used)
        .where(quotas.c.project_id == project_id)
        .with_for_update(key_share=True)
    )
    row = (await conn.execute(query)).first()
    if row is None:
        stamp = _now()
        await insert_ignore(
            conn, quotas,
            {"project_id": project_id, "storage_limit": UNLIMITED, "count_limit": UNLIMITED, "storage_used": 0,
             "created_at": stamp, "updated_at": stamp},
            ["project_id"],
        )
        row = (await conn.execute(query)).one()
    return _QuotaRow(int(row.project_id), int(row.storage_limit), int(row.count_limit), int(row.storage_used))


async def _project_of(conn: AsyncConnection, repository_id: int) -> int | None:
    """The repository's project, with the repository row held ``FOR KEY SHARE`` (before the quota lock).

    A repository delete (``FOR UPDATE`` on that row, then the quota row) therefore waits for this
    transaction instead of holding the row this one would need after taking the quota lock.
    """
    query = (
        select(repositories.c.project_id)
        .where(repositories.c.id == repository_id)
        .with_for_update(read=True, key_share=True)
    )
    found = (await conn.execute(query)).scalar_one_or_none()
    return None if found is None else int(found)


async def owner_of(conn: Reader, repository_id: int) -> int | None:
    """The project of a repository (no lock: for a caller that already holds what it needs)."""
    found = (
        await conn.execute(select(repositories.c.project_id).where(repositories.c.id == repository_id))
    ).scalar_one_or_none()
    return None if found is None else int(found)


async def _project_name(conn: Reader, project_id: int) -> str:
    name = (await conn.execute(select(projects.c.name).where(projects.c.id == project_id))).scalar_one_or_none()
    return str(name) if name is not None else f"#{project_id}"


async def charge_link(conn: AsyncConnection, repository_id: int, blob_id: int, *, enforce: bool = True) -> None:
    """Count a blob just linked into ``repository_id`` in its project's usage (once per project).

    Call inside the linking transaction, after the link row is written and after every blob lock
    the transaction takes. The blob's row in the project's set is inserted, or, when it is there,
    held ``FOR SHARE`` until the transaction ends, so no release can drop it on a view of the links
    that misses this one (:func:`release`). A blob new to the project adds its size to the usage
    in one ``UPDATE`` that also checks the limit: :class:`QuotaExceeded` when it would take the
    project over its storage limit (``enforce=False``: imports, which record what storage already
    holds, are counted but never refused); the caller's transaction then rolls back with the link.
    """
    project_id = await _project_of(conn, repository_id)
    if project_id is None:
        return  # auth.mode: none has no projects, hence no quotas
    has_quota = exists().where(quotas.c.project_id == project_id)
    found = (await conn.execute(select(blobs.c.size, has_quota.label("has_quota")).where(blobs.c.id == blob_id))).one()
    size = int(found.size)
    if not found.has_quota:
        await lock_quota(conn, project_id)  # a project that predates quotas gets an unlimited row
    held = (
        select(project_blobs.c.blob_id)
        .where(project_blobs.c.project_id == project_id, project_blobs.c.blob_id == blob_id)
        .with_for_update(read=True)
    )
    for _ in range(3):
        inserted = await conn.execute(
            _insert(conn, project_blobs)
            .values(project_id=project_id, blob_id=blob_id, size=size)
            .on_conflict_do_nothing(index_elements=["project_id", "blob_id"])
        )
        if inserted.rowcount == 1:
            await _add(conn, project_id, size, enforce)
            return
        if (await conn.execute(held)).first() is not None:
            return  # already counted, and now kept until this transaction ends
        # a release deleted the row between the insert and the lock: insert it again
    raise RegistryError(
        "UNAVAILABLE", "the project's quota usage is changing under heavy contention; push again",
        {"project_id": project_id, "blob_id": blob_id},
    )


def _insert(conn: AsyncConnection, table: Any) -> Any:
    return (sqlite.insert if conn.dialect.name == "sqlite" else postgresql.insert)(table)


async def _add(conn: AsyncConnection, project_id: int, size: int, enforce: bool) -> None:
    """``storage_used += size`` in one statement that also checks the limit (:class:`QuotaExceeded`).

    The ``UPDATE`` takes the quota row's lock and re-reads the row after any wait (PostgreSQL READ
    COMMITTED re-checks its ``WHERE`` on the newest version), so two pushes cannot both take the
    last room.
    """
    statement = (
        update(quotas)
        .where(quotas.c.project_id == project_id)
        .values(storage_used=quotas.c.storage_used + size, updated_at=_now())
    )
    if enforce:
        statement = statement.where(
            (quotas.c.storage_limit == UNLIMITED) | (quotas.c.storage_used + size <= quotas.c.storage_limit)
        )
    if (await conn.execute(statement)).rowcount == 1:
        return
    row = (
        await conn.execute(select(quotas.c.storage_limit, quotas.c.storage_used).where(quotas.c.project_id == project_id))
    ).one()
    raise QuotaExceeded(
        await _project_name(conn, project_id), project_id, "storage", int(row.storage_used), int(row.storage_limit), size
    )


def _manifests_of(project_id: int) -> Any:
    return (
        select(func.count(manifests.c.id))
        .select_from(manifests.join(repositories))
        .where(repositories.c.project_id == project_id)
    )


async def count_used(conn: Reader, project_id: int) -> int:
    """How many artifacts (manifests, each repository's counted) the project holds."""
    return int((await conn.execute(_manifests_of(project_id))).scalar_one())


async def charge_manifest(conn: AsyncConnection, repository_id: int) -> None:
    """Refuse a manifest just stored in ``repository_id`` if it takes the project over its count limit.

    Call inside the manifest's transaction after its row is inserted (and after :func:`charge_link`
    took the quota lock, so two pushes cannot both take the last place).
    """
    project_id = await owner_of(conn, repository_id)  # charge_link locked the repository row already
    if project_id is None:
        return
    quota = await lock_quota(conn, project_id)
    if quota.count_limit == UNLIMITED:
        return
    held = await count_used(conn, project_id)
    if held > quota.count_limit:
        raise QuotaExceeded(await _project_name(conn, project_id), project_id, "count", held - 1,
                            quota.count_limit, 1)


async def precheck(conn: Reader, repository: str, digest: str, size: int, *, manifest: bool = False) -> None:
    """Refuse, before anything is written, a push of ``digest`` into ``repository`` that its quota would refuse.

    A read outside any lock, so that a refused blob or manifest is never published: the
    transaction that links it checks again under the quota lock (:func:`charge_link`,
    :func:`charge_manifest`), which is what makes the limit hold when pushes race. ``manifest``:
    ``digest`` is a manifest, which also counts as an artifact if the repository lacks it.
    """
    project_id = await owning_project_id(conn, repository)
    if project_id is None:
        return
    row = (
        await conn.execute(
            select(quotas.c.storage_limit, quotas.c.count_limit, quotas.c.storage_used).where(
                quotas.c.project_id == project_id
            )
        )
    ).first()
    if row is None:
        return
    if row.storage_limit != UNLIMITED and row.storage_used + size > row.storage_limit:
        present = (
            await conn.execute(
                select(project_blobs.c.blob_id)
                .select_from(project_blobs.join(blobs, blobs.c.id == project_blobs.c.blob_id))
                .where(project_blobs.c.project_id == project_id, blobs.c.digest == digest)
            )
        ).first()
        if present is None:
            raise QuotaExceeded(await _project_name(conn, project_id), project_id, "storage", int(row.storage_used),
                                int(row.storage_limit), size)
    if manifest and row.count_limit != UNLIMITED:
        stored = (
            await conn.execute(
                select(manifests.c.id)
                .select_from(manifests.join(repositories))
                .where(repositories.c.name == repository, manifests.c.digest == digest)
            )
        ).first()
        held = await count_used(conn, project_id)
        if stored is None and held + 1 > row.count_limit:
            raise QuotaExceeded(await _project_name(conn, project_id), project_id, "count", held,
                                int(row.count_limit), 1)


async def release(conn: AsyncConnection, project_id: int, blob_ids: Iterable[int] | None = None) -> None:
    """After links of the project were removed: drop the blobs no repository of it links any more.

    ``blob_ids`` limits the check to those blobs (``None``: every blob of the project). Call in the
    unlinking transaction, after the deletes. The set's rows are locked (``FOR UPDATE``, in blob
    order) *before* the links are looked at, in a statement of their own: a push that linked one of
    them holds its row (:func:`charge_link`) until it commits, so the look that follows the lock
    sees its link, and a push that comes later re-inserts what this drops.
    """
    candidates = select(project_blobs.c.blob_id).where(project_blobs.c.project_id == project_id)
    chunks: list[list[int] | None] = [None]
    if blob_ids is not None:
        ids = sorted(set(blob_ids))
        chunks = [ids[start : start + _CHUNK] for start in range(0, len(ids), _CHUNK)]
    still_linked = exists().where(
        repository_blobs.c.blob_id == project_blobs.c.blob_id,
        repository_blobs.c.repository_id.in_(select(repositories.c.id).where(repositories.c.project_id == project_id)),
    )
    stale: list[tuple[int, int]] = []
    for chunk in chunks:
        query = candidates if chunk is None else candidates.where(project_blobs.c.blob_id.in_(chunk))
        locked = list((await conn.execute(query.order_by(project_blobs.c.blob_id).with_for_update())).scalars())
        if not locked:
            continue
        rows = await conn.execute(
            select(project_blobs.c.blob_id, project_blobs.c.size).where(
                project_blobs.c.project_id == project_id, project_blobs.c.blob_id.in_(locked), ~still_linked
            )
        )
        stale.extend((int(row.blob_id), int(row.size)) for row in rows)
    await _drop(conn, project_id, stale)


async def _drop(conn: AsyncConnection, project_id: int, rows: list[tuple[int, int]]) -> None:
    """Delete ``(blob_id, size)`` from the project's set and its usage (the caller holds those rows locked)."""
    if not rows:
        return
    ids = sorted(blob_id for blob_id, _ in rows)
    for start in range(0, len(ids), _CHUNK):
        await conn.execute(
            delete(project_blobs).where(
                project_blobs.c.project_id == project_id, project_blobs.c.blob_id.in_(ids[start : start + _CHUNK])
            )
        )
    await conn.execute(
        update(quotas)
        .where(quotas.c.project_id == project_id)
        .values(storage_used=quotas.c.storage_used - sum(size for _, size in rows), updated_at=_now())
    )


async def release_repositories(conn: AsyncConnection, repository_ids: list[int]) -> dict[int, list[int]]:
    """Project → blobs linked by repositories about to be deleted; pass each to :func:`release` after the delete."""
    found: dict[int, list[int]] = {}
    if not repository_ids:
        return found
    rows = await conn.execute(
        select(repositories.c.project_id, repository_blobs.c.blob_id)
        .distinct()
        .select_from(repository_blobs.join(repositories))
        .where(repositories.c.id.in_(repository_ids), repositories.c.project_id.is_not(None))
    )
    for row in rows:
        found.setdefault(int(row.project_id), []).append(int(row.blob_id))
    return found


async def release_blobs(conn: AsyncConnection, blob_ids: list[int]) -> None:
    """Before GC deletes blob rows (which it holds locked): take them out of every project's usage.

    Per project in project order: the set's rows, then the quota row (by the ``UPDATE``), after the
    blob rows, the order every writer uses. No push holds these set rows: it would hold the blob row.
    """
    found: dict[int, list[tuple[int, int]]] = {}
    ids = sorted(set(blob_ids))
    for start in range(0, len(ids), _CHUNK):
        rows = await conn.execute(
            select(project_blobs.c.project_id, project_blobs.c.blob_id, project_blobs.c.size).where(
                project_blobs.c.blob_id.in_(ids[start : start + _CHUNK])
            )
        )
        for row in rows:
            found.setdefault(int(row.project_id), []).append((int(row.blob_id), int(row.size)))
    for project_id in sorted(found):
        ids = sorted(blob_id for blob_id, _ in found[project_id])
        await conn.execute(
            select(project_blobs.c.blob_id)
            .where(project_blobs.c.project_id == project_id, project_blobs.c.blob_id.in_(ids))
            .order_by(project_blobs.c.blob_id)
            .with_for_update()
        )
        await _drop(conn, project_id, found[project_id])


async def reconcile(conn: AsyncConnection, project_id: int) -> None:
    """Make the project's blob set and usage match its links (repositories that just joined the project).

    Never refuses: content already stored is counted even above the limit (further pushes are refused).
    """
    await lock_quota(conn, project_id)
    await release(conn, project_id)
    linked = (
        select(repository_blobs.c.blob_id)
        .select_from(repository_blobs.join(repositories))
        .where(repositories.c.project_id == project_id)
        .distinct()
        .subquery()
    )
    missing = (
        await conn.execute(
            select(blobs.c.id, blobs.c.size)
            .where(blobs.c.id.in_(select(linked.c.blob_id)))
            .where(
                ~exists().where(project_blobs.c.project_id == project_id, project_blobs.c.blob_id == blobs.c.id)
            )
        )
    ).all()
    for start in range(0, len(missing), _CHUNK):
        await conn.execute(
            insert(project_blobs),
            [{"project_id": project_id, "blob_id": row.id, "size": row.size} for row in missing[start : start + _CHUNK]],
        )
    if missing:
        await conn.execute(
            update(quotas)
            .where(quotas.c.project_id == project_id)
            .values(storage_used=quotas.c.storage_used + sum(int(row.size) for row in missing), updated_at=_now())
        )
