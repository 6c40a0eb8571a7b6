"""Copy one artifact between two registries, in the order that never shows a half-copied tag.

For an artifact ``source:reference`` → ``destination:tag``:

1. the manifest is fetched from the source (its exact bytes: the digest is over them);
2. an index's children are copied first, each by digest (depth first), an image's config and
   layers next: a blob the destination already has is skipped (``HEAD``), one it has in another
   repository the copier already wrote is mounted, any other is streamed from the source;
3. only then is the manifest put, by digest, and last the tag is pointed at it, so a client
   that sees the tag at the destination can pull everything under it;
4. the referrers of each copied manifest (signatures, SBOMs) follow their subject, by digest.

Nothing here is specific to a side: both are :class:`~moorage.replication.adapters.RegistryAdapter`.
Every step is idempotent (skips what is there), so a task that died half-way is simply run
again. ``override`` off leaves a destination tag that points elsewhere alone (the task says so).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from moorage.errors import RegistryError
from moorage.registry.manifests import parse_manifest
from moorage.replication.adapters import Manifest, PeerError, RegistryAdapter

__all__ = ["ArtifactCopier", "CopyResult", "Throttle"]

#: Blobs of one copier in flight at once (skopeo and docker push about this many layers at a time).
BLOB_CONCURRENCY = 10
#: How deep an index of indexes (of ...) may nest before the copy refuses it (a cycle guard).
MAX_DEPTH = 8


@dataclass
class CopyResult:
    """What one artifact copy did, for the task's counters and log."""

    digest: str = ""
    blobs_copied: int = 0
    blobs_skipped: int = 0
    blobs_mounted: int = 0
    manifests: int = 0
    bytes: int = 0
    skipped: str | None = None  # why the tag was left alone (override off)
    log: list[str] = field(default_factory=list)


