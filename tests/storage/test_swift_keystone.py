"""Keystone v3 auth of the Swift driver, against a local HTTP server that answers like Keystone.

No Keystone runs in this project's CI, so this is the one part of the Swift driver that is
not proven on a real service (docs/storage.md says so). The server below is a real HTTP
server on 127.0.0.1 (aiohttp.web), so the driver's own HTTP stack sends and parses every
byte; only the answer's content is ours. Its shape follows the Identity v3 API reference
(POST /v3/auth/tokens, token in X-Subject-Token, ``token.catalog`` in the body).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from moorage.storage.driver import StorageUnavailableError
from moorage.storage.drivers.swift_auth import SwiftSettings, authenticate

CATALOG = [
    {"type": "identity", "endpoints": [{"interface": "public", "region": "r1", "url": "http://ks/v3"}]},
    {
        "type": "object-store",
        "endpoints": [
            {"interface": "internal", "region": "r1", "url": "http://swift-internal:8080/v1/AUTH_p"},
            {"interface": "public", "region": "r2", "url": "https://swift-r2/v1/AUTH_p"},
            {"interface": "public", "region": "r1", "url": "https://swift-r1/v1/AUTH_p"},
        ],
    },
]


class Keystone:
    """``POST /v3/auth/tokens`` that accepts the password ``right`` and records each request body."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.url = ""

    async def tokens(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.seen.append(body)
        if body["auth"]["identity"]["password"]["user"]["password"] != "right":
            return web.json_response({"error": {"code": 401}}, status=401)
        return web.json_response(
            {"token": {"catalog": CATALOG}}, status=201, headers={"X-Subject-Token": "tok"}
        )


@pytest.fixture
async def keystone() -> AsyncIterator[Keystone]:
    fake = Keystone()
    app = web.Application()
    app.router.add_post("/v3/auth/tokens", fake.tokens)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.url = f"http://127.0.0.1:{port}/v3"
    try:
        yield fake
    finally:
        await runner.cleanup()


def _settings(keystone: Keystone, **extra: object) -> SwiftSettings:
    values: dict[str, object] = {
        "authurl": keystone.url,
        "username": "u",
        "password": "right",
        "container": "c",
        "tenant": "proj",
        "domain": "dom",
    }
    values.update(extra)
    return SwiftSettings.model_validate(values)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"region": "r1"}, "https://swift-r1/v1/AUTH_p"),
        ({"region": "r2"}, "https://swift-r2/v1/AUTH_p"),
        ({"region": "r1", "endpointtype": "internal"}, "http://swift-internal:8080/v1/AUTH_p"),
        ({"region": "r1", "storageurl": "https://proxy/v1/AUTH_p"}, "https://proxy/v1/AUTH_p"),
    ],
)
async def test_v3_token_and_catalog(keystone: Keystone, extra: dict[str, object], expected: str) -> None:
    async with aiohttp.ClientSession() as client:
        auth = await authenticate(client, _settings(keystone, **extra))
    assert auth.token == "tok" and auth.storage_url == expected
    assert keystone.seen[0]["auth"]["scope"] == {"project": {"name": "proj", "domain": {"name": "dom"}}}
    assert json.dumps(keystone.seen[0]["auth"]["identity"]["methods"]) == '["password"]'


async def test_v3_errors_name_the_settings(keystone: Keystone) -> None:
    async with aiohttp.ClientSession() as client:
        with pytest.raises(StorageUnavailableError, match="password"):
            await authenticate(client, _settings(keystone, password="wrong"))
        with pytest.raises(StorageUnavailableError, match="region"):
            await authenticate(client, _settings(keystone, region="nowhere"))
        with pytest.raises(StorageUnavailableError, match="cannot reach Keystone"):
            await authenticate(client, _settings(keystone, authurl="http://127.0.0.1:9/v3"))
