"""The ``/v2`` access controller of ``auth.mode: token`` (Docker token auth, Basic accepted too).

Every refusal says which credential or permission was missing; the words, and what they
disclose, are the :class:`~moorage.auth.policy.Policy`'s. A bearer token must be a registry token
(audience ``auth.service``) whose ``access`` claim covers the request, *and* the account must
still have the right now: a removed member or a lowered role stops working within seconds on
every node, whatever the token says.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement

from moorage.auth.access import AccessRequest, Principal
from moorage.auth.identity import ANONYMOUS, IdentityError, Subject
from moorage.auth.policy import Denial
from moorage.auth.service import IdentityService, parse_authorization
from moorage.auth.tokens import TokenError
from moorage.errors import RegistryError

__all__ = ["TokenAccess", "challenge"]

_ORDER = ("pull", "push", "delete")


def _sorted(actions: frozenset[str] | set[str]) -> list[str]:
    return sorted(actions, key=lambda a: (_ORDER.index(a) if a in _ORDER else 99, a))


def challenge(base_url: str, service: str, scope: str | None = None, error: str | None = None) -> dict[str, str]:
    """``WWW-Authenticate`` for a token client; ``scope`` may hold several scopes separated by spaces."""
    value = f'Bearer realm="{base_url}/service/token",service="{service}"'
    if scope:
        value += f',scope="{scope}"'
    if error:
        value += f',error="{error}"'
    return {"WWW-Authenticate": value}


def _granted(claims: dict[str, object], repository: str) -> set[str]:
    granted: set[str] = set()
    access = claims.get("access")
    for entry in access if isinstance(access, list) else []:
        if isinstance(entry, dict) and entry.get("type") == "repository" and entry.get("name") == repository:
            granted.update(str(a) for a in entry.get("actions") or [])
    return granted


class TokenAccess:
    """:class:`~moorage.auth.access.AccessController` over :class:`IdentityService`."""

    def __init__(self, identity: IdentityService) -> None:
        self.identity = identity

    def _unauthorized(self, request: AccessRequest, message: str, scope: str | None = None,
                      error: str | None = None) -> RegistryError:
        host = request.base_url.split("://", 1)[-1]
        if "log in" not in message:
            message += f"; log in with 'podman login {host}' or 'docker login {host}'"
        return RegistryError(
            "UNAUTHORIZED", message, headers=challenge(request.base_url, self.identity.settings.service, scope, error)
        )

    async def _subject(self, request: AccessRequest, scope: str | None) -> tuple[Subject, dict[str, object] | None]:
        """The caller and, for a bearer token, its claims; bad credentials are 401 with a challenge."""
        try:
            credentials = parse_authorization(request.headers.get("authorization"))
            if credentials.scheme == "bearer":
                await self.identity.start()
                try:
                    claims = await self.identity.tokens.verify(credentials.secret)
                except TokenError as exc:
                    raise self._unauthorized(request, str(exc), scope, "invalid_token") from None
                try:
                    subject = await self.identity.subject_of(claims)
                except IdentityError as exc:
                    raise self._unauthorized(request, exc.message, scope, "invalid_token") from None
                return subject, claims
            return await self.identity.from_credentials(credentials, request.client), None
        except IdentityError as exc:
            if exc.kind == "throttled":
                raise RegistryError("TOOMANYREQUESTS", exc.message) from None
            if exc.kind == "forbidden":
                raise RegistryError("DENIED", exc.message) from None
            raise self._unauthorized(request, exc.message, scope) from None

    async def authenticate(self, request: AccessRequest) -> Principal:
        subject, _ = await self._subject(request, None)
        if subject.anonymous:
            raise self._unauthorized(request, "authentication required")
        return _principal(subject)

    async def authorize(self, request: AccessRequest, repository: str, actions: frozenset[str], *,
                        mount_from: str | None = None, mirrored: bool = False) -> Principal:
        """Allow ``actions`` on ``repository`` for the token (or Basic) caller, re-checked against current rights.

        ``mount_from``: the request is a cross-repository mount, so the challenge also asks for
        ``pull`` on that repository (as Distribution does) and a token that lacks it is answered
        ``insufficient_scope`` when the caller may pull there: a client that only follows
        challenges then gets a token for both and its mount succeeds.
        """
        wanted = _sorted(actions)
        scope = f"repository:{repository}:{','.join(wanted)}"
        if mount_from is not None and mount_from != repository:
            scope += f" repository:{mount_from}:pull"
        if "/" not in repository:
            raise RegistryError(
                "NAME_INVALID",
                f"repository {repository!r} has no project: with projects enabled names are "
                f"'<project>/<repository>', e.g. 'library/{repository}'",
            )
        subject, claims = await self._subject(request, scope)
        policy = self.identity.policy
        rights = await policy.repository_rights(subject, repository)
        if not actions <= rights.actions:
            raise self._refusal(request, policy.repository_denial(subject, repository, actions, rights), scope)
        if claims is None or mirrored:
            # Mirrored: the client asked its token for the name it knows (without the proxy project),
            # which the policy cannot grant; the verified subject's current rights above decide.
            return _principal(subject)
        if not actions <= _granted(claims, repository):
            raise self._insufficient(request, repository, wanted, scope)
        if mount_from is not None and mount_from != repository and "pull" not in _granted(claims, mount_from):
            source = await policy.repository_rights(subject, mount_from)
            if "pull" in source.actions:  # worth a new token; else the mount just falls back to an upload
                raise self._insufficient(request, mount_from, ["pull"], scope)
        return _principal(subject)

    def _insufficient(self, request: AccessRequest, repository: str, wanted: list[str], scope: str) -> RegistryError:
        return self._unauthorized(
            request,
            f"the bearer token does not grant {','.join(wanted)} on {repository!r}; request a token with "
            f"scope {scope!r} (clients do this after this answer)",
            scope, "insufficient_scope",
        )

    def _refusal(self, request: AccessRequest, denial: Denial, scope: str) -> RegistryError:
        if denial.kind == "unauthorized":
            return self._unauthorized(request, denial.message, scope)
        if request.method == "HEAD":
            # A HEAD answer has no body, so clients print only "403 (Forbidden)". podman and skopeo
            # probe blobs with HEAD before uploading; a 404 lets them go on to the POST, whose
            # answer carries the message. Nothing is revealed: the caller may not pull either way.
            return RegistryError("NAME_UNKNOWN", denial.message, denial.detail, status=404)
        return RegistryError("DENIED", denial.message, detail=denial.detail)

    async def catalog_visibility(self, request: AccessRequest) -> ColumnElement[bool] | None:
        """The condition on repositories the caller may list (``None``: all of them), from the policy."""
        subject, _ = await self._subject(request, "registry:catalog:*")
        return self.identity.policy.visible_repositories(subject)


def _principal(subject: Subject) -> Principal:
    kind = subject.kind if subject is not ANONYMOUS else "anonymous"
    return Principal(subject.name, kind, {"sysadmin": "true" if subject.sysadmin else "false"})
