"""The audit log (issue 10): logins, what a change changed, robots removed with their project, blob
deletes as blobs, and on every row how the caller authenticated."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from moorage.db.migrate import current_heads, downgrade, upgrade
from tests.integration.oci_client import push_blob, push_image
from tests.integration.test_identity_helpers import Idp, basic, bearer, make_idp


@pytest.fixture
async def idp(database_url: str, tmp_path: Path) -> AsyncIterator[Idp]:
    async for value in make_idp(database_url, tmp_path, MOORAGE_AUTH__LOGIN_MAX_FAILURES=2):
        yield value


async def _logs(idp: Idp, **params: str) -> list[dict[str, Any]]:
    r = await idp.api("GET", "/audit-logs", idp.admin, params={"page_size": "100", **params})
    assert r.status_code == 200, r.text
    return list(r.json())


def _from(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}  # the in-process client is 127.0.0.1, a trusted proxy


async def test_logins_successes_failures_and_throttled_with_method_and_address(idp: Idp) -> None:
    name, auth = await idp.user()
    for _ in range(3):  # Basic logs in on every request: one success row per quiet window
        assert (await idp.api("GET", "/users/current", {**auth, **_from("203.0.113.10")})).status_code == 200
    wrong = basic(name, "Wrong-passw0rd")
    for _ in range(2):
        r = await idp.http.get("/service/token", headers={**wrong, **_from("203.0.113.11")})
        assert r.status_code == 401
    for _ in range(3):
        r = await idp.http.get("/service/token", headers={**auth, **_from("203.0.113.11")})
        assert r.status_code == 429
    rows = await _logs(idp, username=name)
    summary = [(e["operation"], e["client"], e["auth_method"], e["resource_type"]) for e in rows]
    assert summary.count(("login", "203.0.113.10", "password", "user")) == 1, summary
    assert summary.count(("login_failure", "203.0.113.11", "password", "user")) == 2, summary
    assert summary.count(("login_throttled", "203.0.113.11", "password", "user")) == 1, summary
    assert all(e["project"] is None for e in rows)  # only system admins see logins
    own = await idp.api("GET", "/audit-logs", auth, params={"username": name})
    assert own.status_code == 200 and own.json() == []


async def test_robot_and_refresh_token_logins(idp: Idp) -> None:
    project = await idp.project()
    _, robot, secret = await idp.robot(project, ["pull"])
    assert (await idp.http.get("/v2/", headers={**basic(robot, secret), **_from("198.51.100.20")})).status_code == 200
    name, auth = await idp.user()
    body = await idp.token(auth, offline_token="true")
    form = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"], "service": "moorage"}
    assert (await idp.http.post("/service/token", data=form, headers=_from("198.51.100.21"))).status_code == 200
    bad = {**form, "refresh_token": "not-a-token"}
    assert (await idp.http.post("/service/token", data=bad, headers=_from("198.51.100.22"))).status_code == 401
    robot_rows = await _logs(idp, username=robot, operation="login")
    assert [(e["resource_type"], e["auth_method"], e["client"]) for e in robot_rows] == [
        ("robot", "robot", "198.51.100.20")]
    refreshed = [e for e in await _logs(idp, username=name, operation="login") if e["auth_method"] == "refresh_token"]
    assert [e["client"] for e in refreshed] == ["198.51.100.21"]
    failed = [e for e in await _logs(idp, operation="login_failure") if e["client"] == "198.51.100.22"]
    assert [e["auth_method"] for e in failed] == ["refresh_token"] and "refresh token rejected" in failed[0]["detail"]


async def test_member_role_change_names_the_member_and_both_roles(idp: Idp) -> None:
    project = await idp.project()
    name, _ = await idp.user_in(project, 2)
    members = (await idp.api("GET", f"/projects/{project}/members", idp.admin)).json()
    mid = next(m["id"] for m in members if m["entity_name"] == name)
    r = await idp.api("PUT", f"/projects/{project}/members/{mid}", idp.admin, json={"role_id": 3})
    assert r.status_code == 200, r.text
    rows = await _logs(idp, resource=project, operation="update")
    changed = [e for e in rows if e["resource_type"] == "project_member"]
    assert [(e["resource"], e["detail"]) for e in changed] == [(f"{project}:{name}", "role developer -> guest")]


async def test_robot_disable_and_permission_change_say_what_changed(idp: Idp) -> None:
    project = await idp.project()
    robot_id, robot, _ = await idp.robot(project, ["pull"])
    assert (await idp.api("PUT", f"/robots/{robot_id}", idp.admin, json={"disable": True})).status_code == 200
    perms = [{"kind": "project", "namespace": project, "access": [
        {"resource": "repository", "action": "pull"}, {"resource": "repository", "action": "push"}]}]
    assert (await idp.api("PUT", f"/robots/{robot_id}", idp.admin, json={"permissions": perms})).status_code == 200
    assert (await idp.api("PATCH", f"/robots/{robot_id}", idp.admin, json={})).status_code == 200
    rows = await _logs(idp, resource=robot, operation="update")
    assert [e["detail"] for e in reversed(rows)] == [
        "disabled false -> true", f"permissions {project}: pull -> {project}: pull,push", "secret refreshed"]


async def test_robots_removed_with_their_project_get_their_own_rows(idp: Idp) -> None:
    project = await idp.project()
    _, first, _ = await idp.robot(project, ["pull"])
    _, second, _ = await idp.robot(project, ["push"])
    assert (await idp.api("DELETE", f"/projects/{project}", idp.admin)).status_code == 200
    rows = await _logs(idp, resource=project, operation="delete")
    robots = {e["resource"]: e["detail"] for e in rows if e["resource_type"] == "robot"}
    assert robots == {first: f"removed with project {project!r}", second: f"removed with project {project!r}"}


async def test_blob_delete_is_a_blob_and_every_row_says_how_the_caller_authenticated(idp: Idp) -> None:
    project = await idp.project()
    _, robot, secret = await idp.robot(project, ["pull", "push", "delete"])
    name, user = await idp.user_in(project, 1)
    repository = f"{project}/app"
    idp.http.headers.update(user)
    try:
        await push_image(idp.http, repository, "v1", [b"layer-one"])
        blob = await push_blob(idp.http, repository, b"lonely blob")
    finally:
        del idp.http.headers["Authorization"]
    assert (await idp.http.delete(f"/v2/{repository}/blobs/{blob}", headers=basic(robot, secret))).status_code == 202
    token = (await idp.token(user, f"repository:{repository}:pull"))["token"]
    assert (await idp.http.get(f"/v2/{repository}/manifests/v1", headers=bearer(token))).status_code == 200
    rows = await _logs(idp, resource=repository)
    seen = {(e["username"], e["operation"], e["resource_type"], e["auth_method"]) for e in rows}
    assert (robot, "delete", "blob", "robot") in seen, seen
    assert (name, "push", "artifact", "basic") in seen, seen
    assert (name, "pull", "artifact", "token") in seen, seen
    assert not any(e["operation"] == "delete" and e["resource_type"] == "artifact" for e in rows), rows
    r = await idp.api("PUT", f"/projects/{project}", idp.admin, json={"public": False})
    assert r.status_code == 200
    updated = await _logs(idp, resource=project, operation="update")
    assert updated[0]["auth_method"] == "basic" and updated[0]["username"] == "admin"
    api_token = (await idp.token(idp.admin, service="moorage-api"))["token"]  # a token minted for the API
    assert (await idp.api("PUT", f"/projects/{project}", bearer(api_token), json={"public": True})).status_code == 200
    updated = await _logs(idp, resource=project, operation="update")
    assert updated[0]["auth_method"] == "token" and updated[0]["username"] == "admin"


def test_auth_method_migration_has_a_downgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)

    def columns() -> set[str]:
        engine = sa.create_engine(url)
        try:
            return {c["name"] for c in sa.inspect(engine).get_columns("audit_log")}
        finally:
            engine.dispose()

    assert "auth_method" in columns()
    downgrade(url, "0005_audit_auth_method-1")
    assert "auth_method" not in columns() and "0005_audit_auth_method" not in current_heads(url)
    upgrade(url)
    assert "auth_method" in columns()
