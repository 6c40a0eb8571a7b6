"""The administration screens, immutability rules, project logs and adding tags, in a real browser.

Same session-wide token-mode server (with Redis) and chromium as tests/e2e/ui/test_web_ui.py; every
page fails its test on a JavaScript or console error (:func:`tests.e2e.ui_support.open_page`).
What a screen did is checked through the API as well, so a screen that only looks right fails.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from tests.e2e.clients import Skopeo
from tests.e2e.identity_helpers import ADMIN_PASSWORD, PASSWORD, AdminApi, basic, uid
from tests.e2e.images import OciLayout
from tests.e2e.servers import RegistryProcess
from tests.e2e.ui_support import axe_violations, expected_refusals, login, open_page, phone_overflow

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

KIB = 1024




def _user_id(api: AdminApi, name: str) -> int:
    found = [u for u in api.http.get("/users", params={"username": name}).json() if u["username"] == name]
    assert len(found) == 1, found
    return int(found[0]["user_id"])


def _eventually_refused(call: Callable[[], httpx.Response]) -> httpx.Response:
    """``call``'s answer once it is refused: every node's policy re-reads an account within its cache time
    (2 s; docs/identity.md), so a request served by another worker may still pass for that long."""
    deadline = time.monotonic() + 15
    answer = call()
    while answer.status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
        answer = call()
    return answer


def _wait_gc_done(api: AdminApi, run: int) -> dict[str, object]:
    """The GC execution once it ended (the server's job runner claims it within its poll interval)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found: dict[str, object] = api.http.get(f"/system/gc/{run}").json()
        if found["job_status"] in ("Success", "Error", "Stopped"):
            return found
        time.sleep(0.3)
    raise AssertionError(f"GC run {run} did not end within 60 s: {found}")


def test_users_screen_creates_promotes_disables_and_deletes(
    reg: RegistryProcess, api: AdminApi, page: Page, screenshots: Path,
) -> None:
    """An administrator manages users in the browser; each change holds in the API and at login.
    A user who is not an administrator sees no Administration link, and the API refuses the screen."""
    from playwright.sync_api import expect

    page.goto("/projects")
    login(page, "admin", ADMIN_PASSWORD)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Administration").click()
    expect(page).to_have_url(f"{reg.url}/admin/users")
    name = uid("ops")
    form = page.get_by_role("form", name="New user")
    form.get_by_label("User name").fill(name)
    form.get_by_label("Password").fill(PASSWORD)
    form.get_by_label("Email").fill(f"{name}@example.org")
    form.get_by_role("button", name="Create user").click()
    expect(page).to_have_url(f"{reg.url}/admin/users?q={name}")  # the new user, found by the server's search
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("tbody tr")).to_contain_text(name)
    page.get_by_role("searchbox", name="Search users").fill("no-such-user")
    page.get_by_role("searchbox", name="Search users").press("Enter")
    expect(page.get_by_text("No user matches “no-such-user”.")).to_be_visible()
    page.go_back()
    expect(page.locator("tbody tr")).to_contain_text(name)
    user_id = _user_id(api, name)

    page.get_by_role("button", name=f"Make administrator {name}").click()
    expect(page.get_by_role("button", name=f"Revoke administrator from {name}")).to_be_visible()
    assert api.http.get(f"/users/{user_id}").json()["sysadmin_flag"] is True
    page.get_by_role("button", name=f"Revoke administrator from {name}").click()
    expect(page.get_by_role("button", name=f"Make administrator {name}")).to_be_visible()
    assert api.http.get(f"/users/{user_id}").json()["sysadmin_flag"] is False

    # Disabling ends the user's open UI session and refuses new logins; enabling lets them in again.
    with httpx.Client(base_url=reg.url, timeout=30) as their_browser:
        assert their_browser.post("/c/login", json={"principal": name, "password": PASSWORD}).status_code == 200
        assert their_browser.get("/api/v2.0/users/current").status_code == 200
        page.get_by_role("button", name=f"Disable {name}").click()
        expect(page.get_by_role("button", name=f"Enable {name}")).to_be_visible()
        page.screenshot(path=str(screenshots / "users.png"))
        ended = _eventually_refused(lambda: their_browser.get("/api/v2.0/users/current"))
        assert ended.status_code == 401, ended.text
    refused = _eventually_refused(
        lambda: httpx.get(f"{reg.url}/api/v2.0/users/current", headers=basic(name, PASSWORD), timeout=30))
    assert refused.status_code == 403 and "is disabled" in refused.text, refused.text
    page.get_by_role("button", name=f"Enable {name}").click()
    expect(page.get_by_role("button", name=f"Disable {name}")).to_be_visible()
    back = httpx.get(f"{reg.url}/api/v2.0/users/current", headers=basic(name, PASSWORD), timeout=30)
    assert back.status_code == 200, back.text

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=f"Delete {name}").click()
    expect(page.get_by_text(f"No user matches “{name}”.")).to_be_visible()
    assert api.http.get(f"/users/{user_id}").status_code == 404
    expect(page.get_by_role("button", name="Disable admin")).to_have_count(0)  # the built-in admin stays

    # Not an administrator: no link, and the screen shows the API's refusal.
    other = api.user()
    page.get_by_role("button", name="Log out").click()
    login(page, other, PASSWORD)
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Administration")).to_be_hidden()
    page.goto("/admin/users")
    expect(page.get_by_role("alert")).to_contain_text("system administrator")
    page.goto("/admin/jobs")
    expect(page.get_by_role("alert")).to_contain_text("system administrator")
    expected_refusals(page, 403)


