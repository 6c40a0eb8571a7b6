"""What every web UI browser test shares: Debian's chromium, a page that fails on any JavaScript or console
error, axe-core, logging in, and counting what the page asked the API for.

The fixtures over these (one token-mode ``moorage serve`` for the whole session and one browser per module,
so the UI modules share them) are in ``tests/e2e/conftest.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "WAIT_MS",
    "ApiLog",
    "axe_violations",
    "expected_refusals",
    "login",
    "open_page",
    "phone_overflow",
]

CHROMIUM = "/usr/bin/chromium"
#: Playwright's own browser download is not reachable: Debian's chromium, headless, no network chatter.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
#: How long an expectation waits for the page (the server shares 2 cores with the rest of the suite).
WAIT_MS = 15_000


@contextmanager
def open_page(browser: Browser, base_url: str, *, width: int = 1200, height: int = 900) -> Iterator[Page]:
    """A fresh browser context on ``base_url``; any JavaScript or console error fails the test at the end
    (a test that provokes a refused API call on purpose drops those lines with :func:`expected_refusals`)."""
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    context = browser.new_context(base_url=base_url, viewport={"width": width, "height": height})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url)
    context.set_default_timeout(WAIT_MS)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))

    def console(message: Any) -> None:
        if message.type == "error":
            errors.append(f"console: {message.text}")

    opened.on("console", console)
    opened.errors = errors  # type: ignore[attr-defined]
    try:
        yield opened
    finally:
        context.close()
    assert not errors, errors


def expected_refusals(page: Page, status: int) -> None:
    """Drop the console lines chromium writes for API answers of ``status`` the test provoked on purpose."""
    errors: list[str] = page.errors  # type: ignore[attr-defined]
    errors[:] = [e for e in errors if f"status of {status}" not in e]


def login(page: Page, username: str, password: str) -> None:
    """Log in through the header's link and the form, as a person would."""
    from playwright.sync_api import expect

    page.get_by_role("link", name="Log in").click()
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#whoami")).to_have_text(re.compile(rf"^{re.escape(username)}( \(admin\))?$"))


def axe_violations(page: Page) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now (WCAG 2.1 A/AA rules)."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options={"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}})
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"] if v["impact"] in ("serious", "critical")
    ]


def phone_overflow(page: Page) -> int:
    """How many pixels the page is wider than its viewport (0 when nothing scrolls sideways)."""
    width: int = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    return max(0, width)


class ApiLog:
    """Every ``/api/v2.0`` answer the page received: URL, status, rows and bytes.

    ``rows`` is the length of a list answer (a JSON array, or ``{"jobs": [...]}``), -1 otherwise;
    ``bytes`` the body's size, which also catches rows nested inside rows. Used to prove a screen
    asked for one page of data, whatever the registry holds. The requests are intercepted
    (``page.route``): the answer is fetched, measured and handed to the page unchanged, so a
    later navigation cannot take the body away before it is counted.
    """

    def __init__(self, page: Page) -> None:
        self._answers: list[tuple[str, int, int, int]] = []
        page.route("**/api/v2.0/**", self._through)

    def _through(self, route: Route) -> None:
        response = route.fetch()
        body = response.body()
        rows = -1
        try:
            data = json.loads(body) if body else None
        except ValueError:  # a text answer (a GC log)
            data = None
        if isinstance(data, list):
            rows = len(data)
        elif isinstance(data, dict) and isinstance(data.get("jobs"), list):
            rows = len(data["jobs"])
        self._answers.append((route.request.url, response.status, rows, len(body)))
        route.fulfill(response=response, body=body)

    def clear(self) -> None:
        self._answers.clear()

    def answers(self) -> list[tuple[str, int, int, int]]:
        """``(url, status, rows, bytes)`` of each answer so far."""
        return list(self._answers)
