"""``GET /c/oidc/login`` and ``GET /c/oidc/callback``: the browser's single sign-on through the OpenID provider.

The login redirects to the provider's authorization endpoint and puts the login's ``state`` in an
``HttpOnly`` cookie (``SameSite=Lax``: the provider's redirect back is a top-level GET, which
carries it; a callback forged on another browser does not). The callback hands everything to
:meth:`moorage.auth.oidc.logins.OidcLogins.finish`, then opens a UI session exactly as the password
login does. A refusal sends the browser back to ``/login`` with a generic message and a reference
(the log line with the reason carries the same reference).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

import structlog
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from moorage.api.http import UrlBuilder, new_request_id
from moorage.auth.clients import client_of
from moorage.auth.oidc import CALLBACK_PATH, OidcError, OidcLoginError
from moorage.auth.oidc.logins import LOGIN_TTL
from moorage.auth.sessions import SessionTokens
from moorage.services import Services
from moorage.web.login import set_session_cookies

__all__ = ["STATE_COOKIE", "oidc_routes"]

log = structlog.get_logger("moorage.oidc")

STATE_COOKIE = "moorage_oidc_state"
_COOKIE_PATH = "/c/oidc"


def _back_to_login(message: str, secure: bool) -> Response:
    response = RedirectResponse("/login?" + urlencode({"sso_error": message}), status_code=303,
                                headers={"Cache-Control": "no-store"})
    response.delete_cookie(STATE_COOKIE, path=_COOKIE_PATH, secure=secure, httponly=True, samesite="lax")
    return response


def oidc_routes(services_of: Callable[[Request], Services]) -> list[Route]:
    def configured(request: Request) -> Services | None:
        services = services_of(request)
        return services if services.identity is not None and services.identity.oidc is not None else None

    async def login(request: Request) -> Response:
        services = configured(request)
        if services is None or services.identity is None or services.identity.oidc is None:
            return PlainTextResponse("single sign-on is not configured on this registry (auth.oidc.issuer); log in "
                                     "with a user name and password at /login", status_code=404)
        base = UrlBuilder(services.settings.http).base(request)
        secure = base.startswith("https://")
        try:
            start = await services.identity.oidc.logins.start(base, request.query_params.get("next"))
        except OidcError as exc:
            reference = new_request_id()
            log.error("oidc_provider_unavailable", reason=exc.reason, request_id=reference)
            return _back_to_login("single sign-on is unavailable: the identity provider cannot be reached; try "
                                  f"again later or give the administrator the reference {reference}", secure)
        response = RedirectResponse(start.url, status_code=303, headers={"Cache-Control": "no-store"})
        response.set_cookie(STATE_COOKIE, start.state, max_age=LOGIN_TTL, path=_COOKIE_PATH, secure=secure,
                            httponly=True, samesite="lax")
        return response

    async def callback(request: Request) -> Response:
        services = configured(request)
        if services is None or services.identity is None or services.identity.oidc is None:
            return PlainTextResponse("single sign-on is not configured on this registry", status_code=404)
        identity, oidc = services.identity, services.identity.oidc
        secure = UrlBuilder(services.settings.http).base(request).startswith("https://")
        query = request.query_params
        try:
            subject, next_path = await oidc.logins.finish(
                state=query.get("state"), cookie_state=request.cookies.get(STATE_COOKIE), code=query.get("code"),
                error=query.get("error"), client=client_of(request, services.settings.http.trusted_proxies),
            )
        except OidcLoginError as exc:
            return _back_to_login(exc.message, secure)
        tokens = SessionTokens.of(identity)
        session = await tokens.issue(identity.account_of(subject))
        response = RedirectResponse(next_path, status_code=303, headers={"Cache-Control": "no-store"})
        response.delete_cookie(STATE_COOKIE, path=_COOKIE_PATH, secure=secure, httponly=True, samesite="lax")
        set_session_cookies(response, secure, session.token, session.csrf, tokens.lifetime)
        return response

    return [Route("/c/oidc/login", login, methods=["GET"]), Route(CALLBACK_PATH, callback, methods=["GET"])]
