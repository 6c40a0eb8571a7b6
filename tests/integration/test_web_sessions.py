"""UI sessions in-process: the cookie, its CSRF token, its audience and its revocation (moorage.auth.sessions).

The browser flows are tests/e2e/ui/test_web_ui.py; here every rule of the session credential is
checked with raw HTTP on both databases.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from moorage.app import create_app
from moorage.auth.sessions import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE
from moorage.services import Services
from tests.integration.conftest import make_settings
from tests.integration.oci_client import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    descriptor,
    digest_of,
    push_blob,
    push_image,
)
from tests.integration.test_identity_helpers import PASSWORD, Idp, bearer, make_idp, uid


@pytest.fixture
async def idp(database_url: str, tmp_path: Path) -> AsyncIterator[Idp]:
    async for value in make_idp(database_url, tmp_path):
        yield value


async def _login(idp: Idp, username: str, password: str = PASSWORD, **headers: str) -> httpx.Response:
    idp.http.cookies.clear()
    r = await idp.http.post("/c/login", json={"principal": username, "password": password}, headers=headers)
    idp.http.cookies.clear()  # every test sends its cookies explicitly
    return r


def _cookies(r: httpx.Response) -> dict[str, str]:
    return {name: r.cookies[name] for name in (SESSION_COOKIE, CSRF_COOKIE)}


def _cookie_header(cookies: dict[str, str]) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}


async def _session(idp: Idp, username: str) -> dict[str, str]:
    r = await _login(idp, username)
    assert r.status_code == 200, r.text
    return _cookies(r)


async def test_state_changes_need_the_csrf_header_and_change_nothing_without_it(idp: Idp) -> None:
    name, _ = await idp.user()
    cookies = await _session(idp, name)
    project = uid("proj")
    body = {"project_name": project}
    for headers in ({}, {CSRF_HEADER: "wrong"}, {CSRF_HEADER: ""}):
        r = await idp.api("POST", "/projects", {**_cookie_header(cookies), **headers}, json=body)
        assert r.status_code == 403, r.text
        assert CSRF_HEADER in r.json()["errors"][0]["message"]
    assert (await idp.api("GET", f"/projects/{project}", idp.admin)).status_code == 404
    # Reads need no token; the right one lets the change through.
    assert (await idp.api("GET", "/users/current", _cookie_header(cookies))).json()["username"] == name
    r = await idp.api("POST", "/projects", {**_cookie_header(cookies), CSRF_HEADER: cookies[CSRF_COOKIE]}, json=body)
    assert r.status_code == 201, r.text


async def test_csrf_token_of_another_session_is_refused(idp: Idp) -> None:
    """Signed double submit: a CSRF cookie planted by someone else does not match the session."""
    name, _ = await idp.user()
    mine = await _session(idp, name)
    other = await _session(idp, name)
    planted = {SESSION_COOKIE: mine[SESSION_COOKIE], CSRF_COOKIE: other[CSRF_COOKIE]}
    r = await idp.api("POST", "/projects", {**_cookie_header(planted), CSRF_HEADER: other[CSRF_COOKIE]},
                      json={"project_name": uid("proj")})
    assert r.status_code == 403, r.text


async def test_cookie_flags(idp: Idp) -> None:
    name, _ = await idp.user()
    r = await _login(idp, name)
    raw = {h.split("=", 1)[0]: h.lower() for h in r.headers.get_list("set-cookie")}
    assert "httponly" in raw[SESSION_COOKIE] and "httponly" not in raw[CSRF_COOKIE]
    for value in raw.values():
        assert "samesite=lax" in value and "path=/" in value and "secure" not in value
    # Behind a trusted proxy that terminated TLS (127.0.0.1 by default; the in-process client is
    # 127.0.0.1 too), the cookies are Secure.
    r = await _login(idp, name, **{"X-Forwarded-Proto": "https"})
    for header in r.headers.get_list("set-cookie"):
        assert "; secure" in header.lower(), header


async def test_session_ends_when_the_password_changes_or_the_user_is_deleted(idp: Idp) -> None:
    name, _ = await idp.user()
    cookies = await _session(idp, name)
    me = (await idp.api("GET", "/users/current", _cookie_header(cookies))).json()
    r = await idp.api("PUT", f"/users/{me['user_id']}/password", idp.admin, json={"new_password": "Changed-Passw0rd"})
    assert r.status_code == 200, r.text
    r = await idp.api("GET", "/users/current", _cookie_header(cookies))
    assert r.status_code == 401 and "revoked" in r.json()["errors"][0]["message"], r.text

    fresh = _cookies(await _login(idp, name, "Changed-Passw0rd"))
    assert (await idp.api("GET", "/users/current", _cookie_header(fresh))).status_code == 200
    assert (await idp.api("DELETE", f"/users/{me['user_id']}", idp.admin)).status_code == 200
    r = await idp.api("GET", "/users/current", _cookie_header(fresh))
    assert r.status_code == 401 and "no longer exists" in r.json()["errors"][0]["message"], r.text


async def test_a_session_is_good_for_the_ui_and_rest_only(idp: Idp) -> None:
    """Its audience is its own: not a bearer token for /v2 nor for the API, and no token is a session."""
    name, auth = await idp.user()
    cookies = await _session(idp, name)
    session = cookies[SESSION_COOKIE]
    assert (await idp.http.get("/v2/", headers=bearer(session))).status_code == 401
    assert (await idp.api("GET", "/users/current", bearer(session))).status_code == 401
    assert (await idp.http.get("/v2/", headers=_cookie_header(cookies))).status_code == 401  # /v2 ignores cookies
    api_token = (await idp.token(auth, service="moorage-api"))["token"]
    forged = {SESSION_COOKIE: api_token, CSRF_COOKIE: cookies[CSRF_COOKIE]}
    r = await idp.api("GET", "/users/current", _cookie_header(forged))
    assert r.status_code == 401 and "log in again" in r.json()["errors"][0]["message"]
    # An Authorization header wins over the cookie (scripts in a browser profile stay what they say).
    r = await idp.api("GET", "/users/current", {**_cookie_header(cookies), **idp.admin})
    assert r.json()["username"] == "admin"


async def test_login_refusals(idp: Idp) -> None:
    name, _ = await idp.user()
    r = await idp.http.post("/c/login", data={"principal": name, "password": PASSWORD})  # an HTML form post
    assert r.status_code == 415 and not r.cookies
    r = await idp.http.post("/c/login", json={"principal": name, "password": PASSWORD},
                            headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403 and not r.cookies
    r = await _login(idp, name, "Wrong-passw0rd")
    assert r.status_code == 401 and SESSION_COOKIE not in r.cookies
    assert "invalid username or password" in r.json()["errors"][0]["message"]
    project = await idp.project()
    _, robot, secret = await idp.robot(project, ["pull"])
    r = await _login(idp, robot, secret)
    assert r.status_code == 403 and "robot" in r.json()["errors"][0]["message"] and SESSION_COOKIE not in r.cookies
    assert (await idp.http.post("/c/login", json={"principal": name})).status_code == 400


async def test_log_out_clears_the_cookies_and_needs_the_csrf_header(idp: Idp) -> None:
    name, _ = await idp.user()
    cookies = await _session(idp, name)
    r = await idp.http.post("/c/log_out", headers=_cookie_header(cookies))
    assert r.status_code == 403 and not r.headers.get_list("set-cookie")
    r = await idp.http.post("/c/log_out", headers={**_cookie_header(cookies), CSRF_HEADER: cookies[CSRF_COOKIE]})
    assert r.status_code == 204
    cleared = {h.split("=", 1)[0]: h.lower() for h in r.headers.get_list("set-cookie")}
    assert set(cleared) == {SESSION_COOKIE, CSRF_COOKIE}
    assert all("max-age=0" in value for value in cleared.values())


async def test_ui_pages_and_static_files(idp: Idp) -> None:
    for path in ("/", "/projects", "/projects/x/repositories/team%2Fapp", "/login"):
        r = await idp.http.get(path)
        assert r.status_code == 200 and 'data-auth-mode="token"' in r.text, path
        assert "script-src 'self'" in r.headers["content-security-policy"]
    r = await idp.http.get("/static/app.js")
    assert r.status_code == 200 and "javascript" in r.headers["content-type"]
    assert (await idp.http.get("/static/../__init__.py")).status_code == 404
    assert (await idp.http.get("/v2/")).status_code == 401  # the UI routes shadow no API


async def test_open_registry_serves_the_ui_without_login(sqlite_database: str, tmp_path: Path) -> None:
    settings = make_settings(sqlite_database, tmp_path)
    services = Services.from_settings(settings)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(settings, services)),
                                     base_url="http://registry.test") as http:
            r = await http.get("/")
            assert r.status_code == 200 and 'data-auth-mode="none"' in r.text
            r = await http.post("/c/login", json={"principal": "admin", "password": "x"})
            assert r.status_code == 404 and "auth.mode: none" in r.json()["errors"][0]["message"]
    finally:
        await services.aclose()


async def test_artifact_additions_for_the_artifact_page(idp: Idp) -> None:
    """layers, platforms, build_history and accessories: shapes, pull rights, and a pusher's odd config kept harmless."""
    project = await idp.project()
    name = f"{project}/app"
    idp.http.headers.update(idp.admin)
    try:
        config = json.dumps({"architecture": "amd64", "os": "linux", "history": [
            {"created": 5, "created_by": ["not", "text"], "empty_layer": "yes", "comment": "kept"}, "junk",
            {"created": "2026-01-01T00:00:00Z", "created_by": "RUN make", "empty_layer": True}]}).encode()
        await push_blob(idp.http, name, config)
        layer = b"layer bytes"
        digest, _ = await push_image(idp.http, name, "v1", [layer], config=descriptor(OCI_CONFIG, config))
        signature = json.dumps({"kind": "signature"}).encode()
        await push_image(idp.http, name, None, [signature], artifactType="application/vnd.example.sig",
                         subject={"mediaType": OCI_MANIFEST, "digest": digest, "size": 1})
    finally:
        del idp.http.headers["Authorization"]
    base = f"/projects/{project}/repositories/app/artifacts/v1"
    r = await idp.api("GET", f"{base}/additions/layers", idp.admin)
    assert r.json() == [{"media_type": OCI_LAYER, "digest": digest_of(layer), "size": len(layer), "annotations": None}]
    assert (await idp.api("GET", f"{base}/additions/platforms", idp.admin)).json() == []
    r = await idp.api("GET", f"{base}/additions/build_history", idp.admin)
    assert r.json() == [
        {"created": None, "created_by": None, "empty_layer": False, "comment": "kept"},
        {"created": "2026-01-01T00:00:00Z", "created_by": "RUN make", "empty_layer": True, "comment": None},
    ]
    r = await idp.api("GET", f"{base}/accessories", idp.admin)
    assert [(a["type"], a["subject_artifact_digest"]) for a in r.json()] == [("application/vnd.example.sig", digest)]
    assert r.headers["X-Total-Count"] == "1"
    for path in ("additions/layers", "additions/build_history", "accessories"):
        assert (await idp.api("GET", f"{base}/{path}")).status_code == 401  # private project, anonymous
    outsider, auth = await idp.user()
    assert (await idp.api("GET", f"{base}/additions/layers", auth)).status_code == 404  # not a member: hidden
    del outsider
