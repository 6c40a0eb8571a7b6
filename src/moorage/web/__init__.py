"""The web UI served by ``moorage serve`` at ``/``: one HTML page, static ES modules, and the session login.

Every screen reads and writes through ``/api/v2.0`` from the browser (no private shortcut into
the database), so the UI is also a proof of the API. The server side here only:

* answers the page for the UI's paths (``/``, ``/login``, ``/projects…``, ``/repositories…``, ``/admin…``, ``/search``), with the
  ``auth.mode`` in a ``data-`` attribute so the page knows whether to offer a login;
* serves ``static/`` from the installed package (nothing is built, nothing comes from a CDN);
* logs in and out (:mod:`moorage.web.login`): the session cookie and its CSRF token are
  :mod:`moorage.auth.sessions`'.

Pages carry a Content-Security-Policy allowing only this origin's scripts and styles, so text
from the registry (names, annotations) can never run as script even if a view mishandled it.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from moorage.services import Services
from moorage.web.login import login_routes
from moorage.web.oidc import oidc_routes

__all__ = ["SECURITY_HEADERS", "web_routes"]

#: Sent with the page: scripts and styles from this origin only, no framing, no sniffing.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}

_HERE = Path(str(files("moorage.web")))


def web_routes(services_of: Callable[[Request], Services]) -> list[BaseRoute]:
    """The UI's routes; mount them after ``/v2``, ``/service`` and ``/api/v2.0``."""
    template = (_HERE / "templates" / "index.html").read_text(encoding="utf-8")

    async def page(request: Request) -> Response:
        mode = services_of(request).settings.auth.mode
        html = template.replace("{{auth_mode}}", "token" if mode == "token" else "none")
        return HTMLResponse(html, headers=SECURITY_HEADERS)

    return [
        Route("/", page, methods=["GET", "HEAD"]),
        Route("/login", page, methods=["GET", "HEAD"]),
        Route("/profile", page, methods=["GET", "HEAD"]),
        Route("/search", page, methods=["GET", "HEAD"]),
        Route("/projects", page, methods=["GET", "HEAD"]),
        Route("/projects/{rest:path}", page, methods=["GET", "HEAD"]),
        Route("/repositories", page, methods=["GET", "HEAD"]),
        Route("/repositories/{rest:path}", page, methods=["GET", "HEAD"]),
        Route("/admin", page, methods=["GET", "HEAD"]),
        Route("/admin/{rest:path}", page, methods=["GET", "HEAD"]),
        Mount("/static", app=StaticFiles(directory=_HERE / "static"), name="static"),
        *login_routes(services_of),
        *oidc_routes(services_of),
    ]
