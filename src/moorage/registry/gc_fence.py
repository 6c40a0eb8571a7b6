"""The writers' half of the online GC protocol (docs/gc.md): every path that links, references
or publishes a blob goes through here, inside its own write transaction.

A blob row is in one of three states:

* ``active``: its bytes are complete under its key. Only active blobs are visible, linkable
  and referenceable.
* ``pending``: a writer is publishing its bytes (committed before the bytes move, so GC keeps
  its hands off for the grace window).
* ``deleting``: GC decided it is garbage; its bytes may be gone or going.

Writers read the row under a row lock (PostgreSQL ``FOR SHARE``/``FOR UPDATE``; on SQLite every
write transaction holds the database's write lock) and never link or reference a row that is
not active. GC changes a row's state and deletes bytes only under ``FOR UPDATE`` (see
:mod:`moorage.gc.collector`), so the two never act on one row at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Select, bindparam, delete, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from moorage.db.session import Database
from moorage.db.tables import blobs, manifest_references, manifests, repository_blobs
from moorage.db.upsert import insert_ignore, upsert
from moorage.errors import RegistryError
from moorage.registry.digests import Digest
from moorage.registry.paths import blob_path
from moorage.registry.quota import QuotaExceeded, charge_link
from moorage.storage import PathNotFoundError, StorageDriver

__all__ = [
    "ACTIVE",
    "DELETING",
    "PENDING",
    "BlobNotActive",
    "BlobRow",
    "Record",
    "link_active",
    "link_blob_id",
    "lock_blobs",
    "lock_manifest",
    "publish_blob",
    "record_existing",
    "require_references",
    "withdraw",
]

ACTIVE = "active"
PENDING = "pending"
DELETING = "deleting"

Record = Callable[[AsyncConnection, int], Awaitable[None]]
"""What a publisher commits with the blob (its link, the end of its upload), given the blob's id."""


def now() -> datetime:
    return datetime.now(UTC)


class BlobNotActive(Exception):
    """The blob has no active row (never pushed, being published, or being garbage collected)."""

    def __init__(self, digest: str) -> None:
        super().__init__(f"blob {digest} is not active")
        self.digest = digest


@dataclass(frozen=True, slots=True)
class BlobRow:
    id: int
    digest: str
    state: str
    size: int


def _locking(
    query: Select[tuple[int, str, str, int]], *, exclusive: bool
) -> Select[tuple[int, str, str, int]]:
    # SQLite ignores FOR UPDATE/SHARE: its write transactions already exclude each other.
    return query.with_for_update(read=not exclusive)


# Built once (the one-digest lock runs twice per blob push); ``digests`` expands to the list.
_LOCK_QUERY = (
    select(blobs.c.id, blobs.c.digest, blobs.c.state, blobs.c.size)
    .where(blobs.c.digest.in_(bindparam("digests", expanding=True)))
    .order_by(blobs.c.digest)
)
_LOCK = {exclusive: _locking(_LOCK_QUERY, exclusive=exclusive) for exclusive in (False, True)}
_SET_STATE = (
    update(blobs).where(blobs.c.id == bindparam("b_id")).values(state=bindparam("b_state"), state_at=bindparam("b_at"))
)


async def lock_blobs(
    conn: AsyncConnection, digests: Iterable[str], *, exclusive: bool = False
) -> dict[str, BlobRow]:
    """The rows of ``digests`` that exist, locked until the transaction ends (in digest order).

    ``exclusive=False`` takes a shared lock: many writers may hold it at once, GC's ``FOR UPDATE``
    waits for (or skips) them, and they wait for GC.
    """
    wanted = sorted(set(digests))
    if not wanted:
        return {}
    rows = (await conn.execute(_LOCK[exclusive], {"digests": wanted})).all()
    return {row.digest: BlobRow(row.id, row.digest, row.state, row.size) for row in rows}


async def link_blob_id(conn: AsyncConnection, repository_id: int, blob_id: int, *, enforce: bool = True) -> None:
    """Link a blob the caller holds locked and knows to be active into the repository.

    The link is charged to the repository's project in the same transaction
    (:func:`moorage.registry.quota.charge_link`): :class:`~moorage.registry.quota.QuotaExceeded`
    when it would take the project over its storage quota (not with ``enforce=False``).
    """
    # A re-link refreshes created_at: a blob pushed again during GC counts as freshly linked.
    await upsert(
        conn,
        repository_blobs,
        {"repository_id": repository_id, "blob_id": blob_id, "created_at": now()},
        ["repository_id", "blob_id"],
        ["created_at"],
    )
    await charge_link(conn, repository_id, blob_id, enforce=enforce)


