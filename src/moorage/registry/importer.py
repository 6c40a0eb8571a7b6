"""Import an existing CNCF Distribution (or Harbor) storage tree into the database, in place.

Distribution keeps repositories as link files beside its content-addressed blobs::

    repositories/<name>/_layers/sha256/<hex>/link                  blob linked into the repository
    repositories/<name>/_manifests/revisions/sha256/<hex>/link     manifest revision
    repositories/<name>/_manifests/tags/<tag>/current/link         tag → manifest digest
    blobs/sha256/<ab>/<hex>/data                                   the bytes (the layout Moorage uses)

Pointing Moorage's storage root at Distribution's ``docker/registry/v2`` directory (or bucket
prefix) and running the import records every repository, blob link, manifest and tag in the
database without copying a byte. It is idempotent: running it again changes nothing, and a
registry may be re-imported after more pushes to the old one.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

from moorage.db.session import Database
from moorage.errors import RegistryError
from moorage.registry.digests import Digest, parse_digest
from moorage.registry.gc_fence import record_existing
from moorage.registry.guard import WriteGuard
from moorage.registry.interfaces import Manifests
from moorage.registry.manifests import parse_manifest
from moorage.registry.names import validate_name
from moorage.registry.paths import blob_path
from moorage.registry.repositories import ensure_repository, link_blob
from moorage.storage import PathNotFoundError, StorageDriver

__all__ = ["DistributionImporter", "ImportReport"]

_LINK = re.compile(
    r"^repositories/(?P<name>.+?)/(?:"
    r"_layers/(?P<layer_alg>[a-z0-9]+)/(?P<layer_hex>[a-f0-9]+)/link"
    r"|_manifests/revisions/(?P<rev_alg>[a-z0-9]+)/(?P<rev_hex>[a-f0-9]+)/link"
    r"|_manifests/tags/(?P<tag>[^/]+)/current/link"
    r")\Z"
)


@dataclass
class _Repository:
    layers: set[str] = field(default_factory=set)
    revisions: set[str] = field(default_factory=set)
    tags: dict[str, str] = field(default_factory=dict)  # tag → link path (read later)


@dataclass
class ImportReport:
    repositories: int = 0
    blobs: int = 0
    manifests: int = 0
    tags: int = 0
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.repositories} repositories, {self.blobs} blob links, {self.manifests} manifests, "
            f"{self.tags} tags imported; {len(self.skipped)} skipped"
        )


class DistributionImporter:
    """Records a Distribution tree found in ``storage`` (see the module docstring)."""

    def __init__(
        self, db: Database, storage: StorageDriver, manifests: Manifests, *, guard: WriteGuard | None = None
    ) -> None:
        self.db = db
        self.storage = storage
        self.manifests = manifests
        self.guard = guard or WriteGuard()

    async def _scan(self) -> dict[str, _Repository]:
        found: dict[str, _Repository] = defaultdict(_Repository)
        async for info in self.storage.list("repositories"):
            match = _LINK.match(info.path)
            if match is None:
                continue  # _uploads and anything unknown
            repository = found[match["name"]]
            if match["layer_hex"]:
                repository.layers.add(f"{match['layer_alg']}:{match['layer_hex']}")
            elif match["rev_hex"]:
                repository.revisions.add(f"{match['rev_alg']}:{match['rev_hex']}")
            else:
                repository.tags[match["tag"]] = info.path
        return found

    async def _read(self, path: str) -> bytes:
        return b"".join([chunk async for chunk in self.storage.read(path)])

    async def run(self) -> ImportReport:
        """Import everything; problems with single items are reported, not raised.

        Raises ``UNSUPPORTED`` at once in read-only maintenance mode.
        """
        self.guard.writable()
        report = ImportReport()
        for name, repository in sorted((await self._scan()).items()):
            try:
                validate_name(name)
            except RegistryError as error:
                report.skipped.append(f"repository {name}: {error.message}")
                continue
            try:
                await self._import_layers(name, repository, report)
            except RegistryError as error:  # e.g. token mode and no project of that name
                report.skipped.append(f"repository {name}: {error.message}")
                continue
            report.repositories += 1
            await self._import_manifests(name, repository, report)
            await self._import_tags(name, repository, report)
        return report

    async def _import_layers(self, name: str, repository: _Repository, report: ImportReport) -> None:
        async with self.db.write() as conn:
            repository_id = await ensure_repository(conn, name, project_required=self.guard.projects_required)
        for value in sorted(repository.layers):
            digest = parse_digest(value)
            try:
                size = (await self.storage.stat(blob_path(digest))).size
            except PathNotFoundError:
                report.skipped.append(f"{name}: blob {digest} is linked but its data is missing")
                continue
            async with self.db.write() as conn:
                if not await record_existing(conn, digest, size):
                    report.skipped.append(f"{name}: blob {digest} is being garbage collected; import again later")
                    continue
                await link_blob(conn, repository_id, digest, size, enforce=False)
            report.blobs += 1

    async def _import_manifests(self, name: str, repository: _Repository, report: ImportReport) -> None:
        pending: dict[Digest, bytes] = {}
        for value in sorted(repository.revisions):
            digest = parse_digest(value)
            try:
                pending[digest] = await self._read(blob_path(digest))
            except PathNotFoundError:
                report.skipped.append(f"{name}: manifest {digest} is linked but its data is missing")
        # Indexes need their children first: record what can be recorded until nothing moves.
        errors: dict[Digest, str] = {}
        while pending:
            progressed = False
            for digest, payload in list(pending.items()):
                try:
                    parse_manifest(payload, None)
                    await self.manifests.put(name, digest, payload, None, store_payload=False)
                except RegistryError as error:
                    errors[digest] = error.message
                    if error.code != "MANIFEST_BLOB_UNKNOWN":
                        del pending[digest]  # never importable (schema 1, corrupt): report it
                    continue
                del pending[digest]
                errors.pop(digest, None)
                report.manifests += 1
                progressed = True
            if not progressed:
                break
        for digest, message in errors.items():
            report.skipped.append(f"{name}: manifest {digest}: {message}")

    async def _import_tags(self, name: str, repository: _Repository, report: ImportReport) -> None:
        for tag, link in sorted(repository.tags.items()):
            try:
                digest = parse_digest((await self._read(link)).decode().strip())
                await self.manifests.tag(name, tag, digest)
            except (RegistryError, PathNotFoundError, UnicodeDecodeError) as error:
                report.skipped.append(f"{name}:{tag}: {getattr(error, 'message', error)}")
                continue
            report.tags += 1
