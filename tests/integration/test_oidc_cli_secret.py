"""CLI secrets of OIDC users: Harbor's REST shapes, and logins that outlive the ID token.

The provider here issues 2-second ID tokens, so the tests cross the expiry in seconds (the
20-second, podman-driven version is tests/e2e/test_oidc_podman.py). With a refresh token Moorage
refreshes at the provider once the ID token has expired (one refresh however many logins race,
since the provider rotates refresh tokens and revokes a grant whose spent token comes back) and
refuses a user the provider removed; without one, the secret lives its own configured lifetime.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import jwt
import pytest
import structlog

from tests.integration.oidc_helpers import Sso, sso_registry
from tests.integration.test_identity_helpers import PASSWORD, basic
from tests.services.oidc_provider import OidcProvider

TTL = 2


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    running = OidcProvider(tmp_path_factory.mktemp("oidc"), id_token_ttl=TTL).start()
    yield running
    running.stop()


@pytest.fixture
async def sso(database_url: str, tmp_path: Path, provider: OidcProvider) -> AsyncIterator[Sso]:
    async for value in sso_registry(database_url, tmp_path, provider, client_address="10.0.1.1"):
        yield value


@pytest.fixture
async def sso_without_refresh(database_url: str, tmp_path: Path, provider: OidcProvider) -> AsyncIterator[Sso]:
    async for value in sso_registry(database_url, tmp_path, provider, refresh=False, client_address="10.0.1.2"):
        yield value


async def _secret(sso: Sso, login: str) -> tuple[int, str]:
    headers = await sso.session(login)
    me = (await sso.idp.api("GET", "/users/current", headers)).json()
    r = await sso.idp.api("PUT", f"/users/{me['user_id']}/cli_secret", headers, json={})
    assert r.status_code == 200, r.text
    return int(me["user_id"]), str(r.json()["secret"])


async def _cli_login(sso: Sso, login: str, secret: str) -> tuple[int, str]:
    """What ``docker login`` does: Basic credentials at the token service."""
    r = await sso.idp.http.get("/service/token", params={"service": "moorage"}, headers=basic(login, secret))
    return r.status_code, r.text


async def test_cli_secret_rest_shapes_and_rules(sso: Sso) -> None:
    login = sso.account()
    headers = await sso.session(login)
    me = (await sso.idp.api("GET", "/users/current", headers)).json()
    user_id = me["user_id"]
    r = await sso.idp.api("PUT", f"/users/{user_id}/cli_secret", headers, json={"secret": "short"})
    assert r.status_code == 400 and r.json()["errors"][0]["message"].startswith("secret:"), r.text
    r = await sso.idp.api("PUT", f"/users/{user_id}/cli_secret", headers, json={"secret": "Chosen-Secret-42"})
    assert r.status_code == 200, r.text
    assert (await sso.idp.api("GET", "/users/current", headers)).json()["oidc_user_meta"]["secret"] == "Chosen-Secret-42"
    status, _ = await _cli_login(sso, login, "Chosen-Secret-42")
    assert status == 200
    status, _ = await _cli_login(sso, login, "Wrong-Secret-42")
    assert status == 401
    # A refresh token (offline_token) issued under the secret.
    r = await sso.idp.http.get("/service/token", params={"service": "moorage", "offline_token": "true"},
                               headers=basic(login, "Chosen-Secret-42"))
    refresh_token = r.json()["refresh_token"]
    # The secret is regenerated (here by an admin): the old one and its refresh tokens stop at once;
    # the user's UI session goes on.
    r = await sso.idp.api("PUT", f"/users/{user_id}/cli_secret", sso.idp.admin, json={})
    assert r.status_code == 200
    new = r.json()["secret"]
    assert (await _cli_login(sso, login, "Chosen-Secret-42"))[0] == 401
    assert (await _cli_login(sso, login, new))[0] == 200
    r = await sso.idp.http.post("/service/token", data={"grant_type": "refresh_token", "service": "moorage",
                                                         "refresh_token": refresh_token})
    assert r.status_code == 401, r.text
    assert (await sso.idp.api("GET", "/users/current", headers)).json()["oidc_user_meta"]["secret"] == new
    # Others' secrets, local users, passwords.
    _, local_auth = await sso.idp.user()
    local_id = (await sso.idp.api("GET", "/users/current", local_auth)).json()["user_id"]
    assert (await sso.idp.api("PUT", f"/users/{user_id}/cli_secret", local_auth, json={})).status_code == 403
    r = await sso.idp.api("PUT", f"/users/{local_id}/cli_secret", local_auth, json={})
    assert r.status_code == 412 and "local user" in r.text
    r = await sso.idp.api("PUT", f"/users/{user_id}/password", sso.idp.admin, json={"new_password": PASSWORD})
    assert r.status_code == 412 and "cli_secret" in r.text
    rows = (await sso.idp.api("GET", "/audit-logs", sso.idp.admin, params={"username": login})).json()
    assert {"cli_secret"} <= {row["auth_method"] for row in rows if row["operation"].startswith("login")}
    assert any(row["resource"] == f"{login}:cli_secret" for row in rows if row["operation"] == "update")


async def test_with_a_refresh_token_logins_refresh_once_and_a_removed_user_is_refused(sso: Sso) -> None:
    login = sso.account()
    _, secret = await _secret(sso, login)
    assert (await _cli_login(sso, login, secret))[0] == 200
    await asyncio.sleep(TTL + 1)  # the ID token has expired
    with structlog.testing.capture_logs() as entries:
        results = await asyncio.gather(*(_cli_login(sso, login, secret) for _ in range(6)))
    assert [status for status, _ in results] == [200] * 6, results
    assert [e["event"] for e in entries].count("oidc_refreshed") == 1
    sso.provider.remove_account(login)
    assert (await _cli_login(sso, login, secret))[0] == 200  # the refreshed ID token still holds
    await asyncio.sleep(TTL + 1)
    status, text = await _cli_login(sso, login, secret)
    assert status == 401 and "no longer accepts this login" in text, text
    status, text = await _cli_login(sso, login, secret)  # known now: refused without asking the provider
    assert status == 401 and "ended the session" in text, text
    # Back at the provider and logged in through the browser: the secret works again.
    sso.provider.put_account(login, "provider-pw", email=f"{login}@example.com")
    await sso.session(login)
    assert (await _cli_login(sso, login, secret))[0] == 200


async def test_moorage_refresh_tokens_ask_the_provider_again_once_the_id_token_expired(sso: Sso) -> None:
    """What podman and docker send when their token expires (grant_type=refresh_token) is a refresh too."""
    login = sso.account()
    _, secret = await _secret(sso, login)
    r = await sso.idp.http.get("/service/token", params={"service": "moorage", "offline_token": "true"},
                               headers=basic(login, secret))
    refresh_token = r.json()["refresh_token"]

    async def renewed() -> int:
        r = await sso.idp.http.post("/service/token", data={"grant_type": "refresh_token", "service": "moorage",
                                                             "refresh_token": refresh_token})
        return r.status_code

    await asyncio.sleep(TTL + 1)
    with structlog.testing.capture_logs() as entries:
        assert await renewed() == 200
    assert "oidc_refreshed" in [e["event"] for e in entries]
    sso.provider.remove_account(login)
    await asyncio.sleep(TTL + 1)
    assert await renewed() == 401  # the provider refused the refresh: the identity and its tokens end
    status, text = await _cli_login(sso, login, secret)
    assert status == 401 and "ended the session" in text, text


async def test_without_a_refresh_token_the_secret_lives_its_own_lifetime(sso_without_refresh: Sso) -> None:
    sso = sso_without_refresh
    login = sso.account()
    user_id, secret = await _secret(sso, login)
    identity = await sso.idp.services.identity.oidc.identities.of_user(user_id)  # type: ignore[union-attr]
    assert identity is not None and not identity.has_refresh_token
    await asyncio.sleep(TTL + 1)
    with structlog.testing.capture_logs() as entries:
        assert (await _cli_login(sso, login, secret))[0] == 200
    assert "oidc_refreshed" not in [e["event"] for e in entries]


async def test_the_groups_claim_grants_project_rights_recomputed_at_the_refresh(sso: Sso) -> None:
    """An OIDC group (Harbor's group_type 3) as a project member: the claim decides, at login and at refresh."""
    project = await sso.idp.project()
    r = await sso.idp.api("POST", f"/projects/{project}/members", sso.idp.admin,
                          json={"role_id": 2, "member_group": {"group_type": 3, "group_name": f"{project}-devs"}})
    assert r.status_code == 201, r.text
    login = sso.account(groups=[f"{project}-devs", "unrelated"])
    _, secret = await _secret(sso, login)

    async def granted() -> list[str]:
        r = await sso.idp.http.get("/service/token", headers=basic(login, secret), params={
            "service": "moorage", "scope": f"repository:{project}/app:pull,push"})
        assert r.status_code == 200, r.text
        access = jwt.decode(r.json()["token"], options={"verify_signature": False})["access"]
        return sorted(access[0]["actions"]) if access else []

    assert await granted() == ["pull", "push"]  # developer through the group
    sso.provider.put_account(login, "provider-pw", email=f"{login}@example.com", groups=["unrelated"])
    await asyncio.sleep(TTL + 1)
    assert await granted() == []  # the refresh re-read the claim: no longer in the group
