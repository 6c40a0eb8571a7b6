"""Tag immutability rules (issue 11): the REST API that changes them, and the refusals they cause.

Token mode on SQLite and PostgreSQL. A rule keeps an existing tag on its digest: pushing
another manifest over it, deleting it (``/v2`` by tag, REST) or deleting the manifest it
points at (``/v2`` by digest, REST) is refused with a message that names the rule.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from moorage.db.immutability_tables import immutable_tag_rules
from tests.integration.oci_client import OCI_MANIFEST, digest_of, error_code, push_image
from tests.integration.test_identity_helpers import Idp, make_idp


@pytest.fixture
async def idp(database_url: str, tmp_path: Path) -> AsyncIterator[Idp]:
    async for value in make_idp(database_url, tmp_path):
        yield value


def _rule(tag: str, repository: str | None = "**", disabled: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "disabled": disabled, "action": "immutable", "template": "immutable_template",
        "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": tag}],
    }
    if repository is not None:
        body["scope_selectors"] = {"repository": [{"kind": "doublestar", "decoration": "repoMatches",
                                                   "pattern": repository}]}
    return body


async def _create(idp: Idp, project: str, body: dict[str, Any], auth: dict[str, str] | None = None) -> int:
    r = await idp.api("POST", f"/projects/{project}/immutabletagrules", auth or idp.admin, json=body)
    assert r.status_code == 201, r.text
    return int(r.headers["Location"].rsplit("/", 1)[1])


async def _rules(idp: Idp, project: str) -> list[dict[str, Any]]:
    r = await idp.api("GET", f"/projects/{project}/immutabletagrules", idp.admin)
    assert r.status_code == 200, r.text
    rules: list[dict[str, Any]] = r.json()
    return rules


async def _push(idp: Idp, name: str, tag: str, layer: bytes) -> tuple[str, bytes]:
    idp.http.headers.update(idp.admin)
    try:
        return await push_image(idp.http, name, tag, [layer])
    finally:
        del idp.http.headers["Authorization"]


async def _put_manifest(idp: Idp, name: str, tag: str, body: bytes) -> httpx.Response:
    return await idp.http.put(f"/v2/{name}/manifests/{tag}", content=body,
                              headers={"Content-Type": OCI_MANIFEST, **idp.admin})


async def _tag_digest(idp: Idp, name: str, tag: str) -> str:
    r = await idp.http.head(f"/v2/{name}/manifests/{tag}", headers={"Accept": OCI_MANIFEST, **idp.admin})
    assert r.status_code == 200, r.text
    return r.headers["Docker-Content-Digest"]


def _message(r: httpx.Response) -> str:
    return str(r.json()["errors"][0]["message"])


def _names_rule(message: str, project: str, name: str, tag: str, rule_id: int, pattern: str) -> None:
    assert f"tag '{tag}' of '{name}' is immutable by rule {rule_id} (tags matching '{pattern}'" in message, message
    assert f"PUT /api/v2.0/projects/{project}/immutabletagrules/{rule_id}" in message, message


async def test_rules_are_listed_in_harbors_shape_and_changed_by_project_admins_only(idp: Idp) -> None:
    project = await idp.project()
    _, admin_auth = await idp.user_in(project, 1)
    _, maintainer_auth = await idp.user_in(project, 4)
    _, guest_auth = await idp.user_in(project, 3)
    _, outsider_auth = await idp.user()

    rule_id = await _create(idp, project, _rule("v*", "app{,-*}"), admin_auth)
    [rule] = await _rules(idp, project)
    assert rule["id"] == rule_id and rule["disabled"] is False and rule["action"] == "immutable"
    assert rule["tag_selectors"][0]["pattern"] == "v*"
    assert rule["scope_selectors"]["repository"][0]["pattern"] == "app{,-*}"
    r = await idp.api("GET", f"/projects/{project}/immutabletagrules", guest_auth)
    assert r.status_code == 200 and [x["id"] for x in r.json()] == [rule_id]
    # a repository pattern left out means every repository
    other = await _create(idp, project, _rule("{latest,stable}", None))
    assert (await _rules(idp, project))[1]["scope_selectors"]["repository"][0]["pattern"] == "**"

    path = f"/projects/{project}/immutabletagrules/{rule_id}"
    for auth in (maintainer_auth, guest_auth):
        r = await idp.api("PUT", path, auth, json={"disabled": True})
        assert r.status_code == 403 and "needs the projectAdmin role" in _message(r), r.text
        r = await idp.api("POST", f"/projects/{project}/immutabletagrules", auth, json=_rule("x*"))
        assert r.status_code == 403, r.text
        assert (await idp.api("DELETE", path, auth)).status_code == 403
    r = await idp.api("PUT", path, outsider_auth, json={"disabled": True})
    assert r.status_code == 404 and project in _message(r)  # private: not told it exists
    assert (await idp.api("GET", f"/projects/{project}/immutabletagrules", outsider_auth)).status_code == 404
    assert (await idp.api("DELETE", path)).status_code == 401
    assert (await _rules(idp, project))[0]["disabled"] is False

    r = await idp.api("PUT", path, admin_auth, json=_rule("release-*", "**", disabled=True))
    assert r.status_code == 200, r.text
    rule = (await _rules(idp, project))[0]
    assert rule["disabled"] is True and rule["tag_selectors"][0]["pattern"] == "release-*"
    assert rule["scope_selectors"]["repository"][0]["pattern"] == "**"

    # a rule id of another project is not found through this one
    elsewhere = await idp.project()
    r = await idp.api("PUT", f"/projects/{elsewhere}/immutabletagrules/{rule_id}", idp.admin, json={"disabled": False})
    assert r.status_code == 404 and elsewhere in _message(r)
    assert (await idp.api("DELETE", f"/projects/{elsewhere}/immutabletagrules/{rule_id}", idp.admin)).status_code == 404

    assert (await idp.api("DELETE", path, admin_auth)).status_code == 200
    assert [x["id"] for x in await _rules(idp, project)] == [other]
    assert (await idp.api("DELETE", path, admin_auth)).status_code == 404

    logs = (await idp.api("GET", "/audit-logs", idp.admin,
                          params={"resource": f"rule {rule_id}", "page_size": 100})).json()
    ours = [(e["operation"], e["resource_type"]) for e in logs if e["project"] == project]
    assert sorted(ours) == [("create", "immutable_tag_rule"), ("delete", "immutable_tag_rule"),
                            ("update", "immutable_tag_rule")]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_rule("{v1,v2"), "tag_selectors[0].pattern"),
        (_rule("v[1-"), "tag_selectors[0].pattern"),
        (_rule(""), "tag_selectors[0].pattern"),
        (_rule("v*", "app}"), "scope_selectors.repository[0].pattern"),
        (_rule("v*", "app\\"), "scope_selectors.repository[0].pattern"),
        ({**_rule("v*"), "tag_selectors": [{"kind": "regex", "pattern": "v.*"}]}, "tag_selectors[0].kind"),
        ({**_rule("v*"), "tag_selectors": [{"decoration": "excludes", "pattern": "v*"}]},
         "tag_selectors[0].decoration"),
        ({**_rule("v*"), "scope_selectors": {"label": [{"pattern": "x"}]}}, "scope_selectors.label"),
        ({"disabled": False}, "tag_selectors[0].pattern"),
    ],
)
async def test_a_rule_that_cannot_compile_is_400_naming_the_field_and_nothing_is_saved(
    idp: Idp, body: dict[str, Any], field: str
) -> None:
    project = await idp.project()
    r = await idp.api("POST", f"/projects/{project}/immutabletagrules", idp.admin, json=body)
    assert r.status_code == 400 and _message(r).startswith(field), r.text
    assert await _rules(idp, project) == []
    # an update with the same mistake changes nothing either
    rule_id = await _create(idp, project, _rule("v*", "app"))
    r = await idp.api("PUT", f"/projects/{project}/immutabletagrules/{rule_id}", idp.admin, json=body)
    if "tag_selectors" in body or "scope_selectors" in body:
        assert r.status_code == 400 and _message(r).startswith(field), r.text
    [rule] = await _rules(idp, project)
    assert rule["tag_selectors"][0]["pattern"] == "v*"
    assert rule["scope_selectors"]["repository"][0]["pattern"] == "app"


async def test_an_immutable_tag_is_not_pushed_over_but_pushed_again_and_new_tags_are_created(idp: Idp) -> None:
    project = await idp.project()
    name = f"{project}/app"
    first, first_body = await _push(idp, name, "v1", b"first layer")
    await _push(idp, name, "latest", b"first layer")
    rule_id = await _create(idp, project, _rule("v*", "app"))

    _, second_body = await _push(idp, name, "scratch", b"second layer")  # the blobs and a manifest to push
    r = await _put_manifest(idp, name, "v1", second_body)
    assert r.status_code == 403 and error_code(r) == "DENIED", r.text
    _names_rule(_message(r), project, name, "v1", rule_id, "v*")
    assert await _tag_digest(idp, name, "v1") == first

    r = await _put_manifest(idp, name, "v1", first_body)  # the same digest again: idempotent
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == first
    assert (await _put_manifest(idp, name, "v2", second_body)).status_code == 201  # a new matching tag
    assert (await _put_manifest(idp, name, "latest", second_body)).status_code == 201  # not covered
    assert await _tag_digest(idp, name, "latest") == digest_of(second_body)
    # another repository of the project is not covered by 'app'
    await _push(idp, f"{project}/other", "v1", b"first layer")
    _, other_body = await _push(idp, f"{project}/other", "scratch", b"second layer")
    assert (await _put_manifest(idp, f"{project}/other", "v1", other_body)).status_code == 201


async def test_an_immutable_tag_and_its_manifest_are_not_deleted_through_any_door(idp: Idp) -> None:
    project = await idp.project()
    name = f"{project}/app"
    digest, _ = await _push(idp, name, "v1", b"kept layer")
    await _push(idp, name, "latest", b"kept layer")
    rule_id = await _create(idp, project, _rule("v*"))

    r = await idp.http.delete(f"/v2/{name}/manifests/v1", headers=idp.admin)
    assert r.status_code == 403 and error_code(r) == "DENIED", r.text
    _names_rule(_message(r), project, name, "v1", rule_id, "v*")
    r = await idp.http.delete(f"/v2/{name}/manifests/{digest}", headers=idp.admin)
    assert r.status_code == 403 and error_code(r) == "DENIED", r.text
    _names_rule(_message(r), project, name, "v1", rule_id, "v*")
    r = await idp.api("DELETE", f"/projects/{project}/repositories/app/artifacts/{digest}/tags/v1", idp.admin)
    assert r.status_code == 403, r.text
    _names_rule(_message(r), project, name, "v1", rule_id, "v*")
    r = await idp.api("DELETE", f"/projects/{project}/repositories/app/artifacts/{digest}", idp.admin)
    assert r.status_code == 403, r.text
    _names_rule(_message(r), project, name, "v1", rule_id, "v*")
    r = await idp.api("DELETE", f"/projects/{project}/repositories/app", idp.admin)
    assert r.status_code == 403, r.text
    _names_rule(_message(r), project, name, "v1", rule_id, "v*")
    assert await _tag_digest(idp, name, "v1") == digest

    # a tag no rule covers still goes; a covered tag that does not exist is the usual 404
    assert (await idp.http.delete(f"/v2/{name}/manifests/latest", headers=idp.admin)).status_code == 202
    r = await idp.http.delete(f"/v2/{name}/manifests/v9", headers=idp.admin)
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"
    assert (await idp.http.get(f"/v2/{name}/tags/list", headers=idp.admin)).json()["tags"] == ["v1"]


async def test_a_disabled_rule_does_nothing(idp: Idp) -> None:
    project = await idp.project()
    name = f"{project}/app"
    await _push(idp, name, "v1", b"old")
    rule_id = await _create(idp, project, _rule("v*", disabled=True))
    _, body = await _push(idp, name, "scratch", b"new")
    assert (await _put_manifest(idp, name, "v1", body)).status_code == 201
    assert await _tag_digest(idp, name, "v1") == digest_of(body)
    r = await idp.api("PUT", f"/projects/{project}/immutabletagrules/{rule_id}", idp.admin, json={"disabled": False})
    assert r.status_code == 200, r.text
    assert (await idp.http.delete(f"/v2/{name}/manifests/v1", headers=idp.admin)).status_code == 403
    r = await idp.api("PUT", f"/projects/{project}/immutabletagrules/{rule_id}", idp.admin, json={"disabled": True})
    assert r.status_code == 200, r.text
    assert (await idp.http.delete(f"/v2/{name}/manifests/v1", headers=idp.admin)).status_code == 202


async def test_rules_go_with_their_project(idp: Idp) -> None:
    project = await idp.project()
    await _create(idp, project, _rule("v*"))
    await _create(idp, project, _rule("latest"))
    project_id = (await idp.api("GET", f"/projects/{project}", idp.admin)).json()["project_id"]
    assert (await idp.api("DELETE", f"/projects/{project}", idp.admin)).status_code == 200

    async with idp.services.db.read() as conn:
        left = (await conn.execute(select(func.count()).select_from(immutable_tag_rules).where(
            immutable_tag_rules.c.project_id == project_id))).scalar_one()
    assert left == 0
    r = await idp.api("POST", "/projects", idp.admin, json={"project_name": project, "public": False})
    assert r.status_code == 201, r.text
    assert await _rules(idp, project) == []
    name = f"{project}/app"
    await _push(idp, name, "v1", b"old")
    _, body = await _push(idp, name, "scratch", b"new")
    assert (await _put_manifest(idp, name, "v1", body)).status_code == 201



async def test_two_pushes_racing_to_create_a_covered_tag_leave_one_winner(idp: Idp) -> None:
    """A covered tag is inserted only if absent and read back locked: the later push is refused,
    never silently moving the tag the earlier one created."""
    project = await idp.project()
    name = f"{project}/app"
    await _create(idp, project, _rule("release-*"))
    bodies = [(await _push(idp, name, f"scratch{i}", f"layer {i}".encode()))[1] for i in range(4)]
    for round_ in range(3):
        tag = f"release-{round_}"
        answers = await asyncio.gather(*(_put_manifest(idp, name, tag, body) for body in bodies))
        won = [body for body, r in zip(bodies, answers, strict=True) if r.status_code == 201]
        refused = [r for r in answers if r.status_code != 201]
        assert len(won) == 1, [r.text for r in answers]
        assert all(r.status_code == 403 and error_code(r) == "DENIED" for r in refused), [r.text for r in refused]
        assert await _tag_digest(idp, name, tag) == digest_of(won[0])
