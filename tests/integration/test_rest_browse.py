"""Browsing by full repository name (``GET /repositories``, ``/repositories/{name}/artifacts…``), in
``auth.mode: none`` (open: no credentials) and ``token`` (the policy decides), in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.integration.oci_client import push_image
from tests.integration.test_identity_helpers import Idp, make_idp, uid


def _twice(name: str) -> str:
    """Harbor's double encoding of a repository name in a path."""
    return quote(quote(name, safe=""), safe="")


async def test_open_registry_lists_and_reads_one_part_names(client: httpx.AsyncClient) -> None:
    word = uid("open")
    names = [f"{word}{i}" for i in range(3)] + [f"team/{word}-app"]
    digests = {}
    for name in names:
        digests[name], _ = await push_image(client, name, "v1", [name.encode()])
    r = await client.get("/api/v2.0/repositories", params={"q": f"name=~{word}", "page_size": 2})
    assert r.status_code == 200, r.text  # was 501: the REST API served token mode only
    assert r.headers["x-total-count"] == "4" and 'rel="next"' in r.headers["link"]
    second = await client.get("/api/v2.0/repositories", params={"q": f"name=~{word}", "page": 2, "page_size": 2})
    listed = [repo["name"] for repo in r.json() + second.json()]
    assert listed == sorted(names)
    assert all(repo["artifact_count"] == 1 and repo["project_id"] == 0 for repo in r.json())
    for name in (names[0], names[3]):
        artifacts = await client.get(f"/api/v2.0/repositories/{_twice(name)}/artifacts")
        assert artifacts.status_code == 200, artifacts.text
        assert [(a["digest"], a["repository_name"]) for a in artifacts.json()] == [(digests[name], name)]
        by_tag = await client.get(f"/api/v2.0/repositories/{_twice(name)}/artifacts/v1")
        assert by_tag.json()["digest"] == digests[name] and [t["name"] for t in by_tag.json()["tags"]] == ["v1"]
        layers = await client.get(f"/api/v2.0/repositories/{_twice(name)}/artifacts/{digests[name]}/additions/layers")
        assert [layer["size"] for layer in layers.json()] == [len(name.encode())]
        history = await client.get(f"/api/v2.0/repositories/{_twice(name)}/artifacts/v1/additions/build_history")
        assert history.status_code == 200 and history.json() == []
    missing = await client.get(f"/api/v2.0/repositories/{word}-none/artifacts")
    assert missing.status_code == 404 and "does not exist" in missing.text
    bad = await client.get("/api/v2.0/repositories", params={"q": "tag=v1"})
    assert bad.status_code == 400 and "name=~" in bad.text
    # the rest of the API still says why it is not there
    assert (await client.get("/api/v2.0/projects")).status_code == 501


@pytest.fixture
async def idp(database_url: str, tmp_path: Path) -> AsyncIterator[Idp]:
    async for value in make_idp(database_url, tmp_path):
        yield value


async def _push(idp: Idp, repository: str, auth: dict[str, str]) -> str:
    idp.http.headers.update(auth)
    try:
        digest, _ = await push_image(idp.http, repository, "v1", [repository.encode()])
    finally:
        del idp.http.headers["Authorization"]
    return digest


async def test_token_mode_lists_and_reads_only_what_the_policy_allows(idp: Idp) -> None:
    word = uid("brw")
    private, public = f"{word}-priv", f"{word}-pub"
    for name, flag in ((private, False), (public, True)):
        r = await idp.api("POST", "/projects", idp.admin, json={"project_name": name, "public": flag})
        assert r.status_code == 201, r.text
    _, member = await idp.user_in(private, 3)
    _, outsider = await idp.user()
    secret = await _push(idp, f"{private}/app", idp.admin)
    await _push(idp, f"{public}/team/app", idp.admin)
    query = {"q": f"name=~{word}"}

    async def names(auth: dict[str, str] | None) -> tuple[list[str], str]:
        r = await idp.api("GET", "/repositories", auth, params=query)
        assert r.status_code == 200, r.text
        return [repo["name"] for repo in r.json()], r.headers["x-total-count"]

    assert await names(member) == ([f"{private}/app", f"{public}/team/app"], "2")
    assert await names(idp.admin) == ([f"{private}/app", f"{public}/team/app"], "2")
    assert await names(outsider) == ([f"{public}/team/app"], "1")  # the private project's repository is not listed
    assert await names(None) == ([f"{public}/team/app"], "1")  # anonymous pull is on by default

    path = f"/repositories/{_twice(private + '/app')}/artifacts"
    assert [a["digest"] for a in (await idp.api("GET", path, member)).json()] == [secret]
    hidden = await idp.api("GET", path, outsider)
    missing = await idp.api("GET", f"/repositories/{_twice(word + '-none/app')}/artifacts", outsider)
    assert hidden.status_code == missing.status_code == 404  # private and missing answer alike
    assert "not a member" in hidden.json()["errors"][0]["message"]
    assert (await idp.api("GET", f"{path}/{secret}/additions/layers", outsider)).status_code == 404
    assert (await idp.api("GET", path)).status_code == 401
    public_path = f"/repositories/{_twice(public + '/team/app')}/artifacts/v1"
    r = await idp.api("GET", public_path, outsider)
    assert r.status_code == 200 and r.json()["repository_name"] == f"{public}/team/app" and r.json()["project_id"] > 0
