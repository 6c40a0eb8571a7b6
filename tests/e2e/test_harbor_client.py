"""The REST API through a real Harbor client: ``harborapi`` (PyPI) against a ``moorage serve`` process.

The issue-10 review ran harborapi 0.26.2 against Moorage: 22 of 26 calls passed. The missing ones
were ``GET /users/search`` (caught by ``/users/{user_id}``: 400), ``GET /projects/{p}/summary`` and
``GET /search``; these run here through the client, with a few calls that already worked, and
with the visibility a non-member must get, and the quota calls (lifecycle issue).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from harborapi import HarborAsyncClient
from harborapi.exceptions import NotFound, Unauthorized
from harborapi.models import ProjectReq, QuotaUpdateReq, ResourceList, UserCreationReq

from tests.e2e.identity_helpers import ADMIN_PASSWORD, PASSWORD, start_token_moorage, uid
from tests.e2e.servers import RegistryProcess
from tests.integration.oci_client import push_image


@pytest.fixture(scope="module")
def harbor_like(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    reg = start_token_moorage(tmp_path_factory.mktemp("harborapi"), label="harborapi",
                              extra_env={"MOORAGE_HTTP__WORKERS": "1"})
    try:
        yield reg
    finally:
        reg.stop()


def _client(reg: RegistryProcess, username: str, secret: str) -> HarborAsyncClient:
    return HarborAsyncClient(url=f"{reg.url}/api/v2.0", username=username, secret=secret, retry=None, timeout=30)


@pytest.fixture
async def admin(harbor_like: RegistryProcess) -> AsyncIterator[HarborAsyncClient]:
    client = _client(harbor_like, "admin", ADMIN_PASSWORD)
    yield client
    await client.client.aclose()


async def _user(admin: HarborAsyncClient, prefix: str) -> str:
    name = uid(prefix)
    await admin.create_user(UserCreationReq(username=name, password=PASSWORD, email=f"{name}@example.com",
                                            realname=name))
    return name


async def _push(reg: RegistryProcess, repository: str, username: str, password: str) -> None:
    async with httpx.AsyncClient(base_url=reg.url, auth=(username, password), timeout=30) as http:
        await push_image(http, repository, "v1", [repository.encode()])


async def test_users_search_and_members(admin: HarborAsyncClient, harbor_like: RegistryProcess) -> None:
    prefix = uid("hs")
    alice = await _user(admin, f"{prefix}a")
    bob = await _user(admin, f"{prefix}b")
    found = await admin.search_users_by_username(prefix)
    assert sorted(u.username or "" for u in found) == sorted([alice, bob])
    assert all(u.user_id for u in found)
    assert await admin.search_users_by_username(uid("nobody")) == []
    project = uid("hp")
    await admin.create_project(ProjectReq(project_name=project, public=False))
    await admin.add_project_member_user(project, alice, 2)
    members = await admin.get_project_members(project)
    assert {m.entity_name for m in members} == {"admin", alice}
    as_alice = _client(harbor_like, alice, PASSWORD)
    try:  # any logged-in user may search (adding members needs it), as in Harbor
        assert [u.username for u in await as_alice.search_users_by_username(bob)] == [bob]
        assert (await as_alice.get_current_user()).username == alice
    finally:
        await as_alice.client.aclose()


async def test_project_summary(admin: HarborAsyncClient, harbor_like: RegistryProcess) -> None:
    project = uid("hp")
    await admin.create_project(ProjectReq(project_name=project, public=False))
    developer = await _user(admin, "dev")
    guest = await _user(admin, "guest")
    await admin.add_project_member_user(project, developer, 2)
    await admin.add_project_member_user(project, guest, 3)
    await _push(harbor_like, f"{project}/one", "admin", ADMIN_PASSWORD)
    await _push(harbor_like, f"{project}/two", developer, PASSWORD)
    summary = await admin.get_project_summary(project)
    assert (summary.repo_count, summary.project_admin_count, summary.developer_count, summary.guest_count,
            summary.maintainer_count, summary.limited_guest_count) == (2, 1, 1, 1, 0, 0)
    by_id = await admin.get_project_summary((await admin.get_project(project)).project_id or 0)
    assert by_id.repo_count == 2
    outsider = await _user(admin, "out")
    as_outsider = _client(harbor_like, outsider, PASSWORD)
    try:
        with pytest.raises(NotFound):  # a private project the caller cannot see: as if missing
            await as_outsider.get_project_summary(project)
        with pytest.raises(NotFound):
            await as_outsider.get_project_summary(uid("missing"))
    finally:
        await as_outsider.client.aclose()
    wrong = _client(harbor_like, developer, "Wrong-passw0rd")  # harborapi has no anonymous mode
    try:
        with pytest.raises(Unauthorized):
            await wrong.get_project_summary(project)
    finally:
        await wrong.client.aclose()


async def test_search_respects_visibility(admin: HarborAsyncClient, harbor_like: RegistryProcess) -> None:
    word = uid("srch")
    private, public = f"{word}-private", f"{word}-public"
    await admin.create_project(ProjectReq(project_name=private, public=False))
    await admin.create_project(ProjectReq(project_name=public, public=True))
    await _push(harbor_like, f"{private}/app", "admin", ADMIN_PASSWORD)
    await _push(harbor_like, f"{public}/app", "admin", ADMIN_PASSWORD)
    await _push(harbor_like, f"{public}/tools/{word}-cli", "admin", ADMIN_PASSWORD)

    everything = await admin.search(word)
    assert sorted(p.name or "" for p in everything.project or []) == [private, public]
    repositories = {r.repository_name: r for r in everything.repository or []}
    assert set(repositories) == {f"{private}/app", f"{public}/app", f"{public}/tools/{word}-cli"}
    found = repositories[f"{public}/app"]
    assert found.project_name == public and found.project_public is True and found.artifact_count == 1
    assert found.project_id == (await admin.get_project(public)).project_id

    outsider = await _user(admin, "out")
    as_outsider = _client(harbor_like, outsider, PASSWORD)
    try:
        seen = await as_outsider.search(word)
        assert [p.name for p in seen.project or []] == [public]
        assert sorted(r.repository_name or "" for r in seen.repository or []) == [
            f"{public}/app", f"{public}/tools/{word}-cli"]
        by_repository = await as_outsider.search(f"{word}-cli")
        assert [r.repository_name for r in by_repository.repository or []] == [f"{public}/tools/{word}-cli"]
        assert (await as_outsider.search(private)).repository == []
    finally:
        await as_outsider.client.aclose()


async def test_calls_that_already_worked(admin: HarborAsyncClient, harbor_like: RegistryProcess) -> None:
    project = uid("hp")
    await admin.create_project(ProjectReq(project_name=project, public=True))
    await _push(harbor_like, f"{project}/app", "admin", ADMIN_PASSWORD)
    assert (await admin.get_current_user()).username == "admin"
    assert project in [p.name for p in await admin.get_projects(name=project)]
    assert [r.name for r in await admin.get_repositories(project)] == [f"{project}/app"]
    artifacts = await admin.get_artifacts(project, "app")
    assert len(artifacts) == 1 and artifacts[0].digest and artifacts[0].digest.startswith("sha256:")
    logs = await admin.get_audit_logs(page_size=100)
    assert any(log.resource == project and log.operation == "create" for log in logs)


def _root(model: Any) -> dict[str, Any]:
    """The map inside one of harborapi's root models (``QuotaRefObject``, ``ResourceList``)."""
    assert model is not None
    return dict(model.root or {})


async def test_quotas(admin: HarborAsyncClient, harbor_like: RegistryProcess) -> None:
    """Harbor's quota calls: a project created with ``storage_limit``, listed by reference, raised, used."""
    name = uid("hq")
    await admin.create_project(ProjectReq(project_name=name, public=False, storage_limit=4096))
    project = await admin.get_project(name)
    [quota] = await admin.get_quotas(reference="project", reference_id=str(project.project_id))
    assert _root(quota.ref)["name"] == name
    assert _root(quota.hard)["storage"] == 4096
    assert _root(quota.used)["storage"] == 0
    assert quota.id is not None
    await admin.update_quota(quota.id, QuotaUpdateReq(hard=ResourceList(root={"storage": 1024 * 1024})))
    await _push(harbor_like, f"{name}/app", "admin", ADMIN_PASSWORD)
    after = await admin.get_quota(quota.id)
    assert _root(after.hard)["storage"] == 1024 * 1024
    assert 0 < _root(after.used)["storage"] < 4096
    summary = await admin.get_project_summary(name)
    assert summary.quota is not None
    assert _root(summary.quota.hard)["storage"] == 1024 * 1024
    assert _root(summary.quota.used)["storage"] == _root(after.used)["storage"]
