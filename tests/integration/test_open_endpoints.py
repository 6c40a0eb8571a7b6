"""What anonymous callers may reach: jobs are for system admins, health is cheap, the admin password stays private."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from moorage.app import create_app
from moorage.auth.bootstrap import INITIAL_PASSWORD_FILE
from moorage.db.migrate import upgrade
from moorage.health import HealthChecker
from moorage.services import Services
from moorage.storage.driver import StorageDriver
from tests.integration.conftest import make_settings
from tests.integration.test_identity_helpers import SECRET_KEY, Idp, basic, bearer, make_idp


@pytest.fixture
async def idp(database_url: str, tmp_path: Path) -> AsyncIterator[Idp]:
    async for value in make_idp(database_url, tmp_path):
        yield value


async def test_jobs_are_for_system_admins_only(idp: Idp) -> None:
    job = await idp.services.jobs.enqueue("test.noop", {"repository": "secret-project/app"})
    user, auth = await idp.user()
    token = (await idp.token(auth, service="moorage-api"))["token"]  # a registry token is refused (401)
    for path in ("/api/v2.0/jobs", f"/api/v2.0/jobs/{job}"):
        anonymous = await idp.http.get(path)
        assert anonymous.status_code == 401 and "secret-project" not in anonymous.text
        assert anonymous.headers["www-authenticate"].startswith("Basic")
        for credentials in (auth, bearer(token)):
            refused = await idp.http.get(path, headers=credentials)
            assert refused.status_code == 403 and "system administrator" in refused.text, refused.text
            assert "secret-project" not in refused.text
        assert (await idp.http.get(path, headers=basic(user, "wrong-Passw0rd"))).status_code == 401
        allowed = await idp.http.get(path, headers=idp.admin)
        assert allowed.status_code == 200 and "secret-project" in allowed.text, allowed.text


async def test_jobs_stay_open_with_auth_mode_none(client: httpx.AsyncClient, services: Services) -> None:
    """auth.mode: none has no accounts and lets anyone push and delete: the job list is as open."""
    job = await services.jobs.enqueue("test.noop", {})
    assert (await client.get(f"/api/v2.0/jobs/{job}")).status_code == 200
    assert (await client.get("/api/v2.0/jobs")).status_code == 200


class CountingDriver:
    """A real driver wrapped to count the health probes that reach it (puts under ``_health/``)."""

    def __init__(self, inner: StorageDriver) -> None:
        self.inner = inner
        self.probes = 0

    async def put(self, path: str, data: bytes) -> None:
        if path.startswith("_health/"):
            self.probes += 1
        await self.inner.put(path, data)

    def read(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        return self.inner.read(path, offset, length)

    async def delete(self, path: str) -> None:
        await self.inner.delete(path)


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _health_calls(services: Services, checker: HealthChecker, calls: int) -> list[httpx.Response]:
    services.health = checker
    app = create_app(services.settings, services)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registry.test") as http:
        return list(await asyncio.gather(*(http.get("/api/v2.0/health") for _ in range(calls))))


async def test_anonymous_health_calls_probe_storage_once_per_window(services: Services) -> None:
    storage = CountingDriver(services.storage)
    clock = ManualClock()
    checker = HealthChecker(services.db, storage, cache_seconds=5.0, clock=clock)  # type: ignore[arg-type]
    answers = await _health_calls(services, checker, 25)
    assert [r.status_code for r in answers] == [200] * 25
    assert {r.json()["status"] for r in answers} == {"healthy"}
    assert storage.probes == 1  # 25 concurrent anonymous calls, one write-read-delete
    await _health_calls(services, checker, 5)
    assert storage.probes == 1  # still inside the window
    clock.now += 5.0
    await _health_calls(services, checker, 5)
    assert storage.probes == 2  # the next window probes again, once


async def test_health_without_a_window_probes_every_time(services: Services) -> None:
    """The counter above would see every probe: without the cache, each call is one."""
    storage = CountingDriver(services.storage)
    checker = HealthChecker(services.db, storage, cache_seconds=0.0)  # type: ignore[arg-type]
    await _health_calls(services, checker, 4)
    assert storage.probes == 4


@pytest.fixture
def fresh_database(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    upgrade(url)
    yield url


async def test_generated_admin_password_goes_to_a_private_file_not_the_log(
    fresh_database: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    settings = make_settings(fresh_database, data_dir, MOORAGE_AUTH__MODE="token", MOORAGE_SECRET_KEY=SECRET_KEY)
    services = Services.from_settings(settings)
    assert services.identity is not None
    try:
        with capture_logs() as logs:
            await services.identity.start()
        path = data_dir / INITIAL_PASSWORD_FILE
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        password = path.read_text().strip()
        assert len(password) >= 20
        created = [entry for entry in logs if entry["event"] == "initial_admin_created"]
        assert created and created[0]["password_file"] == str(path)
        assert all(password not in repr(entry) for entry in logs), logs
        app = create_app(settings, services)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r.test") as http:
            me = await http.get("/api/v2.0/users/current", headers=basic("admin", password))
            assert me.status_code == 200 and me.json()["username"] == "admin"
    finally:
        await services.aclose()
