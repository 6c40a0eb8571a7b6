"""HTTP plumbing of the ``swift`` driver: answers, deadlines and blob bodies.

aiohttp has a per-read timeout (``sock_read``) but a total timeout that would also cut a long
blob read, so the total is enforced here instead: every request must finish within
``storage.swift.timeout`` seconds, and a blob read gets that long for its headers and again
for every MiB of its body. Without it, a server that sends a byte now and then (a stalled
proxy, a failing disk) holds a request, and everything waiting on it, forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from moorage.storage.driver import StorageError, StorageUnavailableError
from moorage.storage.drivers.swift_auth import HTTP_ERRORS, SwiftAuth, SwiftSettings, describe

__all__ = [
    "Answer",
    "bulk_delete_failure",
    "bulk_delete_limit",
    "cluster_info",
    "deadline",
    "fix_storage_url",
    "read_body",
    "timed_out",
]

READ_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Answer:
    """A fully read response (everything but blob reads is small)."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def text(self, limit: int = 300) -> str:
        return self.body[:limit].decode(errors="replace")


def fix_storage_url(auth: SwiftAuth, exc: BaseException) -> str:
    """The message for an unreachable storage URL; the fix comes first (`moorage check` shortens details)."""
    return (
        f"the Swift storage URL {auth.storage_url} is unreachable from this node; behind a proxy set "
        f"storage.swift.storageurl to the URL this node should use (the auth service advertised "
        f"{auth.advertised_url}): {describe(exc)}"
    )


def timed_out(settings: SwiftSettings, what: str, path: str, *, total: bool) -> StorageUnavailableError:
    """The error for a request that hit the total timeout (``total``) or the per-read one."""
    limit = (
        f"took longer than storage.swift.timeout ({settings.timeout:g} s)"
        if total
        else f"got no byte for storage.swift.readtimeout ({settings.readtimeout:g} s)"
    )
    return StorageUnavailableError(
        f"Swift {what} of {path!r} {limit}: the server stalls or trickles its answer; check it, "
        "or raise the timeout",
        path=path,
        driver="swift",
    )


@contextlib.asynccontextmanager
async def deadline(settings: SwiftSettings, what: str, path: str) -> AsyncIterator[None]:
    """Fail the block with :class:`StorageUnavailableError` after ``settings.timeout`` seconds.

    A ``TimeoutError`` from inside the block (aiohttp's per-read timeout) becomes the same
    error class, naming ``readtimeout`` instead.
    """
    limit = asyncio.timeout(settings.timeout)
    try:
        async with limit:
            yield
    except TimeoutError:
        raise timed_out(settings, what, path, total=limit.expired()) from None


async def read_body(
    response: aiohttp.ClientResponse, path: str, settings: SwiftSettings
) -> AsyncIterator[bytes]:
    """A blob's body; every MiB must arrive within ``settings.timeout`` seconds of waiting for it.

    Only the time spent waiting for the server counts, not the time the caller takes between
    chunks (a slow client pulling the blob through the registry). Raises :class:`StorageError`.
    """
    loop = asyncio.get_running_loop()
    budget = settings.timeout
    since_reset = 0
    while True:
        started = loop.time()
        limit = asyncio.timeout(budget)
        try:
            async with limit:
                chunk = await response.content.read(READ_CHUNK)
        except HTTP_ERRORS as exc:
            if isinstance(exc, TimeoutError):
                raise timed_out(settings, "read", path, total=limit.expired()) from None
            raise StorageError(
                f"Swift read of {path!r} broke off: {describe(exc)}", path=path, driver="swift"
            ) from None
        if not chunk:
            return
        budget -= loop.time() - started
        since_reset += len(chunk)
        if since_reset >= READ_CHUNK:
            since_reset, budget = 0, settings.timeout
        yield chunk


#: Names per bulk-delete request when ``/info`` gives no ``max_deletes_per_request`` (Swift's default is 10,000).
BULK_DEFAULT = 1000


async def cluster_info(http: aiohttp.ClientSession, auth: SwiftAuth, settings: SwiftSettings) -> dict[str, Any]:
    """The cluster's capabilities (``GET /info``, next to ``/v1``), ``{}`` when it does not answer them."""
    parts = urlsplit(auth.storage_url)
    base = parts.path.split("/v1", 1)[0]
    with contextlib.suppress(*HTTP_ERRORS, ValueError):
        async with (
            asyncio.timeout(settings.timeout),
            http.get(f"{parts.scheme}://{parts.netloc}{base}/info") as response,
        ):
            info = await response.json(content_type=None) if response.status == 200 else {}
        if isinstance(info, dict):
            return info
    return {}


def bulk_delete_limit(info: Mapping[str, Any]) -> int:
    """Names one ``?bulk-delete`` request may carry per ``/info``; 0 when the cluster has no bulk delete."""
    bulk = info.get("bulk_delete")
    if not isinstance(bulk, dict):
        return 0
    advertised = bulk.get("max_deletes_per_request")
    return min(advertised, 10_000) if isinstance(advertised, int) and advertised > 0 else BULK_DEFAULT


def bulk_delete_failure(body: bytes, names: list[str]) -> str | None:
    """What went wrong in a bulk-delete answer (``None``: all deleted or already gone).

    The answer is ``200`` with the outcome in JSON: ``Errors`` as ``[name, status]`` pairs and a
    ``Response Status``; names already gone are only counted (``Number Not Found``).
    """
    try:
        result = json.loads(body)
    except ValueError:
        return f"no JSON in the answer: {body[:300].decode(errors='replace')}"
    if not isinstance(result, dict):
        return f"unexpected answer: {body[:300].decode(errors='replace')}"
    errors = [(str(e[0]), str(e[-1])) for e in result.get("Errors") or [] if e and not str(e[-1]).startswith("404")]
    status = str(result.get("Response Status", "200"))
    if not errors and status.startswith(("2", "404")):
        return None
    name, why = errors[0] if errors else (names[0], status)
    return f"{len(errors) or len(names)} object(s) refused, e.g. {name}: {why} {result.get('Response Body', '')}"
