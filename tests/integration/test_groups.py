"""User groups (``/usergroups``, Harbor's shapes) and groups as project members (``member_group``):
a user's rights are the union of their own role and their groups' roles, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest

from tests.integration.test_identity_helpers import Idp, make_idp, uid


@pytest.fixture
async def idp(database_url: str, tmp_path: Path) -> AsyncIterator[Idp]:
    async for value in make_idp(database_url, tmp_path):
        yield value


def _granted(token: dict[str, object], repository: str) -> list[str]:
    claims = jwt.decode(str(token["token"]), options={"verify_signature": False})
    return next((a["actions"] for a in claims["access"] if a["name"] == repository), [])


async def _local_group(idp: Idp) -> int:
    r = await idp.api("POST", "/usergroups", idp.admin, json={"group_name": f"team {uid('g')}", "group_type": 2})
    assert r.status_code == 201, r.text
    return int(r.headers["Location"].rsplit("/", 1)[1])


async def _user_id(idp: Idp, name: str) -> int:
    r = await idp.api("GET", "/users", idp.admin, params={"username": name})
    return int(next(u["user_id"] for u in r.json() if u["username"] == name))


async def test_usergroups_crud_in_harbor_shapes(idp: Idp) -> None:
    dn = f"cn={uid('dev')},ou=Groups,dc=example,dc=org"
    r = await idp.api("POST", "/usergroups", idp.admin, json={"group_type": 1, "ldap_group_dn": dn})
    assert r.status_code == 201, r.text
    gid = int(r.headers["Location"].rsplit("/", 1)[1])
    r = await idp.api("GET", f"/usergroups/{gid}", idp.admin)
    assert r.json() == {"id": gid, "group_name": dn.split(",")[0][3:], "group_type": 1, "ldap_group_dn": dn}
    # the same DN written differently is the same group
    same = dn.upper().replace(",", ", ")
    r = await idp.api("POST", "/usergroups", idp.admin, json={"group_type": 1, "ldap_group_dn": same})
    assert r.status_code == 409 and f"id {gid}" in r.text
    r = await idp.api("GET", "/usergroups", idp.admin, params={"ldap_group_dn": same})
    assert [g["id"] for g in r.json()] == [gid] and r.headers["X-Total-Count"] == "1"
    r = await idp.api("PUT", f"/usergroups/{gid}", idp.admin, json={"group_name": "Domain Developers"})
    assert r.status_code == 200
    _, auth = await idp.user()
    r = await idp.api("GET", "/usergroups/search", auth, params={"groupname": "Domain Dev"})
    assert {"id": gid, "group_name": "Domain Developers", "group_type": 1} in r.json()
    assert (await idp.api("GET", "/usergroups", auth)).status_code == 403  # listing is for admins
    assert (await idp.api("DELETE", f"/usergroups/{gid}", idp.admin)).status_code == 200
    assert (await idp.api("GET", f"/usergroups/{gid}", idp.admin)).status_code == 404


@pytest.mark.parametrize("body, field", [
    ({"group_type": 1, "group_name": "x"}, "ldap_group_dn"),
    ({"group_type": 1, "ldap_group_dn": "not a dn"}, "ldap_group_dn"),
    ({"group_type": 2, "group_name": "two  spaces"}, "group name"),
    ({"group_type": 2, "group_name": "tab\there"}, "group name"),
    ({"group_type": 2, "group_name": "x", "ldap_group_dn": "cn=x,dc=y"}, "ldap_group_dn"),
    ({"group_type": 4, "group_name": "x"}, "group_type"),
])
async def test_bad_groups_are_refused_naming_the_field(idp: Idp, body: dict[str, object], field: str) -> None:
    before = (await idp.api("GET", "/usergroups", idp.admin)).headers["X-Total-Count"]
    r = await idp.api("POST", "/usergroups", idp.admin, json=body)
    assert r.status_code == 400 and field in r.json()["errors"][0]["message"], r.text
    assert (await idp.api("GET", "/usergroups", idp.admin)).headers["X-Total-Count"] == before


async def test_rights_are_the_union_of_own_and_group_roles(idp: Idp) -> None:
    project = await idp.project()
    repo = f"{project}/app"
    name, auth = await idp.user_in(project, 3)  # guest on their own
    gid = await _local_group(idp)
    r = await idp.api("POST", f"/projects/{project}/members", idp.admin,
                      json={"role_id": 2, "member_group": {"id": gid}})
    assert r.status_code == 201, r.text
    mid = int(r.headers["Location"].rsplit("/", 1)[1])
    assert _granted(await idp.token(auth, f"repository:{repo}:pull,push"), repo) == ["pull"]
    uid_ = await _user_id(idp, name)
    assert (await idp.api("POST", f"/usergroups/{gid}/members", idp.admin, json={"user_id": uid_})).status_code == 201
    assert _granted(await idp.token(auth, f"repository:{repo}:pull,push"), repo) == ["pull", "push"]
    r = await idp.api("GET", f"/projects/{project}", auth)
    assert r.json()["current_user_role_id"] == 2  # the strongest of guest and developer

    members = (await idp.api("GET", f"/projects/{project}/members", idp.admin)).json()
    group = next(m for m in members if m["entity_type"] == "g")
    assert group["id"] == mid and group["entity_id"] == gid and group["role_name"] == "developer"
    assert (await idp.api("PUT", f"/projects/{project}/members/{mid}", idp.admin, json={"role_id": 4})).status_code == 200
    assert _granted(await idp.token(auth, f"repository:{repo}:pull,push,delete"), repo) == ["pull", "push", "delete"]

    # out of the group: back to their own role at once on this node
    assert (await idp.api("DELETE", f"/usergroups/{gid}/members/{uid_}", idp.admin)).status_code == 200
    assert _granted(await idp.token(auth, f"repository:{repo}:pull,push"), repo) == ["pull"]
    # a private project seen only through a group is listed, and unlisted once the group is gone
    other = await idp.project()
    await idp.api("POST", f"/usergroups/{gid}/members", idp.admin, json={"user_id": uid_})
    await idp.api("POST", f"/projects/{other}/members", idp.admin, json={"role_id": 3, "member_group": {"id": gid}})
    assert other in [p["name"] for p in (await idp.api("GET", "/projects", auth, params={"name": other})).json()]
    assert (await idp.api("DELETE", f"/usergroups/{gid}", idp.admin)).status_code == 200
    assert (await idp.api("GET", "/projects", auth, params={"name": other})).json() == []
    assert (await idp.api("GET", f"/projects/{project}/members/{mid}", idp.admin)).status_code == 404


async def test_member_requests_need_exactly_one_entity(idp: Idp) -> None:
    project = await idp.project()
    for body in ({"role_id": 2}, {"role_id": 2, "member_user": {"username": "admin"}, "member_group": {"id": 1}}):
        r = await idp.api("POST", f"/projects/{project}/members", idp.admin, json=body)
        assert r.status_code == 400 and "exactly one of member_user" in r.text
    dn = f"cn={uid('ops')},ou=groups,dc=example,dc=org"
    body = {"role_id": 3, "member_group": {"group_type": 1, "ldap_group_dn": dn}}
    assert (await idp.api("POST", f"/projects/{project}/members", idp.admin, json=body)).status_code == 201
    r = await idp.api("POST", f"/projects/{project}/members", idp.admin, json=body)  # same group again
    assert r.status_code == 409 and "already a member" in r.text
    r = await idp.api("GET", "/usergroups", idp.admin, params={"ldap_group_dn": dn})
    assert len(r.json()) == 1  # the group was created once, by its DN


async def test_ldap_group_search_without_a_directory_is_a_precondition(idp: Idp) -> None:
    r = await idp.api("GET", "/ldap/groups/search", idp.admin, params={"groupname": "dev"})
    assert r.status_code == 412 and "set auth.ldap" in r.text
