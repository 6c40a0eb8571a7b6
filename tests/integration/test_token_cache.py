"""Verified bearer tokens are cached per process (issue 17, manifest hot path), without weakening
anything: a tampered token is verified (and refused) even while the genuine one is cached, a
refusal is never cached, and a revoked account is refused while its token is still cached, on
the node that made the change at once and on another node within the policy's cache time."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from moorage.auth.service import IdentityService
from tests.integration.test_identity_helpers import PASSWORD, Idp, basic, bearer, make_idp


@pytest.fixture
async def nodes(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Idp, Idp]]:
    async for a in make_idp(database_url, tmp_path / "a"):
        async for b in make_idp(database_url, tmp_path / "b"):
            yield a, b


def identity(node: Idp) -> IdentityService:
    assert node.services.identity is not None
    return node.services.identity


def cached(node: Idp, token: str) -> bool:
    return identity(node).tokens.verified.get(token, "registry") is not None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def with_payload(token: str, **changes: object) -> str:
    """``token`` with its payload edited and the genuine signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


async def test_a_tampered_token_is_refused_while_the_genuine_one_is_cached(nodes: tuple[Idp, Idp]) -> None:
    a, _ = nodes
    project, other = await a.project(), await a.project()
    _, guest = await a.user_in(project, 3)
    token = (await a.token(guest, f"repository:{project}/app:pull"))["token"]
    r = await a.http.get(f"/v2/{project}/app/tags/list", headers=bearer(token))
    assert r.status_code in (200, 404) and cached(a, token)
    assert (await a.http.get(f"/v2/{project}/app/tags/list", headers=bearer(token))).status_code == r.status_code

    header, payload, signature = token.split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    grab = [{"type": "repository", "name": f"{other}/app", "actions": ["pull", "push"]}]
    tampered = [
        f"{header}.{payload}.{flipped}",  # a broken signature
        with_payload(token, access=grab),  # more access under the genuine signature
        with_payload(token, sub="admin"),
        token + "x",
        f"{header}.{payload}.",  # no signature at all
    ]
    for forged in tampered:
        r = await a.http.post(f"/v2/{other}/app/blobs/uploads/", headers=bearer(forged))
        assert r.status_code == 401, (forged, r.text)
        assert 'error="invalid_token"' in r.headers["www-authenticate"]
        assert not cached(a, forged)  # a refusal is never remembered
    assert cached(a, token)


async def test_a_refused_token_is_not_cached_and_an_api_token_stays_refused_on_v2(nodes: tuple[Idp, Idp]) -> None:
    a, _ = nodes
    _, auth = await a.user()
    api_token = (await a.token(auth, service="moorage-api"))["token"]
    for _ in range(2):
        r = await a.http.get("/v2/", headers=bearer(api_token))
        assert r.status_code == 401 and "management API token" in r.text
    assert not cached(a, api_token)
    assert (await a.api("GET", "/users/current", bearer(api_token))).status_code == 200
    assert identity(a).tokens.verified.get(api_token, "api") is not None  # cached for its own purpose only
    r = await a.http.get("/v2/", headers=bearer(api_token))
    assert r.status_code == 401 and "management API token" in r.text


async def test_a_deleted_user_is_refused_at_once_though_its_token_is_cached(nodes: tuple[Idp, Idp]) -> None:
    a, _ = nodes
    project = await a.project()
    name, auth = await a.user_in(project, 2)
    token = (await a.token(auth, f"repository:{project}/app:pull,push"))["token"]
    assert (await a.http.post(f"/v2/{project}/app/blobs/uploads/", headers=bearer(token))).status_code == 202
    assert cached(a, token)
    user_id = next(u["user_id"] for u in (await a.api("GET", "/users", a.admin, params={"username": name})).json())
    assert (await a.api("DELETE", f"/users/{user_id}", a.admin)).status_code == 200
    r = await a.http.post(f"/v2/{project}/app/blobs/uploads/", headers=bearer(token))
    assert r.status_code == 401 and "no longer exists" in r.text
    assert cached(a, token)  # the signature check was skipped; the account check was not


async def test_another_node_refuses_a_cached_token_within_the_policy_cache_time(nodes: tuple[Idp, Idp]) -> None:
    a, b = nodes
    project = await a.project()
    name, auth = await a.user_in(project, 2)
    token = (await a.token(auth, f"repository:{project}/app:pull,push"))["token"]
    assert (await b.http.post(f"/v2/{project}/app/blobs/uploads/", headers=bearer(token))).status_code == 202
    assert cached(b, token)
    user_id = (await a.api("GET", "/users/current", basic(name, PASSWORD))).json()["user_id"]
    r = await a.api("PUT", f"/users/{user_id}/password", a.admin, json={"new_password": "N3w-password"})
    assert r.status_code == 200, r.text
    await asyncio.sleep(identity(b).policy.cache_seconds + 0.2)  # node B learns of the change only by re-reading
    r = await b.http.post(f"/v2/{project}/app/blobs/uploads/", headers=bearer(token))
    assert r.status_code == 401 and "was revoked" in r.text
    assert cached(b, token)
