"""Real upstream registries for the proxy-cache tests: Debian's ``docker-registry``, open and behind
htpasswd, started once per session on loopback ports (see tests/e2e/servers.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.conftest import skip_or_fail
from tests.e2e.identity_helpers import ADMIN_PASSWORD, start_token_moorage
from tests.e2e.servers import RegistryProcess, start_reference
from tests.integration.conftest import database_url, postgres_database, sqlite_database
from tests.integration.test_identity_helpers import Idp, make_idp
from tests.proxy.upstream import htpasswd_file

__all__ = ["ADMIN_PASSWORD", "database_url", "postgres_database", "sqlite_database"]  # the integration fixtures, on both databases

UPSTREAM_USER = "puller"
UPSTREAM_PASSWORD = "upstream-Passw0rd"


def _require_registry() -> None:
    import shutil

    if shutil.which("docker-registry") is None:
        skip_or_fail("`docker-registry` is not installed (apt-get install docker-registry)")


@pytest.fixture(scope="session")
def proxy_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("proxy-upstreams")


@pytest.fixture(scope="session")
def open_upstream(proxy_workdir: Path) -> Iterator[RegistryProcess]:
    """docker-registry without auth."""
    _require_registry()
    server = start_reference(proxy_workdir, label="upstream-open")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def auth_upstream(proxy_workdir: Path) -> Iterator[RegistryProcess]:
    """docker-registry behind htpasswd (Basic auth) as ``puller``."""
    _require_registry()
    passwords = htpasswd_file(proxy_workdir / "htpasswd", UPSTREAM_USER, UPSTREAM_PASSWORD)
    server = start_reference(proxy_workdir, label="upstream-auth", htpasswd=passwords)
    try:
        yield server
    finally:
        server.stop()


#: The proxy project the e2e server mirrors ``upstream.example`` into (configured at its start).
MIRROR_PROJECT = "hub-proxy"
MIRRORED_HOST = "upstream.example"


@pytest.fixture(scope="session")
def proxy_server(proxy_workdir: Path) -> Iterator[RegistryProcess]:
    """``moorage serve`` in token mode (SQLite) with ``upstream.example`` mirrored into ``hub-proxy``."""
    server = start_token_moorage(proxy_workdir, label="moorage-proxy", extra_env={
        "MOORAGE_PROXY__MIRRORS": f"{{{MIRRORED_HOST}: {MIRROR_PROJECT}}}", "MOORAGE_PROXY__TAG_TTL": "1h",
        "MOORAGE_PROXY__DEFAULT_MIRROR": MIRROR_PROJECT,
    })
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def idp(database_url: str, tmp_path: Path) -> AsyncIterator[Idp]:
    """A token-mode registry in-process on SQLite and PostgreSQL; its proxy cache talks to real sockets."""
    async for value in make_idp(database_url, tmp_path, MOORAGE_PROXY__TAG_TTL="1h"):
        yield value
