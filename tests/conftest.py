"""Suite-wide fixtures only: where PostgreSQL is, and the rule that nothing skips under CI.

Per-layer fixtures live next to their tests (``tests/integration/conftest.py``,
``tests/e2e/conftest.py``, ``tests/storage/conftest.py``).
"""

from __future__ import annotations

import os

import pytest

__all__ = ["DEFAULT_POSTGRES_ADMIN_URL", "CiSkipGuard", "in_ci", "postgres_admin_url", "skip_or_fail"]

DEFAULT_POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

#: Session fixtures ``ceph_rgw`` and ``swift_saio`` (the project's own object stores) and ``slapd`` (an LDAP directory).
#: ``pytester``: tests/unit/test_ci_skip_guard.py runs a tiny suite through the guard below.
pytest_plugins = ["tests.services.fixtures", "tests.services.ldap", "pytester"]


def pytest_configure(config: pytest.Config) -> None:
    # Registered here, not in tests/e2e/conftest.py: that module uses the mark at import time,
    # before its own pytest_configure would run, and unknown marks are errors in this suite.
    config.addinivalue_line(
        "markers", "reference: runs against Debian's docker-registry to prove the test itself is right"
    )
    config.pluginmanager.register(CiSkipGuard(), CiSkipGuard.NAME)


class CiSkipGuard:
    """Fails the session under ``CI=true`` when anything skipped, whatever raised the skip.

    :func:`skip_or_fail` already turns the suite's own skips into failures under CI; this guard
    catches the rest (a bare ``pytest.skip``, ``importorskip``, a ``skipif`` mark, a module-level
    skip, an ``xfail``), so a skip added later cannot make CI green while a test did not run.
    The tests still run to the end; the session's exit status becomes 1 and the summary lists
    every skip with its reason.
    """

    NAME = "moorage-ci-skip-guard"

    def __init__(self) -> None:
        self.skipped: list[str] = []

    def _note(self, report: pytest.CollectReport | pytest.TestReport) -> None:
        if not report.skipped:
            return
        if hasattr(report, "wasxfail"):
            reason = f"xfail: {report.wasxfail}"
        elif isinstance(report.longrepr, tuple):  # (path, line, "Skipped: reason")
            reason = str(report.longrepr[2])
        else:
            reason = str(report.longrepr)
        self.skipped.append(f"{report.nodeid}: {reason}")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._note(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._note(report)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        passing = (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
        if self.skipped and in_ci() and session.exitstatus in passing:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.skipped or not in_ci():
            return
        terminalreporter.section(
            "skipped under CI=true (each one fails this run)", sep="=", red=True, bold=True
        )
        for line in self.skipped:
            terminalreporter.line(line, red=True)
        terminalreporter.line(
            f"{len(self.skipped)} skipped: nothing may skip under CI; install/start what the test needs "
            "(scripts/test.sh does) or remove the skip",
            red=True, bold=True,
        )


def in_ci() -> bool:
    """True when ``CI`` is set to a true value: then a missing service is a failure, not a skip."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def skip_or_fail(reason: str) -> None:
    """Skip on a developer machine that lacks something; fail under CI, where nothing may skip.

    Always raises (``pytest.skip``/``pytest.fail`` exceptions).
    """
    if in_ci():
        pytest.fail(f"{reason} (CI=true: nothing may skip; scripts/test.sh installs and starts it)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """Admin URL of a PostgreSQL server that may create and drop throwaway databases.

    ``MOORAGE_TEST_POSTGRES_URL`` (exported by ``scripts/test.sh``) or the local default. The
    server is contacted once, so an unreachable one gives one clear message instead of a
    connection error in every test.
    """
    url = os.environ.get("MOORAGE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        skip_or_fail(f"PostgreSQL is not reachable at {url}: {exc}".strip())
    return url
