"""Fixtures of the browser tests: the session-wide token-mode server, an admin API client, a page.

The server (``ui_registry``) and the browser (``browser``) are session fixtures of
``tests/e2e/conftest.py``; each test gets a fresh browser context whose JavaScript or console
errors fail it (:func:`tests.e2e.ui_support.open_page`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.e2e.identity_helpers import AdminApi
from tests.e2e.servers import RegistryProcess
from tests.e2e.ui_support import open_page

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


@pytest.fixture
def reg(ui_registry: RegistryProcess) -> RegistryProcess:
    """The shared UI server, its log marked so that a test reads only its own lines."""
    ui_registry.mark_log()
    return ui_registry


@pytest.fixture
def api(reg: RegistryProcess) -> Iterator[AdminApi]:
    client = AdminApi(reg)
    yield client
    client.close()


@pytest.fixture
def page(browser: Browser, reg: RegistryProcess) -> Iterator[Page]:
    """A fresh browser context on the registry; any JavaScript or console error fails the test."""
    with open_page(browser, reg.url) as opened:
        yield opened
