"""Proxy-cache projects in-process against real upstreams: a miss fetches, a hit does not; push refused;
deleted endpoints and missing content answer errors that name the upstream."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.e2e.servers import RegistryProcess
from tests.integration.test_identity_helpers import Idp, make_idp, uid
from tests.proxy.conftest import UPSTREAM_PASSWORD, UPSTREAM_USER
from tests.proxy.helpers import ACCEPT, access_count, make_proxy, sha256
from tests.proxy.upstream import push_image, random_layer


async def test_miss_fetches_upstream_then_the_cache_answers(idp: Idp, open_upstream: RegistryProcess) -> None:
    name = f"library/{uid('app')}"
    layer = random_layer(300_000)
    image = await asyncio.to_thread(push_image, open_upstream.url, name, "1.0", [layer])
    project, _ = await make_proxy(idp, open_upstream.url)
    # anonymous pull: the proxy project is public
    r = await idp.http.get(f"/v2/{project}/{name}/manifests/1.0", headers=ACCEPT)
    assert r.status_code == 200, r.text
    assert r.content == image.manifest and r.headers["docker-content-digest"] == image.manifest_digest
    blob_path = f"/v2/{name}/blobs/{image.layers[0]}"
    before = access_count(open_upstream.log_path, "GET", blob_path)
    r = await idp.http.get(f"/v2/{project}/{name}/blobs/{image.layers[0]}")
    assert r.status_code == 200 and r.content == layer
    r = await idp.http.get(f"/v2/{project}/{name}/blobs/{image.config}")
    assert r.status_code == 200 and sha256(r.content) == image.config
    assert access_count(open_upstream.log_path, "GET", blob_path) == before + 1
    # warm: by digest and the blob come from Moorage (no new upstream request)
    manifests_before = access_count(open_upstream.log_path, "GET", f"/v2/{name}/manifests/{image.manifest_digest}")
    r = await idp.http.get(f"/v2/{project}/{name}/manifests/{image.manifest_digest}", headers=ACCEPT)
    assert r.status_code == 200 and r.content == image.manifest
    r = await idp.http.get(f"/v2/{project}/{name}/blobs/{image.layers[0]}")
    assert r.status_code == 200 and r.content == layer
    assert access_count(open_upstream.log_path, "GET", blob_path) == before + 1
    assert access_count(open_upstream.log_path, "GET",
                        f"/v2/{name}/manifests/{image.manifest_digest}") == manifests_before
    # every blob is here now (the fetch finishes storing after the client has its last byte): the manifest
    # and its tag are ordinary content (listings, UI, GC)
    assert idp.services.proxy is not None
    await idp.services.proxy.blobs.settled()
    tags = await idp.http.get(f"/v2/{project}/{name}/tags/list")
    assert tags.json()["tags"] == ["1.0"]


async def test_push_into_a_proxy_project_is_refused(idp: Idp, open_upstream: RegistryProcess) -> None:
    project, _ = await make_proxy(idp, open_upstream.url)
    r = await idp.http.post(f"/v2/{project}/app/blobs/uploads/", headers=idp.admin)
    assert r.status_code == 403
    error = r.json()["errors"][0]
    assert error["code"] == "DENIED" and "proxy projects are read-only" in error["message"]
    r = await idp.http.put(f"/v2/{project}/app/manifests/1", headers={**idp.admin, **ACCEPT,
                                                                        "Content-Type": ACCEPT["Accept"]},
                           content=b"{}")
    assert r.status_code == 403 and "read-only" in r.json()["errors"][0]["message"]
    assert (await idp.api("GET", f"/projects/{project}/repositories", idp.admin)).json() == []


async def test_credentials_of_the_endpoint_are_used(idp: Idp, auth_upstream: RegistryProcess) -> None:
    name = f"team/{uid('app')}"
    layer = random_layer(10_000)
    image = await asyncio.to_thread(push_image, auth_upstream.url, name, "v1", [layer],
                                    (UPSTREAM_USER, UPSTREAM_PASSWORD))
    project, _ = await make_proxy(idp, auth_upstream.url, public=False,
                                  credential={"access_key": UPSTREAM_USER, "access_secret": UPSTREAM_PASSWORD})
    r = await idp.http.get(f"/v2/{project}/{name}/manifests/v1", headers={**ACCEPT, **idp.admin})
    assert r.status_code == 200 and r.content == image.manifest
    # a private proxy project is not open to anonymous pulls
    r = await idp.http.get(f"/v2/{project}/{name}/manifests/v1", headers=ACCEPT)
    assert r.status_code == 401
    r = await idp.http.get(f"/v2/{project}/{name}/blobs/{image.layers[0]}", headers=idp.admin)
    assert r.status_code == 200 and r.content == layer


async def test_missing_upstream_content_names_the_upstream(idp: Idp, open_upstream: RegistryProcess) -> None:
    project, _ = await make_proxy(idp, open_upstream.url)
    r = await idp.http.get(f"/v2/{project}/library/nothing-here/manifests/1.0", headers=ACCEPT)
    assert r.status_code == 404
    error = r.json()["errors"][0]
    assert error["code"] == "MANIFEST_UNKNOWN" and open_upstream.url in error["message"]
    assert "answered 404" in error["message"]


async def test_a_deleted_endpoint_is_a_clear_error_and_cached_content_stays(
    idp: Idp, open_upstream: RegistryProcess
) -> None:
    name = f"library/{uid('app')}"
    image = await asyncio.to_thread(push_image, open_upstream.url, name, "1.0", [random_layer(1000)])
    project, registry_id = await make_proxy(idp, open_upstream.url)
    assert (await idp.http.get(f"/v2/{project}/{name}/manifests/1.0", headers=ACCEPT)).status_code == 200
    assert (await idp.api("DELETE", f"/registries/{registry_id}", idp.admin)).status_code == 200
    got = await idp.api("GET", f"/projects/{project}", idp.admin)
    assert got.json()["registry_id"] is None
    r = await idp.http.get(f"/v2/{project}/{name}/manifests/{image.manifest_digest}", headers=ACCEPT)
    assert r.status_code == 200 and r.content == image.manifest
    r = await idp.http.get(f"/v2/{project}/{name}/blobs/{image.layers[0]}")
    assert r.status_code == 502
    message = r.json()["errors"][0]["message"]
    assert "which was deleted" in message and f"PUT /api/v2.0/projects/{project}" in message


async def test_proxy_project_on_a_missing_endpoint_is_refused(idp: Idp) -> None:
    name = uid("hub")
    r = await idp.api("POST", "/projects", idp.admin, json={"project_name": name, "registry_id": 999_999})
    assert r.status_code == 400 and r.json()["errors"][0]["message"].startswith("registry_id: ")
    assert (await idp.api("GET", f"/projects/{name}", idp.admin)).status_code == 404


async def test_ns_query_picks_the_mirrored_upstream(database_url: str, tmp_path: Path,
                                                   open_upstream: RegistryProcess) -> None:
    """A mirror client that names the upstream in ``ns=`` (containerd does) is served from its proxy project."""
    project = uid("mirror")
    async for idp in make_idp(database_url, tmp_path, MOORAGE_PROXY__MIRRORS=f"{{docker.example: {project}}}"):
        r = await idp.api("POST", "/registries", idp.admin, json={"name": uid("ep"), "type": "docker-registry",
                                                                   "url": open_upstream.url})
        registry_id = int(r.headers["location"].rsplit("/", 1)[1])
        r = await idp.api("POST", "/projects", idp.admin, json={"project_name": project, "public": True,
                                                                 "registry_id": registry_id})
        assert r.status_code == 201, r.text
        name = f"library/{uid('ns')}"
        image = await asyncio.to_thread(push_image, open_upstream.url, name, "1", [random_layer(1000)])
        r = await idp.http.get(f"/v2/{name}/manifests/1", params={"ns": "docker.example"}, headers=ACCEPT)
        assert r.status_code == 200 and r.content == image.manifest
        r = await idp.http.get(f"/v2/{name}/manifests/1", params={"ns": "other.example"}, headers=ACCEPT)
        assert r.status_code == 401  # no mirror for that host: an ordinary name, whose project does not exist


async def test_a_project_made_again_does_not_inherit_the_cache_of_the_deleted_one(
    idp: Idp, open_upstream: RegistryProcess
) -> None:
    name = f"library/{uid('again')}"
    first = await asyncio.to_thread(push_image, open_upstream.url, name, "1", [random_layer(1000)], label="a")
    project, registry_id = await make_proxy(idp, open_upstream.url)
    r = await idp.http.get(f"/v2/{project}/{name}/manifests/1", headers=ACCEPT)
    assert r.headers["docker-content-digest"] == first.manifest_digest  # cached, its blobs never pulled
    assert (await idp.api("DELETE", f"/projects/{project}", idp.admin)).status_code == 200
    second = await asyncio.to_thread(push_image, open_upstream.url, name, "1", [random_layer(1000)], label="b")
    r = await idp.api("POST", "/projects", idp.admin, json={"project_name": project, "public": True,
                                                             "registry_id": registry_id})
    assert r.status_code == 201, r.text
    r = await idp.http.get(f"/v2/{project}/{name}/manifests/1", headers=ACCEPT)  # the TTL is 1h
    assert r.status_code == 200 and r.headers["docker-content-digest"] == second.manifest_digest
