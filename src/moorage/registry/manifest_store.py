"""Manifests, tags and referrers of a repository, answered from the database.

Write order (STYLE habit 9): the payload's bytes go to storage under their digest first,
then one transaction records the manifest, what it references, and the tag.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, bindparam, case, delete, exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from moorage.db.session import Database
from moorage.db.tables import blobs, manifest_references, manifests, repositories, repository_blobs, tags
from moorage.db.upsert import insert_ignore, insert_ignore_many, upsert
from moorage.errors import RegistryError
from moorage.registry import mediatypes as mt
from moorage.registry.digests import Digest, parse_digest
from moorage.registry.gc_fence import (
    ACTIVE,
    BlobNotActive,
    Record,
    lock_manifest,
    publish_blob,
    record_existing,
    require_references,
    withdraw,
)
from moorage.registry.guard import WriteGuard
from moorage.registry.immutability import ImmutableTagError, guarding_digest, guarding_tag
from moorage.registry.manifests import Descriptor, ParsedManifest, config_media_type, parse_manifest
from moorage.registry.names import validate_tag
from moorage.registry.paths import blob_path
from moorage.registry.quota import QuotaExceeded, charge_manifest, precheck
from moorage.registry.repositories import ensure_repository, find_repository, link_blob, now
from moorage.storage import StorageDriver

__all__ = ["ManifestStore", "StoredManifest", "lookup_reference", "parse_reference"]


@dataclass(frozen=True, slots=True)
class StoredManifest:
    digest: str
    media_type: str
    size: int
    payload: bytes
    subject: str | None


# The hottest queries are built once: constructing a statement and computing its cache key per
# request cost more than the query itself (PostgreSQL: 1,620/s rebuilt vs 2,650/s prebuilt).
_MANIFEST_COLUMNS = (
    manifests.c.digest,
    manifests.c.media_type,
    manifests.c.size,
    manifests.c.payload,
    manifests.c.subject_digest,
)
_BY_DIGEST = (
    select(*_MANIFEST_COLUMNS)
    .select_from(manifests.join(repositories))
    .where(repositories.c.name == bindparam("repository"), manifests.c.digest == bindparam("digest"))
)
# The tag is found by (repository, name), its unique key, and its manifest by id. Joined through the
# manifest's repository instead, every manifest of the repository was read to find one tag (5,000
# rows and 21 ms in a repository of 10,000 tags, docs/scale.md). A tag always points at a manifest
# of its own repository (every writer takes the manifest id from that repository's rows).
_BY_TAG = (
    select(*_MANIFEST_COLUMNS)
    .select_from(
        repositories.join(tags, tags.c.repository_id == repositories.c.id).join(
            manifests, manifests.c.id == tags.c.manifest_id
        )
    )
    .where(repositories.c.name == bindparam("repository"), tags.c.name == bindparam("tag"))
)


#: Digests per ``IN (...)`` list: SQLite builds before 3.32 allow 999 bound parameters.
_IN_CHUNK = 500


def parse_reference(reference: str) -> Digest | str:
    """For a push: a digest if ``reference`` looks like one (``alg:hex``), else a validated tag.

    Raises ``DIGEST_INVALID`` or ``MANIFEST_INVALID`` (the OCI spec has no tag error code).
    """
    if ":" in reference:
        return parse_digest(reference)
    return validate_tag(reference)


def lookup_reference(repository: str, reference: str) -> Digest | str:
    """For a read or delete: like :func:`parse_reference`, but ``MANIFEST_UNKNOWN`` (404) when invalid.

    distribution-spec: a manifest that is not found MUST be 404, and a reference that can name
    no manifest is not found; the message still says why, so a typo is easy to spot.
    """
    try:
        return parse_reference(reference)
    except RegistryError as error:
        raise RegistryError(
            "MANIFEST_UNKNOWN",
            f"manifest {reference!r} is not in repository {repository}: {error.message}",
            {"repository": repository, "reference": reference},
        ) from None


def _chunks(values: set[str]) -> list[list[str]]:
    ordered = sorted(values)
    return [ordered[i : i + _IN_CHUNK] for i in range(0, len(ordered), _IN_CHUNK)]


def _cursor(last: str | None) -> str | None:
    """A listing's ``last`` as a bound the database can take: cut at the first NUL.

    PostgreSQL refuses NUL in text (it was a 500 for ``?last=%00``). No name or tag contains one,
    so ``name > "a\\0b"`` and ``name > "a"`` select the same rows.
    """
    return last.split("\x00", 1)[0] if last else last


def _size_mismatch(descriptor: Descriptor, stored: int) -> RegistryError:
    return RegistryError(
        "MANIFEST_INVALID",
        f"{descriptor.where} says {descriptor.digest} has {descriptor.size} bytes, but the registry holds "
        f"{stored}; write the real size into the descriptor (clients check it when they pull)",
        {"descriptor": descriptor.where, "digest": str(descriptor.digest), "size": descriptor.size, "stored": stored},
    )


def _manifest_unknown(repository: str, reference: str) -> RegistryError:
    return RegistryError(
        "MANIFEST_UNKNOWN",
        f"manifest {reference} is not in repository {repository}; check the tag or digest "
        f"(GET /v2/{repository}/tags/list lists the tags)",
        {"repository": repository, "reference": reference},
    )


async def _set_tag(conn: AsyncConnection, repository: str, repository_id: int, tag: str, manifest_id: int) -> None:
    """Point ``tag`` at ``manifest_id``, unless an immutability rule keeps it on another manifest.

    A tag no rule covers is upserted. A covered one is only inserted when absent and then read
    back (locked): another manifest there (already, or put by a push that committed meanwhile)
    is an :class:`ImmutableTagError` and the transaction rolls back; the same manifest is an
    idempotent re-push.
    """
    rule = await guarding_tag(conn, repository_id, repository, tag)
    values = {"repository_id": repository_id, "name": tag, "manifest_id": manifest_id, "updated_at": now()}
    if rule is None:
        await upsert(conn, tags, values, ["repository_id", "name"], ["manifest_id", "updated_at"])
        return
    await insert_ignore(conn, tags, values, ["repository_id", "name"])
    current = (
        await conn.execute(
            select(tags.c.manifest_id)
            .where(tags.c.repository_id == repository_id, tags.c.name == tag)
            .with_for_update()
        )
    ).scalar_one()
    if current != manifest_id:
        raise ImmutableTagError(rule, repository, tag, "pushed over with another manifest")


async def _refuse_tag_delete(conn: AsyncConnection, repository: str, repository_id: int, tag: str) -> None:
    """:class:`ImmutableTagError` when ``tag`` exists and a rule covers it."""
    rule = await guarding_tag(conn, repository_id, repository, tag)
    if rule is None:
        return
    exists_now = (
        await conn.execute(select(tags.c.id).where(tags.c.repository_id == repository_id, tags.c.name == tag))
    ).first()
    if exists_now is not None:
        raise ImmutableTagError(rule, repository, tag, "deleted")


class ManifestStore:
    """Manifest, tag and referrer operations."""

    def __init__(
        self, db: Database, storage: StorageDriver, *, max_bytes: int, guard: WriteGuard | None = None,
        on_stored: Record | None = None,
    ) -> None:
        self.db = db
        self.storage = storage
        self.max_bytes = max_bytes
        self.guard = guard or WriteGuard()
        #: Runs in the publish transaction when the bytes are in ``storage`` (multi-site: this site holds them).
        self.on_stored = on_stored

    async def read_payload(self, body: AsyncIterable[bytes], declared_length: int | None) -> bytes:
        """Collect a manifest body, refusing more than the limit before reading it whole."""
        too_large = RegistryError(
            "MANIFEST_TOO_LARGE",
            f"manifest is larger than the limit of {self.max_bytes} bytes; split it (e.g. fewer layers or "
            "annotations) or raise limits.manifest_max_bytes",
            {"limit": self.max_bytes},
        )
        if declared_length is not None and declared_length > self.max_bytes:
            raise too_large
        parts: list[bytes] = []
        total = 0
        async for chunk in body:
            total += len(chunk)
            if total > self.max_bytes:
                raise too_large
            parts.append(chunk)
        return b"".join(parts)

    async def put(
        self,
        repository: str,
        reference: Digest | str,
        payload: bytes,
        content_type: str | None,
        *,
        store_payload: bool = True,
    ) -> tuple[Digest, ParsedManifest]:
        """Validate and store a manifest, tagging it when ``reference`` is a tag.

        ``store_payload=False`` records a payload that storage already holds under its digest
        (importing an existing Distribution tree).
        """
        self.guard.writable()
        algorithm = reference.algorithm if isinstance(reference, Digest) else "sha256"
        digest = Digest.of(payload, algorithm)
        if isinstance(reference, Digest) and digest != reference:
            raise RegistryError(
                "DIGEST_INVALID",
                f"manifest content has digest {digest}, not {reference}; push it by tag or by its real digest",
                {"expected": str(reference), "actual": str(digest)},
            )
        parsed = parse_manifest(payload, content_type)
        await self._check_references(repository, parsed)
        if store_payload:  # an import records what storage holds: counted, never refused
            async with self.db.read() as conn:
                await precheck(conn, repository, str(digest), len(payload), manifest=True)
        annotations = json.dumps(parsed.annotations) if parsed.annotations else None
        for attempt in range(3):
            placed = False
            try:
                placed = await self._publish_payload(digest, payload, store_payload)
                async with self.db.write() as conn:
                    repository_id = await ensure_repository(
                        conn, repository, project_required=self.guard.projects_required
                    )
                    manifest_id = await self._record(
                        conn, repository, repository_id, digest, parsed, payload, annotations, store_payload
                    )
                    if isinstance(reference, str):
                        await _set_tag(conn, repository, repository_id, reference, manifest_id)
                break
            except QuotaExceeded:
                # A push elsewhere in the project took the room since the pre-check: the payload blob
                # this call wrote goes too, unless something else uses it by now.
                if placed:
                    await withdraw(self.db, self.storage, digest, ACTIVE)
                raise
            except (IntegrityError, BlobNotActive) as exc:
                # A concurrent push of the same manifest won the insert (the next attempt reads its
                # row), or GC reclaimed the payload's blob between publishing and recording it.
                if attempt < 2:
                    continue
                if isinstance(exc, BlobNotActive):
                    raise RegistryError(
                        "UNAVAILABLE",
                        f"garbage collection is removing the content of manifest {digest}; push it again",
                        {"digest": str(digest)},
                    ) from None
                raise
        return digest, parsed

    async def _publish_payload(self, digest: Digest, payload: bytes, store_payload: bool) -> bool:
        """Make the payload an active blob under its key (docs/gc.md), writing it unless it is already there.

        Returns whether this call wrote it.
        """
        if not store_payload:
            async with self.db.write() as conn:
                if not await record_existing(conn, digest, len(payload)):
                    raise BlobNotActive(str(digest))
            return False

        async def place() -> None:
            await self.storage.put(blob_path(digest), payload)

        async def nothing(_conn: AsyncConnection, _blob_id: int) -> None:
            return None

        try:
            return await publish_blob(self.db, self.storage, digest, len(payload), place, nothing, stored=self.on_stored)
        except RegistryError as exc:
            if exc.code == "BLOB_UPLOAD_UNKNOWN":  # GC reclaimed it while it was written: write it again
                raise BlobNotActive(str(digest)) from None
            raise

    async def _record(
        self,
        conn: AsyncConnection,
        repository_name: str,
        repository_id: int,
        digest: Digest,
        parsed: ParsedManifest,
        payload: bytes,
        annotations: str | None,
        enforce: bool,
    ) -> int:
        existing = await lock_manifest(conn, repository_id, str(digest))  # GC cannot delete it under us
        if existing is not None:
            return existing
        await require_references(
            conn,
            repository_name,
            repository_id,
            (str(d.digest) for d in parsed.blobs if not d.external),
            (str(d.digest) for d in parsed.manifests),
            str(parsed.subject.digest) if parsed.subject else None,
        )
        # After the references' locks: linking charges the project's quota, whose row must be the
        # last lock taken (moorage.registry.quota).
        await link_blob(conn, repository_id, digest, len(payload), enforce=enforce)
        timestamp = now()
        manifest_id = (
            await conn.execute(
                manifests.insert()
                .values(
                    repository_id=repository_id,
                    digest=str(digest),
                    media_type=parsed.media_type,
                    artifact_type=parsed.artifact_type,
                    size=len(payload),
                    payload=payload,
                    subject_digest=str(parsed.subject.digest) if parsed.subject else None,
                    annotations=annotations,
                    created_at=timestamp,
                )
                .returning(manifests.c.id)
            )
        ).scalar_one()
        references = {("blob", str(d.digest)) for d in parsed.blobs if not d.external}
        references |= {("manifest", str(d.digest)) for d in parsed.manifests}
        await insert_ignore_many(
            conn,
            manifest_references,
            [
                {"manifest_id": manifest_id, "kind": kind, "digest": ref, "created_at": timestamp}
                for kind, ref in sorted(references)
            ],
            ["manifest_id", "kind", "digest"],
        )
        if enforce:
            await charge_manifest(conn, repository_id)
        return int(manifest_id)

    async def _check_references(self, repository: str, parsed: ParsedManifest) -> None:
        """Every referenced blob and child manifest is in ``repository`` with the declared size.

        Raises ``MANIFEST_BLOB_UNKNOWN`` for missing content, then ``MANIFEST_INVALID`` naming the
        first descriptor whose ``size`` differs from what is stored (pulls would fail on it).
        """
        wanted_blobs = {str(d.digest) for d in parsed.blobs if not d.external}
        wanted_manifests = {str(d.digest) for d in parsed.manifests}
        found_blobs: dict[str, int] = {}
        found_manifests: dict[str, int] = {}
        async with self.db.read() as conn:
            for chunk in _chunks(wanted_blobs):
                query = (
                    select(blobs.c.digest, blobs.c.size)
                    .select_from(blobs.join(repository_blobs).join(repositories))
                    .where(repositories.c.name == repository, blobs.c.digest.in_(chunk), blobs.c.state == ACTIVE)
                )
                found_blobs.update((row.digest, row.size) for row in await conn.execute(query))
            for chunk in _chunks(wanted_manifests):
                query = (
                    select(manifests.c.digest, manifests.c.size)
                    .select_from(manifests.join(repositories))
                    .where(repositories.c.name == repository, manifests.c.digest.in_(chunk))
                )
                found_manifests.update((row.digest, row.size) for row in await conn.execute(query))
        missing = sorted((wanted_blobs - found_blobs.keys()) | (wanted_manifests - found_manifests.keys()))
        if missing:
            raise RegistryError(
                "MANIFEST_BLOB_UNKNOWN",
                f"manifest references {len(missing)} blob(s) or manifest(s) not in repository {repository} "
                f"(first: {missing[0]}); push those first, then the manifest",
                {"missing": missing},
            )
        for descriptors, found in ((parsed.blobs, found_blobs), (parsed.manifests, found_manifests)):
            for descriptor in descriptors:
                stored = found.get(str(descriptor.digest))
                if stored is not None and stored != descriptor.size:
                    raise _size_mismatch(descriptor, stored)

    async def tag(self, repository: str, tag: str, digest: Digest, *, move: bool = True) -> None:
        """Point ``tag`` at a manifest already in the repository (``MANIFEST_UNKNOWN`` otherwise).

        ``move=False`` (adding a tag from the UI or REST, as Harbor): the tag is only created, never
        moved; it already on another manifest is a 409 saying so, on the same one it is a no-op (a
        concurrent duplicate is harmless). Immutability rules apply either way (``_set_tag``).
        """
        self.guard.writable()
        validate_tag(tag)
        async with self.db.write() as conn:
            repository_id = await find_repository(conn, repository)
            manifest_id = None
            if repository_id is not None:
                manifest_id = await lock_manifest(conn, repository_id, str(digest))  # GC cannot delete it under us
            if repository_id is None or manifest_id is None:
                raise _manifest_unknown(repository, str(digest))
            if not move:
                values = {"repository_id": repository_id, "name": tag, "manifest_id": manifest_id, "updated_at": now()}
                await insert_ignore(conn, tags, values, ["repository_id", "name"])
                current = (
                    await conn.execute(
                        select(tags.c.manifest_id)
                        .where(tags.c.repository_id == repository_id, tags.c.name == tag)
                        .with_for_update()
                    )
                ).scalar_one()
                if current != manifest_id:
                    raise RegistryError(
                        "DENIED", f"tag {tag!r} already exists in {repository!r} on another artifact; delete it there "
                        "first or choose another name", {"tag": tag}, status=409,
                    )
                return
            await _set_tag(conn, repository, repository_id, tag, manifest_id)

    async def get(self, repository: str, reference: Digest | str) -> StoredManifest:
        if isinstance(reference, Digest):
            query, params = _BY_DIGEST, {"repository": repository, "digest": str(reference)}
        else:
            query, params = _BY_TAG, {"repository": repository, "tag": reference}
        row = await self.db.first(query, params)  # one statement: no transaction needed around it
        if row is None:
            raise _manifest_unknown(repository, str(reference))
        return StoredManifest(*row)

    async def delete(self, repository: str, reference: Digest | str) -> None:
        """Delete a manifest (by digest, with its tags) or only a tag (by tag)."""
        self.guard.deletable()
        async with self.db.write() as conn:
            repository_id = await find_repository(conn, repository)
            deleted = 0
            if repository_id is not None and isinstance(reference, Digest):
                held = await guarding_digest(conn, repository_id, repository, str(reference))
                if held is not None:
                    raise ImmutableTagError(held[0], repository, held[1], f"deleted (through its manifest {reference})")
                deleted = (
                    await conn.execute(
                        delete(manifests).where(
                            manifests.c.repository_id == repository_id, manifests.c.digest == str(reference)
                        )
                    )
                ).rowcount
            elif repository_id is not None:
                await _refuse_tag_delete(conn, repository, repository_id, str(reference))
                deleted = (
                    await conn.execute(
                        delete(tags).where(tags.c.repository_id == repository_id, tags.c.name == reference)
                    )
                ).rowcount
        if not deleted:
            raise _manifest_unknown(repository, str(reference))

    async def delete_tag(self, repository: str, tag: str, digest: Digest) -> None:
        """Delete ``tag`` only while it still points at ``digest`` (compare-and-delete).

        A tag moved to another manifest after the caller looked is left alone and the caller
        gets ``MANIFEST_UNKNOWN`` naming both, instead of deleting what someone just pushed.
        """
        self.guard.deletable()
        pointed = (
            select(manifests.c.id)
            .select_from(manifests.join(repositories))
            .where(repositories.c.name == repository, manifests.c.digest == str(digest))
            .scalar_subquery()
        )
        async with self.db.write() as conn:
            repository_id = await find_repository(conn, repository)
            if repository_id is not None:
                await _refuse_tag_delete(conn, repository, repository_id, tag)
            deleted = (
                await conn.execute(
                    delete(tags).where(tags.c.name == tag, tags.c.manifest_id == pointed)
                )
            ).rowcount
        if not deleted:
            raise RegistryError(
                "MANIFEST_UNKNOWN",
                f"tag {tag} of repository {repository} does not point at {digest} (any more); "
                "list the artifact's tags and try again",
                {"repository": repository, "tag": tag, "digest": str(digest)},
            )

    async def tags(self, repository: str, limit: int, last: str | None) -> list[str]:
        """Up to ``limit`` tag names after ``last``, in lexical order; ``NAME_UNKNOWN`` for no repository."""
        async with self.db.read() as conn:
            repository_id = await find_repository(conn, repository)
            if repository_id is None:
                raise RegistryError(
                    "NAME_UNKNOWN",
                    f"repository {repository} does not exist; check the name or push an image to create it",
                    {"name": repository},
                )
            query = select(tags.c.name).where(tags.c.repository_id == repository_id)
            last = _cursor(last)
            if last:
                query = query.where(tags.c.name > last)
            rows = await conn.execute(query.order_by(tags.c.name).limit(limit))
            return list(rows.scalars())

    async def catalog(self, limit: int, last: str | None, visible: ColumnElement[bool] | None = None) -> list[str]:
        """Repository names that hold at least one manifest, after ``last``, in lexical order.

        ``visible``: the access policy's condition on ``repositories`` (``None``: every repository).
        """
        query = select(repositories.c.name).where(
            exists().where(manifests.c.repository_id == repositories.c.id)
        )
        if visible is not None:
            query = query.where(visible)
        last = _cursor(last)
        if last:
            query = query.where(repositories.c.name > last)
        async with self.db.read() as conn:
            rows = await conn.execute(query.order_by(repositories.c.name).limit(limit))
            return list(rows.scalars())

    async def referrers(self, repository: str, subject: Digest, artifact_type: str | None) -> dict[str, Any]:
        """The OCI image index of manifests whose ``subject`` is ``subject`` (empty when none).

        Rows stored before image manifests recorded their config's media type as artifact type
        have none; theirs is read from the payload here, so old and new rows list and filter alike.
        """
        stored_type = manifests.c.artifact_type
        legacy = stored_type.is_(None) & manifests.c.media_type.in_(sorted(mt.IMAGE_TYPES))
        query = (
            select(
                manifests.c.digest,
                manifests.c.media_type,
                stored_type,
                manifests.c.size,
                manifests.c.annotations,
                case((legacy, manifests.c.payload), else_=None).label("legacy_payload"),
            )
            .select_from(manifests.join(repositories))
            .where(repositories.c.name == repository, manifests.c.subject_digest == str(subject))
            .order_by(manifests.c.id)
        )
        if artifact_type and "\x00" in artifact_type:  # PostgreSQL refuses NUL; no type holds one
            return {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
        if artifact_type:
            query = query.where(or_(stored_type == artifact_type, legacy))
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        descriptors = []
        for row in rows:
            effective = row.artifact_type
            if row.legacy_payload is not None:
                effective = config_media_type(row.legacy_payload)
            if artifact_type and effective != artifact_type:
                continue
            descriptor: dict[str, Any] = {"mediaType": row.media_type, "digest": row.digest, "size": row.size}
            if effective:
                descriptor["artifactType"] = effective
            if row.annotations:
                descriptor["annotations"] = json.loads(row.annotations)
            descriptors.append(descriptor)
        return {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": descriptors}
