"""What every REST handler shares: the caller, Harbor's error envelope, pagination, project lookups.

The caller authenticates with Basic credentials or a bearer token minted for the API (audience
``<auth.service>-api``), or, from the web UI, with its session cookie and CSRF header
(:mod:`moorage.auth.sessions`; an ``Authorization`` header wins over the cookie); a registry token from ``/service/token`` is good for ``/v2`` only and is
refused here, whatever its scopes. Who may see and do what is the policy's
(:mod:`moorage.auth.policy`), so REST answers as ``/v2`` does.

Errors are Harbor's ``{"errors":[{"code","message"}]}`` with the status of :data:`STATUS`;
every 401/403 names the missing credential or permission. Pagination is Harbor's: ``page``
(from 1) and ``page_size`` (1–100), the total in ``X-Total-Count`` and ``prev``/``next`` in
``Link``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator

from moorage.auth.audit import auth_method
from moorage.auth.clients import client_of
from moorage.auth.identity import IdentityError, Project, Subject
from moorage.auth.policy import Rights
from moorage.auth.roles import ROLE_IDS
from moorage.auth.service import IdentityService, parse_authorization
from moorage.auth.sessions import CSRF_HEADER, SESSION_COOKIE, SessionTokens
from moorage.numbers import parse_decimal
from moorage.services import Services

__all__ = [
    "ERROR_RESPONSES",
    "ApiError",
    "AsciiDigits",
    "Caller",
    "Id",
    "Page",
    "caller",
    "paginate",
    "visible_project",
]

STATUS = {
    "unauthorized": 401, "forbidden": 403, "not_found": 404, "conflict": 409, "invalid": 400,
    "throttled": 429, "precondition": 412, "unsupported": 501,
}
CODES = {
    401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND", 409: "CONFLICT", 400: "BAD_REQUEST",
    429: "TOO_MANY_REQUESTS", 412: "PRECONDITION", 501: "UNSUPPORTED", 405: "METHOD_NOT_ALLOWED",
}


class ErrorItem(BaseModel):
    code: str
    message: str


class Errors(BaseModel):
    """Harbor's error envelope."""

    errors: list[ErrorItem]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Errors, "description": CODES[status]}
    for status in (400, 401, 403, 404, 405, 409, 412, 429, 501)
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    @classmethod
    def of(cls, exc: IdentityError) -> ApiError:
        return cls(STATUS.get(exc.kind, 400), exc.message)

    def response(self) -> JSONResponse:
        body = {"errors": [{"code": CODES.get(self.status, "ERROR"), "message": self.message}]}
        headers = dict(self.headers)
        if self.status == 401:
            headers.setdefault("WWW-Authenticate", 'Basic realm="moorage"')
        return JSONResponse(body, status_code=self.status, headers=headers)


def services_of(request: Request) -> Services:
    get: Callable[[], Services] = request.app.state.get_services
    return get()


