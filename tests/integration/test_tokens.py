"""The Docker token flow in-process on SQLite and PostgreSQL: challenge, token endpoint, grants, errors."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import pytest

from moorage.auth.policy import Policy
from moorage.auth.tokens import Account
from tests.integration.oci_client import error_code, push_blob, push_image
from tests.integration.test_identity_helpers import (
    ADMIN_PASSWORD,
    PASSWORD,
    Idp,
    basic,
    bearer,
    make_idp,
)


@pytest.fixture
async def idp(database_url: str, tmp_path: Path) -> AsyncIterator[Idp]:
    async for value in make_idp(database_url, tmp_path):
        yield value


async def test_v2_base_challenges_without_credentials(idp: Idp) -> None:
    r = await idp.http.get("/v2/")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="http://registry.test/service/token",service="moorage"'
    assert error_code(r) == "UNAUTHORIZED"
    assert "podman login registry.test" in r.json()["errors"][0]["message"]
    assert (await idp.http.get("/v2/", headers=idp.admin)).status_code == 200


async def test_repository_challenge_names_the_scope(idp: Idp) -> None:
    project = await idp.project()
    r = await idp.http.post(f"/v2/{project}/app/blobs/uploads/")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].endswith(f'scope="repository:{project}/app:pull,push"')


async def test_token_has_kid_and_grants_only_allowed_actions(idp: Idp) -> None:
    project = await idp.project()
    _, guest = await idp.user_in(project, 3)
    body = await idp.token(guest, f"repository:{project}/app:pull,push")
    assert jwt.get_unverified_header(body["token"])["kid"]
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["access"] == [{"type": "repository", "name": f"{project}/app", "actions": ["pull"]}]
    assert body["access_token"] == body["token"] and body["expires_in"] == 1800


async def test_several_scopes_and_no_cross_project_grant(idp: Idp) -> None:
    a, b = await idp.project(), await idp.project()
    _, dev = await idp.user_in(a, 2)
    body = await idp.token(dev, f"repository:{a}/x:pull,push", f"repository:{b}/x:pull,push")
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["access"] == [{"type": "repository", "name": f"{a}/x", "actions": ["pull", "push"]}]
    r = await idp.http.get(f"/v2/{b}/x/tags/list", headers=bearer(body["token"]))
    assert r.status_code == 403
    assert r.json()["errors"][0]["message"] == Policy.hidden_message(b)


async def test_developer_pushes_and_pulls_with_a_token(idp: Idp) -> None:
    project = await idp.project()
    _, dev = await idp.user_in(project, 2)
    body = await idp.token(dev, f"repository:{project}/app:pull,push")
    idp.http.headers.update(bearer(body["token"]))
    try:
        digest, _ = await push_image(idp.http, f"{project}/app", "v1", [b"layer-1"])
        r = await idp.http.get(f"/v2/{project}/app/manifests/v1")
        assert r.status_code == 200 and r.headers["docker-content-digest"] == digest
    finally:
        del idp.http.headers["Authorization"]


async def test_guest_push_is_refused_with_the_role_and_the_fix(idp: Idp) -> None:
    project = await idp.project()
    name, guest = await idp.user_in(project, 3)
    body = await idp.token(guest, f"repository:{project}/app:pull,push")
    r = await idp.http.post(f"/v2/{project}/app/blobs/uploads/", headers=bearer(body["token"]))
    assert r.status_code == 403 and error_code(r) == "DENIED"
    message = r.json()["errors"][0]["message"]
    assert f"user '{name}' has role guest in project '{project}', which does not allow push" in message
    assert "developer or above" in message


async def test_push_to_missing_project_names_it_and_the_fix(idp: Idp) -> None:
    _, user = await idp.user()
    body = await idp.token(user, "repository:nosuchproj/app:pull,push")
    r = await idp.http.post("/v2/nosuchproj/app/blobs/uploads/", headers=bearer(body["token"]))
    assert r.status_code == 403
    message = r.json()["errors"][0]["message"]
    assert message.startswith("project 'nosuchproj' does not exist or you are not a member of it")
    assert "create it (POST /api/v2.0/projects)" in message
    # a system administrator is told the exact cause
    r = await idp.http.post("/v2/nosuchproj/app/blobs/uploads/", headers=idp.admin)
    assert r.status_code == 403
    assert r.json()["errors"][0]["message"].startswith("project 'nosuchproj' does not exist: create it in the UI")
    # anonymous: a challenge, not the project's existence
    r = await idp.http.post("/v2/nosuchproj/app/blobs/uploads/")
    assert r.status_code == 401 and "does not exist" not in r.text


async def test_basic_credentials_work_on_v2(idp: Idp) -> None:
    project = await idp.project()
    _, dev = await idp.user_in(project, 2)
    idp.http.headers.update(dev)
    try:
        await push_image(idp.http, f"{project}/basic", "v1", [b"basic-layer"])
    finally:
        del idp.http.headers["Authorization"]
    wrong = basic("admin", "wrong")
    r = await idp.http.get(f"/v2/{project}/basic/tags/list", headers=wrong)
    assert r.status_code == 401 and "invalid username or password for 'admin'" in r.text


async def test_anonymous_pull_of_public_project_only(idp: Idp) -> None:
    public, private = await idp.project(public=True), await idp.project()
    idp.http.headers.update(idp.admin)
    try:
        await push_image(idp.http, f"{public}/app", "v1", [b"pub"])
        await push_image(idp.http, f"{private}/app", "v1", [b"priv"])
    finally:
        del idp.http.headers["Authorization"]
    anon = await idp.token(None, f"repository:{public}/app:pull", f"repository:{private}/app:pull")
    claims = jwt.decode(anon["token"], options={"verify_signature": False})
    assert claims["access"] == [{"type": "repository", "name": f"{public}/app", "actions": ["pull"]}]
    assert (await idp.http.get(f"/v2/{public}/app/manifests/v1", headers=bearer(anon["token"]))).status_code == 200
    r = await idp.http.get(f"/v2/{private}/app/manifests/v1", headers=bearer(anon["token"]))
    assert r.status_code == 401 and "authentication required to pull" in r.text


async def test_offline_token_refresh_and_revocation_by_password_change(idp: Idp) -> None:
    project = await idp.project()
    _name, auth = await idp.user_in(project, 2)
    body = await idp.token(auth, offline_token="true")
    refresh = body["refresh_token"]
    r = await idp.http.post("/service/token", data={
        "grant_type": "refresh_token", "refresh_token": refresh, "service": "moorage",
        "scope": f"repository:{project}/a:pull repository:{project}/b:push"})
    assert r.status_code == 200, r.text
    claims = jwt.decode(r.json()["access_token"], options={"verify_signature": False})
    assert {e["name"] for e in claims["access"]} == {f"{project}/a", f"{project}/b"}
    user_id = (await idp.api("GET", "/users/current", auth)).json()["user_id"]
    r = await idp.api("PUT", f"/users/{user_id}/password", auth,
                      json={"old_password": PASSWORD, "new_password": "N3w-password"})
    assert r.status_code == 200, r.text
    r = await idp.http.post("/service/token", data={"grant_type": "refresh_token", "refresh_token": refresh})
    assert r.status_code == 401 and "revoked" in r.json()["error_description"]


async def test_password_grant(idp: Idp) -> None:
    r = await idp.http.post("/service/token", data={
        "grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD, "access_type": "offline",
        "service": "moorage", "client_id": "test"})
    assert r.status_code == 200 and r.json()["refresh_token"] and r.json()["token_type"] == "Bearer"
    r = await idp.http.post("/service/token", data={"grant_type": "password", "username": "admin", "password": "x"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_grant"
    r = await idp.http.post("/service/token", data={"grant_type": "magic"})
    assert r.status_code == 400 and "grant_type 'magic' is not supported" in r.text


async def test_forged_and_foreign_tokens_are_rejected_with_reason(idp: Idp) -> None:
    r = await idp.http.get("/v2/", headers=bearer("not-a-jwt"))
    assert r.status_code == 401 and "not a JWT" in r.text and 'error="invalid_token"' in r.headers["www-authenticate"]
    forged = jwt.encode({"sub": "admin", "access": []}, "k" * 32, algorithm="HS256", headers={"kid": "nope"})
    r = await idp.http.get("/v2/", headers=bearer(forged))
    assert r.status_code == 401 and "which this registry does not know" in r.text


async def test_key_rotation_keeps_old_tokens_valid(idp: Idp) -> None:
    identity = idp.services.identity
    assert identity is not None
    old = (await idp.token(idp.admin))["token"]
    old_kid = jwt.get_unverified_header(old)["kid"]
    new_kid = await identity.keys.rotate()
    new = (await idp.token(idp.admin))["token"]
    assert jwt.get_unverified_header(new)["kid"] == new_kid != old_kid
    for token in (old, new):
        assert (await idp.http.get("/v2/", headers=bearer(token))).status_code == 200


async def test_a_rotation_on_one_node_is_honoured_at_once_by_another(idp: Idp) -> None:
    """Node B loaded the key set before node A rotated: B must verify A's new tokens at once, and
    sign with the new key after its periodic reload (its old-key tokens stay valid meanwhile)."""
    from moorage.auth.service import IdentityService
    from moorage.db.session import Database

    a = idp.services.identity
    assert a is not None
    b = IdentityService(Database(idp.settings.database_url), idp.settings.auth)
    try:
        await b.start()
        admin = Account("user", "admin", "uid-of-admin", 0)
        before, _, _ = await b.tokens.issue_access(admin, [])
        new_kid = await a.keys.rotate()
        token, _, _ = await a.tokens.issue_access(admin, [])
        assert jwt.get_unverified_header(token)["kid"] == new_kid
        assert (await b.tokens.verify(token))["sub"] == "admin"  # unknown kid → re-read → known
        assert (await a.tokens.verify(before))["sub"] == "admin"  # the retired key still verifies
        await b.keys.reload()  # what B does every RELOAD_SECONDS
        assert (await b.keys.signing_key()).kid == new_kid
    finally:
        await b.db.dispose()


async def test_one_scope_parameter_may_hold_several_scopes(idp: Idp) -> None:
    """What a client sends after copying Distribution's multi-scope challenge into one parameter."""
    a, b = await idp.project(), await idp.project()
    _, dev = await idp.user_in(a, 2)
    await idp.member(b, (await idp.api("GET", "/users/current", dev)).json()["username"], 3)
    body = await idp.token(dev, f"repository:{a}/x:pull,push repository:{b}/y:pull,push")
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["access"] == [
        {"type": "repository", "name": f"{a}/x", "actions": ["pull", "push"]},
        {"type": "repository", "name": f"{b}/y", "actions": ["pull"]},
    ]


