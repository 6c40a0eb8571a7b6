"""The ``swift`` driver: OpenStack Swift and Ceph RGW's Swift API, over aiohttp.

Client: aiohttp, chosen by measurement (docs/storage.md): on 4 KiB PUTs and HEADs it did 3-6
times the requests per second of httpx at a tenth of the CPU, and beat python-swiftclient in
threads too, with the same bulk throughput.

Resumable writes use Static Large Objects, which both servers implement:

* every append writes its bytes as segment objects ``<path>.segments/<random>`` of up to
  ``chunksize`` bytes and records name, size and ETag in the returned state; the last,
  short segment is read back and rewritten (under a new name) by the next append, so
  segments stay large and a manifest stays far below Swift's 1000-segment limit;
* fresh names mean an attempt whose state was never persisted cannot damage the segments an
  older state points at; leftovers are removed at :meth:`SwiftDriver.commit` and by
  :meth:`SwiftDriver.delete`;
* :meth:`SwiftDriver.commit` PUTs the SLO manifest (``?multipart-manifest=put``) at the path
  and deletes the segments the committed state does not name, so afterwards the listing of
  ``<path>.segments/`` is exactly the manifest, in order (names start with the index);
* :meth:`SwiftDriver.move` copies each segment server-side to ``<destination>.segments/``
  under a name made of its index and MD5, writes a manifest there and deletes the source;
  onto an object of the same size it only deletes the source (publishing is idempotent and
  concurrent moves of one blob cannot delete each other's segments). It cannot copy the manifest with one
  ``X-Copy-From``: Swift would concatenate (and stop at 5 GiB), while RGW 16.2 copies the
  manifest itself, still pointing at the source's segments, which the delete then removes
  (seen on 16.2.15: the copy answers 404 NoSuchKey afterwards).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import hmac
import io
import json
import ssl
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import anyio
from yarl import URL

from moorage.net.tls import TrustStore
from moorage.storage.driver import (
    CheckResult,
    FileInfo,
    InvalidOffsetError,
    PathNotFoundError,
    StorageError,
    StorageUnavailableError,
    WriteState,
)
from moorage.storage.drivers.swift_auth import HTTP_ERRORS, SwiftAuth, SwiftSettings, authenticate, describe
from moorage.storage.drivers.swift_http import (
    Answer,
    bulk_delete_failure,
    bulk_delete_limit,
    cluster_info,
    deadline,
    fix_storage_url,
    read_body,
)

__all__ = ["SwiftDriver"]

_SEGMENTS = ".segments/"
_LIST_LIMIT = 1000
_RAW_BODY_LIMIT = 1 << 20
#: Requests in flight at once in :meth:`SwiftDriver.delete_many` (segment listings, single deletes).
_PARALLEL_DELETES = 16


class SwiftDriver:
    """Stores ``path`` at ``<storage URL>/<container>/<prefix>/<path>``."""

    name = "swift"
    Settings = SwiftSettings

    def __init__(self, settings: SwiftSettings, *, list_limit: int = _LIST_LIMIT, trust: TrustStore | None = None) -> None:
        """``list_limit`` forces listing pages in tests. No I/O here: the HTTP session is made on
        first use, inside the event loop (aiohttp binds a session to its loop). ``trust`` is the
        deployment's outbound CA trust; ``cabundle`` adds to it, ``insecureskipverify`` turns it off."""
        self.settings = settings
        self.container = settings.container
        self.root = settings.prefix.strip("/")
        self.segment_size = settings.chunksize
        self.list_limit = list_limit
        self._ssl: ssl.SSLContext | bool = (trust or TrustStore()).verify(
            settings.cabundle, skip_verify=settings.insecureskipverify
        )
        self._session: aiohttp.ClientSession | None = None
        self._auth: SwiftAuth | None = None
        self._auth_lock = anyio.Lock()
        self._digest: str | None = None if settings.tempurldigest == "auto" else settings.tempurldigest
        #: Names per bulk-delete request, 0 when the cluster has no bulk delete; None until asked.
        self._bulk: int | None = None

    @classmethod
    def from_config(cls, settings: SwiftSettings, data_dir: Path, trust: TrustStore) -> SwiftDriver:
        return cls(settings, trust=trust)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def http(self) -> aiohttp.ClientSession:
        """The connection pool (64 connections, like the s3 driver's)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64, ssl=self._ssl),
                # The total is enforced per request by _deadline: aiohttp's would also cut blob reads.
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=self.settings.connecttimeout, sock_read=self.settings.readtimeout
                ),
                auto_decompress=False,
            )
        return self._session

    # -- plumbing --------------------------------------------------------------------------------
    def _key(self, path: str) -> str:
        return f"{self.root}/{path}" if self.root else path

    def _path(self, key: str) -> str:
        return key[len(self.root) + 1 :] if self.root else key

    def _deadline(self, what: str, path: str) -> contextlib.AbstractAsyncContextManager[None]:
        return deadline(self.settings, what, path)

    async def _login(self, stale: SwiftAuth | None = None) -> SwiftAuth:
        """Authenticate once per token; creates the container and the TempURL key on first login."""
        async with self._auth_lock:
            if self._auth is not None and self._auth is not stale:
                return self._auth
            async with self._deadline("auth", ""):
                auth = await authenticate(self.http, self.settings)
            first = self._auth is None
            self._auth = auth
            if first:
                await self._prepare(auth)
            return auth

    async def _prepare(self, auth: SwiftAuth) -> None:
        answer = await self._send(auth, "PUT", f"{auth.storage_url}/{quote(self.container)}", "")
        if answer.status not in (201, 202, 204):
            raise StorageError(
                f"cannot create Swift container {self.container!r}: {answer.status} {answer.text(200)}",
                driver=self.name,
            )
        if self.settings.secretkey:
            target = auth.storage_url
            header = "X-Account-Meta-Temp-URL-Key"
            if self.settings.tempurlcontainerkey:
                target, header = (
                    f"{auth.storage_url}/{quote(self.container)}",
                    "X-Container-Meta-Temp-URL-Key",
                )
            answer = await self._send(auth, "POST", target, "", headers={header: self.settings.secretkey})
            if not answer.ok:
                raise StorageError(f"cannot set the TempURL key: {answer.status}", driver=self.name)

    async def _open(
        self,
        auth: SwiftAuth,
        method: str,
        url: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        params: dict[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        """Send one request and return the response with its body unread (the caller releases it)."""
        if content is None and method in ("PUT", "POST"):
            content = b""  # Swift answers 411 to a PUT without Content-Length
        target = URL(url, encoded=True)
        if params:
            target = target.update_query(params)
        for attempt in range(2):
            try:
                # Bodies above 1 MiB as a stream: aiohttp warns that raw bytes that large are
                # written in one go, holding the event loop.
                data: bytes | io.BytesIO | None = content
                if content is not None and len(content) > _RAW_BODY_LIMIT:
                    data = io.BytesIO(content)
                return await self.http.request(
                    method, target, headers={"X-Auth-Token": auth.token, **(headers or {})}, data=data
                )
            except aiohttp.ServerDisconnectedError:
                # A pooled keep-alive connection the server closed meanwhile: one fresh try.
                if attempt:
                    raise StorageUnavailableError(
                        f"the Swift server at {auth.storage_url} keeps closing connections",
                        path=path,
                        driver=self.name,
                    ) from None
            except aiohttp.SocketTimeoutError:
                raise  # no byte for readtimeout: the caller's deadline says so (aiohttp >= 3.10)
            except HTTP_ERRORS as exc:
                raise StorageUnavailableError(
                    fix_storage_url(auth, exc), path=path, driver=self.name
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    async def _send(
        self,
        auth: SwiftAuth,
        method: str,
        url: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        params: dict[str, str] | None = None,
    ) -> Answer:
        async with self._deadline(method, path):
            response = await self._open(
                auth, method, url, path, headers=headers, content=content, params=params
            )
            try:
                body = await response.read()
            except HTTP_ERRORS as exc:
                if isinstance(exc, TimeoutError):
                    raise  # the deadline's, or the per-read timeout's: _deadline tells them apart
                raise StorageError(
                    f"Swift {method} of {path!r} broke off: {describe(exc)}", path=path, driver=self.name
                ) from None
            finally:
                response.release()
        return Answer(response.status, response.headers, body)

    def _url(self, auth: SwiftAuth, key: str | None) -> str:
        url = f"{auth.storage_url}/{quote(self.container)}"
        return url if key is None else f"{url}/{quote(key)}"

    def _check(self, status: int, method: str, path: str, detail: str) -> None:
        """Raise the driver error for a failed status (404 → :class:`PathNotFoundError`)."""
        if status == 404:
            raise PathNotFoundError(f"no object at {path!r}", path=path, driver=self.name)
        if status in (401, 403):
            raise StorageUnavailableError(
                f"Swift refused {method} on {path!r} ({status}); check storage.swift credentials "
                "and the container's ACLs",
                path=path,
                driver=self.name,
            )
        if status == 416:
            raise InvalidOffsetError(f"range outside of {path!r}", path=path, driver=self.name)
        if status >= 400:
            raise StorageError(
                f"Swift {method} of {path!r} failed: {status} {detail}", path=path, driver=self.name
            )

    async def _request(
        self,
        method: str,
        path: str,
        key: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        params: dict[str, str] | None = None,
    ) -> Answer:
        """One request on ``<container>/<key>`` (the container itself when ``key`` is None).

        A 401 means the token expired: log in again and retry once.
        """
        auth = await self._login()
        answer = await self._send(
            auth, method, self._url(auth, key), path, headers=headers, content=content, params=params
        )
        if answer.status == 401:
            auth = await self._login(stale=auth)
            answer = await self._send(
                auth, method, self._url(auth, key), path, headers=headers, content=content, params=params
            )
        self._check(answer.status, method, path, answer.text())
        return answer

    async def _stream(self, path: str, key: str, headers: dict[str, str]) -> aiohttp.ClientResponse:
        """GET with the body left unread, for blob reads; same token refresh as :meth:`_request`."""
        auth = await self._login()
        async with self._deadline("GET", path):
            response = await self._open(auth, "GET", self._url(auth, key), path, headers=headers)
        if response.status == 401:
            response.release()
            auth = await self._login(stale=auth)
            async with self._deadline("GET", path):
                response = await self._open(auth, "GET", self._url(auth, key), path, headers=headers)
        if response.status >= 400:
            try:
                async with self._deadline("GET", path):
                    detail = (await response.read())[:300].decode(errors="replace")
            except (*HTTP_ERRORS, StorageError):
                detail = ""
            finally:
                response.release()
            self._check(response.status, "GET", path, detail)
        return response

    async def _list_keys(self, key_prefix: str, path: str) -> AsyncIterator[dict[str, Any]]:
        """Container listing entries under ``key_prefix``, page by page (``marker``)."""
        marker = ""
        while True:
            params = {"format": "json", "prefix": key_prefix, "limit": str(self.list_limit)}
            if marker:
                params["marker"] = marker
            try:
                response = await self._request("GET", path, None, params=params)
            except PathNotFoundError:
                return  # no container yet
            entries: list[dict[str, Any]] = json.loads(response.body or b"[]")
            for entry in entries:
                if "name" in entry:
                    yield entry
            if len(entries) < self.list_limit:
                return
            marker = str(entries[-1].get("name", ""))

    # -- reads -----------------------------------------------------------------------------------
    async def _head(self, path: str) -> Answer | None:
        try:
            return await self._request("HEAD", path, self._key(path))
        except PathNotFoundError:
            return None

    async def stat(self, path: str) -> FileInfo:
        head = await self._head(path)
        if head is not None:
            modified: datetime | None = None
            if "last-modified" in head.headers:
                modified = parsedate_to_datetime(head.headers["last-modified"])
            return FileInfo(path, int(head.headers.get("content-length", 0)), modified)
        async for _ in self._list_keys(self._key(path) + "/", path):
            return FileInfo(path, 0, None, is_dir=True)
        raise PathNotFoundError(f"no object at {path!r}", path=path, driver=self.name)

    async def read(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        headers: dict[str, str] = {}
        if offset > 0 or length is not None:
            head = await self._head(path)
            if head is None:
                raise PathNotFoundError(f"no object at {path!r}", path=path, driver=self.name)
            size = int(head.headers.get("content-length", 0))
            if offset > size:
                raise InvalidOffsetError(f"offset {offset} beyond size {size}", path=path, driver=self.name)
            if offset == size or length == 0:
                return
            end = "" if length is None else str(offset + length - 1)
            headers["Range"] = f"bytes={offset}-{end}"
        response = await self._stream(path, self._key(path), headers)
        try:
            async for chunk in read_body(response, path, self.settings):
                yield chunk
        finally:
            response.release()  # closes the connection instead when the body was not read to the end

    async def list(self, prefix: str) -> AsyncIterator[FileInfo]:
        key_prefix = self._key(prefix.rstrip("/")) + "/" if prefix else (self.root + "/" if self.root else "")
        async for entry in self._list_keys(key_prefix, prefix):
            name = str(entry["name"])
            if _SEGMENTS in name:
                continue  # pieces of an unfinished or large object, not objects of their own
            yield FileInfo(self._path(name), int(entry.get("bytes", 0)), None)

    # -- writes ----------------------------------------------------------------------------------
    async def put(self, path: str, data: bytes) -> None:
        await self._request("PUT", path, self._key(path), content=data)

    async def _put_segment(self, path: str, index: int, data: bytes) -> builtins.list[Any]:
        name = f"{self._key(path)}{_SEGMENTS}{index:08d}-{uuid.uuid4().hex}"
        answer = await self._request("PUT", path, name, content=data)
        return [name, len(data), answer.headers.get("Etag", "").strip('"') or None]

    async def append(self, path: str, state: WriteState | None, chunks: AsyncIterable[bytes]) -> WriteState:
        segments: builtins.list[builtins.list[Any]] = [list(s) for s in (state or {}).get("segments", [])]
        size = int((state or {}).get("size", 0))
        buffer = bytearray()
        received = 0
        reopened = False
        async for chunk in chunks:
            if not reopened:
                reopened = True
                # Continue the short last segment instead of adding another short one.
                if segments and segments[-1][1] < self.segment_size:
                    last = segments.pop()
                    buffer += b"".join([c async for c in self.read(self._path(last[0]))])[: last[1]]
                    if len(buffer) != last[1]:
                        raise InvalidOffsetError(f"segment {last[0]} is shorter than its state", path=path)
            buffer += chunk
            received += len(chunk)
            while len(buffer) >= self.segment_size:
                segments.append(
                    await self._put_segment(path, len(segments), bytes(buffer[: self.segment_size]))
                )
                del buffer[: self.segment_size]
        if buffer:
            segments.append(await self._put_segment(path, len(segments), bytes(buffer)))
        return {"size": size + received, "segments": segments}

    async def commit(self, path: str, state: WriteState) -> None:
        segments = [list(s) for s in state.get("segments", [])]
        await self._put_manifest(path, segments)
        keep = {s[0] for s in segments}
        stale = [
            e["name"]
            async for e in self._list_keys(self._key(path) + _SEGMENTS, path)
            if e["name"] not in keep
        ]
        await self._delete_names(stale, path)

    async def _put_manifest(self, path: str, segments: builtins.list[builtins.list[Any]]) -> None:
        if not segments:
            await self.put(path, b"")
            return
        manifest = [
            {"path": f"/{self.container}/{name}", "etag": etag, "size_bytes": size}
            for name, size, etag in segments
        ]
        await self._request(
            "PUT",
            path,
            self._key(path),
            params={"multipart-manifest": "put"},
            content=json.dumps(manifest).encode(),
        )

    async def _copy(self, source_key: str, destination_key: str, path: str) -> None:
        copy_from = quote(f"/{self.container}/{source_key}")
        await self._request("PUT", path, destination_key, headers={"X-Copy-From": copy_from}, content=b"")

    async def move(self, source: str, destination: str) -> None:
        head = await self._head(source)
        if head is None:
            raise PathNotFoundError(f"no object at {source!r}", path=source, driver=self.name)
        size = int(head.headers.get("content-length", 0))
        existing = await self._head(destination)
        if existing is None or int(existing.headers.get("content-length", -1)) != size:
            await self._place(source, destination, size)
        # Otherwise the same blob was published before (or is being published right now by
        # another node): keep it, and only remove this writer's upload.
        await self._delete_tree(source, must_exist=False)

    async def _place(self, source: str, destination: str, size: int) -> None:
        """Copy ``source`` to ``destination`` without deleting anything a concurrent move may need.

        Destination segments are named after their index and MD5 (``<index>-<etag>``): two moves
        of the same bytes write the same segment objects with the same bytes, so neither can
        damage the other's manifest, whichever manifest PUT lands last. No segment under the
        destination is ever deleted here: deciding which ones are stale would race with the other
        writer (that cleanup deleted a concurrent writer's fresh segments, leaving a manifest whose
        segments were gone). Segments of a replaced manifest stay until :meth:`delete`.
        """
        source_prefix = self._key(source) + _SEGMENTS
        pieces = [e async for e in self._list_keys(source_prefix, source)]
        if not pieces:
            await self._copy(self._key(source), self._key(destination), destination)
            return
        listed = sum(int(e.get("bytes", 0)) for e in pieces)
        if listed != size:
            # Container listings are eventually consistent; never publish a manifest from a stale one.
            raise StorageError(
                f"the segments listed for {source!r} hold {listed} bytes, its manifest {size}; "
                "the container listing is lagging, retry the request",
                path=source,
                driver=self.name,
            )
        segments: builtins.list[builtins.list[Any]] = []
        for index, entry in enumerate(pieces):
            etag = str(entry.get("hash") or uuid.uuid4().hex)
            name = f"{self._key(destination)}{_SEGMENTS}{index:08d}-{etag}"
            await self._copy(str(entry["name"]), name, destination)
            segments.append([name, int(entry.get("bytes", 0)), entry.get("hash")])
        await self._put_manifest(destination, segments)

    # -- deletes ---------------------------------------------------------------------------------
    async def _delete_names(self, names: builtins.list[str], path: str) -> None:
        for name in names:
            try:
                await self._request("DELETE", path, name)
            except PathNotFoundError:
                continue  # deleted concurrently

    async def _delete_tree(self, path: str, *, must_exist: bool) -> None:
        key = self._key(path)
        names = [key] if await self._head(path) is not None else []
        names += [str(e["name"]) async for e in self._list_keys(key + "/", path)]
        names += [str(e["name"]) async for e in self._list_keys(key + _SEGMENTS, path)]
        if not names and must_exist:
            raise PathNotFoundError(f"no object at {path!r}", path=path, driver=self.name)
        # Manifests first: a reader never sees a manifest whose segments are gone.
        names.sort(key=lambda name: _SEGMENTS in name)
        await self._delete_names(names, path)

    async def delete(self, path: str) -> None:
        await self._delete_tree(path, must_exist=True)

    async def _bulk_delete(self, auth: SwiftAuth, names: builtins.list[str], path: str) -> None:
        """One ``POST ?bulk-delete`` on the account URL for ``names``; names not found are fine."""
        body = "\n".join(quote(f"/{self.container}/{name}") for name in names).encode()
        headers = {"Content-Type": "text/plain", "Accept": "application/json"}
        for attempt in range(2):  # a 401: the token expired, log in again once
            answer = await self._send(
                auth, "POST", auth.storage_url, path, headers=headers, content=body, params={"bulk-delete": ""}
            )
            if answer.status != 401 or attempt:
                break
            auth = await self._login(stale=auth)
        self._check(answer.status, "bulk delete", path, answer.text())
        failure = bulk_delete_failure(answer.body, names)
        if failure is not None:
            raise StorageError(
                f"Swift bulk delete under {path!r}: {failure}; check the container's ACLs and the cluster",
                path=path,
                driver=self.name,
            )

    async def delete_many(self, paths: Sequence[str]) -> None:
        """Bulk delete where ``/info`` offers it, else single deletes, 16 at once.

        A committed object may be an SLO manifest with segments under ``<key>.segments/``, which
        deleting the manifest leaves behind; they are listed (one request per object, in
        parallel) and deleted after all the manifests, so a reader never meets a manifest whose
        segments are gone.
        """
        if not paths:
            return
        limiter = asyncio.Semaphore(_PARALLEL_DELETES)

        async def segments_of(path: str) -> builtins.list[str]:
            async with limiter:
                return [str(e["name"]) async for e in self._list_keys(self._key(path) + _SEGMENTS, path)]

        found = await asyncio.gather(*(segments_of(path) for path in paths))
        manifests = [self._key(path) for path in paths]
        segments = [name for names in found for name in names]
        auth = await self._login()
        if self._bulk is None:
            self._bulk = bulk_delete_limit(await cluster_info(self.http, auth, self.settings))
        limit = self._bulk
        for names in (manifests, segments):
            if limit:
                batches = [names[start : start + limit] for start in range(0, len(names), limit)]
                for batch in batches:
                    await self._bulk_delete(auth, batch, self._path(batch[0]))
                continue

            async def one(name: str) -> None:
                async with limiter:
                    await self._delete_names([name], self._path(name))

            outcomes = await asyncio.gather(*(one(name) for name in names), return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome

    # -- redirects ---------------------------------------------------------------------------------
    async def _tempurl_digest(self, auth: SwiftAuth) -> str:
        """``tempurldigest: auto``: the strongest digest ``/info`` allows; SHA-1 when it says nothing.

        RGW Pacific's ``/swift/info`` lists no ``allowed_digests`` and its TempURL engine checks
        only HMAC-SHA1 (a SHA-256 signature is 401/403 on 16.2.15, see docs/storage.md); Swift
        ≥ 2.22 lists ``sha1 sha256 sha512`` and marks SHA-1 deprecated.
        """
        if self._digest is None:
            tempurl = (await cluster_info(self.http, auth, self.settings)).get("tempurl")
            allowed = tempurl.get("allowed_digests", []) if isinstance(tempurl, dict) else []
            self._digest = "sha256" if "sha256" in allowed else "sha1"
        return self._digest

    async def url_for(self, path: str, method: str, expires_in: int) -> str | None:
        """A TempURL signed for ``method``; ``None`` without ``secretkey`` or for methods not in ``tempurlmethods``."""
        if not self.settings.secretkey or method not in self.settings.tempurlmethods:
            return None
        auth = await self._login()
        digest = await self._tempurl_digest(auth)
        url = f"{auth.storage_url}/{quote(self.container)}/{quote(self._key(path))}"
        object_path = urlsplit(url).path
        expires = int(time.time()) + expires_in
        body = f"{method}\n{expires}\n{object_path}".encode()
        signature = hmac.new(self.settings.secretkey.encode(), body, getattr(hashlib, digest)).hexdigest()
        if digest == "sha512":
            signature = "sha512:" + signature  # Swift tells sha256 and sha1 apart by length
        return f"{url}?temp_url_sig={signature}&temp_url_expires={expires}"

    # -- moorage check -----------------------------------------------------------------------------
    async def self_check(self) -> builtins.list[CheckResult]:
        """``moorage check``: the storage URL the auth service hands out answers from this node."""
        try:
            auth = await self._login()
        except StorageError as exc:
            return [
                CheckResult(
                    "swift auth", False, str(exc)[:400], "check storage.swift.authurl, username, password"
                )
            ]
        try:
            answer = await self._send(auth, "HEAD", auth.storage_url, "")
        except StorageUnavailableError as exc:
            return [
                CheckResult(
                    "swift storage URL reachable",
                    False,
                    str(exc)[:400],
                    f"set storage.swift.storageurl to the URL of {auth.advertised_url} as seen from this node",
                )
            ]
        source = "storage.swift.storageurl" if self.settings.storageurl else "advertised by the auth service"
        ok = answer.ok
        return [
            CheckResult("swift auth", True, auth.advertised_url),
            CheckResult(
                "swift storage URL reachable",
                ok,
                f"{auth.storage_url} ({source}) answered {answer.status}",
                "" if ok else "check storage.swift.storageurl and the account's permissions",
            ),
        ]
