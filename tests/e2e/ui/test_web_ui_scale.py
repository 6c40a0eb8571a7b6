"""The web UI at scale: 100,000 repositories in a project and 10,000 tags in one repository.

The rows are written straight into the server's SQLite database by a fixture (one bulk insert
per table, a few seconds) rather than pushed, which would take hours; they are what a push
writes (a repository, a manifest, a tag). The browser then opens the project, the registry-wide
repository list and the big repository, searches and pages, and the test counts what the page
received from the API: every answer is one page (at most 15 rows, a few KiB), so no screen
loads the registry to render. Nothing here measures time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.identity_helpers import ADMIN_PASSWORD, AdminApi, start_token_moorage
from tests.e2e.servers import RegistryProcess
from tests.e2e.ui_support import ApiLog, login, open_page

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

REPOSITORIES = 100_000
TAGS = 10_000
PROJECT = "scale"
PAGE_SIZE = 15  # the UI's (src/moorage/web/static/views/common.js)
#: An answer of one page: 15 repositories or artifacts (with a tag each) are about 6 KiB of JSON.
MAX_ANSWER_BYTES = 16 * 1024
MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"


def _digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def _bulk_insert(database: Path, project_id: int) -> None:
    """100,000 repositories of one manifest each, and ``<project>/many`` with 10,000 tagged manifests."""
    from sqlalchemy import create_engine, insert, select

    from moorage.db.tables import manifests, repositories, tags

    engine = create_engine(f"sqlite:///{database}")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        with engine.begin() as conn:
            conn.execute(insert(repositories), [
                {"name": f"{PROJECT}/r{i:06d}", "project_id": project_id, "created_at": start}
                for i in range(REPOSITORIES)
            ] + [{"name": f"{PROJECT}/many", "project_id": project_id, "created_at": start}])
            ids = dict(conn.execute(select(repositories.c.name, repositories.c.id)).all())  # type: ignore[arg-type]
            many = ids[f"{PROJECT}/many"]
            conn.execute(insert(manifests), [
                {"repository_id": ids[f"{PROJECT}/r{i:06d}"], "digest": _digest(f"r{i}"), "media_type": MEDIA_TYPE,
                 "size": 2, "payload": b"{}", "created_at": start}
                for i in range(REPOSITORIES)
            ] + [
                {"repository_id": many, "digest": _digest(f"t{i}"), "media_type": MEDIA_TYPE, "size": 2,
                 "payload": b"{}", "created_at": start + timedelta(seconds=i)}
                for i in range(TAGS)
            ])
            digests = dict(conn.execute(
                select(manifests.c.digest, manifests.c.id).where(manifests.c.repository_id == many)).all())
            conn.execute(insert(tags), [
                {"repository_id": many, "name": f"t{i:05d}", "manifest_id": digests[_digest(f"t{i}")],
                 "updated_at": start + timedelta(seconds=i)}
                for i in range(TAGS)
            ])
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def big_registry(e2e_workdir: Path) -> Iterator[RegistryProcess]:
    """A token-mode server whose database holds 100,001 repositories and 10,000 tags in one of them."""
    server = start_token_moorage(e2e_workdir, label="moorage-ui-scale")
    try:
        api = AdminApi(server)
        try:
            created = api.http.post("/projects", json={"project_name": PROJECT})
            assert created.status_code == 201, created.text
            project_id = int(api.http.get(f"/projects/{PROJECT}").json()["project_id"])
        finally:
            api.close()
        _bulk_insert(server.data_dir / "moorage.db", project_id)
        yield server
    finally:
        server.stop()


@pytest.fixture
def page(browser: Browser, big_registry: RegistryProcess) -> Iterator[Page]:
    big_registry.mark_log()
    with open_page(browser, big_registry.url) as opened:
        yield opened


def _one_page_each(log: ApiLog) -> list[tuple[str, int, int, int]]:
    """The answers that were more than one page (empty when every answer was one page at most)."""
    answers = log.answers()
    assert answers, "the page asked the API for nothing"
    return [a for a in answers if a[2] > PAGE_SIZE or a[3] > MAX_ANSWER_BYTES or a[1] != 200]


def test_100k_repositories_and_10k_tags_render_one_page_at_a_time(
    big_registry: RegistryProcess, page: Page, screenshots: Path,
) -> None:
    from playwright.sync_api import expect

    page.goto("/projects")
    login(page, "admin", ADMIN_PASSWORD)
    log = ApiLog(page)

    # The project: 100,001 repositories, the first page of them.
    page.goto(f"/projects/{PROJECT}")
    rows = page.locator("main tbody tr")
    expect(rows).to_have_count(PAGE_SIZE)
    expect(page.locator(".pager")).to_contain_text(f"1–15 of {REPOSITORIES + 1}")
    expect(rows.first).to_contain_text(f"{PROJECT}/many")
    assert _one_page_each(log) == []
    repository_pages = [a for a in log.answers() if "/repositories?" in a[0]]
    assert [a[2] for a in repository_pages] == [PAGE_SIZE], repository_pages

    # Searching and paging ask the server for one page each.
    log.clear()
    page.get_by_role("searchbox", name="Search repositories").fill("r09999")
    page.get_by_role("searchbox", name="Search repositories").press("Enter")
    expect(rows).to_have_count(10)  # r099990 … r099999
    expect(page.locator(".pager")).to_contain_text("1–10 of 10")
    page.goto(f"/projects/{PROJECT}?page=6667")
    expect(rows).to_have_count(REPOSITORIES + 1 - 6666 * PAGE_SIZE)  # the last page: 11 of 100,001
    expect(rows.last).to_contain_text(f"{PROJECT}/r099999")
    page.screenshot(path=str(screenshots / "scale-project.png"))
    assert _one_page_each(log) == []

    # The registry-wide list (what the admin may see: everything).
    log.clear()
    page.goto("/repositories?page=2")
    expect(rows).to_have_count(PAGE_SIZE)
    expect(page.locator(".pager")).to_contain_text(f"16–30 of {REPOSITORIES + 1}")
    assert _one_page_each(log) == []

    # 10,000 tags in one repository: newest first, searched by tag on the server, the last page.
    log.clear()
    page.goto(f"/projects/{PROJECT}/repositories/many")
    expect(rows).to_have_count(PAGE_SIZE)
    expect(page.locator(".pager")).to_contain_text(f"1–15 of {TAGS}")
    expect(rows.first.locator(".tag")).to_have_text(f"t{TAGS - 1:05d}")
    page.get_by_role("searchbox", name="Search tags").fill("t0012")
    page.get_by_role("searchbox", name="Search tags").press("Enter")
    expect(rows).to_have_count(10)  # t00120 … t00129
    expect(rows.first.locator(".tag")).to_have_text("t00129")
    page.screenshot(path=str(screenshots / "scale-tags.png"))
    page.goto(f"/projects/{PROJECT}/repositories/many?page=667")
    expect(rows).to_have_count(TAGS - 666 * PAGE_SIZE)
    expect(rows.last.locator(".tag")).to_have_text("t00000")
    assert _one_page_each(log) == []
    artifact_pages = [a for a in log.answers() if "/artifacts?" in a[0]]
    assert [a[2] for a in artifact_pages] == [PAGE_SIZE, 10, TAGS - 666 * PAGE_SIZE], artifact_pages