class ChallengeFollower:
    """A token client that knows nothing but the challenge: on a 401 it fetches a token for exactly
    the ``scope`` the ``WWW-Authenticate`` header names (one parameter, as written) and retries."""

    def __init__(self, http: httpx.AsyncClient, credentials: dict[str, str]) -> None:
        self.http = http
        self.credentials = credentials
        self.token: str | None = None
        self.scopes_asked: list[str] = []

    async def request(self, method: str, url: str) -> httpx.Response:
        for _ in range(3):
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            r = await self.http.request(method, url, headers=headers)
            if r.status_code != 401:
                return r
            challenge = dict(re.findall(r'(\w+)="([^"]*)"', r.headers["www-authenticate"]))
            self.scopes_asked.append(challenge.get("scope", ""))
            got = await self.http.get(challenge["realm"], headers=self.credentials,
                                      params={"service": challenge["service"], "scope": challenge.get("scope", "")})
            assert got.status_code == 200, got.text
            self.token = got.json()["token"]
        return r


async def test_a_client_that_only_follows_challenges_gets_the_cross_repository_mount(idp: Idp) -> None:
    source_project, target_project = await idp.project(), await idp.project()
    name, dev = await idp.user_in(target_project, 2)
    await idp.member(source_project, name, 3)  # may pull from the source
    idp.http.headers.update(idp.admin)
    try:
        digest = await push_blob(idp.http, f"{source_project}/src", b"layer to mount")
    finally:
        del idp.http.headers["Authorization"]
    source, target = f"{source_project}/src", f"{target_project}/dst"
    client = ChallengeFollower(idp.http, dev)
    r = await client.request("POST", f"/v2/{target}/blobs/uploads/?mount={digest}&from={source}")
    assert r.status_code == 201, r.text
    assert client.scopes_asked == [f"repository:{target}:pull,push repository:{source}:pull"]
    assert (await client.request("HEAD", f"/v2/{target}/blobs/{digest}")).status_code == 200
    # a client holding a token for the target only is asked for the source too, then mounts
    client = ChallengeFollower(idp.http, dev)
    client.token = (await idp.token(dev, f"repository:{target}:pull,push"))["token"]
    r = await client.request("POST", f"/v2/{target}2/blobs/uploads/?mount={digest}&from={source}")
    assert r.status_code == 201, r.text
    assert client.scopes_asked[-1] == f"repository:{target}2:pull,push repository:{source}:pull"


async def test_a_mount_from_a_repository_the_caller_may_not_read_falls_back_to_an_upload(idp: Idp) -> None:
    source_project, target_project = await idp.project(), await idp.project()
    _, dev = await idp.user_in(target_project, 2)
    idp.http.headers.update(idp.admin)
    try:
        digest = await push_blob(idp.http, f"{source_project}/src", b"secret layer")
    finally:
        del idp.http.headers["Authorization"]
    client = ChallengeFollower(idp.http, dev)
    r = await client.request("POST", f"/v2/{target_project}/dst/blobs/uploads/?mount={digest}&from={source_project}/src")
    assert r.status_code == 202 and len(client.scopes_asked) == 1  # no loop of challenges, no mount
    assert (await client.request("HEAD", f"/v2/{target_project}/dst/blobs/{digest}")).status_code == 404
