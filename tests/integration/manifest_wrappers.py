"""Manifests wrappers for tests (no tests here): real wrappers in the service chain, not mocks.

:class:`Forwarding` implements the whole :class:`~moorage.registry.interfaces.Manifests`
Protocol by forwarding to the wrapped service; a test subclasses it to do something at an exact
point of a call (count it, or let a concurrent change land right there), which is how races
are made deterministic without sleeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any

from sqlalchemy import ColumnElement

from moorage.registry.digests import Digest
from moorage.registry.interfaces import Manifests
from moorage.registry.manifest_store import StoredManifest
from moorage.registry.manifests import ParsedManifest


class Forwarding:
    """Every :class:`Manifests` method, forwarded to ``inner``."""

    def __init__(self, inner: Manifests) -> None:
        self.inner = inner

    async def read_payload(self, body: AsyncIterable[bytes], declared_length: int | None) -> bytes:
        return await self.inner.read_payload(body, declared_length)

    async def put(
        self, repository: str, reference: Digest | str, payload: bytes, content_type: str | None, *,
        store_payload: bool = True,
    ) -> tuple[Digest, ParsedManifest]:
        return await self.inner.put(repository, reference, payload, content_type, store_payload=store_payload)

    async def tag(self, repository: str, tag: str, digest: Digest) -> None:
        await self.inner.tag(repository, tag, digest)

    async def get(self, repository: str, reference: Digest | str) -> StoredManifest:
        return await self.inner.get(repository, reference)

    async def delete(self, repository: str, reference: Digest | str) -> None:
        await self.inner.delete(repository, reference)

    async def delete_tag(self, repository: str, tag: str, digest: Digest) -> None:
        await self.inner.delete_tag(repository, tag, digest)

    async def tags(self, repository: str, limit: int, last: str | None) -> list[str]:
        return await self.inner.tags(repository, limit, last)

    async def catalog(self, limit: int, last: str | None, visible: ColumnElement[bool] | None = None) -> list[str]:
        return await self.inner.catalog(limit, last, visible)

    async def referrers(self, repository: str, subject: Digest, artifact_type: str | None) -> dict[str, Any]:
        return await self.inner.referrers(repository, subject, artifact_type)


class Counting(Forwarding):
    """Counts the ``get`` calls that reach it (those a cache in front of it did not answer)."""

    def __init__(self, inner: Manifests) -> None:
        super().__init__(inner)
        self.gets = 0

    async def get(self, repository: str, reference: Digest | str) -> StoredManifest:
        self.gets += 1
        return await self.inner.get(repository, reference)


class ChangeBeforeDelete(Forwarding):
    """Runs ``change`` once, at the last moment before a tag delete reaches the store.

    Whatever a caller read about the tag before (through ``get``), the store sees the world
    after ``change``: a push that moved the tag landed between the caller's read and its delete.
    """

    def __init__(self, inner: Manifests, change: Callable[[], Awaitable[None]]) -> None:
        super().__init__(inner)
        self.change: Callable[[], Awaitable[None]] | None = change

    async def _once(self) -> None:
        change, self.change = self.change, None
        if change is not None:
            await change()

    async def delete(self, repository: str, reference: Digest | str) -> None:
        await self._once()
        await self.inner.delete(repository, reference)

    async def delete_tag(self, repository: str, tag: str, digest: Digest) -> None:
        await self._once()
        await self.inner.delete_tag(repository, tag, digest)
