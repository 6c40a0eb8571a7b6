"""Fixtures that run real registries and real clients.

Servers (session-scoped, started on first use, one fresh temp data dir each):

* ``moorage_sqlite``   — ``moorage serve`` on the embedded default (SQLite + filesystem).
* ``moorage_postgres`` — ``moorage serve`` with ``MOORAGE_DATABASE_URL`` on a throwaway database
  created on ``MOORAGE_TEST_POSTGRES_URL``'s server and dropped at the end.
* ``reference_registry`` — Debian's ``docker-registry`` (Distribution 2.8), the reference.

Per-test views of them (function-scoped, parametrized):

* ``registry``     — each Moorage variant: ``moorage-sqlite``, ``moorage-postgres``.
* ``any_registry`` — the Moorage variants plus ``reference`` (marked ``reference``): for
  behaviour Distribution 2.8 also has, so the test itself is proven right on the reference.

Servers are shared by the session (each test uses its own repository names) because a start
costs seconds; the part of a server's log written during a failing test is attached to that
test's report. Clients: ``skopeo`` (session), ``containers_tools`` (podman + buildah with a
private storage per test), ``layout`` (a fresh OCI image layout dir).
"""

from __future__ import annotations

import shutil
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import skip_or_fail
from tests.e2e.clients import ContainersTools, Skopeo
from tests.e2e.images import OciLayout
from tests.e2e.servers import RegistryProcess, start_moorage, start_reference, throwaway_postgres_database

