"""What replication needs from a registry, whichever side it is on (Harbor's adapter interface).

One :class:`RegistryAdapter` per kind of peer: :class:`~moorage.replication.local.LocalAdapter`
reads and writes this registry through its domain services (never the tables, never HTTP to
itself); the remote adapter speaks the distribution API to a Docker/OCI registry or a Harbor.
The copier (:mod:`moorage.replication.copier`) only ever sees this Protocol, so every pair of
sides (push, pull, Moorage → Moorage) runs the same copy, with the same ordering guarantees.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Manifest", "PeerError", "RegistryAdapter"]


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest as fetched: its exact bytes (the digest is over them), type and digest."""

    digest: str
    media_type: str
    payload: bytes


class PeerError(Exception):
    """A side refused or failed; the message is what goes into the task's log (who, what, answer).

    ``retryable`` says whether trying again later may help (unreachable, 5xx, 429), as opposed to
    a refusal that needs an operator (401, 403, quota, an invalid name).
    """

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class RegistryAdapter(Protocol):
    """One registry as a source or a destination of replication."""

    #: How the side is named in logs (``local``, ``https://registry.example``).
    label: str

    def repositories(self) -> AsyncIterator[str]:
        """Every repository name the credentials may see, in lexical order."""
        ...

    async def tags(self, repository: str) -> list[str]:
        """Every tag of ``repository`` (empty when it does not exist)."""
        ...

    async def manifest(self, repository: str, reference: str) -> Manifest | None:
        """The manifest by tag or digest; ``None`` when there is none."""
        ...

    async def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The digest ``reference`` resolves to (a ``HEAD``), ``None`` when unknown."""
        ...

    async def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> None:
        """Store ``manifest`` under ``reference`` (a tag or its digest)."""
        ...

    async def delete_tag(self, repository: str, tag: str) -> None:
        """Remove ``tag`` (a replicated delete); nothing when it is not there."""
        ...

    async def blob_size(self, repository: str, digest: str) -> int | None:
        """The size of a blob already in ``repository``, ``None`` when absent."""
        ...

    async def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        """Link a blob from ``source`` (same registry) into ``repository``; whether it worked."""
        ...

    def read_blob(self, repository: str, digest: str, size: int, offset: int = 0) -> AsyncIterator[bytes]:
        """The blob's bytes from ``offset`` on."""
        ...

    async def write_blob(self, repository: str, digest: str, size: int, source: BlobSource) -> None:
        """Store a blob whose bytes ``source`` yields; the digest is verified before it is linked."""
        ...

    async def referrers(self, repository: str, digest: str) -> list[str]:
        """Digests of the manifests whose ``subject`` is ``digest`` (empty when unsupported)."""
        ...


class BlobSource(Protocol):
    """Re-openable bytes of one blob: a writer that resumes after a failure asks from an offset."""

    def __call__(self, offset: int) -> AsyncIterator[bytes]:
        ...
