"""Deletes that leave nothing half done: repositories, projects (also re-created with the same name), tags.

Token mode on SQLite and PostgreSQL. "Reachable" is checked through every door a client has:
``/v2`` by tag, by digest, blobs, tag list and catalog, and the REST API.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from moorage.errors import RegistryError
from moorage.registry.digests import parse_digest
from tests.integration.manifest_wrappers import ChangeBeforeDelete
from tests.integration.oci_client import digest_of, push_blob, push_image
from tests.integration.test_identity_helpers import Idp, make_idp


@pytest.fixture
async def idp(database_url: str, tmp_path: Path) -> AsyncIterator[Idp]:
    async for value in make_idp(database_url, tmp_path):
        yield value


async def _as_admin(idp: Idp) -> httpx.AsyncClient:
    idp.http.headers.update(idp.admin)
    return idp.http


async def _catalog(idp: Idp) -> list[str]:
    names: list[str] = []
    last = ""
    while True:  # page through: the session's database is shared with other tests
        r = await idp.http.get("/v2/_catalog", params={"n": 1000, "last": last}, headers=idp.admin)
        assert r.status_code == 200, r.text
        page = r.json()["repositories"]
        names += page
        if "link" not in r.headers:
            return names
        last = page[-1]


async def _nothing_of(idp: Idp, project: str, name: str, digest: str, layers: list[str]) -> None:
    """Every door answers "not found" for ``name``, ``digest`` (tag ``v1``) and ``layers``."""
    auth = idp.admin
    assert (await idp.http.get(f"/v2/{name}/manifests/v1", headers=auth)).status_code == 404
    assert (await idp.http.get(f"/v2/{name}/manifests/{digest}", headers=auth)).status_code == 404
    assert (await idp.http.head(f"/v2/{name}/manifests/{digest}", headers=auth)).status_code == 404
    for layer in layers:
        assert (await idp.http.head(f"/v2/{name}/blobs/{layer}", headers=auth)).status_code == 404, layer
        assert (await idp.http.get(f"/v2/{name}/blobs/{layer}", headers=auth)).status_code == 404, layer
    assert (await idp.http.get(f"/v2/{name}/tags/list", headers=auth)).status_code == 404
    assert name not in await _catalog(idp)
    repo = quote(quote(name.split("/", 1)[1], safe=""), safe="")
    assert (await idp.api("GET", f"/projects/{project}/repositories/{repo}", auth)).status_code == 404
    assert (await idp.api("GET", f"/projects/{project}/repositories", auth)).json() == []
    assert (await idp.api("GET", f"/projects/{project}", auth)).json()["repo_count"] == 0


async def test_deleted_repository_serves_nothing_and_a_new_push_starts_empty(idp: Idp) -> None:
    project = await idp.project()
    name = f"{project}/team/app"
    layers = [b"old-layer-one", b"old-layer-two"]
    http = await _as_admin(idp)
    try:
        digest, _ = await push_image(http, name, "v1", layers)
        assert (await http.head(f"/v2/{name}/blobs/{digest_of(layers[0])}")).status_code == 200
    finally:
        del http.headers["Authorization"]
    repo = quote(quote("team/app", safe=""), safe="")
    assert (await idp.api("DELETE", f"/projects/{project}/repositories/{repo}", idp.admin)).status_code == 200
    await _nothing_of(idp, project, name, digest, [digest_of(layer) for layer in layers])
    assert (await idp.api("DELETE", f"/projects/{project}/repositories/{repo}", idp.admin)).status_code == 404

    http = await _as_admin(idp)
    try:
        new_digest, _ = await push_image(http, name, "v2", [b"new-layer"])
        assert (await http.get(f"/v2/{name}/manifests/{new_digest}")).status_code == 200
        assert (await http.get(f"/v2/{name}/manifests/{digest}")).status_code == 404
        assert (await http.head(f"/v2/{name}/blobs/{digest_of(layers[0])}")).status_code == 404
        assert (await http.get(f"/v2/{name}/tags/list")).json()["tags"] == ["v2"]
    finally:
        del http.headers["Authorization"]


async def test_project_deleted_and_created_again_inherits_nothing(idp: Idp) -> None:
    project = await idp.project()
    member, member_auth = await idp.user_in(project, 2)
    _, robot_name, _ = await idp.robot(project, ["pull"])
    layers = [b"project-layer"]
    http = await _as_admin(idp)
    try:
        digest, _ = await push_image(http, f"{project}/app", "v1", layers)
        # a repository that holds only blobs does not block the project delete, and goes with it
        blob = await push_blob(http, f"{project}/blobs-only", b"only a blob")
    finally:
        del http.headers["Authorization"]
    r = await idp.api("DELETE", f"/projects/{project}", idp.admin)
    assert r.status_code == 412 and f"{project}/app" in r.json()["errors"][0]["message"]
    assert (await idp.api("DELETE", f"/projects/{project}/repositories/app", idp.admin)).status_code == 200
    assert (await idp.api("DELETE", f"/projects/{project}", idp.admin)).status_code == 200

    r = await idp.api("POST", "/projects", idp.admin, json={"project_name": project, "public": False})
    assert r.status_code == 201, r.text
    await _nothing_of(idp, project, f"{project}/app", digest, [digest_of(layers[0])])
    await _nothing_of(idp, project, f"{project}/blobs-only", digest, [blob])
    # the old project's members and robots are not members of the new one
    assert (await idp.api("GET", f"/projects/{project}/repositories", member_auth)).status_code == 404
    robots = (await idp.api("GET", "/robots", idp.admin, params={"page_size": 100})).json()
    assert robot_name not in {r["name"] for r in robots}
    members = (await idp.api("GET", f"/projects/{project}/members", idp.admin)).json()
    assert member not in {m["entity_name"] for m in members}


async def test_a_namesake_project_inherits_no_system_robot_rights_and_no_audit_log(idp: Idp) -> None:
    """Rights and logs that named the deleted project do not pass to a new project of that name.

    System robots hold rights by project name, and the audit log records the project by name:
    both reached the namesake before the delete revoked the one and members saw only newer rows.
    """
    project = await idp.project()
    robot_id, robot_name, secret = await idp.robot(project, ["pull", "push"], level="system")
    await idp.user_in(project, 1)  # an audited change under the old project
    assert (await idp.api("DELETE", f"/projects/{project}", idp.admin)).status_code == 200
    robot = (await idp.api("GET", f"/robots/{robot_id}", idp.admin)).json()
    assert [p["namespace"] for p in robot["permissions"]] == []

    _, owner_auth = await idp.user()
    r = await idp.api("POST", "/projects", owner_auth, json={"project_name": project, "public": False})
    assert r.status_code == 201, r.text
    robot_auth = {"Authorization": "Basic " + base64.b64encode(f"{robot_name}:{secret}".encode()).decode()}
    r = await idp.http.post(f"/v2/{project}/app/blobs/uploads/", headers=robot_auth)
    assert r.status_code in (401, 403), r.text
    r = await idp.http.get(f"/v2/{project}/app/tags/list", headers=robot_auth)
    assert r.status_code in (401, 403, 404), r.text

    logs = (await idp.api("GET", "/audit-logs", owner_auth, params={"page_size": 100})).json()
    assert [(e["operation"], e["resource_type"]) for e in logs if e["project"] == project] == [
        ("create", "project")
    ], logs
    old = (await idp.api("GET", "/audit-logs", idp.admin, params={"resource": project, "page_size": 100})).json()
    assert len([e for e in old if e["project"] == project]) > len([e for e in logs if e["project"] == project])


async def test_a_repository_cannot_be_created_outside_a_project(idp: Idp) -> None:
    """Token mode: the domain services themselves refuse a repository whose project does not exist."""
    project = await idp.project()
    missing = f"{project}x/app"
    with pytest.raises(RegistryError) as refused:
        await idp.services.uploads.start(missing)
    assert refused.value.code == "NAME_UNKNOWN" and "does not exist; create it" in refused.value.message
    http = await _as_admin(idp)
    try:
        digest = await push_blob(http, f"{project}/source", b"mountable")
    finally:
        del http.headers["Authorization"]
    with pytest.raises(RegistryError) as refused:
        await idp.services.blobs.mount(missing, f"{project}/source", parse_digest(digest))
    assert refused.value.code == "NAME_UNKNOWN"


async def test_repositories_pushed_before_their_project_join_it(idp: Idp, database_url: str, tmp_path: Path) -> None:
    """``auth.mode: none`` first, then token mode: creating the project adopts what was pushed under its name."""
    from moorage.app import create_app
    from moorage.services import Services
    from tests.integration.conftest import make_settings
    from tests.integration.test_identity_helpers import uid

    project = uid("late")
    open_services = Services.from_settings(make_settings(database_url, tmp_path / "open"))
    try:
        transport = httpx.ASGITransport(app=create_app(open_services.settings, open_services))
        async with httpx.AsyncClient(transport=transport, base_url="http://open.test") as open_http:
            await push_image(open_http, f"{project}/app", "v1", [b"pushed in the open"])
    finally:
        await open_services.aclose()
    r = await idp.api("POST", "/projects", idp.admin, json={"project_name": project})
    assert r.status_code == 201, r.text
    listed = (await idp.api("GET", f"/projects/{project}/repositories", idp.admin)).json()
    assert [r["name"] for r in listed] == [f"{project}/app"]


async def test_a_tag_moved_before_its_delete_is_left_alone(idp: Idp) -> None:
    """REST ``DELETE …/artifacts/<A>/tags/t`` while a push moves ``t`` to B: B keeps its tag (404 for A).

    The push is made to land exactly between the handler's look at the tag and its delete, by a
    wrapper in the service chain (see ``manifest_wrappers``), so the interleaving is the same every run.
    """
    project = await idp.project()
    name = f"{project}/app"
    http = await _as_admin(idp)
    try:
        first, _ = await push_image(http, name, "t", [b"first image"])
        second, _ = await push_image(http, name, "other", [b"second image"])
    finally:
        del http.headers["Authorization"]
    store = idp.services.manifests

    async def push_moves_the_tag() -> None:
        await store.tag(name, "t", parse_digest(second))

    idp.services.manifests = ChangeBeforeDelete(store, push_moves_the_tag)
    try:
        r = await idp.api("DELETE", f"/projects/{project}/repositories/app/artifacts/{first}/tags/t", idp.admin)
        assert r.status_code == 404 and "does not point at" in r.json()["errors"][0]["message"], r.text
        r = await idp.api("DELETE", f"/projects/{project}/repositories/app/artifacts/t/tags/t", idp.admin)
        assert r.status_code == 200  # by tag: resolved to where it points now, and deleted
    finally:
        idp.services.manifests = store
    r = await idp.http.get(f"/v2/{name}/tags/list", headers=idp.admin)
    assert r.json()["tags"] == ["other"]


async def test_delete_tag_compares_the_manifest_it_points_at(idp: Idp) -> None:
    project = await idp.project()
    name = f"{project}/app"
    http = await _as_admin(idp)
    try:
        first, _ = await push_image(http, name, "t", [b"one"])
        second, _ = await push_image(http, name, "u", [b"two"])
    finally:
        del http.headers["Authorization"]
    manifests = idp.services.manifests
    with pytest.raises(RegistryError) as refused:
        await manifests.delete_tag(name, "t", parse_digest(second))
    assert refused.value.code == "MANIFEST_UNKNOWN"
    assert (await manifests.get(name, "t")).digest == first
    await manifests.delete_tag(name, "t", parse_digest(first))
    assert await manifests.tags(name, 10, None) == ["u"]


async def test_a_push_in_flight_holds_off_the_project_delete(idp: Idp) -> None:
    """A push whose transaction is open when the project delete starts is waited for, then seen (412).

    Checking for artifacts and deleting in one transaction, after locking the project's rows, is
    what makes this hold; a check made before the push committed would delete the pushed image.
    On PostgreSQL the test waits until the delete is blocked on a lock before letting the push
    commit; SQLite serialises write transactions, so the delete waits for the write lock.
    """
    import asyncio

    from sqlalchemy import text

    from moorage.db.tables import manifests
    from moorage.registry.repositories import ensure_repository, now

    project = await idp.project()
    project_id = (await idp.api("GET", f"/projects/{project}", idp.admin)).json()["project_id"]
    db = idp.services.db
    delete: asyncio.Task[list[str]] | None = None
    async with db.write() as conn:  # the push, between its first write and its commit
        repository_id = await ensure_repository(conn, f"{project}/app", project_required=True)
        await conn.execute(manifests.insert().values(
            repository_id=repository_id, digest=digest_of(b"in flight"), media_type="application/json",
            size=2, payload=b"{}", created_at=now(),
        ))
        delete = asyncio.create_task(idp.services.repositories.delete_project(project_id))
        if not db.sqlite:
            for _ in range(1000):  # until the delete waits on the push's row lock (bounded)
                async with db.read() as probe:
                    if (await probe.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted"))).scalar():
                        break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the project delete never waited for the open push")
        else:
            for _ in range(20):
                await asyncio.sleep(0)
    with pytest.raises(RegistryError) as refused:
        await delete
    assert refused.value.status == 412 and f"{project}/app" in refused.value.message
    assert (await idp.api("GET", f"/projects/{project}/repositories/app", idp.admin)).status_code == 200


async def test_with_deletes_disabled_artifacts_stay_and_empty_projects_go(database_url: str, tmp_path: Path) -> None:
    """``storage.delete.enabled: false`` refuses repository deletes; a project without artifacts still goes."""
    async for node in make_idp(database_url, tmp_path, MOORAGE_STORAGE__DELETE__ENABLED="false"):
        project = await node.project()
        node.http.headers.update(node.admin)
        await push_image(node.http, f"{project}/app", "v1", [b"kept"])
        del node.http.headers["Authorization"]
        r = await node.api("DELETE", f"/projects/{project}/repositories/app", node.admin)
        assert r.status_code == 400 and "storage.delete.enabled" in r.json()["errors"][0]["message"]
        assert (await node.api("GET", f"/projects/{project}/repositories/app", node.admin)).status_code == 200
        empty = await node.project()
        assert (await node.api("DELETE", f"/projects/{empty}", node.admin)).status_code == 200
