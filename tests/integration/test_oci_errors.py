"""Failures nobody anticipated on ``/v2``: the spec's JSON envelope with a request id, one log line.

Real failures, no stand-ins: a throwaway SQLite database loses a table under a running registry,
and a real TCP client hangs up in the middle of a manifest upload to a real uvicorn server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
import uvicorn

from moorage.api.http import unexpected_error
from moorage.app import create_app
from moorage.config import Settings
from moorage.db.migrate import upgrade
from moorage.services import Services
from tests.integration.conftest import make_settings, unique_name
from tests.integration.oci_client import OCI_MANIFEST, digest_of, error_code, push_image


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    """A migrated SQLite database of this test's own, free to break."""
    path = tmp_path / "throwaway.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def own_settings(sqlite_file: Path, tmp_path: Path) -> Settings:
    return make_settings(f"sqlite:///{sqlite_file}", tmp_path)


@pytest.fixture
async def own_registry(own_settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    settings = own_settings
    services = Services.from_settings(settings)
    transport = httpx.ASGITransport(app=create_app(settings, services))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as http:
            yield http, services
    finally:
        await services.aclose()


def _log_errors(entries: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [entry for entry in entries if entry["log_level"] in ("error", "critical", "exception")]


async def test_database_failure_is_a_json_error_with_a_request_id_and_one_logged_traceback(
    own_registry: tuple[httpx.AsyncClient, Services], sqlite_file: Path
) -> None:
    client, _ = own_registry
    name = unique_name()
    _, body = await push_image(client, name, "v1", [b"layer"])
    with sqlite3.connect(sqlite_file) as broken:
        broken.execute("DROP TABLE tags")
    with structlog.testing.capture_logs(processors=[structlog.processors.format_exc_info]) as entries:
        listing = await client.get(f"/v2/{name}/tags/list")
        push = await client.put(
            f"/v2/{name}/manifests/v2", content=body, headers={"Content-Type": OCI_MANIFEST}
        )
        head = await client.head(f"/v2/{name}/manifests/v1")
    for response in (listing, push, head):
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/json"
    request_ids = []
    for response in (listing, push):
        assert error_code(response) == "UNAVAILABLE"
        error = response.json()["errors"][0]
        request_id = response.headers["x-request-id"]
        assert error["detail"] == {"requestId": request_id} and request_id in error["message"]
        assert "no such table" not in response.text  # SQL stays in the log
        request_ids.append(request_id)
    assert head.content == b"" and head.headers["x-request-id"]
    request_ids.append(head.headers["x-request-id"])
    assert len(set(request_ids)) == 3
    logged = _log_errors(entries)
    assert [entry["request_id"] for entry in logged] == request_ids  # one line per failure
    for entry in logged:
        assert entry["event"] == "unhandled_error"
        assert "Traceback" in entry["exception"] and "no such table: tags" in entry["exception"]


def test_unanticipated_exceptions_are_unknown_500_naming_the_request_id() -> None:
    error = unexpected_error(KeyError("a bug"), "abc123")
    assert (error.code, error.status, error.headers) == ("UNKNOWN", 500, {"X-Request-Id": "abc123"})
    assert error.body()["errors"][0]["detail"] == {"requestId": "abc123"} and "a bug" not in error.message


class _Server:
    """A real uvicorn server on a free loopback port, in this event loop."""

    def __init__(self, app: Any) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_config=None)
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> int:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            assert not self.task.done(), "uvicorn exited before it started"
            await asyncio.sleep(0.01)
        port: int = self.server.servers[0].sockets[0].getsockname()[1]
        return port

    async def __aexit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await self.task


async def test_client_hanging_up_mid_manifest_put_logs_one_info_line_and_stores_nothing(
    own_registry: tuple[httpx.AsyncClient, Services], own_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    client, services = own_registry
    name = unique_name()
    _, body = await push_image(client, name, "v1", [b"layer"])
    partial = json.dumps({**json.loads(body), "annotations": {"x": "y" * 2000}}).encode()
    app = create_app(own_settings, services)
    caplog.set_level(logging.INFO)
    with structlog.testing.capture_logs() as entries:
        async with _Server(app) as port:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            head = (
                f"PUT /v2/{name}/manifests/v2 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Content-Type: {OCI_MANIFEST}\r\nContent-Length: {len(partial)}\r\n\r\n"
            )
            writer.write(head.encode() + partial[:1000])
            await writer.drain()
            writer.close()  # hang up with half the body sent
            await writer.wait_closed()
            for _ in range(500):  # until the server has seen the hang-up (at most ~10 s)
                if any(entry["event"] == "client_disconnected" for entry in entries):
                    break
                await asyncio.sleep(0.02)
    disconnects = [entry for entry in entries if entry["event"] == "client_disconnected"]
    assert len(disconnects) == 1 and disconnects[0]["log_level"] == "info"
    assert disconnects[0]["path"] == f"/v2/{name}/manifests/v2"
    assert _log_errors(entries) == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] == []
    assert (await client.get(f"/v2/{name}/tags/list")).json()["tags"] == ["v1"]
    digest = digest_of(partial)
    assert [i async for i in services.storage.list(f"blobs/sha256/{digest[7:9]}/{digest[7:]}")] == []
