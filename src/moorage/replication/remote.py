"""Another registry as a replication side, over the distribution API (Docker registry, Harbor, Moorage).

Reads go through :class:`~moorage.upstream.client.UpstreamClient` (the proxy cache's client:
token and Basic auth, bounded concurrency, ``Retry-After``); writes use its :meth:`send`.

Blob uploads are streamed and resumable: ``POST`` opens an upload, one ``PATCH`` streams the
bytes (memory stays flat whatever the size), and when it fails the adapter asks the upload's
status (``GET`` → ``Range: 0-N``), reopens the source at ``N+1`` and sends the rest in a new
``PATCH``, up to :data:`RESUMES` times; the closing ``PUT ?digest=`` makes the destination verify
the bytes.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import urljoin, urlsplit

import httpx

from moorage.replication.adapters import BlobSource, Manifest, PeerError
from moorage.upstream.client import Body, UpstreamClient, UpstreamError

__all__ = ["RemoteAdapter"]

#: How many times one blob upload resumes after a failed ``PATCH`` before the task fails.
RESUMES = 3
_PAGE = 1000
_NEXT = re.compile(r"<([^>]+)>\s*;\s*rel=\"?next\"?")


def _peer(exc: UpstreamError) -> PeerError:
    return PeerError(exc.message, retryable=exc.upstream_down)


def _push(repository: str) -> str:
    return f"repository:{repository}:pull,push"


class RemoteAdapter:
    """One endpoint (:class:`~moorage.replication.adapters.RegistryAdapter`) through ``client``."""

    def __init__(self, client: UpstreamClient) -> None:
        self.client = client
        self.label = client.base

    async def _send(self, method: str, path: str, scope: str | None, *, headers: dict[str, str] | None = None,
                    content: Body = None, params: dict[str, str] | None = None,
                    ok: tuple[int, ...] = (200, 201, 202, 204), what: str = "") -> httpx.Response:
        try:
            response = await self.client.send(method, path, scope, headers=headers, content=content, params=params)
            if response.status_code not in ok:
                self.client.check(response, what or f"{method} {path}")
        except UpstreamError as exc:
            raise _peer(exc) from None
        return response

    def _path(self, location: str) -> str:
        """An upload ``Location`` (absolute or relative) as a path with its query, on this endpoint."""
        absolute = urljoin(self.client.base + "/", location)
        parts = urlsplit(absolute)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    async def _pages(self, path: str, scope: str, key: str) -> AsyncIterator[str]:
        params: dict[str, str] | None = {"n": str(_PAGE)}
        while path:
            response = await self._send("GET", path, scope, params=params, ok=(200, 404), what=path)
            if response.status_code == 404:
                return
            for item in response.json().get(key) or []:
                yield str(item)
            link = _NEXT.search(response.headers.get("link", ""))
            path, params = (self._path(link.group(1)), None) if link else ("", None)

    async def repositories(self) -> AsyncIterator[str]:
        async for name in self._pages("/v2/_catalog", "registry:catalog:*", "repositories"):
            yield name

    async def tags(self, repository: str) -> list[str]:
        return [tag async for tag in self._pages(f"/v2/{repository}/tags/list", f"repository:{repository}:pull",
                                                 "tags")]

    async def manifest(self, repository: str, reference: str) -> Manifest | None:
        try:
            found = await self.client.manifest(repository, reference)
        except UpstreamError as exc:
            if exc.kind == "not_found":
                return None
            raise _peer(exc) from None
        return Manifest(found.digest, found.media_type, found.payload)

    async def manifest_digest(self, repository: str, reference: str) -> str | None:
        try:
            return (await self.client.manifest(repository, reference, head=True)).digest
        except UpstreamError as exc:
            if exc.kind == "not_found":
                return None
            raise _peer(exc) from None

    async def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> None:
        await self._send("PUT", f"/v2/{repository}/manifests/{reference}", _push(repository),
                         headers={"Content-Type": manifest.media_type}, content=manifest.payload, ok=(201, 200),
                         what=f"manifest {repository}:{reference}")

    async def delete_tag(self, repository: str, tag: str) -> None:
        response = await self._send("DELETE", f"/v2/{repository}/manifests/{tag}", _push(repository),
                                    ok=(202, 200, 204, 404, 400, 405), what=f"tag {repository}:{tag}")
        if response.status_code in (400, 405):  # no tag deletes (Distribution 2.8): delete what it points at
            digest = await self.manifest_digest(repository, tag)
            if digest is not None:
                await self._send("DELETE", f"/v2/{repository}/manifests/{digest}", _push(repository),
                                 ok=(202, 200, 204, 404), what=f"manifest {repository}@{digest}")

    async def blob_size(self, repository: str, digest: str) -> int | None:
        try:
            return await self.client.blob_size(repository, digest)
        except UpstreamError as exc:
            if exc.kind == "not_found":
                return None
            raise _peer(exc) from None

    async def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        response = await self._send("POST", f"/v2/{repository}/blobs/uploads/", _push(repository),
                                    params={"mount": digest, "from": source}, ok=(201, 202),
                                    what=f"mounting {digest} into {repository}")
        if response.status_code == 201:
            return True
        location = response.headers.get("location")
        if location:  # not mountable there: an upload was opened instead; close it
            await self._send("DELETE", self._path(location), _push(repository), ok=(204, 200, 404))
        return False

    async def read_blob(self, repository: str, digest: str, size: int, offset: int = 0) -> AsyncIterator[bytes]:
        try:
            async with self.client.blob(repository, digest, f"bytes={offset}-" if offset else None) as blob:
                async for chunk in blob.chunks:
                    yield chunk
        except UpstreamError as exc:
            raise _peer(exc) from None

    async def write_blob(self, repository: str, digest: str, size: int, source: BlobSource) -> None:
        scope = _push(repository)
        opened = await self._send("POST", f"/v2/{repository}/blobs/uploads/", scope, ok=(202,),
                                  what=f"an upload to {repository}")
        location = self._path(opened.headers.get("location", ""))
        offset = 0
        for attempt in range(RESUMES + 1):
            try:  # one streamed PATCH with the rest of the blob (as skopeo and docker send it)
                sent = await self._send("PATCH", location, scope, content=source(offset), ok=(202,),
                                        headers={"Content-Type": "application/octet-stream"},
                                        what=f"blob {digest} from byte {offset}")
                location = self._path(sent.headers.get("location", location))
                break
            except PeerError as exc:
                if not exc.retryable or attempt == RESUMES:
                    raise
                offset, location = await self._resume_point(location, scope)
        separator = "&" if "?" in location else "?"
        await self._send("PUT", f"{location}{separator}digest={digest}", scope, ok=(201,),
                         what=f"closing the upload of {digest}")

    async def _resume_point(self, location: str, scope: str) -> tuple[int, str]:
        """Where the destination's upload stands (its ``Range``), to go on from there."""
        status = await self._send("GET", location, scope, ok=(204, 200), what="the upload's status")
        range_header = status.headers.get("range", "")
        end = range_header.rpartition("-")[2]
        offset = int(end) + 1 if end.isdigit() and range_header else 0
        return offset, self._path(status.headers.get("location", location))

    async def referrers(self, repository: str, digest: str) -> list[str]:
        response = await self._send("GET", f"/v2/{repository}/referrers/{digest}", f"repository:{repository}:pull",
                                    ok=(200, 404, 400, 405), what=f"the referrers of {digest}")
        if response.status_code != 200:
            return []  # the registry has no referrers API
        try:
            return [str(item["digest"]) for item in response.json().get("manifests") or []]
        except (ValueError, KeyError, TypeError):
            return []
