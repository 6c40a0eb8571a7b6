"""Screens for the features that landed beside the UI: quotas, retention, registry endpoints, webhooks.

Same session-wide token-mode server and chromium as the other UI modules (tests/e2e/conftest.py);
every page fails its test on a JavaScript or console error. Each screen's effect is checked
through the API or the outside world (the pushed image, the webhook receiver), not only on screen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tests.e2e.clients import Skopeo
from tests.e2e.identity_helpers import ADMIN_PASSWORD, PASSWORD, AdminApi, uid
from tests.e2e.images import OciLayout
from tests.e2e.servers import RegistryProcess
from tests.e2e.ui_support import axe_violations, expected_refusals, login, open_page, phone_overflow
from tests.integration.webhook_receiver import Receiver

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

KIB = 1024
GIB = 1024**3




def _until(check: Callable[[], bool], what: str, seconds: float = 60) -> None:
    """Wait for background work (a job the server's runner claims within its poll interval)."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {seconds} s")
        time.sleep(0.3)


def _project_id(api: AdminApi, name: str) -> int:
    return int(api.http.get(f"/projects/{name}").json()["project_id"])


def test_quota_on_project_create_and_project_page(
    reg: RegistryProcess, api: AdminApi, page: Page, skopeo: Skopeo, layout: OciLayout, screenshots: Path,
) -> None:
    """An administrator creates a project with a storage limit; the project page shows the usage after a
    push, the administrator changes the limit there; a member sees the usage but no form."""
    from playwright.sync_api import expect

    page.goto("/projects")
    login(page, "admin", ADMIN_PASSWORD)
    project = uid("quota")
    page.get_by_role("button", name="New project").click()
    new = page.get_by_role("form", name="New project")
    new.get_by_label("Name").fill(project)
    new.get_by_label("Storage limit (GiB, -1 unlimited)").fill("0.5")
    new.get_by_role("button", name="Create").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(project)
    quota = api.http.get(f"/quotas/{_project_id(api, project)}").json()
    assert quota["hard"]["storage"] == GIB // 2, quota
    expect(page.locator("#quota-usage")).to_contain_text("0 B of 512.0 MiB")

    image = layout.add_image("v1", [64 * KIB])
    skopeo.copy(image.ref, f"docker://{reg.host}/{project}/app:v1", "--dest-creds", f"admin:{ADMIN_PASSWORD}")
    page.reload()
    used = api.http.get(f"/quotas/{_project_id(api, project)}").json()["used"]["storage"]
    assert used >= 64 * KIB
    expect(page.locator("#quota-usage")).to_contain_text("KiB of 512.0 MiB")
    expect(page.locator("#quota-usage")).to_contain_text("1 artifacts")
    page.get_by_role("form", name="Storage quota").get_by_label("Storage limit (GiB, -1 unlimited)").fill("-1")
    page.get_by_role("form", name="Storage quota").get_by_role("button", name="Set quota").click()
    expect(page.locator("#quota-usage")).to_contain_text("of unlimited")
    assert api.http.get(f"/quotas/{_project_id(api, project)}").json()["hard"]["storage"] == -1
    page.screenshot(path=str(screenshots / "project-quota.png"))

    member = api.user(project, 3)
    page.get_by_role("button", name="Log out").click()
    login(page, member, PASSWORD)
    page.goto(f"/projects/{project}")
    expect(page.locator("#quota-usage")).to_contain_text("of unlimited")
    expect(page.get_by_role("form", name="Storage quota")).to_have_count(0)
    page.goto("/projects")
    page.get_by_role("button", name="New project").click()
    expect(page.get_by_role("form", name="New project").get_by_label("Storage limit (GiB, -1 unlimited)")).to_have_count(0)


def test_retention_policy_dry_run_run_and_history(
    reg: RegistryProcess, api: AdminApi, page: Page, skopeo: Skopeo, layout: OciLayout, screenshots: Path,
) -> None:
    """A projectAdmin keeps the newest artifact: the dry run lists what would go and removes nothing, the
    real run removes it; both are in the history with each repository's log. A maintainer reads, no forms."""
    from playwright.sync_api import expect

    project = api.project()
    owner = api.user(project, 1)
    maintainer = api.user(project, 4)
    for tag, kib in (("old", 8), ("new", 12)):
        image = layout.add_image(tag, [kib * KIB])
        skopeo.copy(image.ref, f"docker://{reg.host}/{project}/app:{tag}", "--dest-creds", f"admin:{ADMIN_PASSWORD}")

    def artifacts() -> list[str]:
        found = api.http.get(f"/projects/{project}/repositories/app/artifacts").json()
        return sorted(t["name"] for a in found for t in a["tags"])

    page.goto("/projects")
    login(page, owner, PASSWORD)
    page.goto(f"/projects/{project}")
    page.get_by_role("navigation", name="Project").get_by_role("link", name="Retention").click()
    rule = page.get_by_role("form", name="New retention rule")
    rule.get_by_label("Rule").select_option("latestPushedK")
    rule.get_by_label("#").fill("1")
    rule.get_by_role("button", name="Add rule").click()
    expect(page.locator("#retention-rules tbody tr")).to_contain_text("retain the most recently pushed 1 artifacts")
    policy = api.http.get(f"/projects/{project}/retention").json()
    assert [r["template"] for r in policy["rules"]] == ["latestPushedK"], policy

    page.get_by_role("button", name="Dry run").click()
    runs = page.locator("#retention-runs tbody tr")
    expect(runs.first).to_contain_text("dry run")
    _until(lambda: api.http.get(f"/retentions/{policy['id']}/executions").json()[0]["status"] == "Success",
           "the dry run")
    page.reload()
    expect(runs.first.locator(".retention-status")).to_have_text("Success")
    runs.first.get_by_role("button", name="Repositories").click()
    expect(page.locator("#retention-runs pre").first).to_contain_text("old")
    assert artifacts() == ["new", "old"]  # a dry run removes nothing

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Run now").click()
    expect(runs).to_have_count(2)
    _until(lambda: api.http.get(f"/retentions/{policy['id']}/executions").json()[0]["status"] == "Success", "the run")
    assert artifacts() == ["new"]
    page.reload()
    expect(runs.first.locator(".retention-status")).to_have_text("Success")
    page.screenshot(path=str(screenshots / "retention.png"), full_page=True)

    page.get_by_role("button", name="Log out").click()
    login(page, maintainer, PASSWORD)
    page.goto(f"/projects/{project}/retention")
    expect(page.locator("#retention-rules tbody tr")).to_have_count(1)
    expect(page.get_by_role("form", name="New retention rule")).to_have_count(0)
    expect(page.get_by_role("button", name="Run now")).to_have_count(0)


def test_registry_endpoints_screen(reg: RegistryProcess, api: AdminApi, page: Page, screenshots: Path) -> None:
    """An administrator adds an endpoint (this registry itself), tests it (reachable), tests one that is not
    (the screen says why), deletes it; the secret never comes back."""
    from playwright.sync_api import expect

    page.goto("/projects")
    login(page, "admin", ADMIN_PASSWORD)
    page.goto("/admin/registries")
    name = uid("upstream")
    form = page.get_by_role("form", name="New registry endpoint")
    form.get_by_label("Name").fill(name)
    form.get_by_label("Type").select_option("docker-registry")
    form.get_by_label("URL").fill(reg.url)
    form.get_by_label("Access key").fill("admin")
    form.get_by_label("Secret").fill(ADMIN_PASSWORD)
    form.get_by_role("button", name="Add registry").click()
    row = page.locator("#registries tbody tr", has_text=name)
    expect(row).to_have_count(1)
    stored = [r for r in api.http.get("/registries").json() if r["name"] == name]
    assert stored and stored[0]["credential"]["access_secret"] == "*****", stored
    row.get_by_role("button", name=f"Test {name}").click()
    expect(row.locator(".ping-result")).to_have_text("reachable")
    page.screenshot(path=str(screenshots / "registries.png"))

    dead = uid("dead")
    form.get_by_label("Name").fill(dead)
    form.get_by_label("URL").fill("http://127.0.0.1:9")  # the discard port: nothing answers
    form.get_by_label("Access key").fill("")
    form.get_by_role("button", name="Add registry").click()
    dead_row = page.locator("#registries tbody tr", has_text=dead)
    dead_row.get_by_role("button", name=f"Test {dead}").click()
    expect(dead_row.get_by_role("alert")).to_contain_text("ping failed")
    expected_refusals(page, 400)
    for endpoint in (name, dead):
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name=f"Delete {endpoint}").click()
        expect(page.locator("#registries tbody tr", has_text=endpoint)).to_have_count(0)
    assert not [r for r in api.http.get("/registries").json() if r["name"] in (name, dead)]