SERVER_ENV = {"MOORAGE_LOG__ACCESS_LOG": "true"}
"""Access log on: a failing test's report then shows every request the clients made."""
MOORAGE_VARIANTS = ["moorage-sqlite", "moorage-postgres"]
_FIXTURE_OF = {
    "moorage-sqlite": "moorage_sqlite",
    "moorage-postgres": "moorage_postgres",
    "reference": "reference_registry",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark everything under tests/e2e as ``e2e`` (so ``-m 'not e2e'`` gives a fast loop)."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach each involved server's log lines from this test to a failing test's report."""
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        for value in funcargs.values():
            if isinstance(value, RegistryProcess):
                report.sections.append((f"{value.label} log ({value.host})", value.log_since_mark()))
    return report


FIGURES = pytest.StashKey[list[str]]()


@pytest.fixture(scope="session")
def figures(request: pytest.FixtureRequest) -> list[str]:
    """Measured figures (image size, start-up time) that the session prints at its end.

    Reported, never asserted: the tests prove behaviour, the figures inform (and timings on a
    shared machine vary too much to assert).
    """
    return request.config.stash.setdefault(FIGURES, [])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Print the figures the e2e tests measured, one per line, after the results."""
    lines = config.stash.get(FIGURES, [])
    if lines:
        terminalreporter.section("figures measured by the e2e tests", sep="-")
        for line in lines:
            terminalreporter.line(line)


def require_tool(name: str) -> None:
    """Skip (fail under CI) when a client binary is missing; scripts/test.sh installs them all."""
    if shutil.which(name) is None:
        skip_or_fail(f"`{name}` is not installed (apt-get install {name})")


# -- servers -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def e2e_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One temp dir holding every server's data dir, config and log for this session."""
    return tmp_path_factory.mktemp("e2e-servers")


@pytest.fixture(scope="session")
def moorage_sqlite(e2e_workdir: Path) -> Iterator[RegistryProcess]:
    """``moorage serve`` on the embedded default, in a fresh data dir."""
    server = start_moorage(e2e_workdir, label="moorage-sqlite", extra_env=SERVER_ENV)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moorage_postgres(e2e_workdir: Path, postgres_admin_url: str) -> Iterator[RegistryProcess]:
    """``moorage serve`` on a throwaway PostgreSQL database (filesystem storage in a fresh dir)."""
    with throwaway_postgres_database(postgres_admin_url) as database_url:
        server = start_moorage(
            e2e_workdir, label="moorage-postgres", database_url=database_url, extra_env=SERVER_ENV
        )
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def reference_registry(e2e_workdir: Path) -> Iterator[RegistryProcess]:
    """Debian's ``docker-registry`` with filesystem storage and deletes enabled."""
    require_tool("docker-registry")
    server = start_reference(e2e_workdir)
    try:
        yield server
    finally:
        server.stop()


def _per_test(request: pytest.FixtureRequest) -> Iterator[RegistryProcess]:
    server: RegistryProcess = request.getfixturevalue(_FIXTURE_OF[request.param])
    server.mark_log()
    yield server


@pytest.fixture(params=MOORAGE_VARIANTS)
def registry(request: pytest.FixtureRequest) -> Iterator[RegistryProcess]:
    """Each Moorage variant in turn (SQLite, PostgreSQL)."""
    yield from _per_test(request)


@pytest.fixture(params=[pytest.param("reference", marks=pytest.mark.reference), *MOORAGE_VARIANTS])
def any_registry(request: pytest.FixtureRequest) -> Iterator[RegistryProcess]:
    """The reference registry, then each Moorage variant."""
    yield from _per_test(request)


# -- clients and material ------------------------------------------------------------------
@pytest.fixture(scope="session")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    """skopeo with TLS verification off and a private accept-anything signature policy."""
    require_tool("skopeo")
    return Skopeo(tmp_path_factory.mktemp("skopeo"))


@pytest.fixture
def containers_tools(tmp_path: Path, any_registry: RegistryProcess) -> Iterator[ContainersTools]:
    """podman + buildah with private storage, trusting ``any_registry`` over plain HTTP."""
    require_tool("podman")
    require_tool("buildah")
    tools = ContainersTools(tmp_path / "containers", [any_registry.host])
    try:
        yield tools
    finally:
        tools.cleanup()


@pytest.fixture
def layout(tmp_path: Path) -> OciLayout:
    """An empty OCI image layout for this test's source images."""
    return OciLayout(tmp_path / "source-layout")


# -- the web UI ----------------------------------------------------------------------------
def _ui_redis_url() -> str:
    """The test Redis (``MOORAGE_TEST_REDIS_URL``) on database 12, so the UI server's cache keys meet no one else's."""
    import os
    from urllib.parse import urlsplit, urlunsplit

    import redis

    url = os.environ.get("MOORAGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    parts = urlsplit(url)
    url = urlunsplit((parts.scheme, parts.netloc, "/12", parts.query, parts.fragment))
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        skip_or_fail(f"Redis is not reachable at {url}: {exc} (the UI's system page shows its health)")
    return url


@pytest.fixture(scope="session")
def ui_registry(e2e_workdir: Path) -> Iterator[RegistryProcess]:
    """A token-mode ``moorage serve`` with Redis, shared by every UI test module (each uses its own names)."""
    from tests.e2e.identity_helpers import start_token_moorage

    # Webhooks may reach the test's receiver on this host (loopback is refused by default).
    env = {"MOORAGE_REDIS_URL": _ui_redis_url(), "MOORAGE_WEBHOOKS__ALLOW_NETWORKS": "[127.0.0.1/32]"}
    server = start_token_moorage(e2e_workdir, label="moorage-ui", extra_env=env)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium through Playwright, one per module: Playwright's sync API runs an event loop in
    this thread while it is open, which the asyncio tests of a later module could not share."""
    from tests.e2e.ui_support import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        skip_or_fail(f"{CHROMIUM} is missing (apt-get install chromium; scripts/test.sh installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="session")
def screenshots(e2e_workdir: Path) -> Path:
    """Where the UI tests save screenshots of the main pages (a test artifact; docs/ui/ keeps a few):
    ``TEST_UI_SCREENSHOTS`` when set (CI keeps it), else ``<e2e workdir>/ui-screenshots``."""
    import os

    where = Path(os.environ.get("TEST_UI_SCREENSHOTS") or e2e_workdir / "ui-screenshots")
    where.mkdir(parents=True, exist_ok=True)
    return where