async def link_active(
    conn: AsyncConnection, repository_id: int, digest: Digest | str, *, enforce: bool = True
) -> int:
    """Link an active blob into the repository and return its id; ``BlobNotActive`` otherwise."""
    row = (await lock_blobs(conn, [str(digest)])).get(str(digest))
    if row is None or row.state != ACTIVE:
        raise BlobNotActive(str(digest))
    await link_blob_id(conn, repository_id, row.id, enforce=enforce)
    return row.id


async def record_existing(conn: AsyncConnection, digest: Digest, size: int) -> bool:
    """Record bytes already in storage (an import) as an active blob; ``False`` when GC is deleting it.

    The caller checked that the bytes are there. An absent row cannot be GC's (GC deletes bytes
    only under a row it holds), so inserting one as active is safe.
    """
    stamp = now()
    await insert_ignore(
        conn,
        blobs,
        {"digest": str(digest), "size": size, "created_at": stamp, "state": ACTIVE, "state_at": stamp},
        ["digest"],
    )
    row = (await lock_blobs(conn, [str(digest)], exclusive=True))[str(digest)]
    if row.state == DELETING:
        return False
    if row.state == PENDING:
        await conn.execute(update(blobs).where(blobs.c.id == row.id).values(state=ACTIVE, state_at=stamp))
    return True


async def publish_blob(
    db: Database,
    storage: StorageDriver,
    digest: Digest,
    size: int,
    place: Callable[[], Awaitable[None]],
    record: Record,
    *,
    stored: Record | None = None,
) -> bool:
    """Make ``digest`` an active blob whose bytes are under its key, then ``record`` it.

    ``place`` puts the verified bytes under the key (a move or a put); it is not called when the
    blob is already active and its bytes are there (publishing is idempotent). Returns whether
    ``place`` ran.

    1. If the row is active: ``record`` under a shared lock, done (the bytes are there). A stat
       first repairs bytes lost behind the registry's back (restored backup, operator error):
       then the row is published again as below.
    2. Otherwise claim the row as ``pending`` (inserting it, or taking over a row GC marked
       ``deleting``: its remaining bytes are deleted first, under the lock, so a half-deleted
       object is never kept by an idempotent move), commit, then ``place`` outside any
       transaction. GC leaves a pending row alone for the grace window.
    3. Under an exclusive lock, make the row active and ``record``. If GC reclaimed it meanwhile
       (``place`` took longer than the grace window) the bytes may be gone: ``BLOB_UPLOAD_UNKNOWN``
       tells the client to push the blob again.

    ``stored`` runs after ``record`` in the same transaction, whenever the bytes are known to be
    under the key in this ``storage``: multi-site records this site as a holder there
    (:meth:`moorage.sites.Sites.stored_here`). With ``stored``, an active row whose bytes are not
    in this storage is normal (another site holds them): it stays active while they are placed.
    """
    if stored is not None:
        record = _also(record, stored)
    key = str(digest)
    path = blob_path(digest)
    try:
        info = await storage.stat(path)
        lost = info.is_dir or info.size != size
    except PathNotFoundError:
        lost = True
    if not lost:
        async with db.write() as conn:
            row = (await lock_blobs(conn, [key])).get(key)
            if row is not None and row.state == ACTIVE:
                await record(conn, row.id)
                return False
    async with db.write() as conn:
        stamp = now()
        await insert_ignore(
            conn,
            blobs,
            {"digest": key, "size": size, "created_at": stamp, "state": PENDING, "state_at": stamp},
            ["digest"],
        )
        row = await _claim_row(conn, key, size, stamp)
        if row.state == ACTIVE and not lost:
            await record(conn, row.id)
            return False
        if row.state == DELETING:
            try:
                await storage.delete(path)
            except PathNotFoundError:
                pass
        if not (row.state == ACTIVE and stored is not None):
            await conn.execute(
                update(blobs).where(blobs.c.id == row.id).values(state=PENDING, state_at=stamp, size=size)
            )
        # else multi-site: the bytes are another site's (not lost); the row stays active, so pulls
        # and manifest pushes everywhere go on (served from that site) while they are placed here.
    await place()
    try:
        async with db.write() as conn:
            row = (await lock_blobs(conn, [key], exclusive=True)).get(key)
            if row is None or row.state == DELETING:
                raise RegistryError(
                    "BLOB_UPLOAD_UNKNOWN",
                    f"garbage collection reclaimed blob {digest} while it was being published (publishing took "
                    "longer than gc.grace_period); push the blob again",
                    {"digest": key},
                )
            if row.state == PENDING:
                await conn.execute(_SET_STATE, {"b_id": row.id, "b_state": ACTIVE, "b_at": now()})
            await record(conn, row.id)
    except QuotaExceeded:
        # Refused after our bytes went under the key (a push elsewhere in the project took the room
        # since the caller's pre-check): the row is still our pending one; leave nothing behind.
        await withdraw(db, storage, digest, PENDING)
        raise
    return True


