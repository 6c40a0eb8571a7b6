"""Tokens are bound to an audience, to the account's immutable id and to its generation (issue 10, "Tokens").

Before: a registry token with only ``pull`` (or no scope) was a full REST login; a deleted and
re-created ``aguest`` inherited the old account's tokens; a robot secret refresh or a password
change left access tokens valid until they expired.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest

from tests.integration.oci_client import push_image
from tests.integration.test_identity_helpers import PASSWORD, Idp, basic, bearer, make_idp, uid


@pytest.fixture
async def idp(database_url: str, tmp_path: Path) -> AsyncIterator[Idp]:
    async for value in make_idp(database_url, tmp_path):
        yield value


async def test_a_registry_token_is_no_rest_login(idp: Idp) -> None:
    """Even the admin's registry tokens (pull-scoped, or none) are refused by every REST call."""
    project = await idp.project()
    idp.http.headers.update(idp.admin)
    try:
        await push_image(idp.http, f"{project}/app", "v1", [b"rest-layer"])
    finally:
        del idp.http.headers["Authorization"]
    victim, _ = await idp.user()
    tokens = [
        (await idp.token(idp.admin, f"repository:{project}/app:pull"))["token"],
        (await idp.token(idp.admin))["token"],
    ]
    robot = {"name": uid("bot"), "level": "project", "duration": -1, "permissions": [
        {"kind": "project", "namespace": project, "access": [{"resource": "repository", "action": "pull"}]}]}
    calls = [
        ("DELETE", f"/projects/{project}/repositories/app", {}),
        ("POST", f"/projects/{project}/members", {"json": {"role_id": 1, "member_user": {"username": victim}}}),
        ("POST", "/robots", {"json": robot}),
        ("POST", "/projects", {"json": {"project_name": uid("new"), "public": True}}),
        ("GET", "/users/current", {}),
    ]
    for token in tokens:
        for method, path, kwargs in calls:
            r = await idp.api(method, path, bearer(token), **kwargs)
            assert r.status_code == 401, (method, path, r.text)
            assert "good for /v2 only" in r.json()["errors"][0]["message"]
    # nothing happened: the repository, the membership and the robot are not there
    assert (await idp.api("GET", f"/projects/{project}/repositories/app", idp.admin)).status_code == 200
    members = (await idp.api("GET", f"/projects/{project}/members", idp.admin)).json()
    assert victim not in {m["entity_name"] for m in members}
    robots = (await idp.api("GET", "/robots", idp.admin, params={"page_size": 100})).json()
    assert robot["name"] not in {r["name"] for r in robots}


async def test_an_api_token_works_on_rest_only_and_needs_credentials(idp: Idp) -> None:
    project = await idp.project()
    body = await idp.token(idp.admin, service="moorage-api")
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["aud"] == "moorage-api" and "access" not in claims
    r = await idp.api("GET", f"/projects/{project}", bearer(body["token"]))
    assert r.status_code == 200 and r.json()["name"] == project
    r = await idp.http.get(f"/v2/{project}/app/tags/list", headers=bearer(body["token"]))
    assert r.status_code == 401 and "management API token" in r.text
    r = await idp.http.get("/service/token", params={"service": "moorage-api"})
    assert r.status_code == 401 and "needs credentials" in r.text


async def test_a_recreated_user_of_the_same_name_does_not_inherit_old_tokens(idp: Idp) -> None:
    project = await idp.project(public=True)
    name = uid("aguest")
    r = await idp.api("POST", "/users", idp.admin, json={"username": name, "password": PASSWORD})
    assert r.status_code == 201
    user_id = int(r.headers["location"].rsplit("/", 1)[1])
    old_registry = (await idp.token(basic(name, PASSWORD), f"repository:{project}/app:pull"))["token"]
    old_api = (await idp.token(basic(name, PASSWORD), service="moorage-api"))["token"]
    old_refresh = (await idp.token(basic(name, PASSWORD), offline_token="true"))["refresh_token"]
    assert (await idp.http.get("/v2/", headers=bearer(old_registry))).status_code == 200
    assert (await idp.api("DELETE", f"/users/{user_id}", idp.admin)).status_code == 200
    r = await idp.api("POST", "/users", idp.admin, json={"username": name, "password": PASSWORD})
    assert r.status_code == 201
    r = await idp.http.get("/v2/", headers=bearer(old_registry))
    assert r.status_code == 401 and f"user '{name}' no longer exists" in r.text
    r = await idp.http.get(f"/v2/{project}/app/tags/list", headers=bearer(old_registry))
    assert r.status_code == 401
    r = await idp.api("GET", "/users/current", bearer(old_api))
    assert r.status_code == 401
    r = await idp.http.post("/service/token", data={"grant_type": "refresh_token", "refresh_token": old_refresh})
    assert r.status_code == 401
    # the new account's own tokens work
    fresh = (await idp.token(basic(name, PASSWORD)))["token"]
    assert (await idp.http.get("/v2/", headers=bearer(fresh))).status_code == 200


async def test_a_password_change_ends_access_tokens(idp: Idp) -> None:
    project = await idp.project()
    _, auth = await idp.user_in(project, 2)
    token = (await idp.token(auth, f"repository:{project}/app:pull,push"))["token"]
    assert (await idp.http.post(f"/v2/{project}/app/blobs/uploads/", headers=bearer(token))).status_code == 202
    user_id = (await idp.api("GET", "/users/current", auth)).json()["user_id"]
    r = await idp.api("PUT", f"/users/{user_id}/password", idp.admin, json={"new_password": "N3w-password"})
    assert r.status_code == 200, r.text
    r = await idp.http.post(f"/v2/{project}/app/blobs/uploads/", headers=bearer(token))
    assert r.status_code == 401 and "was revoked" in r.text and 'error="invalid_token"' in r.headers["www-authenticate"]


async def test_a_robot_secret_refresh_ends_tokens_of_the_old_secret(idp: Idp) -> None:
    project = await idp.project()
    robot_id, name, secret = await idp.robot(project, ["pull", "push"])
    old = (await idp.token(basic(name, secret), f"repository:{project}/app:pull,push"))["token"]
    assert (await idp.http.post(f"/v2/{project}/app/blobs/uploads/", headers=bearer(old))).status_code == 202
    r = await idp.api("PATCH", f"/robots/{robot_id}", idp.admin, json={})
    assert r.status_code == 200
    new_secret = r.json()["secret"]
    r = await idp.http.post(f"/v2/{project}/app/blobs/uploads/", headers=bearer(old))
    assert r.status_code == 401 and "was revoked" in r.text
    new = (await idp.token(basic(name, new_secret), f"repository:{project}/app:pull,push"))["token"]
    assert (await idp.http.post(f"/v2/{project}/app/blobs/uploads/", headers=bearer(new))).status_code == 202


async def test_disabling_a_robot_ends_its_tokens_even_once_enabled_again(idp: Idp) -> None:
    project = await idp.project()
    robot_id, name, secret = await idp.robot(project, ["pull"])
    old = (await idp.token(basic(name, secret), f"repository:{project}/app:pull"))["token"]
    for disable in (True, False):
        assert (await idp.api("PUT", f"/robots/{robot_id}", idp.admin, json={"disable": disable})).status_code == 200
    r = await idp.http.get(f"/v2/{project}/app/tags/list", headers=bearer(old))
    assert r.status_code == 401 and "was revoked" in r.text