def test_replication_screen_pulls_a_repository(
    reg: RegistryProcess, api: AdminApi, page: Page, skopeo: Skopeo, layout: OciLayout, screenshots: Path,
) -> None:
    """An administrator adds a pull policy from an endpoint (this registry itself, through its /v2 API like
    any other) into another project and runs it from the screen: the execution succeeds with its task
    listed, and the copy is in the destination project with the same digest."""
    from playwright.sync_api import expect

    # The source is public: the endpoint client reads /v2/_catalog without credentials when it answers 200
    # (anonymous pull is on), so a private source would list nothing (reported to the replication owner).
    source, target = api.project(public=True), api.project()
    image = layout.add_image("v1", [8 * KIB])
    skopeo.copy(image.ref, f"docker://{reg.host}/{source}/app:v1", "--dest-creds", f"admin:{ADMIN_PASSWORD}")
    endpoint = uid("self")
    created = api.http.post("/registries", json={"name": endpoint, "type": "docker-registry", "url": reg.url,
                                                 "credential": {"type": "basic", "access_key": "admin",
                                                                "access_secret": ADMIN_PASSWORD}})
    assert created.status_code == 201, created.text
    page.goto("/projects")
    login(page, "admin", ADMIN_PASSWORD)
    page.goto("/admin/replication")
    form = page.get_by_role("form", name="New replication policy")
    policy = uid("mirror")
    form.get_by_label("Name", exact=True).fill(policy)
    form.get_by_label("Direction").select_option("pull")
    form.get_by_label("Registry").select_option(label=f"{endpoint} ({reg.url})")
    form.get_by_label("Repositories matching").fill(f"{source}/app")
    form.get_by_label("Into namespace").fill(target)
    form.get_by_role("button", name="Add policy").click()
    expect(page.locator("#rep-policies tbody tr", has_text=policy)).to_have_count(1)
    page.get_by_role("button", name=f"Replicate {policy} now").click()
    runs = page.locator("#rep-executions tbody tr", has_text=policy)
    expect(runs).to_have_count(1)
    policy_id = next(p["id"] for p in api.http.get("/replication/policies").json() if p["name"] == policy)

    def finished() -> bool:
        found = api.http.get("/replication/executions", params={"policy_id": policy_id}).json()
        return bool(found) and found[0]["status"] not in ("InProgress", "Pending")

    _until(finished, "the replication")
    page.reload()
    expect(runs.first.locator(".rep-status")).to_have_text("Succeed")
    runs.first.get_by_role("button", name="Tasks").click()
    expect(page.locator(".rep-task-status").first).to_have_text("Succeed")
    page.screenshot(path=str(screenshots / "replication.png"), full_page=True)
    copied = api.http.get(f"/projects/{target}/repositories/app/artifacts/v1")
    assert copied.status_code == 200 and copied.json()["digest"] == image.manifest.digest, copied.text


