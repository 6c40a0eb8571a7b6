"""Another registry as a replication side, over the distribution API (Docker registry, Harbor, Moorage).

Reads go through :class:`~moorage.upstream.client.UpstreamClient` (the proxy cache's client:
token and Basic auth, bounded concurrency, ``Retry-After``); writes use its :meth:`send`.

Blob uploads are chunked and resumable: ``POST`` opens an upload, each ``PATCH`` streams one
:data:`CHUNK` with its ``Content-Range`` (memory stays flat whatever the size), and when one fails
the adapter asks the upload's status (``GET`` → ``Range``), reopens the source after the last
acknowledged chunk and goes on, up to :data:`RESUMES` times; the closing ``PUT ?digest=`` makes the
destination verify the bytes. A destination that cannot resume (Distribution, see
:meth:`RemoteAdapter._resume`) gets a new upload from byte 0.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import urljoin, urlsplit

import httpx

from moorage.replication.adapters import BlobSource, Manifest, PeerError
from moorage.upstream.client import Body, UpstreamClient, UpstreamError

__all__ = ["CHUNK", "RemoteAdapter"]

#: Bytes per ``PATCH``: what a cut connection costs to send again.
CHUNK = 32 * 1024 * 1024

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
        if self.client.connection.username:
            # A registry answers an anonymous catalog with 200 and only its public repositories (Moorage,
            # Harbor): log in first (a 401 on /v2/ brings the challenge), so private ones are listed too
            await self._send("GET", "/v2/", "registry:catalog:*", ok=(200, 401))
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
        location = await self._open_upload(repository, scope)
        committed = 0  # bytes the destination acknowledged (202 to a PATCH)
        for attempt in range(RESUMES + 1):
            try:
                stream = _Pieces(source(committed))
                while committed < size:
                    length = min(CHUNK, size - committed)
                    sent = await self._send(
                        "PATCH", location, scope, content=stream.take(length), ok=(202,),
                        headers={"Content-Type": "application/octet-stream", "Content-Length": str(length),
                                 "Content-Range": f"{committed}-{committed + length - 1}"},
                        what=f"blob {digest} bytes {committed}-{committed + length - 1}",
                    )
                    location = self._path(sent.headers.get("location", location))
                    committed += length
                break
            except PeerError as exc:
                if not exc.retryable or attempt == RESUMES:
                    raise
                location, committed = await self._resume(repository, scope, location, committed)
        separator = "&" if "?" in location else "?"
        await self._send("PUT", f"{location}{separator}digest={digest}", scope, ok=(201,),
                         what=f"closing the upload of {digest}")

    async def _resume(self, repository: str, scope: str, location: str, committed: int) -> tuple[str, int]:
        """Go on where the destination agrees the upload stands, else start a new upload from byte 0.

        Only a status whose ``Range`` ends exactly at the acknowledged bytes is trusted (``0-0``
        means nothing yet when nothing was acknowledged). Distribution (and Harbor on it) pins
        the offset in the upload URL's signed ``_state``: after a cut ``PATCH`` its status is
        ``BLOB_UPLOAD_INVALID``, so those uploads start again.
        """
        try:
            status = await self._send("GET", location, scope, ok=(204, 200), what="the upload's status")
        except PeerError:
            return await self._open_upload(repository, scope), 0
        end = status.headers.get("range", "").rpartition("-")[2]
        stored = int(end) + 1 if end.isdigit() else -1
        if committed == 0 and stored in (0, 1):
            return self._path(status.headers.get("location", location)), 0
        if stored == committed:
            return self._path(status.headers.get("location", location)), committed
        return await self._open_upload(repository, scope), 0

    async def _open_upload(self, repository: str, scope: str) -> str:
        opened = await self._send("POST", f"/v2/{repository}/blobs/uploads/", scope, ok=(202,),
                                  what=f"an upload to {repository}")
        return self._path(opened.headers.get("location", ""))

    async def referrers(self, repository: str, digest: str) -> list[str]:
        response = await self._send("GET", f"/v2/{repository}/referrers/{digest}", f"repository:{repository}:pull",
                                    ok=(200, 404, 400, 405), what=f"the referrers of {digest}")
        if response.status_code != 200:
            return []  # the registry has no referrers API
        try:
            return [str(item["digest"]) for item in response.json().get("manifests") or []]
        except (ValueError, KeyError, TypeError):
            return []


class _Pieces:
    """One source stream cut into consecutive request bodies of given lengths (nothing buffered beyond a chunk)."""

    def __init__(self, stream: AsyncIterator[bytes]) -> None:
        self._stream = stream
        self._left = b""

    async def take(self, length: int) -> AsyncIterator[bytes]:
        """The next ``length`` bytes, as they arrive."""
        while length > 0:
            piece = self._left or await anext(self._stream, b"")
            if not piece:
                raise PeerError(f"the source ended {length} bytes early", retryable=False)
            self._left = piece[length:]
            piece = piece[:length]
            length -= len(piece)
            yield piece