def _also(record: Record, stored: Record) -> Record:
    async def both(conn: AsyncConnection, blob_id: int) -> None:
        await record(conn, blob_id)
        await stored(conn, blob_id)

    return both


async def _claim_row(conn: AsyncConnection, key: str, size: int, stamp: datetime) -> BlobRow:
    """The row of ``key`` locked exclusively, inserting it as pending when it is (or has just become) absent.

    The row that made the caller's insert a no-op may be deleted before the lock is granted (GC's
    sweep, or :func:`withdraw`): the insert is then tried again.
    """
    for _ in range(3):
        row = (await lock_blobs(conn, [key], exclusive=True)).get(key)
        if row is not None:
            return row
        await insert_ignore(
            conn,
            blobs,
            {"digest": key, "size": size, "created_at": stamp, "state": PENDING, "state_at": stamp},
            ["digest"],
        )
    raise RegistryError(
        "UNAVAILABLE", f"blob {key} is being deleted and re-created concurrently; push it again", {"digest": key}
    )


async def withdraw(db: Database, storage: StorageDriver, digest: Digest, state: str) -> bool:
    """Delete a blob nothing uses (no link, no manifest, no reference) with its bytes, if it is still ``state``.

    For a push refused by its quota after it published the blob: its row and bytes go, so the
    refusal leaves nothing behind. Under the row's exclusive lock, like GC's sweep: a writer that
    would link it waits, then finds no row and publishes it again. Returns whether it deleted.
    """
    key = str(digest)
    async with db.write() as conn:
        row = (await lock_blobs(conn, [key], exclusive=True)).get(key)
        if row is None or row.state != state:
            return False
        used = or_(
            exists().where(repository_blobs.c.blob_id == row.id),
            exists().where(manifests.c.digest == key),
            exists().where(manifest_references.c.digest == key),
        )
        if (await conn.execute(select(used))).scalar():
            return False
        try:
            await storage.delete(blob_path(digest))
        except PathNotFoundError:
            pass
        await conn.execute(delete(blobs).where(blobs.c.id == row.id))
    return True


async def lock_manifest(conn: AsyncConnection, repository_id: int, digest: str) -> int | None:
    """The id of the repository's manifest ``digest`` under a shared lock (GC cannot delete it), or ``None``."""
    query = (
        select(manifests.c.id)
        .where(manifests.c.repository_id == repository_id, manifests.c.digest == digest)
        .with_for_update(read=True)
    )
    found = (await conn.execute(query)).scalar_one_or_none()
    return int(found) if found is not None else None


async def require_references(
    conn: AsyncConnection,
    repository: str,
    repository_id: int,
    blob_digests: Iterable[str],
    manifest_digests: Iterable[str],
    subject: str | None,
) -> None:
    """Inside a manifest's write transaction: lock what it references, refuse what is not there.

    Every blob must be active and linked into the repository, every child manifest stored in
    it; all stay locked (shared) until the manifest commits, so GC either saw the manifest's
    references or waits and then finds them. The subject, when stored, is locked too (a kept
    referrer keeps its subject). ``MANIFEST_BLOB_UNKNOWN`` names what is missing.
    """
    wanted_blobs = set(blob_digests)
    locked = await lock_blobs(conn, wanted_blobs)
    active_ids = {row.id: row.digest for row in locked.values() if row.state == ACTIVE}
    linked: set[str] = set()
    if active_ids:
        query = select(repository_blobs.c.blob_id).where(
            repository_blobs.c.repository_id == repository_id,
            repository_blobs.c.blob_id.in_(list(active_ids)),
        )
        linked = {active_ids[blob_id] for blob_id in (await conn.execute(query)).scalars()}
    missing = wanted_blobs - linked
    for child in sorted(set(manifest_digests)):
        if await lock_manifest(conn, repository_id, child) is None:
            missing.add(child)
    if subject is not None:
        await lock_manifest(conn, repository_id, subject)
    if missing:
        first = min(missing)
        raise RegistryError(
            "MANIFEST_BLOB_UNKNOWN",
            f"manifest references {len(missing)} blob(s) or manifest(s) not in repository {repository} "
            f"(first: {first}); push those first, then the manifest",
            {"missing": sorted(missing)},
        )
