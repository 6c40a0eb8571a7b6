"""The web UI in a real browser (Playwright driving Debian's chromium) against a token-mode ``moorage serve``.

Every page a test opens fails the test on a JavaScript error or a console error (the collector
of :func:`page`). Screenshots of the main pages go to ``<e2e workdir>/ui-screenshots`` (a test
artifact; ``docs/ui/`` keeps a few). The session rules themselves are checked with raw HTTP in
tests/integration/test_web_sessions.py; here the same server that the browser uses is asked
too (CSRF refusal, cookie flags).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from tests.e2e.clients import Skopeo
from tests.e2e.identity_helpers import PASSWORD, AdminApi, uid
from tests.e2e.images import OciLayout, verify_layout
from tests.e2e.servers import RegistryProcess
from tests.e2e.ui_support import WAIT_MS, axe_violations, expected_refusals, login

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

KIB = 1024




def test_login_create_project_push_find_copy_pull_logout(
    reg: RegistryProcess, api: AdminApi, page: Page, skopeo: Skopeo, layout: OciLayout, tmp_path: Path,
    screenshots: Path,
) -> None:
    from playwright.sync_api import expect

    user = api.user()
    page.goto("/")
    expect(page).to_have_url(f"{reg.url}/projects")
    expect(page.get_by_role("button", name="New project")).to_have_count(0)  # anonymous: hidden
    login(page, user, PASSWORD)

    project = uid("proj")
    page.get_by_role("button", name="New project").click()
    new = page.get_by_role("form", name="New project")
    new.get_by_label("Name").fill(project)
    new.get_by_role("button", name="Create").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(project)
    expect(page.locator("h1 .badge")).to_have_text("private")
    assert api.http.get(f"/projects/{project}").json()["public"] is False

    image = layout.add_image("v1", [96 * KIB, 48 * KIB])
    skopeo.copy(image.ref, f"docker://{reg.host}/{project}/app:v1", "--dest-creds", f"{user}:{PASSWORD}")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Projects").click()
    page.get_by_role("searchbox", name="Search projects").fill(project)
    page.get_by_role("searchbox", name="Search projects").press("Enter")
    expect(page).to_have_url(f"{reg.url}/projects?q={project}")
    page.screenshot(path=str(screenshots / "projects.png"))
    page.get_by_role("link", name=project, exact=True).click()
    page.get_by_role("link", name=f"{project}/app").click()
    row = page.locator("tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator(".tag")).to_have_text("v1")
    page.screenshot(path=str(screenshots / "repository.png"))
    row.get_by_role("link").click()

    expect(page.locator("#artifact-digest")).to_have_text(image.manifest.digest)
    expect(page.locator("#layers-total")).to_contain_text("2 layers")
    layers = page.locator("#layers-total + table tbody tr")
    expect(layers).to_have_count(2)
    assert [layers.nth(i).locator("td").last.get_attribute("title") for i in range(2)] == [
        f"{blob.size} bytes" for blob in image.layers
    ]
    page.get_by_role("button", name="Copy pull command for tag v1").click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == f"podman pull {reg.host}/{project}/app:v1"
    page.get_by_role("button", name="Copy pull command by digest").click()
    by_digest = page.evaluate("navigator.clipboard.readText()")
    assert by_digest == f"podman pull {reg.host}/{project}/app@{image.manifest.digest}"
    page.screenshot(path=str(screenshots / "artifact.png"), full_page=True)

    # What was copied pulls the pushed image (skopeo: podman needs a container storage per test).
    ref = copied.removeprefix("podman pull ")
    skopeo.copy(f"docker://{ref}", f"oci:{tmp_path / 'pulled'}:v1", "--src-creds", f"{user}:{PASSWORD}")
    assert OciLayout(tmp_path / "pulled", create=False).tags()["v1"]["digest"] == image.manifest.digest
    assert set(verify_layout(tmp_path / "pulled")) == {image.manifest.digest, *(b.digest for b in image.blobs)}

    # Deleting the tag (projectAdmin): the artifact stays, by digest.
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete tag v1").click()
    expect(page.locator("#artifact-tags")).to_have_text("untagged")
    assert api.http.get(f"/projects/{project}/repositories/app/artifacts/v1").status_code == 404
    assert api.http.get(f"/projects/{project}/repositories/app/artifacts/{image.manifest.digest}").json()["tags"] == []

    # Logout revokes the session on the server: a copy of the cookie taken before is refused after.
    copied_cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    with httpx.Client(base_url=reg.url, cookies=copied_cookies, timeout=30) as thief:
        assert thief.get("/api/v2.0/users/current").json()["username"] == user  # the copy works while logged in
        page.get_by_role("button", name="Log out").click()
        expect(page.get_by_role("link", name="Log in")).to_be_visible()
        after = thief.get("/api/v2.0/users/current")
        assert after.status_code == 401 and "logged out" in after.text, after.text
        changed = thief.post("/api/v2.0/projects", json={"project_name": uid("proj")},
                             headers={"X-CSRF-Token": copied_cookies["moorage_csrf"]})
        assert changed.status_code == 401, changed.text
    page.goto(f"/projects?q={project}")
    expect(page.get_by_text(f"No project matches “{project}”.")).to_be_visible()  # private: gone with the session
    assert not [c for c in page.context.cookies() if c["name"] == "moorage_session"]


def test_public_project_browses_without_login_and_hides_changes(
    reg: RegistryProcess, api: AdminApi, page: Page, skopeo: Skopeo, layout: OciLayout,
) -> None:
    from playwright.sync_api import expect

    from tests.e2e.identity_helpers import ADMIN_PASSWORD

    project = api.project(public=True)
    image = layout.add_image("v2", [32 * KIB])
    skopeo.copy(image.ref, f"docker://{reg.host}/{project}/team/app:v2", "--dest-creds", f"admin:{ADMIN_PASSWORD}")
    page.goto(f"/projects?q={project}")
    page.get_by_role("link", name=project, exact=True).click()
    page.get_by_role("searchbox", name="Search repositories").fill("team/a")
    page.get_by_role("searchbox", name="Search repositories").press("Enter")
    page.get_by_role("link", name=f"{project}/team/app").click()
    expect(page).to_have_url(f"{reg.url}/projects/{project}/repositories/team%2Fapp")
    expect(page.locator("tbody tr .tag")).to_have_text("v2")
    expect(page.get_by_role("button", name="New project")).to_have_count(0)
    page.locator("tbody tr").get_by_role("link").click()
    history = page.locator("h2:has-text('Build history') + table tbody tr")
    expect(history).to_have_count(1)  # the test image's config has one history entry per layer
    expect(history).to_contain_text("moorage tests")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Projects").click()
    expect(page.get_by_role("button", name="New project")).to_have_count(0)

    # A multi-platform index: its platforms, each a link to that platform's image.
    index = layout.add_index("multi")
    skopeo.copy(index.ref, f"docker://{reg.host}/{project}/team/app:multi", "--all",
                "--dest-creds", f"admin:{ADMIN_PASSWORD}")
    page.goto(f"/projects/{project}/repositories/team%2Fapp/artifacts/{index.index.digest}")
    platforms = page.locator("td.platform")
    expect(platforms).to_have_text(["linux/amd64", "linux/arm64"])
    page.get_by_role("link", name=index.images[1].manifest.digest[:19]).click()
    expect(page.locator("#artifact-digest")).to_have_text(index.images[1].manifest.digest)


def test_csrf_and_cookie_flags_on_the_real_server(reg: RegistryProcess, api: AdminApi) -> None:
    """Raw HTTP: a state change with the session cookie but without its CSRF header changes nothing."""
    user = api.user()
    with httpx.Client(base_url=reg.url, timeout=30) as http:
        r = http.post("/c/login", json={"principal": user, "password": PASSWORD})
        assert r.status_code == 200, r.text
        flags = {h.split("=", 1)[0]: h.lower() for h in r.headers.get_list("set-cookie")}
        assert "httponly" in flags["moorage_session"] and "samesite=lax" in flags["moorage_session"]
        assert "httponly" not in flags["moorage_csrf"] and "secure" not in flags["moorage_session"]  # plain HTTP
        project = uid("proj")

        def listed() -> list[str]:  # the listing reads the database (a by-name GET may be cached 2 s per node)
            return [p["name"] for p in api.http.get("/projects", params={"name": project}).json()]

        refused = http.post("/api/v2.0/projects", json={"project_name": project})
        assert refused.status_code == 403 and "X-CSRF-Token" in refused.text
        refused = http.post("/api/v2.0/projects", json={"project_name": project}, headers={"X-CSRF-Token": "guess"})
        assert refused.status_code == 403
        assert listed() == []
        ok = http.post("/api/v2.0/projects", json={"project_name": project},
                       headers={"X-CSRF-Token": http.cookies["moorage_csrf"]})
        assert ok.status_code == 201, ok.text
        assert listed() == [project]


def test_ui_assets_come_from_the_package(reg: RegistryProcess) -> None:
    """No CDN: every script and stylesheet the page loads is served by the registry itself."""
    import moorage.web

    static = Path(moorage.web.__file__).parent / "static"
    with httpx.Client(base_url=reg.url, timeout=30) as http:
        html = http.get("/").text
        for asset in sorted(static.rglob("*.*")):
            path = "/static/" + asset.relative_to(static).as_posix()
            r = http.get(path)
            assert r.status_code == 200 and r.content == asset.read_bytes(), path
            text = r.text.replace('xmlns="http://www.w3.org/2000/svg"', "")  # a namespace name, never fetched
            assert "http://" not in text and "https://" not in text, f"{path} names an outside URL"
    assert "https://" not in html and "http://" not in html


def test_members_and_robots_screens(
    reg: RegistryProcess, api: AdminApi, page: Page, skopeo: Skopeo, layout: OciLayout, screenshots: Path,
) -> None:
    """A projectAdmin adds a member and creates a robot whose secret (shown once) pushes; the member
    then sees the project but neither the robot screen nor its data."""
    from playwright.sync_api import expect

    project = api.project(public=False)
    owner = api.user(project, 1)
    member = api.user()
    page.goto("/projects")
    login(page, owner, PASSWORD)
    page.goto(f"/projects/{project}")
    page.get_by_role("link", name="Members").click()
    add = page.get_by_role("form", name="Add a member")  # waits for the members screen
    add.get_by_label("User name").fill(member)
    add.get_by_role("combobox", name="Role", exact=True).select_option(label="guest")
    add.get_by_role("button", name="Add member").click()
    expect(page.get_by_role("combobox", name=f"Role of {member}")).to_have_value("3")

    page.get_by_role("link", name="Robot accounts").click()
    create = page.get_by_role("form", name="New robot account")  # waits for the robots screen
    create.get_by_label("Name").fill("ci")
    create.get_by_role("checkbox", name="push").check()
    create.get_by_role("button", name="Create robot").click()
    robot = f"robot${project}+ci"
    expect(page.locator("#robot-secret")).to_contain_text(robot)
    page.get_by_role("button", name=f"Copy secret of {robot}").click()
    secret = page.evaluate("navigator.clipboard.readText()")
    expect(page.locator("tbody tr")).to_have_count(1)
    page.screenshot(path=str(screenshots / "robots.png"))
    image = layout.add_image("v1", [16 * KIB])
    skopeo.copy(image.ref, f"docker://{reg.host}/{project}/built:v1", "--dest-creds", f"{robot}:{secret}")
    page.get_by_role("button", name=f"Disable {robot}").click()
    expect(page.get_by_role("button", name=f"Enable {robot}")).to_be_visible()
    expect(page.locator("#robot-secret")).to_have_count(0)  # shown once: gone after the next change
    refused = httpx.get(f"{reg.url}/service/token", params={"service": "moorage"}, auth=(robot, secret), timeout=30)
    assert refused.status_code == 403 and "is disabled" in refused.text, refused.text

    page.get_by_role("button", name="Log out").click()
    login(page, member, PASSWORD)
    page.goto(f"/projects?q={project}")
    page.get_by_role("link", name=project, exact=True).click()
    page.get_by_role("link", name=f"{project}/built").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"{project}/built")  # else the row is the project's
    page.locator("tbody tr").get_by_role("link").click()
    expect(page.locator("#artifact-tags")).to_have_text("v1")
    expect(page.get_by_role("button", name="Delete tag v1")).to_have_count(0)  # guest: no delete
    page.goto(f"/projects/{project}")
    tabs = page.get_by_role("navigation", name="Project")
    expect(tabs.get_by_role("link", name="Members")).to_be_visible()
    expect(tabs.get_by_role("link", name="Robot accounts")).to_have_count(0)  # guest: hidden
    page.goto(f"/projects/{project}/robots")
    expect(page.get_by_role("alert")).to_contain_text("maintainer")  # and refused by the API
    expected_refusals(page, 403)
    page.goto(f"/projects/{project}/members")
    expect(page.get_by_role("button", name="Add member")).to_have_count(0)
    expect(page.get_by_role("button", name=f"Remove {member}")).to_have_count(0)


def test_main_pages_pass_axe_core_and_work_by_keyboard(
    reg: RegistryProcess, api: AdminApi, page: Page, skopeo: Skopeo, layout: OciLayout,
) -> None:
    """axe-core (4.12, bundled by axe-playwright-python) on every screen; the login is done with the keyboard only."""
    from playwright.sync_api import expect

    from tests.e2e.identity_helpers import ADMIN_PASSWORD

    project = api.project(public=True)
    owner = api.user(project, 1)
    image = layout.add_image("v1", [16 * KIB])
    skopeo.copy(image.ref, f"docker://{reg.host}/{project}/app:v1", "--dest-creds", f"admin:{ADMIN_PASSWORD}")
    found: dict[str, list[str]] = {}
    page.goto("/projects")
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()
    found["projects (anonymous)"] = axe_violations(page)
    page.goto("/login")
    expect(page.get_by_label("User name")).to_be_focused()  # no mouse from here on
    found["login"] = axe_violations(page)
    page.keyboard.type(owner)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.locator("#whoami")).to_have_text(owner)
    screens = {
        "projects": "/projects",
        "project": f"/projects/{project}",
        "repository": f"/projects/{project}/repositories/app",
        "artifact": f"/projects/{project}/repositories/app/artifacts/{image.manifest.digest}",
        "members": f"/projects/{project}/members",
        "robots": f"/projects/{project}/robots",
    }
    for name, path in screens.items():
        page.goto(path)
        expect(page.locator("main h1")).to_be_visible()
        expect(page.locator("main")).not_to_contain_text("Loading")
        found[name] = axe_violations(page)
    assert {name: v for name, v in found.items() if v} == {}
    # Usable on a phone: nothing scrolls sideways at 375 px (long digests and commands wrap or scroll inside).
    page.set_viewport_size({"width": 375, "height": 740})
    wide = {}
    for name, path in screens.items():
        page.goto(path)
        expect(page.locator("main h1")).to_be_visible()
        expect(page.locator("main")).not_to_contain_text("Loading")
        wide[name] = page.evaluate("document.documentElement.scrollWidth")
    assert {name: width for name, width in wide.items() if width > 375} == {}


def test_open_registry_browses_withoutlogin(
    moorage_sqlite: RegistryProcess, browser: Browser, skopeo: Skopeo, layout: OciLayout
) -> None:
    """auth.mode: none (the embedded default): the UI says the registry is open, offers no login,
    shows the push/pull commands, and browses what was pushed (one-part names, no projects): find the
    repository, open the artifact, copy its pull command. No JavaScript error, nothing wider than a phone."""
    from playwright.sync_api import expect

    host = moorage_sqlite.host
    context = browser.new_context(base_url=moorage_sqlite.url, viewport={"width": 375, "height": 740})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=moorage_sqlite.url)
    context.set_default_timeout(WAIT_MS)
    expect.set_options(timeout=WAIT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    name = uid("open")
    image = layout.add_image("v1", [16 * KIB, 8 * KIB])
    skopeo.copy(image.ref, f"docker://{host}/{name}:v1")
    try:
        page.goto("/")
        expect(page).to_have_url(f"{moorage_sqlite.url}/repositories")
        expect(page.get_by_role("heading", name="Open registry")).to_be_visible()
        expect(page.get_by_role("link", name="Log in")).to_have_count(0)
        expect(page.get_by_role("navigation", name="Main").get_by_role("link")).to_have_text(["Repositories"])
        expect(page.get_by_text(f"podman pull --tls-verify=false {host}/")).to_be_visible()
        page.get_by_role("searchbox", name="Search repositories").fill(name)
        page.get_by_role("searchbox", name="Search repositories").press("Enter")
        expect(page).to_have_url(f"{moorage_sqlite.url}/repositories?q={name}")
        expect(page.locator("tbody tr")).to_have_count(1)  # was a dead end: the API answered 501 in this mode
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        found = {"repositories": axe_violations(page)}
        page.get_by_role("link", name=name, exact=True).click()
        expect(page.get_by_role("heading", level=1)).to_have_text(name)
        row = page.locator("tbody tr")
        expect(row.locator(".tag")).to_have_text("v1")
        row.get_by_role("link").click()
        expect(page.locator("#artifact-digest")).to_have_text(image.manifest.digest)
        expect(page.locator("#layers-total")).to_contain_text("2 layers")
        page.get_by_role("button", name="Copy pull command for tag v1").click()
        assert page.evaluate("navigator.clipboard.readText()") == f"podman pull {host}/{name}:v1"
        expect(page.get_by_role("button", name="Delete tag v1")).to_have_count(0)  # reads only
        found["artifact"] = axe_violations(page)
        assert {screen: v for screen, v in found.items() if v} == {}
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        page.goto("/login")
        expect(page.get_by_text("there are no accounts")).to_be_visible()
    finally:
        context.close()
    assert errors == []
