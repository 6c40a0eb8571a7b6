"""Blob GETs from the filesystem driver go out with sendfile when the server offers it (moorage.api.files).

A real uvicorn server with ``moorage serve``'s protocol (moorage.cli.sendfile) in this event
loop; the same answers as the streamed path (tests/integration/test_blobs.py), but the bytes
are handed to the server as ``http.response.zerocopysend`` messages with the range's offset and
count. Without the extension (granian's ``pathsend``, or none) the response picks what the
server offers: checked on the response itself.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client import REGISTRY

from moorage.api.files import FileSliceResponse
from moorage.app import create_app
from moorage.cli.sendfile import SendfileCycle, SendfileHttpToolsProtocol
from moorage.config import Settings
from moorage.registry.digests import parse_digest
from moorage.registry.paths import blob_path
from moorage.services import Services
from tests.integration.conftest import unique_name
from tests.integration.oci_client import error_code, push_blob


def _bytes_out() -> float:
    return sum(sample.value for metric in REGISTRY.collect() if metric.name == "moorage_http_response_bytes"
               for sample in metric.samples if sample.name == "moorage_http_response_bytes_total")


@pytest.fixture
async def served(settings: Settings, services: Services) -> AsyncIterator[str]:
    config = uvicorn.Config(create_app(settings, services), host="127.0.0.1", port=0, lifespan="off",
                            log_config=None, http=SendfileHttpToolsProtocol)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn exited before it started"
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


async def test_blob_gets_are_sent_with_sendfile_whole_and_ranged(
    client: httpx.AsyncClient, services: Services, served: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[int, int]] = []
    original = SendfileCycle._sendfile

    async def recording(self: SendfileCycle, fd: int, offset: int, count: int) -> int:
        sent.append((offset, count))
        return await original(self, fd, offset, count)

    monkeypatch.setattr(SendfileCycle, "_sendfile", recording)
    name = unique_name()
    data = os.urandom(3 * 1024 * 1024 + 11)
    digest = await push_blob(client, name, data)
    url = f"{served}/v2/{name}/blobs/{digest}"
    before = _bytes_out()
    async with httpx.AsyncClient(timeout=30) as http:
        whole = await http.get(url)
        assert whole.status_code == 200 and whole.content == data
        assert whole.headers["content-length"] == str(len(data))
        assert whole.headers["etag"] == f'"{digest}"' and whole.headers["docker-content-digest"] == digest
        ranged = await http.get(url, headers={"Range": "bytes=1000-2999"})
        assert ranged.status_code == 206 and ranged.content == data[1000:3000]
        assert ranged.headers["content-range"] == f"bytes 1000-2999/{len(data)}"
        suffix = await http.get(url, headers={"Range": "bytes=-5"})
        assert suffix.status_code == 206 and suffix.content == data[-5:]
        head = await http.head(url)
        assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(len(data))
        refused = await http.get(url, headers={"Range": f"bytes={len(data)}-"})
        assert refused.status_code == 416 and refused.headers["content-range"] == f"bytes */{len(data)}"
    assert sent == [(0, len(data)), (1000, 2000), (len(data) - 5, 5)]
    assert _bytes_out() - before >= len(data) + 2005  # the metrics count what sendfile sent


async def test_a_blob_lost_from_storage_is_still_a_clean_404(
    client: httpx.AsyncClient, services: Services, served: str
) -> None:
    """The file is opened before the answer starts: no 200 with a truncated body."""
    name = unique_name()
    digest = await push_blob(client, name, b"gone soon")
    await services.storage.delete(blob_path(parse_digest(digest)))
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(f"{served}/v2/{name}/blobs/{digest}")
    assert response.status_code == 404 and error_code(response) == "BLOB_UNKNOWN"


async def _respond(response: FileSliceResponse, extensions: dict[str, Any], method: str = "GET") -> list[Any]:
    messages: list[Any] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        messages.append({k: v for k, v in message.items() if k != "file"})

    scope = {"type": "http", "method": method, "extensions": extensions, "asgi": {"spec_version": "2.4"}}
    await response(scope, receive, send)
    return messages


async def test_the_response_uses_what_the_server_offers_and_closes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"0123456789")

    def response(offset: int, count: int) -> FileSliceResponse:
        return FileSliceResponse(path.open("rb", buffering=0), offset, count, status_code=200,
                                 headers={"Content-Length": str(count)})

    zero = response(2, 5)
    messages = await _respond(zero, {"http.response.zerocopysend": {}, "http.response.pathsend": {}})
    assert messages[1] == {"type": "http.response.zerocopysend", "offset": 2, "count": 5, "more_body": False}
    assert zero.file.closed
    whole = response(0, 10)
    messages = await _respond(whole, {"http.response.pathsend": {}})
    assert messages[1] == {"type": "http.response.pathsend", "path": str(path)}
    assert whole.file.closed
    # pathsend sends whole files only: a range is streamed.
    ranged = response(3, 4)
    messages = await _respond(ranged, {"http.response.pathsend": {}})
    assert b"".join(m.get("body", b"") for m in messages[1:]) == b"3456"
    assert ranged.file.closed
    streamed = response(0, 10)
    messages = await _respond(streamed, {})
    assert b"".join(m.get("body", b"") for m in messages[1:]) == b"0123456789"
    head = response(0, 10)
    messages = await _respond(head, {"http.response.zerocopysend": {}}, method="HEAD")
    assert messages[1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert head.file.closed
