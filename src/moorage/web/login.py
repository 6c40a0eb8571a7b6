"""``POST /c/login`` and ``POST /c/log_out`` (Harbor's paths): the UI's session cookie in and out.

Login takes a JSON body ``{"principal", "password"}`` only: a cross-site HTML form can post
``application/x-www-form-urlencoded`` or ``multipart/form-data`` without asking, but not JSON, so
another site cannot log a visitor into an account of its choosing (login CSRF); a request the
browser marks ``Sec-Fetch-Site: cross-site`` is refused too. The password check is the identity
service's (throttled per name and client, audited as every login). Robot accounts are for
machines and cannot open a UI session.

The cookies: :data:`~moorage.auth.sessions.SESSION_COOKIE` (``HttpOnly``) and
:data:`~moorage.auth.sessions.CSRF_COOKIE` (readable by the page, which echoes it in
:data:`~moorage.auth.sessions.CSRF_HEADER`), both ``SameSite=Lax``, ``Path=/``, and ``Secure``
when the client reached the registry over HTTPS (directly or through a trusted proxy's
``X-Forwarded-Proto``). Errors are Harbor's ``{"errors":[{"code","message"}]}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from moorage.api.http import UrlBuilder
from moorage.auth.clients import client_of
from moorage.auth.identity import IdentityError
from moorage.auth.service import IdentityService
from moorage.auth.sessions import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE, SessionTokens
from moorage.services import Services

__all__ = ["login_routes", "set_session_cookies"]

_STATUS = {"unauthorized": 401, "forbidden": 403, "throttled": 429, "not_found": 404}
_CODES = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND", 415: "UNSUPPORTED_MEDIA_TYPE",
          429: "TOO_MANY_REQUESTS"}
#: Longest accepted login body: a name and a password (128 characters at most) with room to spare.
_MAX_BODY = 4096


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"errors": [{"code": _CODES.get(status, "ERROR"), "message": message}]}, status_code=status,
                        headers={"Cache-Control": "no-store"})


def _secure(request: Request, services: Services) -> bool:
    """Whether the client reached us over HTTPS (the scheme the registry's external URLs use)."""
    return UrlBuilder(services.settings.http).base(request).startswith("https://")


def set_session_cookies(response: Response, secure: bool, token: str, csrf: str, max_age: int) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=max_age, path="/", secure=secure, httponly=True,
                        samesite="lax")
    response.set_cookie(CSRF_COOKIE, csrf, max_age=max_age, path="/", secure=secure, httponly=False,
                        samesite="lax")


def _clear_cookies(response: Response, secure: bool) -> None:
    for name, httponly in ((SESSION_COOKIE, True), (CSRF_COOKIE, False)):
        response.delete_cookie(name, path="/", secure=secure, httponly=httponly, samesite="lax")


def login_routes(services_of: Callable[[Request], Services]) -> list[Route]:
    def identity_of(request: Request) -> IdentityService | None:
        return services_of(request).identity

    async def login(request: Request) -> Response:
        services = services_of(request)
        identity = identity_of(request)
        if identity is None:
            return _error(404, "this registry runs with auth.mode: none, which has no accounts: browse without logging "
                               "in, or set auth.mode: token")
        if request.headers.get("sec-fetch-site") == "cross-site":
            return _error(403, "logins from another site are refused; open the registry's own login page")
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return _error(415, 'send the login as JSON: {"principal": "<user>", "password": "<password>"}')
        body = await request.body()
        try:
            data = json.loads(body) if len(body) <= _MAX_BODY else None
        except (ValueError, UnicodeDecodeError):
            data = None
        principal = data.get("principal") if isinstance(data, dict) else None
        password = data.get("password") if isinstance(data, dict) else None
        if not isinstance(principal, str) or not isinstance(password, str) or not principal:
            return _error(400, 'send {"principal": "<user>", "password": "<password>"} as JSON')
        client = client_of(request, services.settings.http.trusted_proxies)
        try:
            subject = await identity.login(principal, password, client)
        except IdentityError as exc:
            return _error(_STATUS.get(exc.kind, 400), exc.message)
        if subject.kind != "user":
            return _error(403, f"{subject.name!r} is a robot account: robots pull and push with their secret, "
                               "they cannot log in to the UI; use a user account")
        tokens = SessionTokens.of(identity)
        session = await tokens.issue(identity.account_of(subject))
        response = JSONResponse({"username": subject.name, "sysadmin": subject.sysadmin, "csrf": session.csrf},
                                headers={"Cache-Control": "no-store"})
        set_session_cookies(response, _secure(request, services), session.token, session.csrf, tokens.lifetime)
        return response

    async def log_out(request: Request) -> Response:
        """Revokes the session on every node and clears the cookies. A valid session must send its CSRF
        header (another site cannot log you out)."""
        services = services_of(request)
        identity = identity_of(request)
        token = request.cookies.get(SESSION_COOKIE)
        if identity is not None and token:
            tokens = SessionTokens.of(identity)
            try:
                claims = await tokens.claims(token)
            except IdentityError:
                claims = None  # expired or foreign: nothing to protect, clear it
            if claims is not None:
                try:
                    tokens.check_csrf(claims, "POST", request.headers.get(CSRF_HEADER))
                except IdentityError as exc:
                    return _error(403, exc.message)
                await tokens.revoke(identity, claims)
                await identity.audit.record(str(claims["sub"]), "logout", "session", str(claims["sub"]),
                                            client=client_of(request, services.settings.http.trusted_proxies),
                                            auth="session")
        response = Response(status_code=204, headers={"Cache-Control": "no-store"})
        _clear_cookies(response, _secure(request, services))
        return response

    return [Route("/c/login", login, methods=["POST"]), Route("/c/log_out", log_out, methods=["POST"])]
