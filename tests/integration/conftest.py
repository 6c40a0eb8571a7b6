"""In-process API fixtures on SQLite and PostgreSQL: the same tests run on both databases.

One migrated database per backend per session (a throwaway PostgreSQL database created
from ``postgres_admin_url`` and dropped at the end); tests isolate themselves with unique
repository names (:func:`unique_name`) instead of fresh databases, which keeps them fast.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from moorage.app import create_app
from moorage.config import Settings, load_settings
from moorage.db.migrate import upgrade
from moorage.services import Services


def unique_name(prefix: str = "t") -> str:
    """A repository name no other test uses."""
    return f"{prefix}/{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def postgres_database(postgres_admin_url: str) -> Iterator[str]:
    """URL of a throwaway, migrated PostgreSQL database for this session."""
    name = f"moorage_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = postgres_admin_url.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    upgrade(url)
    yield url
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'moorage.db'}"
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once per database backend."""
    fixture = "sqlite_database" if request.param == "sqlite" else "postgres_database"
    return str(request.getfixturevalue(fixture))


def make_settings(database_url: str, data_dir: Path, **overrides: object) -> Settings:
    """Settings for an in-process registry; ``overrides`` are ``MOORAGE_…``-style flat env values."""
    environ = {"MOORAGE_DATA_DIR": str(data_dir), "MOORAGE_DATABASE_URL": database_url}
    environ.update({key: str(value) for key, value in overrides.items()})
    return load_settings(environ=environ)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path)


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    built = Services.from_settings(settings)
    yield built
    await built.aclose()


@pytest.fixture
async def client(settings: Settings, services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in-process (no sockets), as a registry client would."""
    app = create_app(settings, services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as http:
        yield http
