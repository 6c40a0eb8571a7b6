"""Blobs of proxy projects: fetched upstream on a miss, streamed to the client while they are stored.

One process in the whole cluster fetches a given digest at a time (:class:`~.flight.FetchLease`);
the others wait until it is linked and then read it from storage. The fetching request's client
gets each chunk as it arrives (first byte without waiting for the layer), through a bounded queue
so memory stays flat whatever the layer's size, and its response ends with the last byte (as a
pull-through cache's must, or every cold pull would wait for the storage commit). The bytes go to storage through the ordinary
monolithic-upload path (:meth:`UploadService.monolithic`): the digest is verified before the blob
is published and linked, an interrupted fetch leaves only unlinked upload bytes, and publishing
a digest that is already there is idempotent. The fetch runs in its own task: a client that hangs
up does not stop it (the waiters and the next pulls need it), and a client that stops reading for
:data:`CLIENT_STALL` seconds is dropped rather than holding the fetch back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog

from moorage.errors import RegistryError
from moorage.proxy.bindings import ProxyTarget
from moorage.proxy.eviction import Evictions
from moorage.proxy.flight import FetchLease, Lease
from moorage.proxy.manifests import ProxyManifests
from moorage.proxy.upstreams import UPSTREAM_FETCHES, UpstreamPool, oci_error
from moorage.registry.digests import Digest
from moorage.registry.interfaces import Blobs
from moorage.registry.uploads import UploadService
from moorage.upstream import UpstreamError

__all__ = ["ProxiedBlob", "ProxyBlobs"]

log = structlog.get_logger("moorage.proxy")

#: Chunks (of up to 256 KiB) buffered between the fetch and its client: at most ~4 MiB per fetch.
QUEUE_CHUNKS = 16
#: Seconds the fetch waits for a client that stopped reading before going on without it.
CLIENT_STALL = 60.0


@dataclass(slots=True)
class ProxiedBlob:
    size: int | None
    chunks: AsyncIterator[bytes]


class _Done:
    __slots__ = ()


@dataclass(slots=True)
class _Open:
    size: int | None


_DONE = _Done()
_Item = bytes | _Open | _Done | BaseException


@dataclass(slots=True)
class _Consumer:
    alive: bool = True


class ProxyBlobs:
    """Cold blob reads of proxy projects (warm ones are ordinary blob reads)."""

    def __init__(self, blobs: Blobs, uploads: UploadService, upstreams: UpstreamPool, lease: FetchLease,
                 manifests: ProxyManifests, *, poll_seconds: float = 0.1, wait_seconds: float = 900.0,
                 evictions: Evictions | None = None) -> None:
        self.blobs = blobs
        self.uploads = uploads
        self.upstreams = upstreams
        self.lease = lease
        self.manifests = manifests
        self.poll_seconds = poll_seconds
        self.wait_seconds = wait_seconds
        self.evictions = evictions
        self._tasks: set[asyncio.Task[None]] = set()

    async def size(self, target: ProxyTarget, digest: Digest) -> int:
        """The size upstream (a ``HEAD``; nothing is fetched)."""
        try:
            client = await self.upstreams.client(target)
            return await client.blob_size(target.upstream_repository, str(digest))
        except UpstreamError as exc:
            raise oci_error(target, exc, f"blob {digest} of {target.upstream_repository}") from None

    async def fetch(self, target: ProxyTarget, digest: Digest) -> ProxiedBlob:
        """The blob's bytes: from storage once linked, else fetched (by this process or another one)."""
        deadline = time.monotonic() + self.wait_seconds
        repository = target.repository
        while True:
            local = await self._linked(repository, digest)
            if local is not None:
                return local
            lease, holder = await self.lease.claim(str(digest), repository)
            if lease is not None:
                return await self._lead(target, digest, lease)
            if holder is None:
                continue
            while await self.lease.holder_of(str(digest)) is not None:
                if time.monotonic() > deadline:
                    raise RegistryError(
                        "UNAVAILABLE", f"blob {digest} is still being fetched from {target.binding.registry_name!r} "
                        f"after {self.wait_seconds:.0f} s; retry later", {"digest": str(digest)}, status=504)
                await asyncio.sleep(self.poll_seconds)
            if holder != repository and holder.partition("/")[0] == repository.partition("/")[0]:
                # Fetched into another repository of the same proxy project (same upstream): link it here.
                await self.blobs.mount(repository, holder, digest)

    async def _linked(self, repository: str, digest: Digest) -> ProxiedBlob | None:
        try:
            size = await self.blobs.size(repository, digest)
        except RegistryError as exc:
            if exc.code == "BLOB_UNKNOWN":
                return None
            raise
        return ProxiedBlob(size, await self.blobs.open(digest, None, size))

    async def _lead(self, target: ProxyTarget, digest: Digest, lease: Lease) -> ProxiedBlob:
        queue: asyncio.Queue[_Item] = asyncio.Queue(QUEUE_CHUNKS)
        consumer = _Consumer()
        task = asyncio.create_task(self._fill(target, digest, lease, queue, consumer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            first = await queue.get()
        except BaseException:
            self._leave(queue, consumer)
            raise
        if isinstance(first, BaseException):
            raise first
        size = first.size if isinstance(first, _Open) else None
        return ProxiedBlob(size, self._stream(queue, consumer))

    @staticmethod
    def _leave(queue: asyncio.Queue[_Item], consumer: _Consumer) -> None:
        consumer.alive = False
        while not queue.empty():  # unblock a fill waiting for room
            queue.get_nowait()

    async def _stream(self, queue: asyncio.Queue[_Item], consumer: _Consumer) -> AsyncIterator[bytes]:
        try:
            while True:
                if not consumer.alive:
                    raise RegistryError("UNAVAILABLE", "the client stopped reading for too long; pull again")
                item = await queue.get()
                if isinstance(item, _Done):
                    return
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, bytes):
                    yield item
        finally:
            self._leave(queue, consumer)

    @staticmethod
    async def _offer(queue: asyncio.Queue[_Item], consumer: _Consumer, item: _Item) -> None:
        if not consumer.alive:
            return
        if not queue.full():  # the common case: no timer per chunk
            queue.put_nowait(item)
            return
        try:
            await asyncio.wait_for(queue.put(item), CLIENT_STALL)
        except TimeoutError:
            consumer.alive = False

    async def _fill(self, target: ProxyTarget, digest: Digest, lease: Lease, queue: asyncio.Queue[_Item],
                    consumer: _Consumer) -> None:
        endpoint = target.binding.registry_name
        try:
            client = await self.upstreams.client(target)
            async with client.blob(target.upstream_repository, str(digest)) as blob:
                await self._offer(queue, consumer, _Open(blob.size))
                renew_every = self.lease.seconds / 3

                async def tee() -> AsyncIterator[bytes]:
                    renewed = time.monotonic()
                    async for chunk in blob.chunks:
                        if time.monotonic() - renewed > renew_every:
                            if not await self.lease.renew(lease):
                                raise RegistryError("UNAVAILABLE", f"the fetch of {digest} was taken over by "
                                                    "another node (this one was too slow); pull again")
                            renewed = time.monotonic()
                        await self._offer(queue, consumer, chunk)
                        yield chunk
                    # The client has every byte: end its response now rather than after the digest check,
                    # the storage commit (an fsync of the whole layer) and the publish, which go on here.
                    # It checks the digest itself; bytes that fail ours are never linked (see the module).
                    await self._offer(queue, consumer, _DONE)

                await self.uploads.monolithic(target.repository, digest, tee(), blob.size)
            UPSTREAM_FETCHES.labels(endpoint, "blob", "ok").inc()
            log.info("proxy_blob_fetched", repository=target.repository, digest=str(digest), endpoint=endpoint)
            await self._offer(queue, consumer, _DONE)
        except UpstreamError as exc:
            UPSTREAM_FETCHES.labels(endpoint, "blob", exc.kind).inc()
            log.warning("proxy_blob_failed", repository=target.repository, digest=str(digest), error=exc.message)
            await self._offer(queue, consumer, oci_error(target, exc, f"blob {digest} of {target.upstream_repository}"))
        except Exception as exc:  # noqa: BLE001 - handed to the client; the next pull starts over
            log.warning("proxy_blob_failed", repository=target.repository, digest=str(digest), error=str(exc))
            await self._offer(queue, consumer, exc)
        finally:
            await self.lease.release(lease)  # also when cancelled (shutdown): the next pull need not wait
        try:
            await self.manifests.promote(target)
        except Exception as exc:  # noqa: BLE001 - promotion is retried on the next pull
            log.warning("proxy_promote_failed", repository=target.repository, error=str(exc))
        if self.evictions is not None:
            try:  # the blob is linked: the project's usage may now be over its cache limit
                await self.evictions.after_fetch(target.binding)
            except Exception as exc:  # noqa: BLE001 - the next fetch or GC run queues it again
                log.warning("proxy_eviction_enqueue_failed", repository=target.repository, error=str(exc))

    async def settled(self) -> None:
        """Wait for this process's fetches in flight to be stored and linked (or to fail)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel fetches still running (shutdown): their leases are released, nothing is linked."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            try:
                await task
            except BaseException:  # noqa: BLE001, S110 - cancelled on purpose
                pass
