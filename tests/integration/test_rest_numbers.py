"""REST integers from queries and paths follow moorage.numbers: ASCII digits only (pydantic alone reads '1_0')."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.test_identity_helpers import Idp, make_idp


@pytest.fixture
async def idp(database_url: str, tmp_path: Path) -> AsyncIterator[Idp]:
    async for value in make_idp(database_url, tmp_path):
        yield value


async def test_integer_parameters_take_ascii_digits_only(idp: Idp) -> None:
    for query in ({"page": "1_0"}, {"page": "+1"}, {"page_size": " 5"}, {"page_size": "5.0"}, {"page": "١"}):
        response = await idp.api("GET", "/projects", idp.admin, params=query)
        assert response.status_code == 400, query
        assert "ASCII digits" in response.json()["errors"][0]["message"]
    assert (await idp.api("GET", "/projects", idp.admin, params={"page": "01"})).status_code == 200
    for query in ({"project_id": "1_0"}, {"project_id": "²"}):
        assert (await idp.api("GET", "/robots", idp.admin, params=query)).status_code == 400, query
    for user_id in ("1_0", "+1", "٣"):
        assert (await idp.api("GET", f"/users/{user_id}", idp.admin)).status_code == 400, user_id
    current = (await idp.api("GET", "/users/current", idp.admin)).json()
    assert (await idp.api("GET", f"/users/{current['user_id']}", idp.admin)).status_code == 200


async def test_empty_paging_parameters_mean_the_defaults(idp: Idp) -> None:
    """harborapi sends ``page=&page_size=`` when its caller gives no paging: Harbor reads the defaults."""
    r = await idp.api("GET", "/projects", idp.admin, params={"page": "", "page_size": ""})
    assert r.status_code == 200, r.text
    assert (await idp.api("GET", "/projects", idp.admin, params={"page": " "})).status_code == 400
