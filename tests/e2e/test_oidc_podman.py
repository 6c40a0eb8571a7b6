"""OIDC with real clients: ``podman login`` with a CLI secret across a 20-second ID-token lifetime.

The field report: Harbor's CLI secret died with the ID token when the provider's connector did not
refresh. Here npm's oidc-provider issues 20-second ID tokens to two ``moorage serve``: one whose
client gets refresh tokens (on PostgreSQL) and one whose client does not (on SQLite). 60 s after
the browser logins, podman logs in on both with the CLI secrets (the first refreshes at the
provider, the second relies on the secret's own lifetime), and a user removed from the provider
meanwhile is refused at the refresh. The SSO button of the login page is clicked through in
chromium on the same provider, and the CLI secret generated on the profile page logs in.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import skip_or_fail
from tests.e2e.clients import ClientError, ContainersTools
from tests.e2e.conftest import require_tool
from tests.e2e.identity_helpers import start_token_moorage, uid
from tests.e2e.servers import RegistryProcess, free_port, throwaway_postgres_database
from tests.e2e.ui_support import CHROMIUM, CHROMIUM_ARGS, open_page
from tests.services.oidc_provider import OidcProvider

PROVIDER_PASSWORD = "provider-pw"
ID_TOKEN_TTL = 20


@pytest.fixture(scope="module")
def provider(e2e_workdir: Path) -> Iterator[OidcProvider]:
    running = OidcProvider(e2e_workdir, id_token_ttl=ID_TOKEN_TTL).start()
    yield running
    running.stop()


def _sso_moorage(workdir: Path, provider: OidcProvider, label: str, *, refresh: bool,
                 database_url: str | None = None) -> RegistryProcess:
    port = free_port()
    client_id, client_secret = provider.register_client(f"http://127.0.0.1:{port}/c/oidc/callback", refresh=refresh)
    env = {"MOORAGE_AUTH__SOURCES": "[local, oidc, robot]", "MOORAGE_AUTH__OIDC__ISSUER": provider.issuer,
           "MOORAGE_AUTH__OIDC__CLIENT_ID": client_id, "MOORAGE_AUTH__OIDC__CLIENT_SECRET": client_secret,
           "MOORAGE_AUTH__OIDC__NAME": "Test provider", "MOORAGE_AUTH__OIDC__SCOPES": "[openid, profile, email]",
           "MOORAGE_HTTP__WORKERS": "1"}  # one process each: quicker to start, and the refresh runs on one node
    return start_token_moorage(workdir, label=label, port=port, database_url=database_url, extra_env=env)


@pytest.fixture(scope="module")
def servers(e2e_workdir: Path, provider: OidcProvider,
            postgres_admin_url: str) -> Iterator[tuple[RegistryProcess, RegistryProcess]]:
    """``(with refresh tokens on PostgreSQL, without on SQLite)``, started side by side (each takes seconds)."""
    with throwaway_postgres_database(postgres_admin_url) as url, ThreadPoolExecutor(2) as pool:
        refreshing = pool.submit(_sso_moorage, e2e_workdir, provider, "moorage-oidc-refresh", refresh=True,
                                 database_url=url)
        plain = pool.submit(_sso_moorage, e2e_workdir, provider, "moorage-oidc-norefresh", refresh=False)
        futures = (refreshing, plain)
        wait(futures)
        started = [future.result() for future in futures if future.exception() is None]
        if len(started) < len(futures):  # stop the one that came up, then report the one that did not
            for server in started:
                server.stop()
            next(future for future in futures if future.exception() is not None).result()
        try:
            yield started[0], started[1]
        finally:
            for server in started:
                server.stop()


@pytest.fixture
def with_refresh(servers: tuple[RegistryProcess, RegistryProcess]) -> RegistryProcess:
    return servers[0]


@pytest.fixture
def without_refresh(servers: tuple[RegistryProcess, RegistryProcess]) -> RegistryProcess:
    return servers[1]


def browser_login(reg: RegistryProcess, login: str) -> httpx.Client:
    """A browser login through the provider with httpx; returns the client holding the UI session."""
    browser = httpx.Client(base_url=reg.url, timeout=10)
    r = browser.get("/c/oidc/login")
    assert r.status_code == 303, r.text
    with httpx.Client(timeout=10) as provider_side:
        r = provider_side.get(r.headers["location"])
        interaction = str(r.url.join(r.headers["location"]))
        r = provider_side.post(interaction + "/login", data={"login": login, "password": PROVIDER_PASSWORD})
        location = str(r.url.join(r.headers["location"]))
        while not location.startswith(reg.url):
            r = provider_side.get(location)
            location = str(r.url.join(r.headers["location"]))
    r = browser.get(location)
    assert r.status_code == 303 and r.headers["location"] == "/projects", r.headers
    return browser


def cli_secret(reg: RegistryProcess, login: str) -> str:
    browser = browser_login(reg, login)
    try:
        me = browser.get("/api/v2.0/users/current").json()
        csrf = browser.cookies["moorage_csrf"]
        r = browser.put(f"/api/v2.0/users/{me['user_id']}/cli_secret", json={}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200, r.text
        return str(r.json()["secret"])
    finally:
        browser.close()


def _podman_login(tools: ContainersTools, reg: RegistryProcess, user: str, secret: str) -> str:
    try:
        result = tools.podman("login", "--tls-verify=false", "-u", user, "-p", secret, reg.host)
    except ClientError as exc:
        output = exc.result.stdout + exc.result.stderr
        print(f"\n--- podman login {user}@{reg.label} ---\n{output}")
        return output
    return result.stdout


def test_cli_secrets_outlive_a_20_second_id_token_with_and_without_refresh_tokens(
    tmp_path: Path, provider: OidcProvider, with_refresh: RegistryProcess, without_refresh: RegistryProcess,
) -> None:
    require_tool("podman")
    tools = ContainersTools(tmp_path / "containers", [with_refresh.host, without_refresh.host])
    tools.env["REGISTRY_AUTH_FILE"] = str(tmp_path / "auth.json")
    try:
        alice, bob = uid("alice"), uid("bob")
        for login in (alice, bob):
            provider.put_account(login, PROVIDER_PASSWORD, email=f"{login}@example.com")
        started = time.monotonic()
        secrets = {
            ("refresh", alice): cli_secret(with_refresh, alice),
            ("refresh", bob): cli_secret(with_refresh, bob),
            ("norefresh", alice): cli_secret(without_refresh, alice),
        }
        servers = {"refresh": with_refresh, "norefresh": without_refresh}
        for (which, login), secret in secrets.items():
            assert "Login Succeeded" in _podman_login(tools, servers[which], login, secret)
        provider.remove_account(bob)
        with_refresh.mark_log()
        without_refresh.mark_log()
        time.sleep(max(0.0, started + 3 * ID_TOKEN_TTL - time.monotonic()))  # t + 60 s: every ID token expired
        assert "Login Succeeded" in _podman_login(tools, with_refresh, alice, secrets[("refresh", alice)])
        assert "Login Succeeded" in _podman_login(tools, without_refresh, alice, secrets[("norefresh", alice)])
        refused = _podman_login(tools, with_refresh, bob, secrets[("refresh", bob)])
        assert "Login Succeeded" not in refused and "invalid username/password" in refused, refused
        r = httpx.get(f"{with_refresh.url}/service/token", params={"service": "moorage"},
                      auth=(bob, secrets[("refresh", bob)]))
        assert r.status_code == 401 and "identity provider ended the session" in r.text, r.text
        assert "oidc_refreshed" in with_refresh.log_since_mark()
        assert "oidc_identity_revoked" in with_refresh.log_since_mark()
        assert "oidc_refreshed" not in without_refresh.log_since_mark()
    finally:
        tools.cleanup()


def test_the_login_page_offers_the_provider_and_signs_in_through_it(
    provider: OidcProvider, without_refresh: RegistryProcess,
) -> None:
    if not Path(CHROMIUM).exists():
        skip_or_fail(f"{CHROMIUM} is missing (apt-get install chromium; scripts/test.sh installs it)")
    from playwright.sync_api import expect, sync_playwright

    login = uid("carol")
    provider.put_account(login, PROVIDER_PASSWORD, email=f"{login}@example.com")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            with open_page(browser, without_refresh.url) as page:
                page.goto("/login")
                page.get_by_role("link", name="Log in with Test provider").click()
                page.locator("#login").fill(login)  # the provider's own page
                page.locator("#password").fill(PROVIDER_PASSWORD)
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_url(f"{without_refresh.url}/projects")
                expect(page.locator("#whoami")).to_have_text(login)
                # The profile: generate the CLI secret, show it, and log in with it as docker/podman do.
                page.locator("#whoami").click()
                expect(page.get_by_role("heading", name="CLI secret")).to_be_visible()
                page.get_by_role("button", name="Generate a secret").click()
                expect(page.get_by_text("New secret set")).to_be_visible()
                page.get_by_role("button", name="Show").click()
                secret = page.locator("#cli-secret").input_value()
                assert len(secret) == 32
                r = httpx.get(f"{without_refresh.url}/service/token", params={"service": "moorage"},
                              auth=(login, secret))
                assert r.status_code == 200, r.text
                # A refused sign-on comes back to the login page with the generic message.
                page.goto("/c/oidc/callback?state=forged&code=forged")
                expect(page.get_by_role("alert")).to_contain_text("single sign-on failed")
                assert urlsplit(page.url).path == "/login"
        finally:
            browser.close()
