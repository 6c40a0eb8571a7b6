"""Login throttling under parallel guessing, lock expiry, and the client address behind a trusted proxy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from moorage.app import create_app
from tests.integration.test_identity_helpers import Idp, basic, make_idp


@pytest.fixture
async def idp(database_url: str, tmp_path: Path) -> AsyncIterator[Idp]:
    async for value in make_idp(database_url, tmp_path, MOORAGE_AUTH__LOGIN_MAX_FAILURES="3"):
        yield value


async def test_parallel_guesses_on_two_nodes_get_no_more_tries_than_the_limit(
    idp: Idp, database_url: str, tmp_path: Path
) -> None:
    """Before the reservation, 20 parallel guesses on PostgreSQL were all checked (limit 3)."""
    name, good = await idp.user()
    wrong = basic(name, "Wrong-passw0rd")
    async for other in make_idp(database_url, tmp_path / "node2", MOORAGE_AUTH__LOGIN_MAX_FAILURES="3"):
        answers = await asyncio.gather(*(
            node.http.get("/service/token", headers=wrong) for _ in range(12) for node in (idp, other)
        ))
        codes = sorted(r.status_code for r in answers)
        assert codes.count(401) <= 3 and codes.count(429) >= 21, codes
        assert (await other.http.get("/service/token", headers=good)).status_code == 429


async def test_a_parallel_burst_with_the_right_password_all_succeeds(idp: Idp) -> None:
    """Reservations are given back on success: many parallel right logins never lock anybody out."""
    _, good = await idp.user()
    answers = await asyncio.gather(*(idp.http.get("/service/token", headers=good) for _ in range(10)))
    assert [r.status_code for r in answers] == [200] * 10


async def test_the_lock_ends_after_the_lockout_even_inside_a_long_window(database_url: str, tmp_path: Path) -> None:
    async for idp in make_idp(database_url, tmp_path, MOORAGE_AUTH__LOGIN_MAX_FAILURES="2",
                              MOORAGE_AUTH__LOGIN_WINDOW="3600", MOORAGE_AUTH__LOGIN_LOCKOUT="1"):
        name, good = await idp.user()
        wrong = basic(name, "Wrong-passw0rd")
        for _ in range(2):
            assert (await idp.http.get("/service/token", headers=wrong)).status_code == 401
        assert (await idp.http.get("/service/token", headers=good)).status_code == 429
        await asyncio.sleep(1.2)
        assert (await idp.http.get("/service/token", headers=good)).status_code == 200
        # and the count started again: one wrong try is a 401, not another lock
        assert (await idp.http.get("/service/token", headers=wrong)).status_code == 401
        assert (await idp.http.get("/service/token", headers=good)).status_code == 200


def _from(idp: Idp, peer: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(idp.settings, idp.services), client=(peer, 4321))
    return httpx.AsyncClient(transport=transport, base_url="http://registry.test")


async def test_behind_a_trusted_proxy_the_forwarded_client_is_throttled_not_the_proxy(idp: Idp) -> None:
    """Behind nginx every request comes from nginx: one guesser must not lock the user out for all."""
    name, good = await idp.user()
    wrong = basic(name, "Wrong-passw0rd")
    guesser = {"X-Forwarded-For": "203.0.113.5"}
    async with _from(idp, "127.0.0.1") as proxy:  # 127.0.0.1 is in the default http.trusted_proxies
        for _ in range(3):
            assert (await proxy.get("/service/token", headers={**wrong, **guesser})).status_code == 401
        r = await proxy.get("/service/token", headers={**good, **guesser})
        assert r.status_code == 429 and "from 203.0.113.5" in r.text
        # the real user, through the same proxy, from elsewhere
        r = await proxy.get("/v2/", headers={**good, "X-Forwarded-For": "198.51.100.7, 127.0.0.1"})
        assert r.status_code == 200
        # a client cannot escape the lock by prepending a forged hop: the right-most untrusted hop counts
        r = await proxy.get("/service/token", headers={**good, "X-Forwarded-For": "10.1.1.1, 203.0.113.5"})
        assert r.status_code == 429
    async with _from(idp, "192.0.2.9") as untrusted:  # not a trusted proxy: its X-Forwarded-For is ignored
        for _ in range(3):
            assert (await untrusted.get("/service/token", headers={**wrong, **guesser})).status_code == 401
        r = await untrusted.get("/service/token", headers={**good, "X-Forwarded-For": "198.51.100.8"})
        assert r.status_code == 429 and "from 192.0.2.9" in r.text


async def test_the_audit_log_records_the_forwarded_client(idp: Idp) -> None:
    project = await idp.project()
    async with _from(idp, "127.0.0.1") as proxy:
        member, _ = await idp.user()
        r = await proxy.post(f"/api/v2.0/projects/{project}/members", headers={
            **idp.admin, "X-Forwarded-For": "203.0.113.77"}, json={"role_id": 3, "member_user": {"username": member}})
        assert r.status_code == 201, r.text
    logs = (await idp.api("GET", "/audit-logs", idp.admin, params={"resource": project, "page_size": 100})).json()
    assert any(entry["client"] == "203.0.113.77" for entry in logs), logs


async def test_a_released_try_can_be_used_again(idp: Idp) -> None:
    """A check that was cancelled gives its try back: it is neither a failure nor held in flight."""
    identity = idp.services.identity
    assert identity is not None
    name = (await idp.user())[0]
    throttle = identity.throttle
    for _ in range(3):
        assert await throttle.reserve(name, "192.0.2.50") == (True, None)
    assert await throttle.reserve(name, "192.0.2.50") == (False, None)  # all three in flight
    await throttle.release(name, "192.0.2.50")
    assert await throttle.reserve(name, "192.0.2.50") == (True, None)
    await throttle.succeeded(name, "192.0.2.50")
