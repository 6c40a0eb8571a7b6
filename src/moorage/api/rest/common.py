"""What every REST handler shares: the caller, Harbor's error envelope, pagination, project lookups.

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
from moorage.auth.roles import ROLE_IDS
from moorage.auth.service import IdentityService, parse_authorization
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
    """The authenticated (or anonymous) caller of a REST request, with the services it may use."""

    subject: Subject
    identity: IdentityService
    services: Services
    client: str
    #: How the caller authenticated (:func:`moorage.auth.audit.auth_method`), recorded on audit rows.
    auth: str = "anonymous"

    def require_login(self) -> None:
        if self.subject.anonymous:
            raise ApiError(401, "this endpoint needs credentials: send Basic auth (user:password) or a Bearer token")

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
    try:
        credentials = parse_authorization(request.headers.get("authorization"))
        subject = await identity.from_credentials(credentials, client)
    except IdentityError as exc:
        raise ApiError.of(exc) from None
    return Caller(subject, identity, services_of(request), client, auth_method(credentials.scheme, subject.kind))


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


def page_params(
    page: Annotated[int, Query(ge=1, le=1_000_000, description="Page number, from 1"), AsciiDigits] = 1,
    page_size: Annotated[int, Query(ge=1, le=100, description="Items per page (at most 100)"), AsciiDigits] = 10,
) -> Page:
    return Page(page, page_size)


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


async def visible_project(who: Caller, name_or_id: str) -> tuple[Project, str | None]:
    """The project and the caller's role in it, or 404/401 without saying whether a private one exists."""
    # Ids are 32-bit columns; anything that is not ASCII digits within that range is a name.
    try:
        key: str | int = parse_decimal(name_or_id, maximum=2_147_483_647)
    except ValueError:
        key = name_or_id
    project = await who.identity.store.project(key)
    role = None if project is None else await who.identity.store.role_of(who.subject, project)
    robot_sees = project is not None and who.subject.kind == "robot" and (
        project.name in who.subject.robot_access or "*" in who.subject.robot_access
    )
    if project is None or not (project.public or who.subject.sysadmin or role is not None or robot_sees):
        if who.subject.anonymous:
            raise ApiError(401, f"project {name_or_id!r} is not public or does not exist; send credentials")
        raise ApiError(
            404,
            f"project {name_or_id!r} does not exist, or it is private and {who.subject.name!r} is not a member; "
            "check the name or ask its administrator to add you",
        )
    return project, role


def role_id(role: str | None) -> int | None:
    return None if role is None else ROLE_IDS.get(role)