def identity_of(request: Request) -> IdentityService:
    identity = services_of(request).identity
    if identity is None:
        raise ApiError(501, "this registry runs with auth.mode: none; set auth.mode: token to manage users and projects")
    return identity


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated (or anonymous) caller of a REST request and the identity service that judges it.

    It carries no other service: a handler declares the one it uses as a dependency
    (:mod:`moorage.api.rest.deps`).
    """

    subject: Subject
    identity: IdentityService
    client: str
    #: How the caller authenticated (:func:`moorage.auth.audit.auth_method`), recorded on audit rows.
    auth: str = "anonymous"

    def require_login(self) -> None:
        if self.subject.anonymous:
            raise ApiError(
            401, "this endpoint needs credentials: send Basic auth (user:password) or a bearer token for the API "
            "(GET /service/token?service=<service>-api)",
        )

    def require_admin(self, what: str) -> None:
        self.require_login()
        if not self.subject.sysadmin:
            raise ApiError(403, f"{what} needs the system administrator role; {self.subject.name!r} is not one")

    async def audit(self, operation: str, resource_type: str, resource: str, project: str | None = None,
                    detail: str | None = None) -> None:
        await self.identity.audit.record(
            self.subject.name, operation, resource_type, resource, project=project, client=self.client,
            detail=detail, auth=self.auth,
        )


async def caller(request: Request) -> Caller:
    identity = identity_of(request)
    client = client_of(request, services_of(request).settings.http.trusted_proxies)
    session = request.cookies.get(SESSION_COOKIE)
    try:
        if session and not request.headers.get("authorization"):  # the web UI (see moorage.auth.sessions)
            subject = await SessionTokens.of(identity).subject(
                identity, session, request.method, request.headers.get(CSRF_HEADER)
            )
            return Caller(subject, identity, client, auth_method("session", subject.kind))
        credentials = parse_authorization(request.headers.get("authorization"))
        subject = await identity.from_credentials(credentials, client, api=True)
    except IdentityError as exc:
        raise ApiError.of(exc) from None
    return Caller(subject, identity, client, auth_method(credentials.scheme, subject.kind))


CallerDep = Annotated[Caller, Depends(caller)]


def _ascii_digits(value: Any) -> Any:
    """Query/path text must be ASCII digits (pydantic alone reads '1_0', '+5', ' 5' and '5.0' as ints)."""
    return parse_decimal(value) if isinstance(value, str) else value


#: Put on every integer query/path parameter: the one rule of :mod:`moorage.numbers`.
AsciiDigits = BeforeValidator(_ascii_digits)
#: A database id in a path: 32-bit, so PostgreSQL never sees an out-of-range integer.
Id = Annotated[int, PathParam(ge=1, le=2_147_483_647), AsciiDigits]


@dataclass(frozen=True, slots=True)
class Page:
    page: int
    page_size: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size


def _blank_is_absent(value: Any) -> Any:
    """Harbor's clients (harborapi, the Go SDK) send ``page=&page_size=`` when the caller gave none."""
    return None if value == "" else value


#: An empty paging parameter means "the default", as Harbor reads it.
BlankIsAbsent = BeforeValidator(_blank_is_absent)


def page_params(
    page: Annotated[int | None, Query(ge=1, le=1_000_000, description="Page number, from 1"), AsciiDigits,
                    BlankIsAbsent] = None,
    page_size: Annotated[int | None, Query(ge=1, le=100, description="Items per page (at most 100)"), AsciiDigits,
                         BlankIsAbsent] = None,
) -> Page:
    return Page(page or 1, page_size or 10)


PageDep = Annotated[Page, Depends(page_params)]


def paginate(request: Request, response: Response, page: Page, total: int) -> None:
    """Set ``X-Total-Count`` and ``Link`` (``prev``/``next``) the way Harbor does."""
    response.headers["X-Total-Count"] = str(total)
    links = []
    params = dict(request.query_params)
    path = request.url.path
    if page.page > 1:
        links.append(f'<{path}?{urlencode({**params, "page": page.page - 1, "page_size": page.page_size})}>; rel="prev"')
    if page.offset + page.page_size < total:
        links.append(f'<{path}?{urlencode({**params, "page": page.page + 1, "page_size": page.page_size})}>; rel="next"')
    if links:
        response.headers["Link"] = ", ".join(links)


async def project_rights(who: Caller, name_or_id: str) -> Rights:
    """The policy's view of the caller in a project named by name or id (visible or not)."""
    # Ids are 32-bit columns; anything that is not ASCII digits within that range is a name.
    try:
        key: str | int = parse_decimal(name_or_id, maximum=2_147_483_647)
    except ValueError:
        key = name_or_id
    return await who.identity.policy.rights(who.subject, key)


async def visible_project(who: Caller, name_or_id: str) -> tuple[Project, str | None]:
    """The project and the caller's role in it, or the policy's 404/401 (private and missing alike)."""
    rights = await project_rights(who, name_or_id)
    denial = who.identity.policy.project_denial(who.subject, rights)
    if denial is not None or rights.project is None:
        raise ApiError.of(denial.error() if denial is not None else IdentityError("not_found", name_or_id))
    return rights.project, rights.role


def role_id(role: str | None) -> int | None:
    return None if role is None else ROLE_IDS.get(role)
