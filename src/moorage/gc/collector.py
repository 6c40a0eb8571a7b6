"""Online garbage collection: GC's half of the protocol in docs/gc.md.

A run (:meth:`GarbageCollector.run`) has three phases, each made of short transactions, so
it can run on a busy registry on any node, next to pushes on every other node:

1. ``--delete-untagged``: per repository, the unreachable untagged manifests
   (:mod:`moorage.gc.untagged`); ``--sweep-orphans``: bytes no row knows become ``deleting``
   rows (:mod:`moorage.gc.orphans`).
2. Mark: blobs no manifest references (in any repository), with no repository link newer
   than the grace window and older than it themselves, go from ``active`` to ``deleting``; a
   ``pending`` row older than the grace window (a publisher that died) too. Each batch is
   locked ``FOR UPDATE SKIP LOCKED`` and the conditions are checked again by the ``UPDATE``
   itself, in a statement that starts after the locks are held.
3. Sweep: every ``deleting`` row (this run's, or a crashed run's) is locked, its bytes are
   deleted from storage *while the lock is held*, then the row (and its links) are deleted.

A crash anywhere leaves rows ``active`` (nothing happened), ``deleting`` (the next run or a
writer finishes the delete), or gone with their bytes. Never an active row without bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import ColumnElement, and_, delete, exists, func, or_, select, update

from moorage.db.session import Database, Reader
from moorage.db.tables import blobs, manifest_references, manifests, repositories, repository_blobs
from moorage.gc.orphans import find_orphans
from moorage.gc.untagged import delete_unreachable, find_unreachable
from moorage.registry.digests import parse_digest
from moorage.registry.gc_fence import ACTIVE, DELETING, PENDING
from moorage.registry.paths import blob_path
from moorage.registry.quota import release_blobs
from moorage.storage import StorageDriver

__all__ = ["GarbageCollector", "GcOptions", "GcReport", "GcStopped", "Progress", "StopCheck"]

log = structlog.get_logger("moorage.gc")

StopCheck = Callable[[], Awaitable[bool]]
"""Asked at every batch boundary (between repositories, mark batches, sweep batches): ``True`` stops the run."""

Progress = Callable[[str, int, int], None]
"""Called as ``progress(what, count, bytes)``: ``manifests`` deleted, ``candidates`` found, ``blobs`` deleted."""

#: Rows a sweep transaction takes at most on SQLite (see ``GarbageCollector._sweep_batch``).
_SQLITE_SWEEP_BATCH = 64


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class GcOptions:
    """What a run deletes. ``grace`` protects anything younger (a push in progress)."""

    grace: timedelta = timedelta(hours=2)
    delete_untagged: bool = False
    dry_run: bool = False
    sweep_orphans: bool = False
    batch_size: int = 500

    def __post_init__(self) -> None:
        if self.grace < timedelta(0):
            raise ValueError("the grace period cannot be negative")
        if not 1 <= self.batch_size <= 10_000:
            raise ValueError("the batch size is 1 to 10,000")


@dataclass(slots=True)
class GcReport:
    """What a run deleted (or, with ``dry_run``, would delete)."""

    dry_run: bool
    manifests: list[tuple[str, str]] = field(default_factory=list)  # (repository, digest)
    blobs: list[tuple[str, int]] = field(default_factory=list)  # (digest, size)
    #: Of those blobs, how many were orphans (bytes no row knew, ``--sweep-orphans``).
    orphans: int = 0

    @property
    def bytes_freed(self) -> int:
        return sum(size for _, size in self.blobs)

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        orphans = f" ({self.orphans} orphan(s))" if self.orphans else ""
        return (
            f"{verb} {len(self.manifests)} manifest(s) and {len(self.blobs)} blob(s){orphans}, "
            f"{self.bytes_freed:,} bytes"
        )


def _garbage(cutoff: datetime, exclude_manifests: Sequence[int] = ()) -> ColumnElement[bool]:
    """The condition that makes a blob row garbage (``exclude_manifests``: as if deleted, for dry runs)."""
    stamp = func.coalesce(blobs.c.state_at, blobs.c.created_at)
    referenced = select(manifest_references.c.manifest_id).where(
        manifest_references.c.digest == blobs.c.digest
    )
    stored_as_manifest = select(manifests.c.id).where(manifests.c.digest == blobs.c.digest)
    if exclude_manifests:
        referenced = referenced.where(manifest_references.c.manifest_id.not_in(list(exclude_manifests)))
        stored_as_manifest = stored_as_manifest.where(manifests.c.id.not_in(list(exclude_manifests)))
    fresh_link = select(repository_blobs.c.blob_id).where(
        repository_blobs.c.blob_id == blobs.c.id, repository_blobs.c.created_at >= cutoff
    )
    return or_(
        and_(blobs.c.state == PENDING, stamp < cutoff),
        and_(
            blobs.c.state == ACTIVE,
            stamp < cutoff,
            ~exists(referenced),
            ~exists(stored_as_manifest),
            ~exists(fresh_link),
        ),
    )


class GcStopped(Exception):
    """The run stopped on request at a batch boundary; ``report`` says what it did until then.

    Every batch is its own transaction, so nothing is half-deleted: a manifest batch committed
    or not, rows marked ``deleting`` (invisible, garbage anyway) are swept by the next run.
    """

    def __init__(self, report: GcReport) -> None:
        super().__init__(f"stopped on request: {report.summary()}")
        self.report = report


class GarbageCollector:
    """One GC run over the whole registry (every repository), per :class:`GcOptions`.

    ``invalidate(repository)`` is called after a commit that removed manifests or blob links of
    a repository (the Redis cache may hold them). ``clock`` is the wall clock (UTC); keep the
    nodes' clocks in sync, a skew shortens the grace window by as much.
    """

    def __init__(
        self,
        db: Database,
        storage: StorageDriver,
        options: GcOptions,
        *,
        invalidate: Callable[[str], Awaitable[None]] | None = None,
        progress: Progress | None = None,
        clock: Callable[[], datetime] = _utcnow,
        should_stop: StopCheck | None = None,
    ) -> None:
        self.db = db
        self.storage = storage
        self.options = options
        self.invalidate = invalidate
        self.progress = progress
        self.clock = clock
        self.should_stop = should_stop

    async def _boundary(self, report: GcReport) -> None:
        """A batch boundary: :class:`GcStopped` when a stop was requested."""
        if self.should_stop is not None and await self.should_stop():
            log.info("gc_stopped", manifests=len(report.manifests), blobs=len(report.blobs))
            raise GcStopped(report)

    @property
    def _sweep_batch(self) -> int:
        # On SQLite the sweep's transaction holds the database's only write lock while it deletes
        # bytes: every push waits for it, so it deletes fewer at a time there.
        return min(self.options.batch_size, _SQLITE_SWEEP_BATCH) if self.db.sqlite else self.options.batch_size

    def _tell(self, what: str, count: int, size: int = 0) -> None:
        if self.progress is not None:
            self.progress(what, count, size)

    async def run(self) -> GcReport:
        """Run the three phases; raises what storage or the database raise (a rerun finishes the work),
        or :class:`GcStopped` at the first batch boundary after a stop was requested."""
        cutoff = self.clock() - self.options.grace
        report = GcReport(self.options.dry_run)
        doomed: list[int] = []
        if self.options.delete_untagged:
            doomed = await self._untagged(cutoff, report)
        async with self.db.read() as conn:
            candidates = await self._candidates(conn, cutoff, doomed if self.options.dry_run else ())
        orphans: list[tuple[str, int]] = []
        if self.options.sweep_orphans:
            orphans = await find_orphans(self.db, self.storage, cutoff, adopt=not self.options.dry_run)
            report.orphans = len(orphans)
        total = sum(size for _, _, size in candidates) + sum(size for _, size in orphans)
        self._tell("candidates", len(candidates) + len(orphans), total)
        if self.options.dry_run:
            report.blobs = [(digest, size) for _, digest, size in candidates] + orphans
            return report
        ids = [blob_id for blob_id, _, _ in candidates]
        for start in range(0, len(ids), self.options.batch_size):
            await self._boundary(report)
            await self._mark(ids[start : start + self.options.batch_size], cutoff)
        await self._boundary(report)
        while await self._sweep(report):
            await self._boundary(report)
        log.info(
            "gc_finished", manifests=len(report.manifests), blobs=len(report.blobs), bytes=report.bytes_freed
        )
        return report

    async def _untagged(self, cutoff: datetime, report: GcReport) -> list[int]:
        async with self.db.read() as conn:
            repos = (
                await conn.execute(select(repositories.c.id, repositories.c.name).order_by(repositories.c.id))
            ).all()
        doomed: list[int] = []
        for repo in repos:
            await self._boundary(report)
            async with self.db.read() as conn:
                found = await find_unreachable(conn, repo.id, cutoff)
            if self.options.dry_run:
                doomed.extend(found)
                digests = [found[key] for key in sorted(found)]
            elif not found:
                digests = []  # no write transaction for a repository with nothing to delete
            else:
                async with self.db.write() as write:
                    digests = await delete_unreachable(write, repo.id, cutoff)
                if digests and self.invalidate is not None:
                    await asyncio.shield(self.invalidate(repo.name))
            report.manifests.extend((repo.name, digest) for digest in digests)
            if digests:
                self._tell("manifests", len(digests))
        return doomed

    @staticmethod
    async def _candidates(
        conn: Reader, cutoff: datetime, exclude: Sequence[int]
    ) -> list[tuple[int, str, int]]:
        """Rows to mark (and rows already ``deleting``): ``(id, digest, size)`` in id order."""
        query = (
            select(blobs.c.id, blobs.c.digest, blobs.c.size)
            .where(or_(blobs.c.state == DELETING, _garbage(cutoff, exclude)))
            .order_by(blobs.c.id)
        )
        return [(row.id, row.digest, row.size) for row in await conn.execute(query)]

    async def _mark(self, ids: list[int], cutoff: datetime) -> None:
        """``active``/``pending`` → ``deleting`` for the ids that are still garbage, under their row locks."""
        async with self.db.write() as conn:
            locked = list(
                (
                    await conn.execute(
                        select(blobs.c.id)
                        .where(blobs.c.id.in_(ids), blobs.c.state.in_([ACTIVE, PENDING]))
                        .order_by(blobs.c.id)
                        .with_for_update(skip_locked=True)
                    )
                ).scalars()
            )
            if not locked:
                return
            # A new statement after the locks: it sees every reference and link committed before them.
            marked = list(
                (
                    await conn.execute(
                        update(blobs)
                        .where(blobs.c.id.in_(locked), _garbage(cutoff))
                        .values(state=DELETING, state_at=self.clock())
                        .returning(blobs.c.id)
                    )
                ).scalars()
            )
            names: list[str] = []
            if marked:
                names = list(
                    (
                        await conn.execute(
                            select(repositories.c.name)
                            .distinct()
                            .select_from(repository_blobs.join(repositories))
                            .where(repository_blobs.c.blob_id.in_(marked))
                        )
                    ).scalars()
                )
        if self.invalidate is not None:
            for name in names:
                await asyncio.shield(self.invalidate(name))

    async def _sweep(self, report: GcReport) -> bool:
        """Delete the bytes, then the rows, of one batch of ``deleting`` blobs; ``False`` when none is left."""
        async with self.db.write() as conn:
            rows = (
                await conn.execute(
                    select(blobs.c.id, blobs.c.digest, blobs.c.size)
                    .where(blobs.c.state == DELETING)
                    .order_by(blobs.c.id)
                    .limit(self._sweep_batch)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return False
            await self._delete_bytes([row.digest for row in rows])
            await release_blobs(conn, [row.id for row in rows])  # out of every project's quota usage
            await conn.execute(
                delete(blobs).where(blobs.c.id.in_([row.id for row in rows]), blobs.c.state == DELETING)
            )
        report.blobs.extend((row.digest, row.size) for row in rows)
        self._tell("blobs", len(rows), sum(row.size for row in rows))
        return True

    async def _delete_bytes(self, digests: list[str]) -> None:
        """Delete the blobs' data keys in one batch (S3 DeleteObjects, Swift bulk delete...).

        A key already gone is fine (a crashed run's work). On the filesystem the blob's folder
        goes with its last file. On object stores a blob's folder is only its key: the batch
        needs no listing to find what is below it, which is most of what made GC slow there.
        """
        await self.storage.delete_many([blob_path(parse_digest(digest)) for digest in digests])
