"""``/service/token``: the Docker registry token service (GET with Basic auth; POST OAuth2 form).

GET (docker, containers/image without a stored refresh token): Basic credentials or none
(anonymous), any number of ``scope`` parameters, each of which may hold several scopes separated
by spaces (as a client copies Distribution's multi-scope challenge), ``offline_token=true`` adds a
``refresh_token``. ``service=<auth.service>-api`` (with credentials) mints a token for the
management API instead: registry tokens are good for ``/v2`` only. POST (``grant_type=password`` or ``refresh_token``, space-separated
``scope``, ``access_type=offline``): what clients send once they hold a refresh token.

A scope the caller may not use is left out of the token rather than refused: the registry
then answers the actual request with a message naming the missing permission (the token
endpoint cannot know which operation the client meant).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from moorage.auth.clients import client_of
from moorage.auth.identity import ANONYMOUS, IdentityError, Subject
from moorage.auth.service import IdentityService, parse_authorization
from moorage.auth.tokens import api_audience, parse_scopes

__all__ = ["token_routes"]


def _json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _error(exc: IdentityError, oauth: bool = False) -> Response:
    status = {"throttled": 429, "unauthorized": 401, "invalid": 400, "forbidden": 403}.get(exc.kind, 400)
    code = {"throttled": "TOOMANYREQUESTS", "unauthorized": "UNAUTHORIZED", "invalid": "UNSUPPORTED"}.get(
        exc.kind, "DENIED"
    )
    body: dict[str, Any] = {"errors": [{"code": code, "message": exc.message}]}
    if oauth:
        body["error"] = "invalid_grant" if exc.kind == "unauthorized" else "invalid_request"
        body["error_description"] = exc.message
    headers = {"WWW-Authenticate": 'Basic realm="moorage"'} if status == 401 and not oauth else None
    return _json(body, status, headers)


async def _issue(identity: IdentityService, subject: Subject, raw_scopes: list[str], offline: bool,
                 service: str | None = None) -> dict[str, Any]:
    account = identity.account_of(subject)
    if service is not None and service == api_audience(identity.settings.service):
        if subject.anonymous:
            raise IdentityError("unauthorized", "a token for the management API needs credentials (Basic auth)")
        token, issued, expires_in = await identity.tokens.issue_api(account)
        offline = False
    else:
        access = await identity.grant(subject, parse_scopes(raw_scopes))
        token, issued, expires_in = await identity.tokens.issue_access(account, access)
    body: dict[str, Any] = {
        "token": token,
        "access_token": token,
        "expires_in": expires_in,
        "issued_at": datetime.fromtimestamp(issued, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if offline and not subject.anonymous:
        body["refresh_token"] = await identity.tokens.issue_refresh(account, subject.fingerprint)
    return body


def token_routes(identity_of: Callable[[Request], IdentityService | None],
                 trusted_proxies: Sequence[str] = ("127.0.0.1", "::1")) -> list[Route]:
    """The token endpoint's routes; ``identity_of`` finds the process's identity service (None: mode none).

    ``trusted_proxies`` (``http.trusted_proxies``): whose ``X-Forwarded-For`` names the client that
    login throttling counts against.
    """

    def _client(request: Request) -> str:
        return client_of(request, trusted_proxies)

    async def unavailable() -> Response:
        return _json(
            {"errors": [{"code": "UNSUPPORTED", "message": "this registry runs with auth.mode: none and issues no "
                         "tokens; set auth.mode: token to enable users and projects"}]}, 404,
        )

    async def get_token(request: Request) -> Response:
        identity = identity_of(request)
        if identity is None:
            return await unavailable()
        try:
            credentials = parse_authorization(request.headers.get("authorization"))
            if credentials.scheme == "bearer":
                raise IdentityError("unauthorized", "send Basic credentials (or none) to the token endpoint")
            subject = await identity.from_credentials(credentials, _client(request))
            await identity.start()
            offline = request.query_params.get("offline_token", "").lower() == "true"
            body = await _issue(identity, subject, request.query_params.getlist("scope"), offline,
                                request.query_params.get("service"))
        except IdentityError as exc:
            return _error(exc)
        return _json(body)

    async def post_token(request: Request) -> Response:
        identity = identity_of(request)
        if identity is None:
            return await unavailable()
        form = await request.form()
        grant_type = str(form.get("grant_type", ""))
        try:
            await identity.start()
            if grant_type == "password":
                subject = await identity.login(str(form.get("username", "")), str(form.get("password", "")),
                                               _client(request))
            elif grant_type == "refresh_token":
                subject = await identity.from_refresh_token(str(form.get("refresh_token", "")), _client(request))
            else:
                raise IdentityError(
                    "invalid", f"grant_type {grant_type!r} is not supported; use 'password' or 'refresh_token'"
                )
            scopes = [str(form.get("scope", ""))]
            offline = str(form.get("access_type", "")) == "offline"
            service = form.get("service")
            body = await _issue(identity, subject if subject is not None else ANONYMOUS, scopes, offline,
                                service if isinstance(service, str) else None)
        except IdentityError as exc:
            return _error(exc, oauth=True)
        body["token_type"] = "Bearer"
        body["scope"] = " ".join(str(form.get("scope", "")).split())
        if grant_type == "refresh_token" and "refresh_token" not in body:
            body["refresh_token"] = str(form.get("refresh_token", ""))
        return _json(body)

    return [
        Route("/service/token", get_token, methods=["GET"]),
        Route("/service/token", post_token, methods=["POST"]),
    ]
