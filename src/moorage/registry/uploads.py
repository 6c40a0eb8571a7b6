"""Blob uploads: monolithic, chunked and resumable, on any node.

Progress (bytes accepted, the resumable SHA-256 state and the driver's write state) lives
in the ``uploads`` row; a chunk is accepted by (1) appending its bytes in storage and
(2) committing the new progress with a compare-and-set on the old size. A chunk whose
step 2 never happens is discarded by the driver on the next append, so a client retry
is always safe. A blob becomes pullable only after its digest was verified, its bytes
were published under the content-addressed key, and its link row was committed.

Publishing is idempotent: when the digest is already stored (its ``blobs`` row is active, so
its bytes are under its key: docs/gc.md), completing an upload links the blob and discards the upload instead
of moving bytes onto the existing key (as Distribution does); two completions of one digest at
once may both move, which every driver's ``move`` tolerates (see ``StorageDriver.move``).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import structlog
from sqlalchemy import ColumnElement, and_, bindparam, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from moorage.db.session import Database
from moorage.db.tables import repositories, uploads
from moorage.errors import RegistryError
from moorage.metrics import BLOB_UPLOAD_BYTES, BLOB_UPLOAD_SECONDS
from moorage.registry.digests import Digest
from moorage.registry.gc_fence import Record, link_blob_id, publish_blob
from moorage.registry.guard import WriteGuard
from moorage.registry.hashing import ResumableSha256, feed
from moorage.registry.paths import blob_path, upload_dir, upload_path
from moorage.registry.quota import QuotaExceeded, precheck
from moorage.registry.repositories import ensure_repository, now
from moorage.registry.upload_lease import Activity, LeaseTiming, hold
from moorage.storage import InvalidOffsetError, PathNotFoundError, StorageDriver, StorageError, WriteState

__all__ = ["LeaseTiming", "UploadProgress", "UploadService"]

log = structlog.get_logger("moorage.uploads")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class UploadProgress:
    id: str
    size: int


@dataclass(slots=True)
class _Session:
    id: str
    repository_id: int
    size: int
    hasher: ResumableSha256
    state: WriteState | None
    lease: str | None = None
    #: When the session was started (POST), for the upload-duration metric; ``None`` for monolithic uploads.
    created_at: datetime | None = None


class _Counted:
    """Feeds chunks to the hasher while counting them, optionally enforcing a byte limit.

    It tells ``activity`` when it waits for the client (so the lease renewer knows the request is
    idle, not working), and renews the lease itself when a chunk arrives after a long wait.
    """

    __slots__ = ("activity", "failure", "hasher", "limit", "renew", "renew_every", "source", "total")

    def __init__(
        self,
        source: AsyncIterable[bytes],
        hasher: ResumableSha256,
        limit: int | None,
        activity: Activity,
        renew: Callable[[], Awaitable[None]] | None = None,
        renew_every: float = LeaseTiming().renew_every,
    ) -> None:
        self.source = source
        self.hasher = hasher
        self.limit = limit
        self.activity = activity
        self.renew = renew
        self.renew_every = renew_every
        self.total = 0
        #: What this iterator raised (the client's body failed, too many bytes, the lease was lost):
        #: the driver that consumes it may wrap it in a StorageError; the caller re-raises it as is.
        self.failure: Exception | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            chunks = aiter(self.source)
            while True:
                self.activity.waiting_since = time.monotonic()
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    return
                finally:
                    self.activity.waiting_since = None
                if chunk:
                    await self._accept(chunk)
                    yield chunk
        except Exception as exc:  # GeneratorExit (the driver stopped early) is not recorded
            self.failure = exc
            raise

    async def _accept(self, chunk: bytes) -> None:
        if self.renew is not None and time.monotonic() - self.activity.renewed > self.renew_every:
            await self.renew()  # the client was silent for a while: is the upload still ours?
            self.activity.renewed = time.monotonic()
        self.total += len(chunk)
        if self.limit is not None and self.total > self.limit:
            raise RegistryError(
                "SIZE_INVALID",
                f"the request body is longer than the declared {self.limit} bytes; send a matching "
                "Content-Length/Content-Range",
            )
        await feed(self.hasher, chunk)


def _busy(session: _Session, lease_seconds: float) -> RegistryError:
    return RegistryError(
        "BLOB_UPLOAD_INVALID",
        "another request is writing to this upload (or one was cut off less than "
        f"{lease_seconds:g} s ago); send chunks one after another: GET the upload for its status, "
        "then resume from its Range",
        {"upload": session.id},
        status=416,
        headers={"Range": f"0-{max(session.size - 1, 0)}", "Docker-Upload-UUID": session.id},
    )


def _reclaimed(digest: Digest) -> RegistryError:
    return RegistryError(
        "BLOB_UPLOAD_UNKNOWN",
        f"the published bytes of {digest} are gone (garbage collected); push the blob again",
        {"digest": str(digest)},
    )


def _unknown(upload_id: str) -> RegistryError:
    return RegistryError(
        "BLOB_UPLOAD_UNKNOWN",
        f"upload {upload_id} does not exist (finished, cancelled or expired); start a new upload with "
        "POST /v2/<name>/blobs/uploads/",
        {"upload": upload_id},
    )


# Built once: every chunk and completion runs them (building a statement per call cost more than
# running it on SQLite; see docs/architecture.md "Performance choices").
_LOAD = (
    select(uploads.c.repository_id, uploads.c.size, uploads.c.hash_state, uploads.c.storage_state, uploads.c.created_at)
    .select_from(uploads.join(repositories))
    .where(uploads.c.id == bindparam("u_id"), repositories.c.name == bindparam("u_repository"))
)
_CLAIM = (
    update(uploads)
    .where(
        uploads.c.id == bindparam("u_id"),
        uploads.c.size == bindparam("u_size"),
        or_(uploads.c.lease_token.is_(None), uploads.c.lease_until < bindparam("u_now")),
    )
    .values(lease_token=bindparam("u_token"), lease_until=bindparam("u_until"))
)
_PROGRESS = (
    update(uploads)
    .where(uploads.c.id == bindparam("u_id"), uploads.c.lease_token == bindparam("u_lease"))
    .values(
        size=bindparam("u_size"),
        hash_state=bindparam("u_hash_state"),
        storage_state=bindparam("u_storage_state"),
        lease_token=None,
        lease_until=None,
        updated_at=bindparam("u_now"),
    )
)
_END = delete(uploads).where(uploads.c.id == bindparam("u_id"))


class UploadService:
    """Upload sessions on the shared database and storage.

    ``lease`` sets how long a writing request's claim on an upload lasts without renewal (a
    client cut off mid-chunk can resume after at most that) and how often it is renewed.
    """

    def __init__(
        self, db: Database, storage: StorageDriver, *, lease: LeaseTiming | None = None,
        guard: WriteGuard | None = None, on_stored: Record | None = None,
    ) -> None:
        self.db = db
        self.storage = storage
        self.lease = lease or LeaseTiming()
        self.guard = guard or WriteGuard()
        #: Runs in the publish transaction when the bytes are in ``storage`` (multi-site: this site holds them).
        self.on_stored = on_stored

    async def start(self, repository: str) -> UploadProgress:
        self.guard.writable()
        upload_id = str(uuid.uuid4())
        timestamp = now()
        async with self.db.write() as conn:
            repository_id = await ensure_repository(conn, repository, project_required=self.guard.projects_required)
            await conn.execute(
                uploads.insert().values(
                    id=upload_id,
                    repository_id=repository_id,
                    size=0,
                    hash_state=ResumableSha256().state(),
                    storage_state=None,
                    created_at=timestamp,
                    updated_at=timestamp,
                )
            )
        return UploadProgress(upload_id, 0)

    async def _load(self, repository: str, upload_id: str) -> _Session:
        try:
            uuid.UUID(upload_id)
        except ValueError:
            raise _unknown(upload_id) from None
        async with self.db.read() as conn:
            row = (await conn.execute(_LOAD, {"u_id": upload_id, "u_repository": repository})).first()
        if row is None:
            raise _unknown(upload_id)
        state = json.loads(row.storage_state) if row.storage_state else None
        return _Session(upload_id, row.repository_id, row.size, ResumableSha256(row.hash_state), state,
                        created_at=row.created_at)

    async def status(self, repository: str, upload_id: str) -> UploadProgress:
        session = await self._load(repository, upload_id)
        return UploadProgress(session.id, session.size)

    async def _append(
        self,
        session: _Session,
        chunks: AsyncIterable[bytes],
        expected_length: int | None,
        activity: Activity | None = None,
    ) -> WriteState:
        renew = None
        if session.lease is not None:
            lease = session.lease

            async def renew() -> None:
                await self._renew(session, lease)

        counted = _Counted(
            chunks, session.hasher, expected_length, activity or Activity(), renew, self.lease.renew_every
        )
        try:
            state = await self.storage.append(upload_path(session.id), session.state, counted)
        except StorageError:
            if counted.failure is not None:  # not the storage's failure: say what really happened
                raise counted.failure from None
            raise
        if expected_length is not None and counted.total != expected_length:
            raise RegistryError(
                "SIZE_INVALID",
                f"received {counted.total} bytes but the request declared {expected_length}; the chunk was "
                "not accepted, send it again",
            )
        if state["size"] != session.size + counted.total:
            raise StorageError(
                f"storage reports {state['size']} bytes after appending {counted.total} to {session.size}",
                path=upload_path(session.id),
            )
        return state

    async def append(
        self,
        repository: str,
        upload_id: str,
        chunks: AsyncIterable[bytes],
        *,
        start: int | None = None,
        length: int | None = None,
    ) -> UploadProgress:
        """Accept one chunk. ``start`` (from ``Content-Range``) must equal the bytes received so far."""
        self.guard.writable()
        session = await self._load(repository, upload_id)
        if start is not None and start != session.size:
            raise self._out_of_order(session, start)
        lease = await self._claim(session)
        try:
            activity = Activity()
            state = await self._holding(session, lease, activity, self._append(session, chunks, length, activity))
            async with self.db.write() as conn:
                result = await conn.execute(
                    _PROGRESS,
                    {
                        "u_id": session.id,
                        "u_lease": lease,
                        "u_size": state["size"],
                        "u_hash_state": session.hasher.state(),
                        "u_storage_state": json.dumps(state),
                        "u_now": now(),
                    },
                )
            if result.rowcount != 1:
                raise _busy(session, self.lease.seconds)  # the lease expired and another writer took over
        except BaseException:
            await self._release(session, lease)
            raise
        return UploadProgress(session.id, state["size"])

    async def _claim(self, session: _Session) -> str:
        """Take the upload's write lease, or raise when another request holds it."""
        token = str(uuid.uuid4())
        timestamp = now()
        async with self.db.write() as conn:
            result = await conn.execute(
                _CLAIM,
                {
                    "u_id": session.id,
                    "u_size": session.size,
                    "u_now": timestamp,
                    "u_token": token,
                    "u_until": timestamp + timedelta(seconds=self.lease.seconds),
                },
            )
        if result.rowcount != 1:
            raise _busy(session, self.lease.seconds)
        session.lease = token
        return token

    def _holding(self, session: _Session, lease: str, activity: Activity, work: Awaitable[T]) -> Awaitable[T]:
        """``work`` with the lease renewed in the background while it is busy (see :mod:`.upload_lease`)."""
        return hold(work, lambda: self._renew(session, lease), activity, self.lease)

    async def _renew(self, session: _Session, lease: str) -> None:
        async with self.db.write() as conn:
            result = await conn.execute(
                update(uploads)
                .where(uploads.c.id == session.id, uploads.c.lease_token == lease)
                .values(lease_until=now() + timedelta(seconds=self.lease.seconds))
            )
        if result.rowcount != 1:
            raise _busy(session, self.lease.seconds)

    async def _release(self, session: _Session, lease: str) -> None:
        """Give the lease back after a failed write, so the client's retry need not wait it out."""
        try:
            async with self.db.write() as conn:
                await conn.execute(
                    update(uploads)
                    .where(uploads.c.id == session.id, uploads.c.lease_token == lease)
                    .values(lease_token=None, lease_until=None)
                )
        except Exception:  # noqa: BLE001 - best effort: the lease expires by itself
            log.warning("upload_lease_release_failed", upload=session.id)

    @staticmethod
    def _out_of_order(session: _Session, start: int) -> RegistryError:
        last = session.size - 1
        return RegistryError(
            "RANGE_INVALID",
            f"chunk starts at byte {start} but the upload has {session.size} bytes; send the chunk that starts "
            f"at {session.size} (GET the upload for its status)",
            {"expected_start": session.size, "received_start": start},
            headers={"Range": f"0-{max(last, 0)}", "Docker-Upload-UUID": session.id},
        )

    async def complete(
        self,
        repository: str,
        upload_id: str,
        digest: Digest,
        chunks: AsyncIterable[bytes],
        *,
        start: int | None = None,
        length: int | None = None,
    ) -> int:
        """Append the final chunk (if any), verify ``digest``, publish the blob. Returns its size.

        On a digest mismatch nothing changes: the upload stays as it was before this request.
        """
        self.guard.writable()
        session = await self._load(repository, upload_id)
        if start is not None and start != session.size:
            raise self._out_of_order(session, start)
        lease = await self._claim(session)
        try:
            activity = Activity()
            size = await self._holding(
                session, lease, activity, self._complete(session, digest, chunks, length, activity)
            )
        except BaseException:
            await self._release(session, lease)
            raise
        if session.created_at is not None:  # the whole upload, whichever nodes took its chunks
            started = session.created_at if session.created_at.tzinfo else session.created_at.replace(tzinfo=UTC)
            BLOB_UPLOAD_SECONDS.labels("chunked").observe(max(0.0, (now() - started).total_seconds()))
        BLOB_UPLOAD_BYTES.labels("chunked").inc(size)
        return size

    async def _complete(
        self, session: _Session, digest: Digest, chunks: AsyncIterable[bytes], length: int | None, activity: Activity
    ) -> int:
        try:
            state = await self._append(session, chunks, length, activity)
        except (InvalidOffsetError, PathNotFoundError):
            # A previous attempt published the bytes and died before recording the link;
            # the client's retry must succeed rather than fail on the vanished upload data.
            published = await self._published_size(digest)
            if published is None:
                raise

            async def still_published() -> None:
                # The row was not active: check again now that it is ours (pending), GC may have had it.
                if await self._published_size(digest) != published:
                    raise _reclaimed(digest) from None

            await self._publish_and_record(session, digest, published, still_published, activity)
            return published
        size = int(state["size"])
        path = upload_path(session.id)
        if digest.algorithm == "sha256":
            self._verify(digest, session.hasher.hexdigest())
            await self._within_quota(session, digest, size, activity)

            async def place() -> None:
                await self.storage.commit(path, state)
                await self._publish(path, digest)

        else:
            # Only SHA-256 is hashed while streaming; other algorithms are verified by a re-read.
            await self.storage.commit(path, state)
            hasher = digest.hasher()
            async for chunk in self.storage.read(path):
                await feed(hasher, chunk)
            if hasher.hexdigest() != digest.hex:
                activity.end()
                await self._discard(session.id)
                raise RegistryError(
                    "DIGEST_INVALID",
                    f"uploaded content does not match {digest}; the upload was cancelled, push the blob again",
                    {"digest": str(digest)},
                )
            await self._within_quota(session, digest, size, activity)

            async def place() -> None:
                await self._publish(path, digest)

        await self._publish_and_record(session, digest, size, place, activity)
        return size

    async def _publish_and_record(
        self,
        session: _Session,
        digest: Digest,
        size: int,
        place: Callable[[], Awaitable[None]],
        activity: Activity,
    ) -> None:
        """Publish the blob (``place`` is skipped when it is already active), link it and end the session.

        Publishing an already stored digest only links it. The GC protocol lives in
        :func:`moorage.registry.gc_fence.publish_blob`; when GC reclaimed the blob while it was being
        placed, the session's bytes went with it and the session ends too.
        """

        async def record(conn: AsyncConnection, blob_id: int) -> None:
            activity.end()  # the session row goes in this transaction: no lease left to renew
            await link_blob_id(conn, session.repository_id, blob_id)
            await conn.execute(_END, {"u_id": session.id})

        try:
            await publish_blob(self.db, self.storage, digest, size, place, record, stored=self.on_stored)
        except RegistryError as exc:
            if exc.code == "BLOB_UPLOAD_UNKNOWN" or isinstance(exc, QuotaExceeded):
                activity.end()
                await self._discard(session.id)
            raise
        await self._cleanup(session.id)

    async def _within_quota(self, session: _Session, digest: Digest, size: int, activity: Activity) -> None:
        """Refuse a blob its project's quota has no room for before it is published; the upload goes.

        The link's transaction checks again under the quota lock (a push racing this one may take
        the room first); this check keeps a refused blob from ever being written under its key.
        """
        try:
            async with self.db.read() as conn:
                name = (
                    await conn.execute(select(repositories.c.name).where(repositories.c.id == session.repository_id))
                ).scalar_one_or_none()
                if name is not None:
                    await precheck(conn, str(name), str(digest), size)
        except QuotaExceeded:
            activity.end()
            await self._discard(session.id)
            raise

    async def _published_size(self, digest: Digest) -> int | None:
        """Size of the bytes stored under ``digest``'s key if they really hash to it, else ``None``."""
        hasher = digest.hasher()
        size = 0
        try:
            async for chunk in self.storage.read(blob_path(digest)):
                await feed(hasher, chunk)
                size += len(chunk)
        except PathNotFoundError:
            return None
        return size if hasher.hexdigest() == digest.hex else None

    @staticmethod
    def _verify(digest: Digest, actual_hex: str) -> None:
        if actual_hex != digest.hex:
            raise RegistryError(
                "DIGEST_INVALID",
                f"uploaded content has digest sha256:{actual_hex}, not {digest}; check the digest the client "
                "sent, or resend the chunks (the upload is unchanged)",
                {"expected": str(digest), "actual": f"sha256:{actual_hex}"},
            )

    async def monolithic(self, repository: str, digest: Digest, chunks: AsyncIterable[bytes], length: int | None) -> int:
        """``POST ?digest=`` with the whole blob: no session row unless it succeeds."""
        self.guard.writable()
        started = time.perf_counter()
        upload_id = str(uuid.uuid4())
        session = _Session(upload_id, 0, 0, ResumableSha256(), None)
        path = upload_path(upload_id)
        try:
            if digest.algorithm == "sha256":
                state = await self._append(session, chunks, length)
                self._verify(digest, session.hasher.hexdigest())
            else:
                hasher = digest.hasher()

                async def tee() -> AsyncIterator[bytes]:
                    async for chunk in chunks:
                        await feed(hasher, chunk)
                        yield chunk

                state = await self._append(session, tee(), length)
                if hasher.hexdigest() != digest.hex:
                    raise RegistryError("DIGEST_INVALID", f"uploaded content does not match {digest}")
            async with self.db.read() as conn:
                await precheck(conn, repository, str(digest), int(state["size"]))

            async def place() -> None:
                await self.storage.commit(path, state)
                await self._publish(path, digest)

            async def record(conn: AsyncConnection, blob_id: int) -> None:
                repository_id = await ensure_repository(conn, repository, project_required=self.guard.projects_required)
                await link_blob_id(conn, repository_id, blob_id)

            await publish_blob(self.db, self.storage, digest, int(state["size"]), place, record, stored=self.on_stored)
        except BaseException:
            await self._cleanup(upload_id)
            raise
        await self._cleanup(upload_id)
        BLOB_UPLOAD_SECONDS.labels("monolithic").observe(time.perf_counter() - started)
        BLOB_UPLOAD_BYTES.labels("monolithic").inc(int(state["size"]))
        return int(state["size"])

    async def _publish(self, path: str, digest: Digest) -> None:
        """Place the verified bytes under the blob's key (a key is only ever written with its own bytes)."""
        await self.storage.move(path, blob_path(digest))

    @staticmethod
    def _stale(cutoff: datetime, at: datetime) -> ColumnElement[bool]:
        """Untouched since ``cutoff`` and not being written at ``at`` (no lease, or an expired one)."""
        return and_(
            uploads.c.updated_at < cutoff,
            or_(uploads.c.lease_token.is_(None), uploads.c.lease_until < at),
        )

    async def stale(self, cutoff: datetime) -> list[str]:
        """Ids of the upload sessions untouched since ``cutoff`` and not being written now."""
        async with self.db.read() as conn:
            rows = await conn.execute(select(uploads.c.id).where(self._stale(cutoff, now())))
            return list(rows.scalars())

    async def discard_if_stale(self, upload_id: str, cutoff: datetime) -> bool:
        """Delete the session and its bytes if it is *still* stale; ``False`` when it was not deleted.

        Compare-and-delete: the staleness test is part of the ``DELETE``, so a client that
        resumed the upload since it was listed (a chunk moved ``updated_at``, or a request holds
        its lease) keeps it.
        """
        self.guard.writable()
        async with self.db.write() as conn:
            result = await conn.execute(delete(uploads).where(uploads.c.id == upload_id, self._stale(cutoff, now())))
        if result.rowcount != 1:
            return False
        await self._cleanup(upload_id)
        return True

    async def purge(self, older_than: timedelta, *, dry_run: bool = False) -> int:
        """Delete upload sessions untouched for ``older_than`` (and their bytes); returns how many.

        With ``dry_run`` nothing is deleted; the count says what would be.

        Distribution's ``maintenance.uploadpurging``. A session with a live lease is being
        written right now and is kept whatever its age, and so is one resumed between the
        listing and its delete (:meth:`discard_if_stale`).
        """
        if not dry_run:
            self.guard.writable()
        cutoff = now() - older_than
        stale = await self.stale(cutoff)
        if dry_run:
            return len(stale)
        return sum([await self.discard_if_stale(upload_id, cutoff) for upload_id in stale])

    async def cancel(self, repository: str, upload_id: str) -> None:
        self.guard.writable()
        session = await self._load(repository, upload_id)
        await self._discard(session.id)

    async def _discard(self, upload_id: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(delete(uploads).where(uploads.c.id == upload_id))
        await self._cleanup(upload_id)

    async def _cleanup(self, upload_id: str) -> None:
        try:
            await self.storage.delete(upload_dir(upload_id))
        except PathNotFoundError:
            pass
