"""User groups through a real Harbor client (``harborapi``) against ``moorage serve`` with an LDAP source:
``/usergroups``, ``/ldap/groups/search`` and group members of projects in Harbor's shapes, and a
directory user whose rights come from the group."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from harborapi import HarborAsyncClient
from harborapi.models import ProjectReq, UserGroup

from tests.e2e.identity_helpers import ADMIN_PASSWORD, start_token_moorage, uid
from tests.e2e.servers import RegistryProcess
from tests.services.ldap import Directory

LDAP_PASSWORD = "Directory-pass1"


@pytest.fixture(scope="module")
def ldap_harbor(tmp_path_factory: pytest.TempPathFactory, slapd: Directory) -> Iterator[RegistryProcess]:
    reg = start_token_moorage(tmp_path_factory.mktemp("harbor-groups"), label="harbor-groups",
                              extra_env={**slapd.settings(), "MOORAGE_HTTP__WORKERS": "1"})
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture
async def admin(ldap_harbor: RegistryProcess) -> AsyncIterator[HarborAsyncClient]:
    client = HarborAsyncClient(url=f"{ldap_harbor.url}/api/v2.0", username="admin", secret=ADMIN_PASSWORD,
                               retry=None, timeout=30)
    yield client
    await client.client.aclose()


async def test_usergroups_and_group_members_through_harborapi(
    admin: HarborAsyncClient, ldap_harbor: RegistryProcess, slapd: Directory, tmp_path: Path
) -> None:
    user, cn = uid("hg"), uid("team")
    slapd.add_user(user, LDAP_PASSWORD)
    dn = slapd.add_group(cn, user)

    found = await admin.search_ldap_groups(group_name=cn)
    assert [(g.group_name, g.ldap_group_dn, g.id) for g in found] == [(cn, dn, 0)]  # not mapped yet
    location = await admin.create_usergroup(UserGroup(group_name=cn, group_type=1, ldap_group_dn=dn))
    gid = int(location.rsplit("/", 1)[1])
    assert (await admin.search_ldap_groups(group_dn=dn))[0].id == gid
    group = await admin.get_usergroup(gid)
    assert (group.group_name, group.group_type, group.ldap_group_dn) == (cn, 1, dn)
    await admin.update_usergroup(gid, UserGroup(group_name=f"{cn} renamed"))
    assert [g.id for g in await admin.search_usergroups(f"{cn} renamed")] == [gid]
    assert gid in [g.id for g in await admin.get_usergroups(limit=None)]

    project = uid("hgp")
    await admin.create_project(ProjectReq(project_name=project, public=False))
    await admin.add_project_member_group(project, dn, 2)  # by DN, as harborapi sends it
    members = await admin.get_project_members(project)
    entity = next(m for m in members if m.entity_type == "g")
    assert (entity.entity_id, entity.entity_name, entity.role_name) == (gid, f"{cn} renamed", "developer")

    async with httpx.AsyncClient(base_url=ldap_harbor.url, timeout=30) as http:
        r = await http.get("/service/token", params={"service": "moorage",
                                                      "scope": f"repository:{project}/app:pull,push"},
                           auth=(user, LDAP_PASSWORD))
        assert r.status_code == 200
        start = await http.post(f"/v2/{project}/app/blobs/uploads/",
                                headers={"Authorization": f"Bearer {r.json()['token']}"})
        assert start.status_code == 202  # push allowed through the group

    await admin.delete_usergroup(gid)
    assert [m.entity_type for m in await admin.get_project_members(project)] == ["u"]  # the creator only
