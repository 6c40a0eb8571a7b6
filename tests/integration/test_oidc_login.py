"""OIDC browser logins against a real provider (npm's oidc-provider), on SQLite and PostgreSQL.

Onboarding, the admin group, a name clash with a local user, the redirect URL behind a proxy, and
the provider's key rotation.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import structlog

from moorage.app import create_app
from moorage.certs import make_ca, make_server
from moorage.checks import run_checks
from moorage.services import Services
from tests.integration.oidc_helpers import BASE_URL, PROVIDER_PASSWORD, Sso, sso_registry
from tests.services.oidc_provider import OidcProvider, free_port, new_jwk, provider_login


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    running = OidcProvider(tmp_path_factory.mktemp("oidc")).start()
    yield running
    running.stop()


@pytest.fixture
async def sso(database_url: str, tmp_path: Path, provider: OidcProvider) -> AsyncIterator[Sso]:
    async for value in sso_registry(database_url, tmp_path, provider,
                                    MOORAGE_AUTH__OIDC__ADMIN_GROUP="registry-admins"):
        yield value


async def test_first_login_onboards_the_user_and_the_admin_group_grants_system_admin(sso: Sso) -> None:
    login = sso.account(groups=["devs"])
    headers = await sso.session(login)
    r = await sso.idp.api("GET", "/users/current", headers)
    assert r.status_code == 200, r.text
    me = r.json()
    assert me["username"] == login and me["email"] == f"{login}@example.com" and not me["sysadmin_flag"]
    meta = me["oidc_user_meta"]
    assert meta["subiss"] == login + sso.provider.issuer and meta["secret"] == ""
    # The provider moves the user into the admin group: the next login makes them a system admin,
    # and leaving the group takes it away again.
    sso.provider.put_account(login, "provider-pw", email=f"{login}@example.com", groups=["devs", "registry-admins"])
    headers = await sso.session(login)
    assert (await sso.idp.api("GET", "/users/current", headers)).json()["sysadmin_flag"] is True
    sso.provider.put_account(login, "provider-pw", email=f"{login}@example.com", groups=["devs"])
    headers = await sso.session(login)
    assert (await sso.idp.api("GET", "/users/current", headers)).json()["sysadmin_flag"] is False
    users = (await sso.idp.api("GET", "/users", sso.idp.admin, params={"username": login})).json()
    assert [u["username"] for u in users] == [login]  # logged in three times, one user
    rows = (await sso.idp.api("GET", "/audit-logs", sso.idp.admin, params={"username": login})).json()
    assert any(row["operation"] == "login" and row["auth_method"] == "oidc" for row in rows)


async def test_a_name_that_belongs_to_a_local_user_is_refused_with_a_clear_error(sso: Sso) -> None:
    local, _ = await sso.idp.user("clash")
    sso.provider.put_account(local, "provider-pw", email="someone@example.com")
    r = await sso.login(local)
    assert r.status_code == 303
    location = urlsplit(r.headers["location"])
    assert location.path == "/login"
    message = parse_qs(location.query)["sso_error"][0]
    assert f"the name {local!r} belongs to a local account" in message, message
    assert "moorage_session" not in r.cookies
    r = await sso.idp.api("GET", "/users", sso.idp.admin, params={"username": local})
    assert len(r.json()) == 1 and "OIDC" not in (r.json()[0]["comment"] or "")


async def test_the_redirect_url_follows_a_trusted_proxy_and_ignores_an_untrusted_one(sso: Sso) -> None:
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "registry.example.com"}
    r = await sso.idp.http.get("/c/oidc/login", headers=forwarded)  # from 127.0.0.1: a trusted proxy
    query = parse_qs(urlsplit(r.headers["location"]).query)
    assert query["redirect_uri"] == ["https://registry.example.com/c/oidc/callback"]
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["nonce"] and query["state"] and query["scope"] == ["openid profile email groups"]
    assert "secure" in r.headers["set-cookie"].lower()
    r = await sso.idp.http.get("/c/oidc/login", headers={**forwarded, "X-Forwarded-For": "1.2.3.4"})
    assert query["redirect_uri"] == parse_qs(urlsplit(r.headers["location"]).query)["redirect_uri"]


async def test_untrusted_peers_cannot_choose_the_redirect_url(database_url: str, tmp_path: Path,
                                                              provider: OidcProvider) -> None:
    async for sso in sso_registry(database_url, tmp_path, provider, client_address="10.20.30.40"):
        r = await sso.idp.http.get("/c/oidc/login", headers={"X-Forwarded-Proto": "https",
                                                             "X-Forwarded-Host": "evil.example"})
        query = parse_qs(urlsplit(r.headers["location"]).query)
        assert query["redirect_uri"] == ["http://registry.test/c/oidc/callback"]
        assert "secure" not in r.headers["set-cookie"].lower()


async def test_a_rotated_provider_key_is_fetched_when_a_token_names_it(sso: Sso, provider: OidcProvider) -> None:
    login = sso.account()
    await sso.session(login)  # the JWKS with the first key is now cached
    provider.restart([new_jwk(f"key-{uuid.uuid4().hex[:8]}"), *provider.keys[:1]])
    await sso.session(login)  # signed by the new key: the JWKS is read again


async def test_a_provider_behind_a_private_ca_needs_its_ca_bundle(database_url: str, tmp_path: Path) -> None:
    """HTTPS with a certificate of a private CA: trusted through auth.oidc.ca_bundle, refused without it."""
    ca = make_ca(tmp_path / "ca")
    server = make_server(tmp_path / "server", ca.certificate, ca.key, ["127.0.0.1"])
    provider = OidcProvider(tmp_path, tls=(server.certificate, server.key))
    provider.ca_bundle = ca.certificate
    provider.start()
    try:
        async for sso in sso_registry(database_url, tmp_path, provider):
            await sso.session(sso.account())  # discovery, token endpoint and JWKS over verified TLS
        (tmp_path / "untrusted").mkdir()
        async for sso in sso_registry(database_url, tmp_path / "untrusted", provider, trust_provider_ca=False):
            with structlog.testing.capture_logs() as entries:
                r = await sso.idp.http.get("/c/oidc/login")
            assert r.status_code == 303 and "single+sign-on+is+unavailable" in r.headers["location"]
            reason = next(e["reason"] for e in entries if e["event"] == "oidc_provider_unavailable")
            assert "CERTIFICATE_VERIFY_FAILED" in reason and "ca_bundle" in reason, reason
    finally:
        provider.stop()


async def test_moorage_check_reads_the_providers_discovery_and_keys(sso: Sso, provider: OidcProvider) -> None:
    results = {result.name: result for result in await run_checks(sso.idp.settings)}
    assert results["oidc provider"].ok and provider.issuer in results["oidc provider"].detail
    broken = sso.idp.settings.model_copy(deep=True)
    broken.auth.oidc.issuer = f"http://127.0.0.1:{free_port()}"
    failed = {result.name: result for result in await run_checks(broken)}["oidc provider"]
    assert not failed.ok and "auth.oidc.issuer" in failed.fix


async def test_two_first_logins_of_one_person_at_once_make_one_account(sso: Sso) -> None:
    login = sso.account(groups=["g1"])
    responses = await asyncio.gather(sso.login(login), sso.login(login), sso.login(login))
    assert [r.headers["location"] for r in responses] == ["/projects"] * 3, [r.headers for r in responses]
    users = (await sso.idp.api("GET", "/users", sso.idp.admin, params={"username": login})).json()
    assert [u["username"] for u in users] == [login]


async def test_the_callback_may_reach_another_node(sso: Sso) -> None:
    """The login in flight lives in the database: started on node A, finished on node B (same database)."""
    other = Services.from_settings(sso.idp.settings)
    assert other.identity is not None
    await other.identity.start()
    node_b = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(sso.idp.settings, other)),
                               base_url=BASE_URL)
    login = sso.account()
    moorage, provider_side = sso.browser()
    try:
        async with moorage, provider_side, node_b:
            r = await moorage.get("/c/oidc/login")
            callback = await provider_login(provider_side, r.headers["location"], login, PROVIDER_PASSWORD)
            node_b.cookies.set("moorage_oidc_state", moorage.cookies["moorage_oidc_state"], domain="registry.test",
                               path="/c/oidc")
            r = await node_b.get(callback)
            assert r.status_code == 303 and r.headers["location"] == "/projects", r.headers
            session = r.cookies["moorage_session"]
            r = await moorage.get("/api/v2.0/users/current", headers={"Cookie": f"moorage_session={session}"})
            assert r.status_code == 200 and r.json()["username"] == login  # and the session is good on node A
    finally:
        await other.aclose()