def test_webhooks_screen_delivers_a_push(
    reg: RegistryProcess, api: AdminApi, page: Page, skopeo: Skopeo, layout: OciLayout, screenshots: Path,
) -> None:
    """A projectAdmin adds a webhook for pushes; a push reaches the receiver and its delivery is listed;
    disabled, the next push is not sent."""
    from playwright.sync_api import expect

    project = api.project()
    owner = api.user(project, 1)
    receiver = Receiver()
    try:
        page.goto("/projects")
        login(page, owner, PASSWORD)
        page.goto(f"/projects/{project}/webhooks")
        form = page.get_by_role("form", name="New webhook")
        form.get_by_label("Name").fill("ci")
        form.get_by_label("URL").fill(receiver.url)
        form.get_by_role("button", name="Add webhook").click()
        expect(page.locator("#webhooks tbody tr")).to_contain_text("PUSH_ARTIFACT")
        image = layout.add_image("v1", [8 * KIB])
        skopeo.copy(image.ref, f"docker://{reg.host}/{project}/app:v1", "--dest-creds", f"{owner}:{PASSWORD}")
        _until(lambda: bool(receiver.snapshot()), "the webhook delivery")
        assert receiver.snapshot()[0].json()["type"] == "PUSH_ARTIFACT"
        page.reload()
        expect(page.locator("#deliveries tbody tr").first).to_contain_text("PUSH_ARTIFACT")
        page.screenshot(path=str(screenshots / "webhooks.png"))
        page.get_by_role("button", name="Disable webhook ci").click()
        expect(page.get_by_role("button", name="Enable webhook ci")).to_be_visible()
        assert api.http.get(f"/projects/{project}/webhook/policies").json()[0]["enabled"] is False
    finally:
        receiver.stop()


