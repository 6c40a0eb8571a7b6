"""GC tests need a database of their own per test: GC works on the whole registry.

SQLite: a copy of a migrated file. PostgreSQL: ``CREATE DATABASE … TEMPLATE`` of a migrated
database made once per session (a copy takes a fraction of a second, a migration seconds).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import update

from moorage.app import create_app
from moorage.config import Settings
from moorage.db.migrate import upgrade
from moorage.db.session import Database
from moorage.db.tables import blobs, manifest_references, manifests, repository_blobs
from moorage.gc.collector import GarbageCollector, GcOptions, GcReport
from moorage.services import Services
from tests.integration.conftest import make_settings


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gc-template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_template(postgres_admin_url: str) -> Iterator[str]:
    name = f"moorage_gc_tpl_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    upgrade(f"{postgres_admin_url.rsplit('/', 1)[0]}/{name}")
    yield name
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database no other test touches (each test runs once per backend)."""
    if request.param == "sqlite":
        path = tmp_path / "moorage.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    admin: str = request.getfixturevalue("postgres_admin_url")
    template: str = request.getfixturevalue("postgres_template")
    name = f"moorage_gc_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    yield f"{admin.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def gc_settings(fresh_database_url: str, tmp_path: Path) -> Settings:
    return make_settings(fresh_database_url, tmp_path / "data", MOORAGE_STORAGE__DELETE__ENABLED="true")


@pytest.fixture
async def gc_services(gc_settings: Settings) -> AsyncIterator[Services]:
    built = Services.from_settings(gc_settings)
    yield built
    await built.aclose()


@pytest.fixture
async def gc_client(gc_settings: Settings, gc_services: Services) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(gc_settings, gc_services)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://registry.test"
    ) as http:
        yield http


async def age_everything(db: Database, by: timedelta = timedelta(hours=3)) -> None:
    """Make every blob, link and manifest look ``by`` old (older than a 2 h grace window)."""
    old = datetime.now(UTC) - by
    async with db.write() as conn:
        await conn.execute(update(blobs).values(created_at=old, state_at=old))
        await conn.execute(update(repository_blobs).values(created_at=old))
        await conn.execute(update(manifests).values(created_at=old))
        await conn.execute(update(manifest_references).values(created_at=old))


async def collect(services: Services, **options: object) -> GcReport:
    """One GC run with the default 2 h grace window unless ``options`` say otherwise."""
    collector = GarbageCollector(services.db, services.storage, GcOptions(**options))  # type: ignore[arg-type]
    return await collector.run()
