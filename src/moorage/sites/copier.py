"""The ``site.copy`` job: copy one blob's bytes to one site, verify them, record the site.

Queued by the publish of a blob (one job per other site, in the publish transaction) and by a
read at a site that had to fetch the bytes from elsewhere (the same dedup key, so still one job).
It is run by a node of the destination site (:func:`copy_kind`). The bytes stream from a holding
site into an unfinished write at the destination, the digest is checked while they pass, and only
then are they moved under the content-addressed key and the ``blob_sites`` row written. So a
site never has a row for bytes it lacks, and two copies of one blob at once (a job retried after
its node died) both end with one correct object (``move`` keeps an object of the same size).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from moorage.db.tables import blobs
from moorage.jobs.queue import Job
from moorage.registry.digests import Digest, parse_digest
from moorage.registry.hashing import feed
from moorage.registry.paths import blob_path, upload_dir, upload_path
from moorage.sites.model import Sites, copy_kind
from moorage.storage import PathNotFoundError, StorageError

__all__ = ["SiteCopier", "copy_kind"]

log = structlog.get_logger("moorage.sites")


class CopyFailed(Exception):
    """No holding site could deliver the bytes; the job is retried with backoff."""


class SiteCopier:
    """Runs ``site.copy`` jobs for the deployment's :class:`Sites`."""

    def __init__(self, sites: Sites) -> None:
        self.sites = sites

    async def __call__(self, job: Job) -> None:
        blob_id = int(job.payload["blob_id"])
        site = str(job.payload["site"])
        if site not in self.sites.stores:
            log.warning("site_copy_unknown_site", site=site, blob_id=blob_id)
            return  # the site left the configuration: nothing to copy to
        async with self.sites.db.read() as conn:
            row = (await conn.execute(select(blobs.c.digest, blobs.c.size).where(blobs.c.id == blob_id))).first()
        if row is None:
            return  # garbage collection removed the blob meanwhile
        digest = parse_digest(row.digest)
        _, holders = await self.sites.holders(digest)
        # No early return when a row says ``site`` holds it: the job also runs when a read there
        # found the bytes missing (copy_here_later), and copy() trusts a stat, not the row.
        await self.copy(blob_id, digest, int(row.size), site, holders)

    async def copy(self, blob_id: int, digest: Digest, size: int, site: str, holders: list[str]) -> None:
        """Place ``digest`` at ``site`` from the first holder that delivers it, then record it."""
        target = self.sites.stores[site].storage
        key = blob_path(digest)
        try:
            present = (await target.stat(key)).size == size
        except PathNotFoundError:
            present = False
        failures: list[str] = []
        if not present:
            sources = [s for s in holders if s != site] + [s for s in self.sites.stores if s not in holders and s != site]
            for source in sources:
                try:
                    await self._transfer(source, site, digest, size)
                except PathNotFoundError:
                    continue
                except (StorageError, CopyFailed) as exc:
                    failures.append(f"from {self.sites.stores[source].described}: {exc}")
                    continue
                present = True
                break
        if not present:
            raise CopyFailed(
                f"blob {digest} could not be copied to site {site!r}: "
                + ("; ".join(failures) or "no site holds its bytes")
            )
        try:
            async with self.sites.db.write() as conn:
                await self.sites.record(conn, blob_id, site)
        except IntegrityError:
            return  # the blob row went (garbage collection) while we copied: nothing to record
        log.info("site_copied", digest=str(digest), site=site, size=size)

    async def _transfer(self, source: str, site: str, digest: Digest, size: int) -> None:
        reader = self.sites.stores[source].storage
        target = self.sites.stores[site].storage
        hasher = digest.hasher()
        scratch = f"site-copy-{uuid.uuid4().hex}"
        path = upload_path(scratch)

        stream = reader.read(blob_path(digest))
        first = await anext(stream, b"")  # a missing or unreachable source fails here, before any write

        async def verified() -> AsyncIterator[bytes]:
            await feed(hasher, first)
            yield first
            async for chunk in stream:
                await feed(hasher, chunk)
                yield chunk

        try:
            state = await target.append(path, None, verified())
            if int(state["size"]) != size or hasher.hexdigest() != digest.hex:
                raise CopyFailed(f"site {source!r} delivered other bytes than {digest} ({state['size']} bytes)")
            await target.commit(path, state)
            await target.move(path, blob_path(digest))
        finally:
            try:
                await target.delete(upload_dir(scratch))
            except StorageError:
                pass
