"""Keystone v3 auth of the Swift driver: a unit test against a recorded token answer.

No Keystone runs in this project's CI, so this is the one part of the Swift driver that is
not proven on a real service (docs/storage.md says so). The answer's shape follows the
Identity v3 API reference (POST /v3/auth/tokens, token in X-Subject-Token).
"""

from __future__ import annotations

import json

import httpx
import pytest

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


def _keystone(seen: list[dict[str, object]]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v3/auth/tokens"
        body = json.loads(request.content)
        seen.append(body)
        if body["auth"]["identity"]["password"]["user"]["password"] != "right":
            return httpx.Response(401)
        return httpx.Response(201, headers={"X-Subject-Token": "tok"}, json={"token": {"catalog": CATALOG}})

    return httpx.MockTransport(answer)


def _settings(**extra: object) -> SwiftSettings:
    values: dict[str, object] = {
        "authurl": "http://ks/v3",
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
async def test_v3_token_and_catalog(extra: dict[str, object], expected: str) -> None:
    seen: list[dict[str, object]] = []
    async with httpx.AsyncClient(transport=_keystone(seen)) as client:
        auth = await authenticate(client, _settings(**extra))
    assert auth.token == "tok" and auth.storage_url == expected
    scope = seen[0]["auth"]["scope"]  # type: ignore[index]
    assert scope == {"project": {"name": "proj", "domain": {"name": "dom"}}}


async def test_v3_errors_name_the_settings() -> None:
    async with httpx.AsyncClient(transport=_keystone([])) as client:
        with pytest.raises(StorageUnavailableError, match="password"):
            await authenticate(client, _settings(password="wrong"))
        with pytest.raises(StorageUnavailableError, match="region"):
            await authenticate(client, _settings(region="nowhere"))
