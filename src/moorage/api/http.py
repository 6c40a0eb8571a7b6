"""HTTP helpers shared by the API layers: external URLs behind proxies, error bodies."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import Response

from moorage.auth.clients import is_trusted
from moorage.config import HttpSettings
from moorage.errors import RegistryError

__all__ = ["UrlBuilder", "error_response", "new_request_id", "unexpected_error"]


@dataclass(frozen=True, slots=True)
class UrlBuilder:
    """Builds the URLs the registry hands to clients (``Location``, token realm).

    Order of preference: the configured ``http.host``; ``X-Forwarded-Proto``/``X-Forwarded-Host``
    from a trusted proxy; the request's own scheme and ``Host``. With ``http.relativeurls``
    ``Location`` headers are paths only, which is right behind any proxy.
    """

    settings: HttpSettings

    def _trusted(self, request: Request) -> bool:
        return is_trusted(request.client.host if request.client else "", self.settings.trusted_proxies)

    def base(self, request: Request) -> str:
        """``scheme://host[:port]`` as the client sees the registry."""
        if self.settings.host:
            return self.settings.host.rstrip("/")
        headers = request.headers
        # From the scope, not request.url: building the whole URL (and splitting it again) for its
        # scheme was most of this method's cost on every pull (issue 17's profile).
        scheme = str(request.scope.get("scheme") or "http")
        host = headers.get("host") or request.url.netloc
        if self.settings.trusted_proxies and self._trusted(request):
            scheme = headers.get("x-forwarded-proto", scheme).split(",")[0].strip() or scheme
            host = headers.get("x-forwarded-host", host).split(",")[0].strip() or host
        return f"{scheme}://{host}"

    def host(self, request: Request) -> str:
        """``host[:port]`` as the client sees the registry (what image references start with)."""
        return self.base(request).split("://", 1)[-1]

    def location(self, request: Request, path: str) -> str:
        return path if self.settings.relativeurls else self.base(request) + path


def error_response(error: RegistryError, method: str = "GET") -> Response:
    """The spec's JSON error envelope with the code's status and any extra headers."""
    body = b"" if method == "HEAD" else json.dumps(error.body()).encode()
    headers = {"Docker-Distribution-API-Version": "registry/2.0", **error.headers}
    if method == "HEAD":
        headers["Content-Length"] = "0"
    return Response(body, status_code=error.status, headers=headers, media_type="application/json")


def new_request_id() -> str:
    """A fresh id that ties a client's error to the one server log line that explains it."""
    return uuid.uuid4().hex


def unexpected_error(error: Exception, request_id: str) -> RegistryError:
    """The spec's error for a failure no handler anticipated, naming ``request_id``.

    Database failures (lost connection, lock timeout, a broken schema) are ``UNAVAILABLE`` (503):
    most are transient and clients retry a 503. Anything else is ``UNKNOWN`` (500), Distribution's
    code for it (the OCI spec has none). The client gets no exception text, which may hold SQL or
    paths; the log line with the same id has the traceback.
    """
    headers = {"X-Request-Id": request_id}
    detail = {"requestId": request_id}
    if isinstance(error, SQLAlchemyError):
        return RegistryError(
            "UNAVAILABLE",
            f"the registry's database failed (request id {request_id}); retry later, and if it persists "
            "the operator finds the cause under this id in the server log ('moorage check' tests the database)",
            detail,
            headers=headers,
        )
    return RegistryError(
        "UNKNOWN",
        f"the registry failed unexpectedly (request id {request_id}); retry, and if it persists report "
        "this id to the operator: the server log has the cause under it",
        detail,
        headers=headers,
    )
