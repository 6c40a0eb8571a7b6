"""Harbor's search endpoints: ``/users/search``, ``/search`` and ``/projects/{p}/summary`` (in-process).

The same calls run through the real ``harborapi`` client in ``tests/e2e/test_harbor_client.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.oci_client import push_image
from tests.integration.test_identity_helpers import Idp, make_idp, uid


@pytest.fixture
async def idp(database_url: str, tmp_path: Path) -> AsyncIterator[Idp]:
    async for value in make_idp(database_url, tmp_path):
        yield value


async def test_users_search_is_not_caught_by_the_user_id_route(idp: Idp) -> None:
    prefix = uid("us")
    first, auth = await idp.user(f"{prefix}a")
    second, _ = await idp.user(f"{prefix}b")
    r = await idp.api("GET", "/users/search", auth, params={"username": prefix, "page_size": 1})
    assert r.status_code == 200, r.text  # was 400: '/users/{user_id}' took "search" for an id
    assert r.headers["x-total-count"] == "2" and 'rel="next"' in r.headers["link"]
    page_two = await idp.api("GET", "/users/search", auth, params={"username": prefix, "page": 2, "page_size": 1})
    found = r.json() + page_two.json()
    assert sorted(u["username"] for u in found) == sorted([first, second])
    assert all(set(u) == {"user_id", "username"} for u in found)  # no e-mail or admin flag for non-admins
    assert (await idp.api("GET", "/users/search", params={"username": prefix})).status_code == 401
    assert (await idp.api("GET", "/users/search", auth)).status_code == 400  # username is required
    underscore = await idp.api("GET", "/users/search", auth, params={"username": prefix.replace("us", "u_")})
    assert underscore.json() == []  # '_' is a character, not a LIKE wildcard


async def _push(idp: Idp, repository: str, auth: dict[str, str]) -> None:
    idp.http.headers.update(auth)
    try:
        await push_image(idp.http, repository, "v1", [repository.encode()])
    finally:
        del idp.http.headers["Authorization"]


async def test_project_summary_counts_and_visibility(idp: Idp) -> None:
    project = await idp.project()
    _, dev_auth = await idp.user_in(project, 2)
    _, limited = await idp.user_in(project, 5)
    await idp.user_in(project, 3)
    await _push(idp, f"{project}/one", dev_auth)
    await _push(idp, f"{project}/team/two", idp.admin)
    r = await idp.api("GET", f"/projects/{project}/summary", dev_auth)
    assert r.status_code == 200, r.text
    body = r.json()
    quota = body.pop("quota")  # members read the quota (docs/lifecycle.md)
    assert quota["hard"] == {"storage": -1, "count": -1} and quota["used"]["count"] == 2, quota
    assert body == {"repo_count": 2, "project_admin_count": 1, "maintainer_count": 0, "developer_count": 1,
                    "guest_count": 1, "limited_guest_count": 1}
    # limitedGuest may not list members (docs/identity.md), so it gets no member counts either
    body = (await idp.api("GET", f"/projects/{project}/summary", limited)).json()
    assert body.pop("quota") == quota
    assert body == {
        "repo_count": 2, "project_admin_count": None, "maintainer_count": None, "developer_count": None,
        "guest_count": None, "limited_guest_count": None}
    _, outsider = await idp.user()
    hidden = await idp.api("GET", f"/projects/{project}/summary", outsider)
    missing = await idp.api("GET", f"/projects/{uid('missing')}/summary", outsider)
    assert hidden.status_code == missing.status_code == 404
    assert (await idp.api("GET", f"/projects/{project}/summary")).status_code == 401


async def test_search_finds_only_what_the_caller_may_see(idp: Idp) -> None:
    word = uid("find")
    private = f"{word}-priv"
    public = f"{word}-pub"
    for name, flag in ((private, False), (public, True)):
        r = await idp.api("POST", "/projects", idp.admin, json={"project_name": name, "public": flag})
        assert r.status_code == 201, r.text
    _, member_auth = await idp.user_in(private, 3)
    await _push(idp, f"{private}/app", idp.admin)
    await _push(idp, f"{public}/app", idp.admin)
    await _push(idp, f"{public}/x/{word}_lib", idp.admin)

    def names(body: dict[str, list[dict[str, object]]]) -> tuple[list[object], list[object]]:
        return (sorted(str(p["name"]) for p in body["project"]),
                sorted(str(r["repository_name"]) for r in body["repository"]))

    everything = (await idp.api("GET", "/search", idp.admin, params={"q": word})).json()
    assert names(everything) == ([private, public], [f"{private}/app", f"{public}/app", f"{public}/x/{word}_lib"])
    hit = next(r for r in everything["repository"] if r["repository_name"] == f"{public}/app")
    assert hit["project_public"] is True and hit["artifact_count"] == 1 and hit["pull_count"] == 0
    # a guest of the private project finds it and its repositories
    assert names((await idp.api("GET", "/search", member_auth, params={"q": word})).json()) == names(everything)
    _, outsider = await idp.user()
    assert names((await idp.api("GET", "/search", outsider, params={"q": word})).json()) == (
        [public], [f"{public}/app", f"{public}/x/{word}_lib"])
    anonymous = (await idp.api("GET", "/search", params={"q": word})).json()  # anonymous_pull: public only
    assert names(anonymous) == ([public], [f"{public}/app", f"{public}/x/{word}_lib"])
    wildcard = (await idp.api("GET", "/search", idp.admin, params={"q": f"{word}%lib"})).json()
    assert names(wildcard) == ([], [])  # '%' and '_' are characters, not LIKE wildcards
    assert (await idp.api("GET", "/search", idp.admin)).status_code == 400
