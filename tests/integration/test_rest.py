"""The management REST API on SQLite and PostgreSQL: every endpoint and its permission boundary."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest

from moorage.auth.policy import Policy
from tests.integration.oci_client import push_image
from tests.integration.test_identity_helpers import ADMIN_PASSWORD, PASSWORD, Idp, basic, make_idp, uid


@pytest.fixture
async def idp(database_url: str, tmp_path: Path) -> AsyncIterator[Idp]:
    async for value in make_idp(database_url, tmp_path):
        yield value


def message(response: object) -> str:
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"errors"}, body
    return str(body["errors"][0]["message"])


async def test_openapi_document_and_health_stay_served(idp: Idp) -> None:
    doc = (await idp.http.get("/api/v2.0/openapi.json")).json()
    assert "/projects" in doc["paths"] and "/robots/{robot_id}" in doc["paths"]
    assert (await idp.http.get("/api/v2.0/ping")).status_code == 200
    assert (await idp.api("GET", "/systeminfo")).json()["auth_mode"] == "db_auth"


async def test_projects_crud_and_visibility(idp: Idp) -> None:
    name = uid("crud")
    r = await idp.api("POST", "/projects", idp.admin, json={"project_name": name, "metadata": {"public": "false"}})
    assert r.status_code == 201 and r.headers["location"].endswith("/projects/" + r.headers["location"].split("/")[-1])
    assert (await idp.api("POST", "/projects", idp.admin, json={"project_name": name})).status_code == 409
    assert (await idp.api("HEAD", f"/projects?project_name={name}", idp.admin)).status_code == 200
    assert (await idp.api("HEAD", "/projects?project_name=nope-x", idp.admin)).status_code == 404
    got = (await idp.api("GET", f"/projects/{name}", idp.admin)).json()
    assert got["metadata"] == {"public": "false"} and got["public"] is False and got["current_user_role_id"] == 1
    assert (await idp.api("GET", f"/projects/{got['project_id']}", idp.admin)).json()["name"] == name
    # invisible to anonymous (401) and to a non-member (404, without saying whether it exists)
    assert (await idp.api("GET", f"/projects/{name}")).status_code == 401
    _, outsider = await idp.user()
    r = await idp.api("GET", f"/projects/{name}", outsider)
    assert r.status_code == 404 and message(r) == Policy.hidden_message(name)
    listed = await idp.api("GET", "/projects", outsider, params={"name": name})
    assert listed.json() == [] and listed.headers["x-total-count"] == "0"
    # public: everyone sees it
    assert (await idp.api("PUT", f"/projects/{name}", idp.admin, json={"metadata": {"public": "true"}})).status_code == 200
    assert (await idp.api("GET", f"/projects/{name}")).json()["public"] is True
    # only projectAdmin/sysadmin may change or delete
    assert (await idp.api("PUT", f"/projects/{name}", outsider, json={"public": False})).status_code == 403
    assert (await idp.api("DELETE", f"/projects/{name}", outsider)).status_code == 403
    assert (await idp.api("DELETE", f"/projects/{name}", idp.admin)).status_code == 200
    assert (await idp.api("GET", f"/projects/{name}", idp.admin)).status_code == 404


async def test_project_creation_rules(idp: Idp) -> None:
    _, user = await idp.user()
    name = uid("mine")
    assert (await idp.api("POST", "/projects", user, json={"project_name": name})).status_code == 201
    assert (await idp.api("GET", f"/projects/{name}", user)).json()["current_user_role_id"] == 1
    assert (await idp.api("POST", "/projects", json={"project_name": uid("anon")})).status_code == 401
    r = await idp.api("POST", "/projects", user, json={"project_name": "Bad Name"})
    assert r.status_code == 400 and "lower-case" in message(r)
    r = await idp.api("POST", "/projects", user, json={"project_name": "x", "metadata": {"public": "maybe"}})
    assert r.status_code == 400


async def test_pagination_headers(idp: Idp) -> None:
    prefix = uid("pg")
    for i in range(3):
        assert (await idp.api("POST", "/projects", idp.admin, json={"project_name": f"{prefix}-{i}"})).status_code == 201
    r = await idp.api("GET", "/projects", idp.admin, params={"name": prefix, "page": 1, "page_size": 2})
    assert r.headers["x-total-count"] == "3" and len(r.json()) == 2
    assert 'rel="next"' in r.headers["link"] and "page=2" in r.headers["link"]
    r = await idp.api("GET", "/projects", idp.admin, params={"name": prefix, "page": 2, "page_size": 2})
    assert len(r.json()) == 1 and 'rel="prev"' in r.headers["link"] and 'rel="next"' not in r.headers["link"]
    assert (await idp.api("GET", "/projects", idp.admin, params={"page_size": 101})).status_code == 400


async def test_members(idp: Idp) -> None:
    project = await idp.project()
    guest_name, guest = await idp.user_in(project, 3)
    limited_name, limited = await idp.user_in(project, 5)
    other_name, _ = await idp.user()
    members = (await idp.api("GET", f"/projects/{project}/members", guest)).json()
    assert {m["entity_name"]: m["role_name"] for m in members} == {
        "admin": "projectAdmin", guest_name: "guest", limited_name: "limitedGuest"}, members
    assert (await idp.api("GET", f"/projects/{project}/members", limited)).status_code == 403
    r = await idp.api("POST", f"/projects/{project}/members", guest,
                      json={"role_id": 2, "member_user": {"username": other_name}})
    assert r.status_code == 403 and "needs the projectAdmin role" in message(r) and "has guest" in message(r)
    r = await idp.api("POST", f"/projects/{project}/members", idp.admin,
                      json={"role_id": 2, "member_user": {"username": other_name}})
    assert r.status_code == 201
    mid = int(r.headers["location"].rsplit("/", 1)[1])
    assert (await idp.api("GET", f"/projects/{project}/members/{mid}", guest)).json()["role_name"] == "developer"
    assert (await idp.api("PUT", f"/projects/{project}/members/{mid}", idp.admin, json={"role_id": 4})).status_code == 200
    assert (await idp.api("GET", f"/projects/{project}/members/{mid}", idp.admin)).json()["role_id"] == 4
    r = await idp.api("POST", f"/projects/{project}/members", idp.admin,
                      json={"role_id": 2, "member_user": {"username": other_name}})
    assert r.status_code == 409
    r = await idp.api("POST", f"/projects/{project}/members", idp.admin,
                      json={"role_id": 2, "member_user": {"username": "ghost-user"}})
    assert r.status_code == 404 and "create it first" in message(r)
    assert (await idp.api("DELETE", f"/projects/{project}/members/{mid}", idp.admin)).status_code == 200
    assert (await idp.api("GET", f"/projects/{project}/members/{mid}", idp.admin)).status_code == 404


async def test_users_and_passwords(idp: Idp) -> None:
    name, auth = await idp.user()
    me = (await idp.api("GET", "/users/current", auth)).json()
    assert me["username"] == name and me["sysadmin_flag"] is False
    uid_ = me["user_id"]
    assert (await idp.api("GET", "/users", auth)).status_code == 403
    listed = await idp.api("GET", "/users", idp.admin, params={"username": name})
    assert [u["username"] for u in listed.json()] == [name]
    assert (await idp.api("GET", f"/users/{uid_}", auth)).status_code == 200
    assert (await idp.api("GET", "/users/1", auth)).status_code in (403, 404)
    assert (await idp.api("PUT", f"/users/{uid_}", auth, json={"email": "a@b.c"})).status_code == 200
    assert (await idp.api("GET", f"/users/{uid_}", idp.admin)).json()["email"] == "a@b.c"
    r = await idp.api("POST", "/users", idp.admin, json={"username": name, "password": PASSWORD})
    assert r.status_code == 409
    r = await idp.api("POST", "/users", idp.admin, json={"username": uid("w"), "password": "weak"})
    assert r.status_code == 400 and "8 to 128" in message(r)
    r = await idp.api("POST", "/users", idp.admin, json={"username": "robot$x", "password": PASSWORD})
    assert r.status_code == 400
    # password: own change needs the old one; admin resets without
    r = await idp.api("PUT", f"/users/{uid_}/password", auth, json={"new_password": "N3w-passw0rd"})
    assert r.status_code == 400 and "old_password" in message(r)
    r = await idp.api("PUT", f"/users/{uid_}/password", auth, json={"old_password": "x", "new_password": "N3w-passw0rd"})
    assert r.status_code == 403
    r = await idp.api("PUT", f"/users/{uid_}/password", idp.admin, json={"new_password": "Adm1n-reset-pw"})
    assert r.status_code == 200
    assert (await idp.api("GET", "/users/current", basic(name, "Adm1n-reset-pw"))).status_code == 200
    # sysadmin flag
    assert (await idp.api("GET", "/users/current", auth)).status_code == 401  # the old password is gone
    auth = basic(name, "Adm1n-reset-pw")
    assert (await idp.api("PUT", f"/users/{uid_}/sysadmin", auth, json={"sysadmin_flag": True})).status_code == 403
    assert (await idp.api("PUT", f"/users/{uid_}/sysadmin", idp.admin, json={"sysadmin_flag": True})).status_code == 200
    assert (await idp.api("GET", "/users", basic(name, "Adm1n-reset-pw"))).status_code == 200
    assert (await idp.api("DELETE", f"/users/{uid_}", idp.admin)).status_code == 200
    assert (await idp.api("GET", f"/users/{uid_}", idp.admin)).status_code == 404
    admin_id = (await idp.api("GET", "/users/current", idp.admin)).json()["user_id"]
    assert (await idp.api("DELETE", f"/users/{admin_id}", idp.admin)).status_code == 403
    assert (await idp.api("GET", "/users/current")).status_code == 401


async def test_robots(idp: Idp) -> None:
    project = await idp.project()
    _, maintainer = await idp.user_in(project, 4)
    _, developer = await idp.user_in(project, 2)
    body = {"name": uid("bot"), "level": "project", "duration": 30, "permissions": [
        {"kind": "project", "namespace": project, "access": [{"resource": "repository", "action": "pull"}]}]}
    r = await idp.api("POST", "/robots", developer, json=body)
    assert r.status_code == 403 and "maintainer or projectAdmin" in message(r)
    before = int(time.time())
    r = await idp.api("POST", "/robots", maintainer, json=body)
    after = int(time.time())
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["name"] == f"robot${project}+{body['name']}" and created["secret"]
    # 30 days from the moment of creation (the bounds are the request's start and end, not a timing).
    thirty_days = 30 * 86400
    assert before + thirty_days <= created["expires_at"] <= after + thirty_days + 1, (before, created, after)
    robot_id = created["id"]
    got = (await idp.api("GET", f"/robots/{robot_id}", maintainer)).json()
    assert "secret" not in got and got["permissions"][0]["access"] == [{"resource": "repository", "action": "pull"}]
    project_id = (await idp.api("GET", f"/projects/{project}", idp.admin)).json()["project_id"]
    listed = await idp.api("GET", "/robots", maintainer, params={"project_id": project_id})
    assert [r["id"] for r in listed.json()] == [robot_id]
    assert (await idp.api("GET", "/robots", maintainer)).status_code == 403  # all robots: admins only
    # the robot's credentials work (pull), then a refreshed secret replaces the old one
    robot = basic(created["name"], created["secret"])
    assert (await idp.api("GET", f"/projects/{project}", robot)).status_code == 200
    new = (await idp.api("PATCH", f"/robots/{robot_id}", maintainer, json={})).json()["secret"]
    assert (await idp.api("GET", f"/projects/{project}", robot)).status_code == 401
    robot = basic(created["name"], new)
    assert (await idp.api("PUT", f"/robots/{robot_id}", maintainer, json={"disable": True})).status_code == 200
    r = await idp.api("GET", f"/projects/{project}", robot)
    assert r.status_code == 403 and "is disabled" in message(r)
    # a project robot cannot reach into another project; unknown actions are refused by name
    other = await idp.project()
    bad = {**body, "name": uid("bot"), "permissions": [
        {"kind": "project", "namespace": other, "access": [{"resource": "repository", "action": "pull"}]},
        {"kind": "project", "namespace": project, "access": [{"resource": "repository", "action": "pull"}]}]}
    assert (await idp.api("POST", "/robots", idp.admin, json=bad)).status_code == 400
    bad = {**body, "name": uid("bot"), "permissions": [
        {"kind": "project", "namespace": project, "access": [{"resource": "helm", "action": "read"}]}]}
    r = await idp.api("POST", "/robots", idp.admin, json=bad)
    assert r.status_code == 400 and "not supported" in message(r)
    # system robots: admins only, '*' reaches every project
    system = {"name": uid("sys"), "level": "system", "duration": -1, "permissions": [
        {"kind": "project", "namespace": "*", "access": [{"resource": "repository", "action": "pull"}]}]}
    assert (await idp.api("POST", "/robots", maintainer, json=system)).status_code == 403
    r = await idp.api("POST", "/robots", idp.admin, json=system)
    assert r.status_code == 201 and r.json()["name"] == f"robot${system['name']}" and r.json()["expires_at"] == -1
    assert (await idp.api("DELETE", f"/robots/{robot_id}", maintainer)).status_code == 200
    assert (await idp.api("GET", f"/robots/{robot_id}", idp.admin)).status_code == 404


async def test_repositories_artifacts_tags(idp: Idp) -> None:
    project = await idp.project()
    _, guest = await idp.user_in(project, 3)
    _, developer = await idp.user_in(project, 2)
    _, maintainer = await idp.user_in(project, 4)
    _, outsider = await idp.user()
    idp.http.headers.update(idp.admin)
    try:
        digest, _ = await push_image(idp.http, f"{project}/team/app", "v1", [b"rest-layer"])
        await idp.http.put(f"/v2/{project}/team/app/manifests/v2", content=(await idp.http.get(
            f"/v2/{project}/team/app/manifests/v1")).content,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    finally:
        del idp.http.headers["Authorization"]
    repo = quote(quote("team/app", safe=""), safe="")
    repos = (await idp.api("GET", f"/projects/{project}/repositories", guest)).json()
    assert [(r["name"], r["artifact_count"]) for r in repos] == [(f"{project}/team/app", 1)]
    assert (await idp.api("GET", f"/projects/{project}/repositories", outsider)).status_code == 404
    assert (await idp.api("GET", f"/projects/{project}/repositories/{repo}", guest)).json()["artifact_count"] == 1
    arts = (await idp.api("GET", f"/projects/{project}/repositories/{repo}/artifacts", guest)).json()
    assert arts[0]["digest"] == digest and {t["name"] for t in arts[0]["tags"]} == {"v1", "v2"}
    art = (await idp.api("GET", f"/projects/{project}/repositories/{repo}/artifacts/v1", guest)).json()
    assert art["digest"] == digest and art["references"] == []
    tags = await idp.api("GET", f"/projects/{project}/repositories/{repo}/artifacts/{digest}/tags", guest)
    assert [t["name"] for t in tags.json()] == ["v1", "v2"] and tags.headers["x-total-count"] == "2"
    # deletes: maintainer and above (developer may push but not delete)
    path = f"/projects/{project}/repositories/{repo}/artifacts/{digest}/tags/v2"
    r = await idp.api("DELETE", path, developer)
    assert r.status_code == 403 and "may not delete" in message(r)
    assert (await idp.api("DELETE", path, maintainer)).status_code == 200
    assert (await idp.api("DELETE", path, maintainer)).status_code == 404
    assert (await idp.api("GET", f"/projects/{project}/repositories/{repo}/artifacts/v9", guest)).status_code == 404
    r = await idp.api("DELETE", f"/projects/{project}/repositories/{repo}/artifacts/v1", maintainer)
    assert r.status_code == 200
    assert (await idp.api("GET", f"/projects/{project}/repositories/{repo}/artifacts", guest)).json() == []
    # a project with repositories cannot be deleted; an emptied one can
    idp.http.headers.update(idp.admin)
    try:
        await push_image(idp.http, f"{project}/other", "v1", [b"other"])
    finally:
        del idp.http.headers["Authorization"]
    r = await idp.api("DELETE", f"/projects/{project}", idp.admin)
    assert r.status_code == 412 and "delete them first" in message(r)
    assert (await idp.api("DELETE", f"/projects/{project}/repositories/other", guest)).status_code == 403
    assert (await idp.api("DELETE", f"/projects/{project}/repositories/other", maintainer)).status_code == 200
    assert (await idp.api("GET", f"/projects/{project}/repositories", guest)).json() == []


async def test_audit_log_records_changes_and_registry_operations(idp: Idp) -> None:
    project = await idp.project()
    name, developer = await idp.user_in(project, 2)
    limited_name, limited = await idp.user_in(project, 5)
    idp.http.headers.update(developer)
    try:
        _digest, _ = await push_image(idp.http, f"{project}/audited", "v1", [b"audit"])
        assert (await idp.http.get(f"/v2/{project}/audited/manifests/v1")).status_code == 200
    finally:
        del idp.http.headers["Authorization"]
    logs = (await idp.api("GET", f"/projects/{project}/logs", developer)).json()
    ops = sorted((e["username"], e["operation"], e["resource_type"], e["resource"]) for e in logs)
    assert ops == sorted([
        (name, "push", "artifact", f"{project}/audited:v1"), (name, "pull", "artifact", f"{project}/audited:v1"),
        ("admin", "create", "project", project), ("admin", "create", "project_member", f"{project}:{name}"),
        ("admin", "create", "project_member", f"{project}:{limited_name}"),
    ])
    assert (await idp.api("GET", f"/projects/{project}/logs", limited)).status_code == 403
    mine = (await idp.api("GET", "/audit-logs", developer, params={"username": name})).json()
    assert sorted((e["operation"], e["project"]) for e in mine if e["resource_type"] == "artifact") == [
        ("pull", project), ("push", project)]
    assert all(e["project"] == project for e in mine)
    # Filtered to this test's project (the database is shared): exactly its three "create" rows.
    everything = await idp.api("GET", "/audit-logs", idp.admin,
                               params={"operation": "create", "resource": project, "page_size": 2})
    assert everything.headers["x-total-count"] == "3" and len(everything.json()) == 2
    assert (await idp.api("GET", "/audit-logs")).status_code == 401


async def test_bearer_token_authenticates_rest_calls(idp: Idp) -> None:
    token = (await idp.token(basic("admin", ADMIN_PASSWORD), service="moorage-api"))["token"]
    r = await idp.api("GET", "/users/current", {"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["username"] == "admin"
    registry_token = (await idp.token(basic("admin", ADMIN_PASSWORD)))["token"]
    r = await idp.api("GET", "/users/current", {"Authorization": f"Bearer {registry_token}"})
    assert r.status_code == 401 and "good for /v2 only" in message(r)
    r = await idp.http.get("/v2/", headers={"Authorization": f"Bearer {token}"})  # and the API token is no registry token
    assert r.status_code == 401 and "management API token" in r.text
    r = await idp.api("GET", "/users/current", {"Authorization": "Bearer junk"})
    assert r.status_code == 401 and "not a JWT" in message(r)
    r = await idp.api("GET", "/users/current", {"Authorization": "Digest x"})
    assert r.status_code == 401 and "not supported" in message(r)
