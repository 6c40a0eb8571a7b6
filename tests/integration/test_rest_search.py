"""Harbor's search endpoints: ``/users/search``, ``/search`` and ``/projects/{p}/summary`` (in-process).

The same calls run through the real ``harborapi`` client in ``tests/e2e/test_harbor_client.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

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
