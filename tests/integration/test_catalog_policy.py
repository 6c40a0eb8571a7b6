"""``/v2/_catalog`` for a non-admin pages through exactly the repositories it may see (issue 9).

Before: the catalog fetched ``n+1`` rows and filtered them afterwards, so a page holding hidden
repositories came back short and without its ``Link``, and the listing stopped early. Here
1,000 repositories alternate (in catalog order) between projects the user may see (public, or a
member of) and private projects it may not; paging with small pages must return exactly the
500 visible names, every page full and linked to the next.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from moorage.app import create_app
from moorage.db.migrate import upgrade
from moorage.services import Services
from tests.e2e.servers import throwaway_postgres_database
from tests.integration.conftest import make_settings
from tests.integration.test_identity_helpers import ADMIN_PASSWORD, PASSWORD, TOKEN_ENV, basic

REPOSITORIES = 1000
PAGE = 37  # not a divisor of 500: the last page is a short one
EMPTY_INDEX = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                          "manifests": []}).encode()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own, so the catalog holds exactly what this test put there."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'catalog.db'}"
        upgrade(url)
        yield url
        return
    admin_url = str(request.getfixturevalue("postgres_admin_url"))
    with throwaway_postgres_database(admin_url, prefix="moorage_catalog") as url:
        upgrade(url)
        yield url


@pytest.fixture
async def registry(empty_database: str, tmp_path: Path) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    settings = make_settings(empty_database, tmp_path / "data", **TOKEN_ENV)
    services = Services.from_settings(settings)
    assert services.identity is not None
    await services.identity.start()
    app = create_app(settings, services)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registry.test") as http:
        yield services, http
    await services.aclose()


async def page_through(http: httpx.AsyncClient, auth: dict[str, str], n: int) -> tuple[list[str], list[int]]:
    """Follow ``Link`` from page to page; ``(names, size of each page)``."""
    names: list[str] = []
    sizes: list[int] = []
    url: str | None = f"/v2/_catalog?n={n}"
    while url is not None:
        r = await http.get(url, headers=auth)
        assert r.status_code == 200, r.text
        page = r.json()["repositories"]
        names += page
        sizes.append(len(page))
        link = r.headers.get("link")
        url = re.fullmatch(r"<(.+)>; rel=\"next\"", link)[1] if link else None  # type: ignore[index]
    return names, sizes


async def test_catalog_pages_through_visible_repositories_only(
    registry: tuple[Services, httpx.AsyncClient],
) -> None:
    services, http = registry
    identity = services.identity
    assert identity is not None
    user = await identity.store.create_user("cataloguser", PASSWORD)
    admin = identity.store.user_subject(await identity.store.user_by_name("admin"))  # type: ignore[arg-type]
    # p0000/app, p0001/app, …: catalog order is this order; odd ones are private projects of someone else.
    kinds = [("public", "private", "member", "private")[i % 4] for i in range(REPOSITORIES)]
    everything = [f"p{i:04d}/app" for i in range(REPOSITORIES)]
    expected = [name for name, kind in zip(everything, kinds, strict=True) if kind != "private"]

    async def make(i: int) -> None:
        project = await identity.store.create_project(f"p{i:04d}", kinds[i] == "public", admin)
        if kinds[i] == "member":
            await identity.store.add_member(project, user.username, "limitedGuest")
        # A copy per call: the filesystem driver names its temporary file after id(data), so two
        # concurrent puts of one bytes object collide (reported; not what this test is about).
        payload = bytes(bytearray(EMPTY_INDEX))
        await services.manifests.put(everything[i], "v1", payload, "application/vnd.oci.image.index.v1+json")

    for start in range(0, REPOSITORIES, 10):
        await asyncio.gather(*(make(i) for i in range(start, min(start + 10, REPOSITORIES))))

    names, sizes = await page_through(http, basic("cataloguser", PASSWORD), PAGE)
    assert names == expected
    assert sizes == [PAGE] * (len(expected) // PAGE) + [len(expected) % PAGE]

    # A system administrator sees all of them, with real paging (not one page of n=100000).
    names, sizes = await page_through(http, basic("admin", ADMIN_PASSWORD), 100)
    assert names == everything and sizes == [100] * 10

    # Anonymous callers (anonymous pull is on by default) see the public ones only.
    names, _ = await page_through(http, {}, 50)
    assert names == everything[::4]
