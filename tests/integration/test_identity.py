"""Identity behaviour beyond single requests: throttling across nodes, start-up, keys, migrations, mode none."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import pytest
from sqlalchemy import create_engine, inspect

from moorage.app import create_app
from moorage.auth.service import IdentityService
from moorage.auth.tokens import Account
from moorage.config import ConfigError
from moorage.db.identity_tables import signing_keys
from moorage.db.migrate import downgrade, upgrade
from moorage.db.session import Database, sync_url
from moorage.services import Services
from tests.integration.conftest import make_settings
from tests.integration.test_identity_helpers import PASSWORD, TOKEN_ENV, Idp, basic, bearer, make_idp, uid


@pytest.fixture
async def idp(database_url: str, tmp_path: Path) -> AsyncIterator[Idp]:
    async for value in make_idp(database_url, tmp_path, MOORAGE_AUTH__LOGIN_MAX_FAILURES="3"):
        yield value


async def test_login_throttling_holds_across_nodes_and_per_client(idp: Idp, database_url: str,
                                                                  tmp_path: Path) -> None:
    name, good = await idp.user()
    wrong = basic(name, "Wrong-passw0rd")
    async for other in make_idp(database_url, tmp_path / "node2", MOORAGE_AUTH__LOGIN_MAX_FAILURES="3"):
        for node in (idp, other, idp):  # three failures spread over two nodes
            assert (await node.http.get("/service/token", headers=wrong)).status_code == 401
        r = await other.http.get("/service/token", headers=good)  # even the right password is refused now
        assert r.status_code == 429 and f"too many failed logins for '{name}'" in r.text
        r = await idp.http.get("/v2/", headers=good)
        assert r.status_code == 429 and "try again after" in r.text
        r = await idp.api("GET", "/users/current", good)
        assert r.status_code == 429
    # another client address is not locked out (ASGITransport lets us choose it)
    app = create_app(idp.settings, idp.services)
    transport = httpx.ASGITransport(app=app, client=("10.9.8.7", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as elsewhere:
        assert (await elsewhere.get("/service/token", headers=good)).status_code == 200


async def test_success_clears_the_failure_count(idp: Idp) -> None:
    name, good = await idp.user()
    wrong = basic(name, "Wrong-passw0rd")
    for _ in range(2):
        assert (await idp.http.get("/service/token", headers=wrong)).status_code == 401
    assert (await idp.http.get("/service/token", headers=good)).status_code == 200
    for _ in range(2):
        assert (await idp.http.get("/service/token", headers=wrong)).status_code == 401
    assert (await idp.http.get("/service/token", headers=good)).status_code == 200


async def test_catalog_shows_only_visible_repositories(idp: Idp) -> None:
    """Exact lists with real paging (the shared database holds other tests' repositories too: the
    developer's catalog is the admin's, restricted to the projects the developer may see)."""
    from tests.integration.oci_client import push_image
    from tests.integration.test_catalog_policy import page_through

    mine, theirs = await idp.project(), await idp.project()
    _, dev = await idp.user_in(mine, 2)
    idp.http.headers.update(idp.admin)
    try:
        await push_image(idp.http, f"{mine}/a", "v1", [b"cat-a"])
        await push_image(idp.http, f"{theirs}/b", "v1", [b"cat-b"])
    finally:
        del idp.http.headers["Authorization"]
    everything, _ = await page_through(idp.http, idp.admin, 7)
    assert everything == sorted(set(everything)) and {f"{mine}/a", f"{theirs}/b"} <= set(everything)
    seen: set[str] = set()
    page, total = 1, 1
    while len(seen) < total:
        projects = await idp.api("GET", "/projects", dev, params={"page_size": 100, "page": page})
        seen |= {p["name"] for p in projects.json()}
        page, total = page + 1, int(projects.headers["x-total-count"])
    visible, _ = await page_through(idp.http, dev, 7)
    assert visible == [name for name in everything if name.split("/", 1)[0] in seen]
    assert f"{mine}/a" in visible and f"{theirs}/b" not in visible


async def test_repository_without_project_is_named_invalid(idp: Idp) -> None:
    r = await idp.http.get("/v2/alpine/tags/list", headers=idp.admin)
    assert r.status_code == 400 and "'<project>/<repository>'" in r.text


async def test_robot_that_expired_cannot_log_in(idp: Idp) -> None:
    project = await idp.project()
    robot_id, name, secret = await idp.robot(project, ["pull"], duration=1)
    identity = idp.services.identity
    assert identity is not None
    from sqlalchemy import update

    from moorage.auth.identity import utcnow
    from moorage.db.identity_tables import robots

    async with idp.services.db.write() as conn:
        await conn.execute(update(robots).where(robots.c.id == robot_id).values(expires_at=utcnow()))
    r = await idp.http.get("/service/token", headers=basic(name, secret))
    assert r.status_code == 403 and "expired" in r.text


async def test_token_of_deleted_user_stops_working(idp: Idp) -> None:
    name, auth = await idp.user()
    token = (await idp.token(auth))["token"]
    assert (await idp.http.get("/v2/", headers=bearer(token))).status_code == 200
    user_id = (await idp.api("GET", "/users/current", auth)).json()["user_id"]
    assert (await idp.api("DELETE", f"/users/{user_id}", idp.admin)).status_code == 200
    r = await idp.http.get("/v2/", headers=bearer(token))
    assert r.status_code == 401 and f"user '{name}' no longer exists" in r.text


async def test_every_node_uses_the_one_key_set(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path, **TOKEN_ENV)
    nodes = [IdentityService(Database(database_url), settings.auth) for _ in range(3)]
    try:
        for node in nodes:
            await node.start()
        kids = {(await node.keys.signing_key()).kid for node in nodes}
        assert len(kids) == 1
        token, _, _ = await nodes[0].tokens.issue_access(Account("user", "admin", "some-uid", 0), [])
        for node in nodes:
            assert (await node.tokens.verify(token))["sub"] == "admin"
        async with nodes[0].db.read() as conn:
            stored = (await conn.execute(signing_keys.select())).mappings().all()
        assert all("PRIVATE KEY" not in row["private_key"] for row in stored)  # encrypted at rest
        assert jwt.get_unverified_header(token)["alg"] == "ES256"
    finally:
        for node in nodes:
            await node.db.dispose()


async def test_a_different_secret_key_is_a_clear_error(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path, **{**TOKEN_ENV, "MOORAGE_SECRET_KEY": "another-secret"})
    node = IdentityService(Database(database_url), settings.auth)
    try:
        with pytest.raises(RuntimeError, match="MOORAGE_SECRET_KEY"):
            await node.start()
    finally:
        await node.db.dispose()


def test_token_mode_without_secret_fails_at_start_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"auth\.secret_key \(MOORAGE_SECRET_KEY\) is required"):
        make_settings(f"sqlite:///{tmp_path / 'x.db'}", tmp_path, MOORAGE_AUTH__MODE="token")


async def test_generated_admin_password_is_created_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    upgrade(url)
    env = {key: value for key, value in TOKEN_ENV.items() if key != "MOORAGE_ADMIN_PASSWORD"}
    settings = make_settings(url, tmp_path, **env)
    first = IdentityService(Database(url), settings.auth)
    generated = await first.store.bootstrap_admin(None)
    assert generated is not None and await first.store.check_password("admin", generated) is not None
    assert await first.store.bootstrap_admin(None) is None  # never a second time
    await first.db.dispose()


async def test_mode_none_has_no_tokens_and_no_management_api(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path)
    services = Services.from_settings(settings)
    app = create_app(settings, services)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r.test") as http:
            assert (await http.get("/v2/")).status_code == 200
            r = await http.get("/service/token")
            assert r.status_code == 404 and "auth.mode: token" in r.text
            r = await http.get("/api/v2.0/projects")
            assert r.status_code == 501 and "auth.mode: token" in r.text
            assert (await http.get("/api/v2.0/ping")).status_code == 200
    finally:
        await services.aclose()


def test_identity_migration_downgrades_and_upgrades(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'migrate.db'}"
    upgrade(url)
    identity = {"users", "projects", "project_members", "robots", "signing_keys", "audit_log", "login_failures"}
    engine = create_engine(sync_url(url))
    try:
        assert identity <= set(inspect(engine).get_table_names())
        for table in ("users", "robots"):
            assert {"uid", "generation"} <= {c["name"] for c in inspect(engine).get_columns(table)}
        downgrade(url, "0005_audit_auth_method")  # undoes the account uid/generation columns
        for table in ("users", "robots"):
            assert not {"uid", "generation"} & {c["name"] for c in inspect(engine).get_columns(table)}
        for _ in range(10):  # one step at a time down the identity branch: later revisions build on it
            if not identity & set(inspect(engine).get_table_names()):
                break
            downgrade(url, "0002_identity@-1")
        tables = set(inspect(engine).get_table_names())
        assert not identity & tables and {"jobs", "manifests"} <= tables
        upgrade(url)
        assert identity <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


async def test_password_of_new_user_is_hashed_with_argon2(idp: Idp) -> None:
    name, _ = await idp.user()
    user = await idp.services.identity.store.user_by_name(name)  # type: ignore[union-attr]
    assert user is not None and user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
    assert uid()