def test_groups_screen_and_a_group_as_project_member(
    reg: RegistryProcess, api: AdminApi, page: Page, screenshots: Path,
) -> None:
    """An administrator creates a local group, puts a user in it and gives the group a role in a private
    project; the user then sees the project, and loses it when the group is deleted."""
    from playwright.sync_api import expect

    project = api.project(public=False)
    user = api.user()
    group = uid("team")
    page.goto("/projects")
    login(page, "admin", ADMIN_PASSWORD)
    page.goto("/admin/groups")
    page.get_by_role("form", name="New group").get_by_label("Local group name").fill(group)
    page.get_by_role("form", name="New group").get_by_role("button", name="Create group").click()
    row = page.locator("#groups tbody tr", has_text=group)
    expect(row).to_have_count(1)
    row.get_by_role("button", name=f"Members of {group}").click()
    add = page.get_by_role("form", name=f"Add a user to {group}")
    add.get_by_label("User name").fill(user)
    add.get_by_role("button", name="Add to group").click()
    expect(row.locator(".group-members")).to_contain_text(user)
    page.screenshot(path=str(screenshots / "groups.png"))

    page.goto(f"/projects/{project}/members")
    form = page.get_by_role("form", name="Add a member")
    form.get_by_label("Add").select_option("group")
    form.get_by_label("Group name").fill(group)
    form.get_by_role("combobox", name="Role", exact=True).select_option(label="developer")
    form.get_by_role("button", name="Add member").click()
    expect(page.locator("tbody tr", has_text=group)).to_contain_text("group")
    members = api.http.get(f"/projects/{project}/members").json()
    assert [(m["entity_name"], m["entity_type"], m["role_id"]) for m in members if m["entity_type"] == "g"] == \
        [(group, "g", 2)], members

    page.get_by_role("button", name="Log out").click()
    login(page, user, PASSWORD)
    page.goto(f"/projects?q={project}")
    expect(page.get_by_role("link", name=project, exact=True)).to_be_visible()  # through the group
    page.get_by_role("button", name="Log out").click()
    login(page, "admin", ADMIN_PASSWORD)
    page.goto(f"/admin/groups?q={group}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=f"Delete group {group}").click()
    expect(page.get_by_text(f"No group matches “{group}”.")).to_be_visible()
    assert not [m for m in api.http.get(f"/projects/{project}/members").json() if m["entity_type"] == "g"]


def test_feature_screens_pass_axe_core_and_fit_a_phone(reg: RegistryProcess, api: AdminApi, browser: Browser) -> None:
    from playwright.sync_api import expect

    project = api.project()
    screens = {
        "registries": "/admin/registries",
        "groups": "/admin/groups",
        "replication": "/admin/replication",
        "retention": f"/projects/{project}/retention",
        "webhooks": f"/projects/{project}/webhooks",
        "project with quota": f"/projects/{project}",
        "projects with the new-project form": "/projects",
    }
    with open_page(browser, reg.url) as page:
        page.goto("/projects")
        login(page, "admin", ADMIN_PASSWORD)
        found: dict[str, list[str]] = {}
        wide: dict[str, int] = {}
        for width in (1200, 375):
            page.set_viewport_size({"width": width, "height": 800})
            for name, path in screens.items():
                page.goto(path)
                expect(page.locator("main h1")).to_be_visible()
                expect(page.locator("main")).not_to_contain_text("Loading")
                if path == "/projects":
                    page.get_by_role("button", name="New project").click()
                    expect(page.get_by_role("form", name="New project")).to_be_visible()
                if width == 1200:
                    found[name] = axe_violations(page)
                else:
                    wide[name] = phone_overflow(page)
        assert {name: v for name, v in found.items() if v} == {}
        assert {name: px for name, px in wide.items() if px} == {}
