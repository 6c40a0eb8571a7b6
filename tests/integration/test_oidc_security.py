"""OIDC callbacks that must be refused, against a real provider whose answers the fixture forges.

Each refusal: a clear reason in the log (``oidc_login_refused``), a generic message to the browser
(with a reference to that log line), a ``login_failure`` audit row (method ``oidc``), and a count
in the login throttle, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import structlog

from tests.integration.oidc_helpers import PROVIDER_PASSWORD, Sso, sso_registry
from tests.services.oidc_provider import OidcProvider, browser_login, provider_login

#: Forgery → what the log line must say.
FORGERIES = {
    "alg-none": "uses alg 'none'",
    "unknown-key": "not in the provider's JWKS",
    "wrong-nonce": "nonce does not match",
    "expired": "has expired",
    "not-yet-valid": "not valid yet",
    "issuer": "'https://issuer.invalid' is not the configured",
}


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    running = OidcProvider(tmp_path_factory.mktemp("oidc")).start()
    yield running
    running.stop()


@pytest.fixture
async def sso(database_url: str, tmp_path: Path, provider: OidcProvider) -> AsyncIterator[Sso]:
    async for value in sso_registry(database_url, tmp_path, provider, client_address="10.0.0.7",
                                    MOORAGE_AUTH__LOGIN_MAX_FAILURES=50):
        yield value


def _refused(r: httpx.Response) -> str:
    """The generic message a refused callback sends the browser back to /login with."""
    assert r.status_code == 303, r.text
    location = urlsplit(r.headers["location"])
    assert location.path == "/login", r.headers["location"]
    assert "moorage_session" not in r.cookies
    return parse_qs(location.query)["sso_error"][0]


def _reasons(entries: list[dict[str, Any]]) -> list[str]:
    return [str(entry["reason"]) for entry in entries if entry["event"] == "oidc_login_refused"]


async def _failures(sso: Sso) -> list[dict[str, Any]]:
    r = await sso.idp.api("GET", "/audit-logs", sso.idp.admin, params={"operation": "login_failure", "page_size": 100})
    return [row for row in r.json() if row["auth_method"] == "oidc"]


async def test_forged_id_tokens_are_refused_logged_audited_and_generic_to_the_client(sso: Sso) -> None:
    login = sso.account()
    before = len(await _failures(sso))
    for mode, reason in FORGERIES.items():
        sso.provider.tamper(mode)
        with structlog.testing.capture_logs() as entries:
            message = _refused(await sso.login(login))
        assert message.startswith("single sign-on failed; try again"), (mode, message)
        assert reason not in message and "nonce" not in message and "token" not in message, (mode, message)
        reasons = _reasons(entries)
        assert len(reasons) == 1 and reason in reasons[0], (mode, reasons)
        reference = next(e["request_id"] for e in entries if e["event"] == "oidc_login_refused")
        assert reference in message  # the operator finds the reason under the reference the user quotes
    assert len(await _failures(sso)) == before + len(FORGERIES)
    users = (await sso.idp.api("GET", "/users", sso.idp.admin, params={"username": login})).json()
    assert users == []  # nobody was onboarded by a forged token
    await sso.session(login)  # and the real login still works


async def test_wrong_state_and_replayed_callbacks_and_codes_are_refused(sso: Sso) -> None:
    login = sso.account()
    # A callback whose state is not this browser's.
    moorage, provider = sso.browser()
    async with moorage, provider:
        r = await moorage.get("/c/oidc/login")
        callback = await provider_login(provider, r.headers["location"], login, PROVIDER_PASSWORD)
        forged = callback.replace("state=", "state=x")
        with structlog.testing.capture_logs() as entries:
            _refused(await moorage.get(forged))
        assert "state does not match" in _reasons(entries)[0]
    # A callback replayed after it was used (the same browser, the same state cookie).
    moorage, provider = sso.browser()
    async with moorage, provider:
        r = await moorage.get("/c/oidc/login")
        state_cookie = moorage.cookies["moorage_oidc_state"]
        callback = await provider_login(provider, r.headers["location"], login, PROVIDER_PASSWORD)
        used = await moorage.get(callback)
        assert used.status_code == 303 and used.headers["location"] == "/projects"
        moorage.cookies.set("moorage_oidc_state", state_cookie, domain="registry.test", path="/c/oidc")
        with structlog.testing.capture_logs() as entries:
            _refused(await moorage.get(callback))
        assert "already used" in _reasons(entries)[0]
        # The used code under a new, valid state: the provider refuses it (codes are single-use).
        r = await moorage.get("/c/oidc/login")
        state = parse_qs(urlsplit(r.headers["location"]).query)["state"][0]
        code = parse_qs(urlsplit(callback).query)["code"][0]
        with structlog.testing.capture_logs() as entries:
            _refused(await moorage.get("/c/oidc/callback", params={"code": code, "state": state}))
        assert "invalid_grant" in _reasons(entries)[0]


async def test_failed_callbacks_are_counted_by_the_login_throttle(database_url: str, tmp_path: Path,
                                                                  provider: OidcProvider) -> None:
    async for sso in sso_registry(database_url, tmp_path, provider, client_address="10.0.0.8",
                                  MOORAGE_AUTH__LOGIN_MAX_FAILURES=3):
        login = sso.account()
        await sso.session(login)  # a success first: the count starts from zero
        for _ in range(3):
            sso.provider.tamper("wrong-nonce")
            assert _refused(await sso.login(login)).startswith("single sign-on failed")
        moorage, provider_side = sso.browser()
        async with moorage, provider_side:
            message = _refused(await browser_login(moorage, provider_side, login, PROVIDER_PASSWORD))
        assert message.startswith("too many failed single sign-on attempts from 10.0.0.8"), message
        r = await sso.idp.api("GET", "/audit-logs", sso.idp.admin, params={"operation": "login_throttled"})
        assert any(row["username"] == "(oidc)" and row["client"] == "10.0.0.8" for row in r.json())
