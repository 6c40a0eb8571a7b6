"""Look-alike names ("proja\\n", "admin\\n", "bot\\u200b") are refused where they enter: REST, token service, /v2.

Before issue 10, ``re.match(r"…$")`` accepted a final newline: ``POST /users {"username":
"admin\\n"}`` created an account that could log in and showed in the audit log as ``admin``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.test_identity_helpers import PASSWORD, Idp, basic, make_idp, uid

LOOK_ALIKE_SUFFIXES = ["\n", "\r\n", " ", "\u200b", "\u00a0", "\u2028"]


@pytest.fixture
async def idp(database_url: str, tmp_path: Path) -> AsyncIterator[Idp]:
    async for value in make_idp(database_url, tmp_path):
        yield value


def message(response: object) -> str:
    return str(response.json()["errors"][0]["message"])  # type: ignore[attr-defined]


async def test_rest_refuses_look_alike_names_and_writes_nothing(idp: Idp) -> None:
    project = await idp.project()
    for suffix in LOOK_ALIKE_SUFFIXES:
        r = await idp.api("POST", "/projects", idp.admin, json={"project_name": project + suffix})
        assert r.status_code == 400 and "project name" in message(r), (suffix, r.text)
        r = await idp.api("POST", "/users", idp.admin, json={"username": "admin" + suffix, "password": PASSWORD})
        assert r.status_code == 400 and "username" in message(r), (suffix, r.text)
        body = {"name": uid("bot") + suffix, "level": "project", "duration": -1, "permissions": [
            {"kind": "project", "namespace": project, "access": [{"resource": "repository", "action": "pull"}]}]}
        r = await idp.api("POST", "/robots", idp.admin, json=body)
        assert r.status_code == 400 and "robot name" in message(r), (suffix, r.text)
        body = {"name": uid("bot"), "level": "system", "duration": -1, "permissions": [
            {"kind": "project", "namespace": project + suffix,
             "access": [{"resource": "repository", "action": "pull"}]}]}
        r = await idp.api("POST", "/robots", idp.admin, json=body)
        assert r.status_code == 400 and "namespace" in message(r), (suffix, r.text)
    users = await idp.api("GET", "/users", idp.admin, params={"username": "admin", "page_size": 100})
    assert [u["username"] for u in users.json() if u["username"].startswith("admin")] == ["admin"]
    listed = await idp.api("GET", "/projects", idp.admin, params={"name": project, "page_size": 100})
    assert [p["name"] for p in listed.json()] == [project]


async def test_login_with_a_look_alike_name_is_refused_before_the_throttle(idp: Idp) -> None:
    for suffix in ("\n", "\u200b"):
        r = await idp.api("GET", "/users/current", basic("admin" + suffix, "anything"))
        assert r.status_code == 401 and "U+" in message(r), r.text
        r = await idp.http.get("/service/token", params={"service": "moorage"},
                               headers=basic("admin" + suffix, "anything"))
        assert r.status_code == 401, r.text
        r = await idp.http.post("/service/token", data={"grant_type": "password", "username": "admin" + suffix,
                                                        "password": "x", "service": "moorage"})
        assert r.status_code == 401, r.text


async def test_token_scopes_with_look_alike_names_grant_nothing(idp: Idp) -> None:
    project = await idp.project(public=True)
    body = await idp.token(idp.admin, f"repository:{project}\n/app:pull,push", f"repository:{project}/app:pull")
    from moorage.auth.tokens import TokenService

    assert isinstance(idp.services.identity.tokens, TokenService)  # type: ignore[union-attr]
    claims = await idp.services.identity.tokens.verify(body["token"])  # type: ignore[union-attr]
    assert claims["access"] == [{"type": "repository", "name": f"{project}/app", "actions": ["pull"]}]


async def test_v2_refuses_names_and_references_with_a_final_newline(idp: Idp) -> None:
    """Not stripped either: Starlette's request.url drops "\n", which made "p/app\n" act on "p/app"."""
    project = await idp.project()
    # A manifest read of a reference that names no manifest is 404 (distribution-spec), not 400.
    cases = {
        f"/v2/{project}/app%0A/tags/list": (400, "NAME_INVALID"),
        f"/v2/{project}/app%E2%80%8B/tags/list": (400, "NAME_INVALID"),
        f"/v2/{project}/app/manifests/latest%0A": (404, "MANIFEST_UNKNOWN"),
        f"/v2/{project}/app/manifests/lat%0Aest": (404, "MANIFEST_UNKNOWN"),
        f"/v2/{project}/app/blobs/sha256:{'a' * 64}%0A": (400, "DIGEST_INVALID"),
    }
    for path, (status, code) in cases.items():
        r = await idp.http.get(path, headers=idp.admin)
        assert r.status_code == status, (path, r.status_code, r.text)
        assert [error["code"] for error in r.json()["errors"]] == [code], (path, r.text)
