"""Suite-wide fixtures only: where PostgreSQL is, and the rule that nothing skips under CI.

Per-layer fixtures live next to their tests (``tests/integration/conftest.py``,
``tests/e2e/conftest.py``, ``tests/storage/conftest.py``).
"""

from __future__ import annotations

import os

import pytest

__all__ = ["DEFAULT_POSTGRES_ADMIN_URL", "in_ci", "postgres_admin_url", "skip_or_fail"]

DEFAULT_POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

#: Session fixtures ``ceph_rgw`` and ``swift_saio``: the project's own object stores.
pytest_plugins = ["tests.services.fixtures"]


def pytest_configure(config: pytest.Config) -> None:
    # Registered here, not in tests/e2e/conftest.py: that module uses the mark at import time,
    # before its own pytest_configure would run, and unknown marks are errors in this suite.
    config.addinivalue_line(
        "markers", "reference: runs against Debian's docker-registry to prove the test itself is right"
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
