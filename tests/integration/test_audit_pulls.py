"""Pull audit rows are written behind: no row (and no write lock) per pull, all rows after a flush or shutdown.

On SQLite and PostgreSQL, through the real ``/v2`` routes of a token-mode app. The flusher's
interval is set to an hour on the live queue, so only the flushes the test asks for (the
audit-log query, an explicit flush, the shutdown) write anything.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from moorage.app import create_app
from moorage.db.identity_tables import audit_log
from moorage.db.session import Database
from moorage.db.write_behind import WriteBehind
from moorage.services import Services
from tests.integration.conftest import make_settings
from tests.integration.oci_client import push_image
from tests.integration.test_identity_helpers import ADMIN_PASSWORD, TOKEN_ENV, basic, bearer, uid

NEVER = 3600.0


async def pull_rows(database_url: str, repository: str) -> list[str]:
    """The committed ``pull`` rows of ``repository``, read over a connection of its own."""
    db = Database(database_url)
    try:
        async with db.read() as conn:
            result = await conn.execute(
                select(audit_log.c.resource)
                .where(audit_log.c.operation == "pull", audit_log.c.resource.startswith(f"{repository}:"))
                .order_by(audit_log.c.id)
            )
            return [str(row.resource) for row in result]
    finally:
        await db.dispose()


@pytest.fixture
async def node(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    """A token-mode app whose shutdown (``services.aclose()``) the test calls itself."""
    settings = make_settings(database_url, tmp_path, **TOKEN_ENV)
    services = Services.from_settings(settings)
    assert services.identity is not None
    await services.identity.start()
    services.identity.audit.pulls.interval = NEVER
    app = create_app(settings, services)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registry.test") as http:
        yield services, http


async def _setup(http: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    """A project with one image ``<project>/app:v1``; returns the repository and a pull+push bearer."""
    project = uid("pulls")
    r = await http.post("/api/v2.0/projects", json={"project_name": project}, headers=basic("admin", ADMIN_PASSWORD))
    assert r.status_code == 201, r.text
    repository = f"{project}/app"
    r = await http.get("/service/token", headers=basic("admin", ADMIN_PASSWORD),
                       params={"service": "moorage", "scope": f"repository:{repository}:pull,push"})
    auth = bearer(r.json()["token"])
    http.headers.update(auth)
    await push_image(http, repository, "v1", [b"layer"])
    return repository, auth


async def _pull(http: httpx.AsyncClient, repository: str, times: int) -> None:
    for _ in range(times):
        r = await http.get(f"/v2/{repository}/manifests/v1")
        assert r.status_code == 200, r.text


async def test_pulls_are_queued_then_written_by_a_flush_and_by_shutdown(
    node: tuple[Services, httpx.AsyncClient], database_url: str
) -> None:
    services, http = node
    assert services.identity is not None
    pulls: WriteBehind = services.identity.audit.pulls
    repository, _ = await _setup(http)
    try:
        await _pull(http, repository, 3)
        # Nothing written per pull: the rows wait in memory (before, each pull took the write lock).
        assert await pull_rows(database_url, repository) == [] and pulls.unwritten == 3
        await pulls.flush()
        assert await pull_rows(database_url, repository) == [f"{repository}:v1"] * 3
        await _pull(http, repository, 2)
        assert len(await pull_rows(database_url, repository)) == 3 and pulls.unwritten == 2
    finally:
        await services.aclose()  # the application's shutdown
    assert await pull_rows(database_url, repository) == [f"{repository}:v1"] * 5
    assert pulls.unwritten == 0


async def test_the_audit_log_lists_this_nodes_pulls_at_once(
    node: tuple[Services, httpx.AsyncClient], database_url: str
) -> None:
    services, http = node
    repository, _ = await _setup(http)
    try:
        await _pull(http, repository, 2)
        project = repository.split("/")[0]
        logs = await http.get(f"/api/v2.0/projects/{project}/logs", headers=basic("admin", ADMIN_PASSWORD))
        assert [e["operation"] for e in logs.json() if e["resource_type"] == "artifact"] == ["pull", "pull", "push"]
    finally:
        await services.aclose()


async def test_pushes_are_still_written_synchronously(
    node: tuple[Services, httpx.AsyncClient], database_url: str
) -> None:
    services, http = node
    assert services.identity is not None
    repository, _ = await _setup(http)
    try:
        db = Database(database_url)
        try:
            async with db.read() as conn:
                pushed = (await conn.execute(
                    select(audit_log.c.operation).where(audit_log.c.resource == f"{repository}:v1")
                )).scalars().all()
        finally:
            await db.dispose()
        assert list(pushed) == ["push"] and services.identity.audit.pulls.unwritten == 0
    finally:
        await services.aclose()
