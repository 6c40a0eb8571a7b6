"""Identity sources against a real directory (Debian's slapd, tests/services/ldap.py), on SQLite and
PostgreSQL: LDAP logins, group-mapped rights recomputed at login and refresh, the name-clash rule,
StartTLS/LDAPS with a custom CA, and LDAP filter injection refused, throttled and audited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from structlog.testing import capture_logs

from moorage.auth.identity import IdentityError
from moorage.auth.ldap import LdapSource
from moorage.auth.sources import ExternalAccount
from tests.integration.test_identity_helpers import PASSWORD, Idp, basic, bearer, make_idp, uid
from tests.services.ldap import Directory

LDAP_PASSWORD = "Directory-pass1"


@pytest.fixture
async def idp(database_url: str, tmp_path: Path, slapd: Directory) -> AsyncIterator[Idp]:
    async for value in make_idp(database_url, tmp_path, MOORAGE_AUTH__LOGIN_MAX_FAILURES="3", **slapd.settings()):
        yield value


def _granted(token: dict[str, Any], repository: str) -> list[str]:
    claims = jwt.decode(str(token["token"]), options={"verify_signature": False})
    return next((a["actions"] for a in claims["access"] if a["name"] == repository), [])


async def _token(idp: Idp, auth: dict[str, str], scope: str, status: int = 200) -> dict[str, Any]:
    r = await idp.http.get("/service/token", params={"service": "moorage", "scope": scope}, headers=auth)
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    return body


async def _refresh(idp: Idp, refresh_token: str, scope: str) -> Any:
    return await idp.http.post("/service/token", data={
        "grant_type": "refresh_token", "refresh_token": refresh_token, "service": "moorage", "scope": scope,
    })


async def test_ldap_group_mapped_to_a_project_gives_rights_recomputed_at_login_and_refresh(
    idp: Idp, slapd: Directory
) -> None:
    name, group = uid("ld"), uid("grp")
    slapd.add_user(name, LDAP_PASSWORD, mail=f"{name}@corp.example")
    slapd.add_group(group, name)
    project = await idp.project()
    repo = f"{project}/app"
    r = await idp.api("POST", f"/projects/{project}/members", idp.admin, json={
        "role_id": 2, "member_group": {"group_type": 1, "ldap_group_dn": slapd.group_dn(group).upper()}})
    assert r.status_code == 201, r.text
    auth = basic(name, LDAP_PASSWORD)

    token = await _token(idp, auth, f"repository:{repo}:pull,push")
    assert _granted(token, repo) == ["pull", "push"]
    me = (await idp.api("GET", "/users/current", auth)).json()
    assert me["username"] == name and me["email"] == f"{name}@corp.example" and not me["sysadmin_flag"]
    r = await idp.api("PUT", f"/users/{me['user_id']}/password", auth,
                      json={"old_password": LDAP_PASSWORD, "new_password": "Another-pass1"})
    assert r.status_code == 400 and "kept by the ldap identity source" in r.text

    # a refresh token (what podman sends when its token expires) re-asks the directory
    r = await idp.http.get("/service/token", params={"service": "moorage", "scope": f"repository:{repo}:pull,push",
                                                      "offline_token": "true"}, headers=auth)
    refresh_token = r.json()["refresh_token"]
    slapd.set_membership(group, name, member=False)
    r = await _refresh(idp, refresh_token, f"repository:{repo}:pull,push")
    assert r.status_code == 200 and _granted(r.json(), repo) == []  # private project, no group any more
    slapd.set_membership(group, name, member=True)
    r = await _refresh(idp, refresh_token, f"repository:{repo}:pull,push")
    assert r.status_code == 200 and _granted(r.json(), repo) == ["pull", "push"]
    access = r.json()["token"]
    assert (await idp.http.get(f"/v2/{repo}/tags/list", headers=bearer(access))).status_code == 404  # allowed, empty

    # gone from the directory: the next refresh is refused and every token of the account revoked
    slapd.delete_user(name)
    with capture_logs() as logs:
        r = await _refresh(idp, refresh_token, f"repository:{repo}:pull")
    assert r.status_code == 401 and "no longer exists or is disabled in ldap" in r.text
    assert any(e["event"] == "account_revoked_by_source" and e["username"] == name for e in logs)
    r = await idp.http.get(f"/v2/{repo}/tags/list", headers=bearer(access))
    assert r.status_code == 401 and "revoked" in r.text
    await _token(idp, auth, f"repository:{repo}:pull", status=401)


async def test_admin_group_makes_system_administrators_and_wrong_or_empty_passwords_fail(
    database_url: str, tmp_path: Path, slapd: Directory
) -> None:
    admins, name = uid("adm"), uid("ld")
    slapd.add_user(name, LDAP_PASSWORD)
    slapd.add_group(admins, name)
    settings = slapd.settings(admin_group_dn=slapd.group_dn(admins))
    async for idp in make_idp(database_url, tmp_path, **settings):
        await _token(idp, basic(name, "Wrong-pass1"), "registry:catalog:*", status=401)
        await _token(idp, basic(name, ""), "registry:catalog:*", status=401)  # never an unauthenticated bind
        token = await _token(idp, basic(name, LDAP_PASSWORD), "registry:catalog:*")
        assert _granted(token, "catalog") == ["*"]  # catalog for system administrators only
        slapd.set_membership(admins, name, member=False)
        token = await _token(idp, basic(name.upper(), LDAP_PASSWORD), "registry:catalog:*")  # case: same account
        assert _granted(token, "catalog") == []
        users = (await idp.api("GET", "/users", idp.admin, params={"username": name})).json()
        assert [u["username"] for u in users] == [name]


async def test_a_name_in_two_sources_belongs_to_the_account_source_whatever_the_order(
    database_url: str, tmp_path: Path, slapd: Directory
) -> None:
    """docs/sso.md, "A name that exists in two sources": rules 2, 3 and 4, and admin always local."""
    clash, fresh = uid("cl"), uid("nw")
    slapd.add_user(clash, LDAP_PASSWORD)
    slapd.add_user(fresh, LDAP_PASSWORD)
    for order in ("[local, ldap, robot]", "[ldap, local, robot]"):
        async for idp in make_idp(database_url, tmp_path / order[1:3],
                                  **{**slapd.settings(), "MOORAGE_AUTH__SOURCES": order}):
            if order.startswith("[local"):
                r = await idp.api("POST", "/users", idp.admin, json={"username": clash, "password": PASSWORD})
                assert r.status_code == 201
            with capture_logs():
                await _token(idp, basic(clash, LDAP_PASSWORD), "registry:catalog:*", status=401)
            await _token(idp, basic(clash, PASSWORD), "registry:catalog:*")  # the local account
            await _token(idp, basic(fresh, LDAP_PASSWORD), "registry:catalog:*")  # onboarded by ldap
            r = await idp.api("POST", "/users", idp.admin, json={"username": fresh, "password": PASSWORD})
            assert r.status_code == 409
            # rule 4: the directory's clash user cannot take the local account over
            assert idp.services.identity is not None
            chain = idp.services.identity.sources
            source = chain.source("ldap")
            assert isinstance(source, LdapSource)
            with pytest.raises(IdentityError) as refused:
                await chain.onboard(source, ExternalAccount(clash))
            assert refused.value.kind == "conflict" and "belongs to a local account" in refused.value.message

    # without `local` in the order, local accounts are refused, except admin
    async for idp in make_idp(database_url, tmp_path / "noloc", **{**slapd.settings(),
                                                                     "MOORAGE_AUTH__SOURCES": "[ldap]"}):
        await _token(idp, basic(clash, PASSWORD), "registry:catalog:*", status=401)
        await _token(idp, idp.admin, "registry:catalog:*")
        await _token(idp, basic(fresh, LDAP_PASSWORD), "registry:catalog:*")
        _, robot, secret = await idp.robot(await idp.project(), ["pull"])
        await _token(idp, basic(robot, secret), "registry:catalog:*", status=401)  # `robot` not listed either


async def test_concurrent_first_logins_on_two_nodes_make_one_account(
    database_url: str, tmp_path: Path, slapd: Directory
) -> None:
    name, group = uid("race"), uid("grp")
    slapd.add_user(name, LDAP_PASSWORD)
    slapd.add_group(group, name)
    async for one in make_idp(database_url, tmp_path / "one", **slapd.settings()):
        r = await one.api("POST", "/usergroups", one.admin, json={"group_type": 1, "ldap_group_dn": slapd.group_dn(group)})
        assert r.status_code == 201
        async for two in make_idp(database_url, tmp_path / "two", **slapd.settings()):
            auth = basic(name, LDAP_PASSWORD)
            answers = await asyncio.gather(*(node.http.get("/service/token", headers=auth)
                                             for node in (one, two, one, two, one, two)))
            assert [a.status_code for a in answers] == [200] * 6, [a.text for a in answers if a.status_code != 200]
            users = (await one.api("GET", "/users", one.admin, params={"username": name})).json()
            assert [u["username"] for u in users] == [name]
            gid = int(r.headers["Location"].rsplit("/", 1)[1])
            members = (await one.api("GET", f"/usergroups/{gid}/members", one.admin)).json()
            assert members == [{"user_id": users[0]["user_id"]}]


@pytest.mark.parametrize("name", ["*", "a*", f"{'x'})(uid=*", "adm\\2a", "cl)(|(uid=*"])
async def test_ldap_filter_injection_is_refused_throttled_and_audited(idp: Idp, name: str) -> None:
    with capture_logs() as logs:
        for _ in range(3):
            r = await idp.http.get("/service/token", headers=basic(name, "anything"))
            assert r.status_code == 401
            message = r.json()["errors"][0]["message"]
            assert message == f"invalid username or password for {name!r}; check them"  # generic, no "LDAP"
        r = await idp.http.get("/service/token", headers=basic(name, "anything"))
    assert r.status_code == 429  # counted by the throttle: 3 failures lock the name for this client
    refused = [e for e in logs if e["event"] == "login_refused_ldap_filter_characters"]
    assert len(refused) == 4 and refused[0]["username"] == name and "injection" in refused[0]["reason"]
    r = await idp.api("GET", "/audit-logs", idp.admin, params={"username": name, "operation": "login_failure"})
    rows = r.json()
    assert len(rows) == 3 and all("LDAP search filter" in str(row.get("detail")) for row in rows), rows


async def test_ldaps_and_starttls_check_the_certificate_against_the_configured_ca(
    database_url: str, tmp_path: Path, slapd: Directory
) -> None:
    name = uid("tls")
    slapd.add_user(name, LDAP_PASSWORD)
    auth = basic(name, LDAP_PASSWORD)
    ldaps = {"url": slapd.ldaps_url, "start_tls": "false"}
    async for idp in make_idp(database_url, tmp_path / "ldaps", **slapd.settings(**ldaps)):
        await _token(idp, auth, "registry:catalog:*")
    for label, extra in (("ldaps", ldaps), ("starttls", {})):
        env = {k: v for k, v in slapd.settings(**extra).items() if k != "MOORAGE_AUTH__LDAP__CA_FILE"}
        async for idp in make_idp(database_url, tmp_path / f"noca-{label}", MOORAGE_AUTH__LOGIN_MAX_FAILURES="2",
                                  **env):
            with capture_logs() as logs:
                for _ in range(3):  # more than the limit: an unreachable directory is not a guess
                    r = await idp.http.get("/service/token", headers=basic(uid("x"), LDAP_PASSWORD))
                    assert r.status_code == 401 and "could not be checked right now" in r.text
            errors = [e for e in logs if e["event"] == "identity_source_unavailable"]
            assert len(errors) == 3 and "auth.ldap" in errors[0]["error"], errors


async def test_a_refused_service_account_is_an_operator_error_not_a_guess(
    database_url: str, tmp_path: Path, slapd: Directory
) -> None:
    name = uid("svc")
    slapd.add_user(name, LDAP_PASSWORD)
    async for idp in make_idp(database_url, tmp_path, MOORAGE_AUTH__LOGIN_MAX_FAILURES="2",
                              **slapd.settings(bind_password="not-the-password")):
        with capture_logs() as logs:
            for _ in range(3):
                r = await idp.http.get("/service/token", headers=basic(name, LDAP_PASSWORD))
                assert r.status_code == 401
        assert any("refused the service account" in e.get("error", "") and "bind_password" in e["error"]
                   for e in logs)


async def test_an_ldap_group_is_added_only_when_the_directory_has_it(idp: Idp, slapd: Directory) -> None:
    group = uid("grp")
    missing = slapd.group_dn(uid("nogrp"))
    before = (await idp.api("GET", "/usergroups", idp.admin)).headers["X-Total-Count"]
    r = await idp.api("POST", "/usergroups", idp.admin, json={"group_type": 1, "ldap_group_dn": missing})
    assert r.status_code == 400 and "names no group in the directory" in r.text
    project = await idp.project()
    r = await idp.api("POST", f"/projects/{project}/members", idp.admin,
                      json={"role_id": 3, "member_group": {"group_type": 1, "ldap_group_dn": missing}})
    assert r.status_code == 400 and "ldap_group_dn" in r.text
    assert (await idp.api("GET", "/usergroups", idp.admin)).headers["X-Total-Count"] == before  # nothing saved
    slapd.add_group(group)
    r = await idp.api("POST", "/usergroups", idp.admin, json={"group_type": 1, "ldap_group_dn": slapd.group_dn(group)})
    assert r.status_code == 201, r.text
