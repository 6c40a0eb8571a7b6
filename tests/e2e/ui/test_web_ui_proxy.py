"""The proxy-cache project in the UI: created with a cache limit in the new-project form, shown and changed
on the project page (checked through the API), read-only for a guest; the page passes axe-core and fits a
phone. Same session-wide server and chromium as the other UI modules (tests/e2e/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tests.e2e.identity_helpers import ADMIN_PASSWORD, PASSWORD, AdminApi, uid
from tests.e2e.servers import RegistryProcess
from tests.e2e.ui_support import axe_violations, login, phone_overflow

if TYPE_CHECKING:
    from playwright.sync_api import Page

GIB = 1024**3


def test_proxy_project_cache_limit_on_create_and_project_page(
    reg: RegistryProcess, api: AdminApi, page: Page, screenshots: Path
) -> None:
    from playwright.sync_api import expect

    endpoint = uid("upstream")  # this registry itself: creating the project does not contact it
    r = api.http.post("/registries", json={"name": endpoint, "type": "docker-registry", "url": reg.url})
    assert r.status_code == 201, r.text
    page.goto("/projects")
    login(page, "admin", ADMIN_PASSWORD)
    project = uid("cache")
    page.get_by_role("button", name="New project").click()
    new = page.get_by_role("form", name="New project")
    new.get_by_label("Name").fill(project)
    new.get_by_label("Proxy cache of").select_option(label=f"{endpoint} ({reg.url})")
    new.get_by_label("Cache limit (GiB, evicts the least recently pulled)").fill("0.5")
    new.get_by_role("button", name="Create").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(project)
    got = api.http.get(f"/projects/{project}").json()
    assert got["metadata"]["proxy_cache_limit"] == str(GIB // 2) and got["registry_id"] is not None, got
    expect(page.locator("#proxy-cache")).to_contain_text("cache limit 512.0 MiB")

    form = page.get_by_role("form", name="Cache limit")
    form.get_by_label("Cache limit (GiB, -1 none)").fill("2")
    form.get_by_role("button", name="Set cache limit").click()
    expect(page.locator("#proxy-cache")).to_contain_text("cache limit 2.00 GiB")
    assert api.http.get(f"/projects/{project}").json()["metadata"]["proxy_cache_limit"] == str(2 * GIB)
    page.screenshot(path=str(screenshots / "proxy-cache-limit.png"))
    for width in (1200, 375):
        page.set_viewport_size({"width": width, "height": 800})
        assert axe_violations(page) == []
        assert phone_overflow(page) == 0
    page.set_viewport_size({"width": 1200, "height": 800})
    form.get_by_label("Cache limit (GiB, -1 none)").fill("-1")
    form.get_by_role("button", name="Set cache limit").click()
    expect(page.locator("#proxy-cache")).to_contain_text("cache limit none")
    assert api.http.get(f"/projects/{project}").json()["metadata"]["proxy_cache_limit"] == "-1"

    guest = api.user(project, 3)
    page.get_by_role("button", name="Log out").click()
    login(page, guest, PASSWORD)
    page.goto(f"/projects/{project}")
    expect(page.locator("#proxy-cache")).to_contain_text("cache limit none")
    expect(page.get_by_role("form", name="Cache limit")).to_have_count(0)
