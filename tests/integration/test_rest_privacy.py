"""The REST API must not tell anonymous callers or non-members which private projects exist."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_identity_helpers import Idp, make_idp, uid


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