class Throttle:
    """A token bucket over bytes: ``speed`` KiB/s (``<= 0``: unlimited), shared by one policy's tasks."""

    def __init__(self, kib_per_second: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = kib_per_second * 1024
        self._clock = clock
        self._start = clock()
        self._sent = 0
        self._lock = asyncio.Lock()

    async def take(self, size: int) -> None:
        """Wait until ``size`` more bytes fit under the rate."""
        if self.rate <= 0:
            return
        async with self._lock:
            self._sent += size
            ahead = self._sent / self.rate - (self._clock() - self._start)
        if ahead > 0:
            await asyncio.sleep(ahead)


class ArtifactCopier:
    """Copies artifacts from ``source`` to ``destination`` (see the module docstring for the order)."""

    def __init__(self, source: RegistryAdapter, destination: RegistryAdapter, *,
                 override: bool = True, throttle: Throttle | None = None) -> None:
        self.source = source
        self.destination = destination
        self.override = override
        self.throttle = throttle or Throttle(0)
        #: Blobs this copier wrote, and where: a later repository of the same run mounts them.
        self._placed: dict[str, str] = {}
        self._blob_slots = asyncio.Semaphore(BLOB_CONCURRENCY)

    async def copy(self, source_repo: str, reference: str, destination_repo: str,
                   tag: str | None = None) -> CopyResult:
        """Copy ``source_repo:reference`` to ``destination_repo`` (tagged ``tag`` when given)."""
        result = CopyResult()
        manifest = await self.source.manifest(source_repo, reference)
        if manifest is None:
            raise PeerError(f"{self.source.label}: {source_repo}:{reference} no longer exists", retryable=False)
        result.digest = manifest.digest
        if tag is not None and not self.override:
            current = await self.destination.manifest_digest(destination_repo, tag)
            if current is not None and current != manifest.digest:
                result.skipped = (f"{self.destination.label}: {destination_repo}:{tag} points at {current}; "
                                  "override is off, so it was left alone")
                result.log.append(result.skipped)
                return result
        await self._manifest_tree(source_repo, destination_repo, manifest, result, depth=0)
        if tag is not None:
            await self.destination.put_manifest(destination_repo, tag, manifest)
            result.log.append(f"tagged {destination_repo}:{tag} -> {manifest.digest}")
        return result

    async def _manifest_tree(self, source_repo: str, destination_repo: str, manifest: Manifest,
                             result: CopyResult, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise PeerError(f"{source_repo}@{manifest.digest}: indexes nest deeper than {MAX_DEPTH}", retryable=False)
        if await self.destination.manifest_digest(destination_repo, manifest.digest) is None:
            try:
                parsed = parse_manifest(manifest.payload, manifest.media_type)
            except RegistryError as error:
                raise PeerError(f"{self.source.label}: {source_repo}@{manifest.digest} is not a manifest this "
                                f"registry accepts: {error.message}", retryable=False) from None
            for child in parsed.manifests:
                if child.external:
                    continue
                fetched = await self.source.manifest(source_repo, str(child.digest))
                if fetched is None:
                    raise PeerError(f"{self.source.label}: {source_repo}@{manifest.digest} lists "
                                    f"{child.digest}, which it does not have", retryable=False)
                await self._manifest_tree(source_repo, destination_repo, fetched, result, depth + 1)
            # the layers of one image go in parallel, as docker/skopeo push them; the manifest waits for all
            await asyncio.gather(*(
                self._blob(source_repo, destination_repo, str(blob.digest), blob.size, result)
                for blob in parsed.blobs if not blob.external
            ))
            await self.destination.put_manifest(destination_repo, manifest.digest, manifest)
            result.manifests += 1
            result.log.append(f"copied manifest {destination_repo}@{manifest.digest}")
        for referrer in await self.source.referrers(source_repo, manifest.digest):
            fetched = await self.source.manifest(source_repo, referrer)
            if fetched is not None:
                await self._manifest_tree(source_repo, destination_repo, fetched, result, depth + 1)

    async def _blob(self, source_repo: str, destination_repo: str, digest: str, size: int,
                    result: CopyResult) -> None:
        async with self._blob_slots:
            await self._one_blob(source_repo, destination_repo, digest, size, result)

    async def _one_blob(self, source_repo: str, destination_repo: str, digest: str, size: int,
                        result: CopyResult) -> None:
        if await self.destination.blob_size(destination_repo, digest) is not None:
            result.blobs_skipped += 1
            self._placed.setdefault(digest, destination_repo)
            return
        elsewhere = self._placed.get(digest)
        if elsewhere is not None and elsewhere != destination_repo and \
                await self.destination.mount_blob(destination_repo, digest, elsewhere):
            result.blobs_mounted += 1
            return

        def reader(offset: int) -> AsyncIterator[bytes]:
            return self._verified(source_repo, digest, size, offset)

        await self.destination.write_blob(destination_repo, digest, size, reader)
        self._placed[digest] = destination_repo
        result.blobs_copied += 1
        result.bytes += size

    async def _verified(self, source_repo: str, digest: str, size: int, offset: int) -> AsyncIterator[bytes]:
        """The source's bytes, throttled; from offset 0 the digest and size are checked at the end."""
        hasher = hashlib.sha256() if offset == 0 and digest.startswith("sha256:") else None
        seen = 0
        async for chunk in self.source.read_blob(source_repo, digest, size, offset):
            await self.throttle.take(len(chunk))
            if hasher is not None:
                hasher.update(chunk)
            seen += len(chunk)
            yield chunk
        if seen != size - offset:
            raise PeerError(f"{self.source.label}: blob {digest} ended after {offset + seen} of {size} bytes",
                            retryable=True)
        if hasher is not None and f"sha256:{hasher.hexdigest()}" != digest:
            raise PeerError(f"{self.source.label}: blob {digest} has other bytes (sha256:{hasher.hexdigest()}); "
                            "the source's storage is damaged", retryable=False)
