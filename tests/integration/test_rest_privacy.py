"""No entry point tells anonymous callers or non-members which private projects exist (REST, /v2, tokens)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from moorage.auth.policy import Policy
from tests.integration.test_identity_helpers import Idp, bearer, make_idp, uid


@pytest.fixture
async def idp(database_url: str, tmp_path: Path) -> AsyncIterator[Idp]:
    async for value in make_idp(database_url, tmp_path):
        yield value


def _robot(level: str, namespace: str) -> dict[str, Any]:
    return {"name": uid("bot"), "level": level, "duration": -1, "permissions": [
        {"kind": "project", "namespace": namespace, "access": [{"resource": "repository", "action": "pull"}]}]}


async def _answer(idp: Idp, auth: dict[str, str] | None, body: dict[str, Any]) -> tuple[int, str]:
    r = await idp.api("POST", "/robots", auth, json=body)
    message = r.json()["errors"][0]["message"]
    return r.status_code, message


@pytest.mark.parametrize("level", ["project", "system"])
async def test_robot_creation_answers_alike_for_a_private_project_and_a_missing_one(idp: Idp, level: str) -> None:
    private, missing = await idp.project(public=False), uid("nope")
    _, outsider = await idp.user()
    for auth in (None, outsider):
        status_private, text_private = await _answer(idp, auth, _robot(level, private))
        status_missing, text_missing = await _answer(idp, auth, _robot(level, missing))
        assert status_private == status_missing, (auth, text_private, text_missing)
        assert text_private.replace(private, "P") == text_missing.replace(missing, "P")
    assert (await _answer(idp, None, _robot(level, private)))[0] == 401


async def test_a_member_without_the_role_is_told_which_role_is_needed(idp: Idp) -> None:
    project = await idp.project()
    _, guest = await idp.user_in(project, 3)
    status, message = await _answer(idp, guest, _robot("project", project))
    assert status == 403 and "needs the maintainer or projectAdmin role" in message and "guest" in message


# -- one answer for "missing" and "private, not a member" on every entry point (issue 10) ------------
def _same(a: str, name_a: str, b: str, name_b: str) -> bool:
    return a.replace(name_a, "P") == b.replace(name_b, "P")


async def test_head_project_name_tells_a_non_member_nothing(idp: Idp) -> None:
    private, missing, public = await idp.project(public=False), uid("nope"), await idp.project(public=True)
    _, outsider = await idp.user()
    for auth in (outsider, None):
        hidden = await idp.api("HEAD", "/projects", auth, params={"project_name": private})
        absent = await idp.api("HEAD", "/projects", auth, params={"project_name": missing})
        assert hidden.status_code == absent.status_code == 404, (auth, hidden.status_code, absent.status_code)
        # HEAD answers like GET lists: a public project is there for anonymous callers too
        assert (await idp.api("HEAD", "/projects", auth, params={"project_name": public})).status_code == 200
        listed = await idp.api("GET", "/projects", auth, params={"name": public})
        assert listed.status_code == 200 and [p["name"] for p in listed.json()] == [public]
        listed = await idp.api("GET", "/projects", auth, params={"name": private})
        assert listed.status_code == 200 and listed.json() == []
    _, member = await idp.user_in(private, 5)
    for auth in (member, idp.admin):
        assert (await idp.api("HEAD", "/projects", auth, params={"project_name": private})).status_code == 200
    assert (await idp.api("HEAD", "/projects", idp.admin, params={"project_name": missing})).status_code == 404


async def test_creating_a_project_with_the_name_of_a_hidden_one_does_not_confirm_it(idp: Idp) -> None:
    private = await idp.project(public=False)
    _, outsider = await idp.user()
    r = await idp.api("POST", "/projects", outsider, json={"project_name": private})
    assert r.status_code == 409
    assert r.json()["errors"][0]["message"] == f"the name '{private}' is not available; choose another name"
    _, member = await idp.user_in(private, 3)
    r = await idp.api("POST", "/projects", member, json={"project_name": private})
    assert r.status_code == 409 and "already exists" in r.text
    r = await idp.api("POST", "/projects", idp.admin, json={"project_name": private})
    assert r.status_code == 409 and "already exists" in r.text


async def test_rest_and_v2_answer_alike_for_a_hidden_project_and_a_missing_one(idp: Idp) -> None:
    private, missing = await idp.project(public=False), uid("nope")
    name, outsider = await idp.user()
    token_private = (await idp.token(outsider, f"repository:{private}/app:pull,push"))["token"]
    token_missing = (await idp.token(outsider, f"repository:{missing}/app:pull,push"))["token"]
    for credentials in ((outsider, outsider), (bearer(token_private), bearer(token_missing))):
        for method, suffix in (("GET", "tags/list"), ("HEAD", "manifests/v1"), ("POST", "blobs/uploads/")):
            a = await idp.http.request(method, f"/v2/{private}/app/{suffix}", headers=credentials[0])
            b = await idp.http.request(method, f"/v2/{missing}/app/{suffix}", headers=credentials[1])
            assert a.status_code == b.status_code and _same(a.text, private, b.text, missing), (method, a.text, b.text)
            assert a.status_code == (404 if method == "HEAD" else 403)
    for path in ("/projects/{}", "/projects/{}/members", "/projects/{}/logs", "/projects/{}/repositories/app"):
        a = await idp.api("GET", path.format(private), outsider)
        b = await idp.api("GET", path.format(missing), outsider)
        assert a.status_code == b.status_code == 404 and _same(a.text, private, b.text, missing), (path, a.text)
    message = (await idp.api("GET", f"/projects/{private}", outsider)).json()["errors"][0]["message"]
    assert message == Policy.hidden_message(private) and name not in message
    # the token service grants nothing for either, and says nothing either way
    for token in (token_private, token_missing):
        assert jwt.decode(token, options={"verify_signature": False})["access"] == []
    # a system administrator is told which it is
    r = await idp.http.get(f"/v2/{missing}/app/tags/list", headers=idp.admin)
    assert r.status_code == 403 and r.json()["errors"][0]["message"] == Policy.missing_message(missing)


async def test_a_robot_of_a_hidden_project_is_answered_as_a_missing_robot(idp: Idp) -> None:
    private = await idp.project(public=False)
    robot_id, _, _ = await idp.robot(private, ["pull"])
    _, outsider = await idp.user()
    for method, body in (("GET", None), ("PUT", {"disable": True}), ("PATCH", {}), ("DELETE", None)):
        hidden = await idp.api(method, f"/robots/{robot_id}", outsider, json=body)
        absent = await idp.api(method, "/robots/2147483000", outsider, json=body)
        assert hidden.status_code == absent.status_code == 404, (method, hidden.text)
        assert private not in hidden.text
        assert hidden.text.replace(f"robot {robot_id} ", "robot N ") == absent.text.replace("robot 2147483000 ", "robot N ")
    assert (await idp.api("GET", f"/robots/{robot_id}")).status_code == 401
    assert (await idp.api("GET", f"/robots/{robot_id}", idp.admin)).status_code == 200


async def test_an_operator_may_choose_to_disclose_which_projects_exist(database_url: str, tmp_path: Path) -> None:
    """``auth.disclose_project_existence: true``: users are told "missing" or "private"; anonymous callers are not."""
    async for idp in make_idp(database_url, tmp_path, MOORAGE_AUTH__DISCLOSE_PROJECT_EXISTENCE="true"):
        private, missing = await idp.project(public=False), uid("nope")
        _, outsider = await idp.user()
        r = await idp.http.get(f"/v2/{private}/app/tags/list", headers=outsider)
        assert r.status_code == 403 and f"project '{private}' is private and you are not a member of it" in r.text
        r = await idp.http.get(f"/v2/{missing}/app/tags/list", headers=outsider)
        assert r.status_code == 403 and r.json()["errors"][0]["message"] == Policy.missing_message(missing)
        r = await idp.api("GET", f"/projects/{private}", outsider)
        assert r.status_code == 404 and "is private" in r.text
        assert (await idp.api("HEAD", "/projects", outsider, params={"project_name": private})).status_code == 200
        assert (await idp.api("HEAD", "/projects", None, params={"project_name": private})).status_code == 404
        r = await idp.api("POST", "/projects", outsider, json={"project_name": private})
        assert r.status_code == 409 and "already exists" in r.text
