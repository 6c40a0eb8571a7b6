"""Rights changed on one node bind existing tokens on another within the policy's cache time (issue 10).

Before: a removed developer kept pulling, pushing blobs and putting manifests with the token
issued before the removal, until it expired 30 minutes later. Two in-process nodes share one
database here; every change is made on node A, every token is used on node B, which had the
old rights cached from a request just before the change.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.test_identity_helpers import Idp, basic, bearer, make_idp


@pytest.fixture
async def nodes(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Idp, Idp]]:
    async for a in make_idp(database_url, tmp_path / "a"):
        async for b in make_idp(database_url, tmp_path / "b"):
            yield a, b


async def _upload(node: Idp, repository: str, token: str) -> int:
    r = await node.http.post(f"/v2/{repository}/blobs/uploads/", headers=bearer(token))
    return r.status_code


async def test_member_removal_role_change_user_delete_robot_disable_and_admin_revocation_reach_the_other_node(
    nodes: tuple[Idp, Idp],
) -> None:
    a, b = nodes
    project = await a.project()
    repository = f"{project}/app"
    scope = f"repository:{repository}:pull,push"
    removed, removed_auth = await a.user_in(project, 2)
    lowered, lowered_auth = await a.user_in(project, 2)
    deleted, deleted_auth = await a.user_in(project, 2)
    robot_id, robot_name, robot_secret = await a.robot(project, ["pull", "push"])
    boss, boss_auth = await a.user()
    boss_id = next(u["user_id"] for u in (await a.api("GET", "/users", a.admin, params={"username": boss})).json())
    assert (await a.api("PUT", f"/users/{boss_id}/sysadmin", a.admin, json={"sysadmin_flag": True})).status_code == 200
    tokens = {
        "removed": (await a.token(removed_auth, scope))["token"],
        "lowered": (await a.token(lowered_auth, scope))["token"],
        "deleted": (await a.token(deleted_auth, scope))["token"],
        "robot": (await a.token(basic(robot_name, robot_secret), scope))["token"],
        "demoted": (await a.token(boss_auth, scope))["token"],
    }
    for token in tokens.values():  # node B reads (and caches) today's rights
        assert await _upload(b, repository, token) == 202

    members = (await a.api("GET", f"/projects/{project}/members", a.admin, params={"page_size": 100})).json()
    member_id = {m["entity_name"]: m["id"] for m in members}
    assert (await a.api("DELETE", f"/projects/{project}/members/{member_id[removed]}", a.admin)).status_code == 200
    r = await a.api("PUT", f"/projects/{project}/members/{member_id[lowered]}", a.admin, json={"role_id": 3})
    assert r.status_code == 200
    user_id = next(u["user_id"] for u in (await a.api("GET", "/users", a.admin, params={"username": deleted})).json())
    assert (await a.api("DELETE", f"/users/{user_id}", a.admin)).status_code == 200
    assert (await a.api("PUT", f"/robots/{robot_id}", a.admin, json={"disable": True})).status_code == 200
    assert (await a.api("PUT", f"/users/{boss_id}/sysadmin", a.admin, json={"sysadmin_flag": False})).status_code == 200

    # Node A (which made the changes) refuses at once ...
    assert {name: await _upload(a, repository, token) for name, token in tokens.items()} == {
        "removed": 403, "lowered": 403, "deleted": 401, "robot": 401, "demoted": 403,
    }
    # ... and node B once its cache of the old rights has run out, whatever the tokens say.
    policy = b.services.identity.policy  # type: ignore[union-attr]
    await asyncio.sleep(policy.cache_seconds)
    assert {name: await _upload(b, repository, token) for name, token in tokens.items()} == {
        "removed": 403, "lowered": 403, "deleted": 401, "robot": 401, "demoted": 403,
    }
    r = await b.http.post(f"/v2/{repository}/blobs/uploads/", headers=bearer(tokens["lowered"]))
    assert f"user '{lowered}' has role guest in project '{project}', which does not allow push" in r.text
    r = await b.http.get(f"/v2/{repository}/tags/list", headers=bearer(tokens["removed"]))
    assert r.status_code == 403 and "does not exist or you are not a member of it" in r.text