def _failing_job(reg: RegistryProcess) -> int:
    """A job the server's runner fails (an upload purge whose age is no duration), queued straight into its
    database as an operator's mistake would be: the jobs screen must show it failed, with its error."""
    from moorage.db.session import Database
    from moorage.jobs.queue import JobQueue

    async def enqueue() -> int:
        db = Database(f"sqlite:///{reg.data_dir / 'moorage.db'}")
        try:
            return await JobQueue(db).enqueue("uploads.purge", {"age": "a fortnight"}, max_attempts=1)
        finally:
            await db.dispose()

    with ThreadPoolExecutor(1) as thread:  # Playwright's sync API owns this thread's event loop
        return thread.submit(asyncio.run, enqueue()).result()


def test_gc_jobs_audit_and_system_screens(
    reg: RegistryProcess, api: AdminApi, page: Page, skopeo: Skopeo, layout: OciLayout, screenshots: Path,
) -> None:
    """GC: a cron schedule saved, a dry run from the screen and its log; jobs: the run and a failed job with
    its error; the audit log filtered by user; the system page with database, Redis and storage healthy."""
    from playwright.sync_api import expect

    page.goto("/projects")
    login(page, "admin", ADMIN_PASSWORD)
    page.goto("/admin/gc")
    form = page.get_by_role("form", name="GC schedule")
    form.get_by_label("Schedule").select_option("Custom")
    form.get_by_label("Cron").fill("17 3 * * 2")
    form.get_by_label("Delete untagged artifacts").check()
    form.get_by_role("button", name="Save schedule").click()
    expect(page.get_by_text("Next scheduled run:")).to_be_visible()
    saved = api.http.get("/system/gc/schedule").json()
    assert saved["schedule"]["type"] == "Custom" and saved["schedule"]["cron"].endswith("17 3 * * 2"), saved
    assert '"delete_untagged": true' in saved["job_parameters"], saved

    project = api.project()
    image = layout.add_image("v1", [16 * KIB])
    skopeo.copy(image.ref, f"docker://{reg.host}/{project}/app:v1", "--dest-creds", f"admin:{ADMIN_PASSWORD}")
    before = {e["id"] for e in api.http.get("/system/gc", params={"page_size": 100}).json()}
    page.get_by_role("button", name="Dry run").click()
    history = page.locator("#gc-history tbody tr")
    expect(history.first).to_contain_text("dry run")
    run = next(e["id"] for e in api.http.get("/system/gc", params={"page_size": 100}).json() if e["id"] not in before)
    assert _wait_gc_done(api, run)["job_status"] == "Success"
    page.reload()
    expect(history.first.locator(".gc-status")).to_have_text("Success")
    page.get_by_role("button", name=f"Log of GC run {run}").click()
    expect(page.locator(f"#gc-log-{run} pre")).to_contain_text(api.http.get(f"/system/gc/{run}/log").text.strip().splitlines()[-1])
    page.screenshot(path=str(screenshots / "gc.png"), full_page=True)
    page.get_by_role("link", name=str(run), exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Job {run}")
    expect(page.locator("#job-state-value")).to_have_text("succeeded")

    failed = _failing_job(reg)
    page.goto("/admin/jobs?state=failed")
    row = page.locator("tbody tr", has=page.get_by_role("link", name=str(failed), exact=True))
    for _ in range(40):  # the runner claims it within its poll interval; the screen shows what is there now
        if row.count():
            break
        page.wait_for_timeout(250)
        page.reload()
    expect(row.locator(".job-error")).to_contain_text("a fortnight")
    page.screenshot(path=str(screenshots / "jobs.png"))
    row.get_by_role("link", name=str(failed), exact=True).click()
    expect(page.locator("#job-error")).to_contain_text("a fortnight")
    expect(page.locator("#job-state-value")).to_have_text("failed")
    page.goto("/admin/jobs")
    page.get_by_role("form", name="Filter jobs").get_by_label("Kind").fill("gc.run")
    page.get_by_role("form", name="Filter jobs").get_by_role("button", name="Filter").click()
    expect(page).to_have_url(f"{reg.url}/admin/jobs?kind=gc.run")
    expect(page.locator("tbody tr td.mono")).not_to_have_text(["uploads.purge"])
    expect(page.get_by_role("link", name=str(run), exact=True)).to_be_visible()

    page.goto("/admin/audit")
    audit = page.get_by_role("search", name="Filter the audit log")
    audit.get_by_label("Resource").fill(f"{project}/app")
    audit.get_by_role("button", name="Filter").click()
    expect(page.locator("#audit-log tbody tr").first).to_contain_text("push")
    expect(page.locator("#audit-log tbody tr").first).to_contain_text(f"{project}/app")
    page.screenshot(path=str(screenshots / "audit.png"))

    page.goto("/admin/system")
    expect(page.locator("#health-status")).to_have_text("healthy")
    for component in ("database", "redis", "storage"):
        expect(page.locator(f"#health tr[data-component={component}]")).to_contain_text("healthy")
    page.screenshot(path=str(screenshots / "system.png"))
    api.http.put("/system/gc/schedule", json={"schedule": {"type": "None"}})  # leave no schedule to other tests


def test_immutability_rules_add_tag_and_project_logs(
    reg: RegistryProcess, api: AdminApi, page: Page, skopeo: Skopeo, layout: OciLayout, screenshots: Path,
) -> None:
    """A projectAdmin adds an immutability rule on the project page; on the artifact page they add tags
    (a covered one can be added, then neither moved nor deleted; one on another artifact is refused);
    a developer may add tags too, a guest sees no form; the project's Logs tab shows the changes."""
    from playwright.sync_api import expect

    project = api.project()
    owner = api.user(project, 1)
    guest = api.user(project, 3)
    first = layout.add_image("v1", [16 * KIB])
    second = layout.add_image("v2", [8 * KIB])
    for image, tag in ((first, "v1"), (second, "v2")):
        skopeo.copy(image.ref, f"docker://{reg.host}/{project}/app:{tag}", "--dest-creds", f"admin:{ADMIN_PASSWORD}")
    page.goto("/projects")
    login(page, owner, PASSWORD)
    page.goto(f"/projects/{project}")
    page.get_by_role("navigation", name="Project").get_by_role("link", name="Immutability").click()
    rule = page.get_by_role("form", name="New immutability rule")
    rule.get_by_label("Tags matching").fill("release-*")
    rule.get_by_role("button", name="Add rule").click()
    expect(page.locator("#rules tbody tr")).to_have_count(1)
    expect(page.locator("#rules tbody tr")).to_contain_text("release-*")
    page.screenshot(path=str(screenshots / "immutability.png"))
    rules = api.http.get(f"/projects/{project}/immutabletagrules").json()
    assert [r["tag_selectors"][0]["pattern"] for r in rules] == ["release-*"]

    page.goto(f"/projects/{project}/repositories/app/artifacts/{first.manifest.digest}")
    add = page.get_by_role("form", name="Add a tag")
    add.get_by_label("New tag").fill("release-1")
    add.get_by_role("button", name="Add tag").click()
    expect(page.locator("#artifact-tags .tag")).to_contain_text(["release-1", "v1"])
    assert api.http.get(f"/projects/{project}/repositories/app/artifacts/release-1").json()["digest"] == \
        first.manifest.digest
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete tag release-1").click()
    expect(page.get_by_role("alert")).to_contain_text("immutab")  # the rule keeps it
    expected_refusals(page, 403)
    page.goto(f"/projects/{project}/repositories/app/artifacts/{second.manifest.digest}")
    for taken in ("release-1", "v1"):  # on the other artifact: never moved (covered or not)
        page.get_by_label("New tag").fill(taken)
        page.get_by_role("button", name="Add tag").click()
        expect(page.get_by_role("form", name="Add a tag").get_by_role("alert")).to_contain_text("already exists")
    expected_refusals(page, 409)
    page.get_by_label("New tag").fill("-bad")
    page.get_by_role("button", name="Add tag").click()
    expect(page.get_by_role("form", name="Add a tag").get_by_role("alert")).to_contain_text("name:")
    expected_refusals(page, 400)
    assert api.http.get(f"/projects/{project}/repositories/app/artifacts/release-1").json()["digest"] == \
        first.manifest.digest

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Projects").click()
    page.goto(f"/projects/{project}")
    page.get_by_role("navigation", name="Project").get_by_role("link", name="Logs").click()
    logs = page.locator("#audit-log tbody tr")
    expect(logs.first).to_be_visible()
    expect(page.locator("#audit-log")).to_contain_text(f"{project}/app:release-1")
    expect(page.locator("#audit-log")).to_contain_text("immutable_tag_rule")

    page.get_by_role("button", name="Log out").click()
    login(page, guest, PASSWORD)
    page.goto(f"/projects/{project}/repositories/app/artifacts/{first.manifest.digest}")
    expect(page.locator("#artifact-tags .tag")).to_contain_text(["release-1", "v1"])
    expect(page.get_by_role("form", name="Add a tag")).to_have_count(0)
    page.goto(f"/projects/{project}/immutability")
    expect(page.locator("#rules tbody tr")).to_contain_text("release-*")
    expect(page.get_by_role("form", name="New immutability rule")).to_have_count(0)
    refused = httpx.post(f"{reg.url}/api/v2.0/projects/{project}/repositories/app/artifacts/v1/tags",
                         json={"name": "sneaky"}, headers=basic(guest, PASSWORD), timeout=30)
    assert refused.status_code == 403, refused.text


def test_new_screens_pass_axe_core_and_fit_a_phone(
    reg: RegistryProcess, api: AdminApi, browser: Browser, skopeo: Skopeo, layout: OciLayout,
) -> None:
    """axe-core (WCAG 2.1 A/AA, serious and critical) on every new screen, then none of them scrolls
    sideways at 375 px; the administration screens are reached by keyboard from the main navigation."""
    from playwright.sync_api import expect

    project = api.project()
    image = layout.add_image("v1", [16 * KIB])
    skopeo.copy(image.ref, f"docker://{reg.host}/{project}/app:v1", "--dest-creds", f"admin:{ADMIN_PASSWORD}")
    job = _failing_job(reg)
    screens = {
        "users": "/admin/users",
        "jobs": "/admin/jobs",
        "job": f"/admin/jobs/{job}",
        "gc": "/admin/gc",
        "audit": "/admin/audit",
        "system": "/admin/system",
        "immutability": f"/projects/{project}/immutability",
        "logs": f"/projects/{project}/logs",
        "artifact": f"/projects/{project}/repositories/app/artifacts/{image.manifest.digest}",
        "repository search": f"/projects/{project}/repositories/app?q=v",
    }
    with open_page(browser, reg.url) as page:
        page.goto("/login")
        page.keyboard.type("admin")
        page.keyboard.press("Tab")
        page.keyboard.type(ADMIN_PASSWORD)
        page.keyboard.press("Enter")
        expect(page.locator("#whoami")).to_have_text("admin (admin)")
        page.goto("/projects")  # focus at the top of a fresh page
        expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Administration")).to_be_visible()
        for _ in range(12):  # from the top of the page to the Administration link, by Tab only
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.textContent") == "Administration":
                break
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", level=1)).to_have_text("Users")
        found: dict[str, list[str]] = {}
        for name, path in screens.items():
            page.goto(path)
            expect(page.locator("main h1")).to_be_visible()
            expect(page.locator("main")).not_to_contain_text("Loading")
            found[name] = axe_violations(page)
        assert {name: v for name, v in found.items() if v} == {}
        page.set_viewport_size({"width": 375, "height": 740})
        wide = {}
        for name, path in screens.items():
            page.goto(path)
            expect(page.locator("main h1")).to_be_visible()
            expect(page.locator("main")).not_to_contain_text("Loading")
            wide[name] = phone_overflow(page)
        assert {name: px for name, px in wide.items() if px} == {}
