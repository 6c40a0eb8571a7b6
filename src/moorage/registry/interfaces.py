"""The domain services as their callers see them: Protocols, so wrappers compose (STYLE habit 4).

The API layers, the CLI, the importer and the cache hold a :class:`Blobs`, a :class:`Manifests`
and a :class:`Repositories`, never a concrete class. A wrapper (the Redis cache today; metrics
or a read-through proxy tomorrow) takes any implementation and is one itself, so wrappers stack
in any order and none of them has to rebuild the one it wraps (see
:class:`moorage.storage.checked.CheckedDriver` for the same pattern on storage drivers).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, BinaryIO, Protocol

from sqlalchemy import ColumnElement

from moorage.registry.blobs import ByteRange
from moorage.registry.digests import Digest
from moorage.registry.manifest_store import StoredManifest
from moorage.registry.manifests import ParsedManifest
from moorage.registry.repository_service import ArtifactInfo, RepositoryInfo

__all__ = ["Blobs", "Manifests", "Repositories"]


class Blobs(Protocol):
    """Blobs of repositories (:class:`moorage.registry.blobs.BlobService`)."""

    async def size(self, repository: str, digest: Digest) -> int:
        """Size of a blob linked into ``repository``; ``BLOB_UNKNOWN`` otherwise."""
        ...

    async def redirect_url(self, digest: Digest, method: str) -> str | None:
        """A storage URL signed for ``method``, when the driver redirects."""
        ...

    async def open(self, digest: Digest, byte_range: ByteRange | None, size: int) -> AsyncIterator[bytes]:
        """The blob's bytes (or ``byte_range``); ``BLOB_UNKNOWN`` before the first byte if storage lost them."""
        ...

    async def local_file(self, digest: Digest) -> BinaryIO | None:
        """The blob as an open local file to send with ``sendfile(2)``; ``None`` when :meth:`open` must stream."""
        ...

    async def mount(self, repository: str, source: str, digest: Digest) -> int | None:
        """Link ``digest`` from ``source`` into ``repository``; its size, or ``None`` when not mountable."""
        ...

    async def unlink(self, repository: str, digest: Digest) -> None:
        """Remove the blob from the repository (bytes stay for garbage collection)."""
        ...


class Manifests(Protocol):
    """Manifests, tags, the catalog and referrers (:class:`moorage.registry.manifest_store.ManifestStore`)."""

    async def read_payload(self, body: AsyncIterable[bytes], declared_length: int | None) -> bytes:
        """Collect a manifest body, refusing more than the configured limit."""
        ...

    async def put(
        self,
        repository: str,
        reference: Digest | str,
        payload: bytes,
        content_type: str | None,
        *,
        store_payload: bool = True,
    ) -> tuple[Digest, ParsedManifest]:
        """Validate and store a manifest, tagging it when ``reference`` is a tag."""
        ...

    async def tag(self, repository: str, tag: str, digest: Digest, *, move: bool = True) -> None:
        """Point ``tag`` at a manifest already in the repository (``move=False``: only a new tag, 409 if it
        is on another manifest)."""
        ...

    async def get(self, repository: str, reference: Digest | str) -> StoredManifest:
        """A manifest by tag or digest; ``MANIFEST_UNKNOWN`` otherwise."""
        ...

    async def delete(self, repository: str, reference: Digest | str) -> None:
        """Delete a manifest (by digest, with its tags) or only a tag (by tag)."""
        ...

    async def delete_tag(self, repository: str, tag: str, digest: Digest) -> None:
        """Delete ``tag`` only while it points at ``digest``."""
        ...

    async def tags(self, repository: str, limit: int, last: str | None) -> list[str]:
        """Tag names after ``last``, in lexical order."""
        ...

    async def catalog(self, limit: int, last: str | None, visible: ColumnElement[bool] | None = None) -> list[str]:
        """Repository names holding a manifest, after ``last``, in lexical order (only ``visible`` ones)."""
        ...

    async def referrers(self, repository: str, subject: Digest, artifact_type: str | None) -> dict[str, Any]:
        """The OCI image index of manifests whose ``subject`` is ``subject``."""
        ...


class Repositories(Protocol):
    """Repositories and projects as wholes (:class:`moorage.registry.repository_service.RepositoryService`)."""

    async def of_project(
        self, project_id: int, offset: int, limit: int, *, contains: str | None = None, name: str | None = None
    ) -> tuple[list[RepositoryInfo], int]:
        """The project's repositories holding artifacts (names containing ``contains``, or ``name``), and their total."""
        ...

    async def listing(
        self, offset: int, limit: int, *, contains: str | None = None, visible: ColumnElement[bool] | None = None
    ) -> tuple[list[RepositoryInfo], int]:
        """Every repository holding artifacts where ``visible`` holds (``None``: all), and their total."""
        ...

    async def count(self, project_id: int) -> int:
        """How many of the project's repositories hold artifacts."""
        ...

    async def get(self, name: str) -> RepositoryInfo:
        """One repository; ``NAME_UNKNOWN`` when there is none."""
        ...

    async def artifacts(
        self, name: str, offset: int, limit: int, digest: str | None = None, *, tag: str | None = None
    ) -> tuple[list[ArtifactInfo], int]:
        """The repository's manifests with their tags, newest first, and their total (``tag``: only those with
        a tag containing it)."""
        ...

    async def delete(self, name: str) -> None:
        """Delete the repository whole, in one transaction."""
        ...

    async def delete_project(self, project_id: int) -> list[str]:
        """Delete a project with its repositories, members and robots; the names of the repositories deleted."""
        ...
