"""The ``/v2`` access controller of ``auth.mode: token`` (Docker token auth, Basic accepted too).

Every refusal says which credential or permission was missing. The field report's trap, a push
to a project that does not exist answered only with "requested access to the resource is
denied", is answered with the project's name and the fix to any authenticated user (the name
of a project that does not exist is no secret); for a private project the caller cannot see,
the message lists the possible causes without saying which one applies.
"""

from __future__ import annotations

from moorage.auth.access import AccessRequest, Principal
from moorage.auth.identity import ANONYMOUS, IdentityError, Subject
from moorage.auth.roles import minimum_role_for
from moorage.auth.service import IdentityService, parse_authorization
from moorage.auth.tokens import TokenError
from moorage.errors import RegistryError

__all__ = ["TokenAccess", "challenge"]

_ORDER = ("pull", "push", "delete")


def _sorted(actions: frozenset[str] | set[str]) -> list[str]:
    return sorted(actions, key=lambda a: (_ORDER.index(a) if a in _ORDER else 99, a))


def challenge(base_url: str, service: str, scope: str | None = None, error: str | None = None) -> dict[str, str]:
    value = f'Bearer realm="{base_url}/service/token",service="{service}"'
    if scope:
        value += f',scope="{scope}"'
    if error:
        value += f',error="{error}"'
    return {"WWW-Authenticate": value}


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
                subject = await self.identity.subject_of(str(claims["sub"]), str(claims.get("kind", "user")))
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

    async def authorize(self, request: AccessRequest, repository: str, actions: frozenset[str]) -> Principal:
        wanted = _sorted(actions)
        scope = f"repository:{repository}:{','.join(wanted)}"
        if "/" not in repository:
            raise RegistryError(
                "NAME_INVALID",
                f"repository {repository!r} has no project: with projects enabled names are "
                f"'<project>/<repository>', e.g. 'library/{repository}'",
            )
        subject, claims = await self._subject(request, scope)
        if claims is not None:
            granted: set[str] = set()
            for entry in claims.get("access") or []:  # type: ignore[attr-defined]
                if isinstance(entry, dict) and entry.get("type") == "repository" and entry.get("name") == repository:
                    granted.update(str(a) for a in entry.get("actions") or [])
            if actions <= granted:
                return _principal(subject)
        allowed = await self.identity.allowed(subject, repository)
        if actions <= allowed:
            if claims is None:
                return _principal(subject)
            raise self._unauthorized(
                request,
                f"the bearer token does not grant {','.join(wanted)} on {repository!r}; request a token with "
                f"scope {scope!r} (clients do this after this answer)",
                scope, "insufficient_scope",
            )
        error = await self._denied(request, subject, repository, actions, allowed, scope)
        if request.method == "HEAD" and error.code == "DENIED":
            # A HEAD answer has no body, so clients print only "403 (Forbidden)". podman and skopeo
            # probe blobs with HEAD before uploading; a 404 lets them go on to the POST, whose
            # answer carries the message. Nothing is revealed: the caller may not pull either way.
            raise RegistryError("NAME_UNKNOWN", error.message, error.detail, status=404)
        raise error

    async def _denied(self, request: AccessRequest, subject: Subject, repository: str, actions: frozenset[str],
                      allowed: frozenset[str], scope: str) -> RegistryError:
        project_name, project = await self.identity.project_of(repository)
        missing = _sorted(actions - allowed)
        verb = "+".join(missing)
        if subject.anonymous:
            return self._unauthorized(
                request, f"authentication required to {verb} {repository!r} (anonymous users may only pull "
                "from public projects)", scope,
            )
        who = f"robot account {subject.name!r}" if subject.kind == "robot" else f"user {subject.name!r}"
        if project is None:
            return RegistryError(
                "DENIED",
                f"project {project_name!r} does not exist: create it in the UI or with the API "
                f"(POST /api/v2.0/projects), or check the name (repositories are '<project>/<repository>')",
                detail={"project": project_name, "missing": missing},
            )
        role = await self.identity.store.role_of(subject, project)
        visible = subject.sysadmin or project.public or role is not None or (
            subject.kind == "robot" and (project.name in subject.robot_access or "*" in subject.robot_access)
        )
        if not visible:
            return RegistryError(
                "DENIED",
                f"{who} may not {verb} {repository!r}: either project {project_name!r} does not exist, or it is "
                f"private and {subject.name!r} is not a member; check the name, or ask the project's "
                "administrator to add you",
                detail={"missing": missing},
            )
        if subject.kind == "robot":
            reason = (f"{who} lacks the {verb} permission on project {project_name!r}; ask an administrator to "
                      "grant it (PUT /api/v2.0/robots/<id>) or use another account")
        elif role is None:
            reason = (f"project {project_name!r} is public, so {who} may pull, but {verb} needs membership with "
                      f"role {minimum_role_for(missing[-1])} or above; ask a project admin to add you")
        else:
            reason = (f"{who} has role {role} in project {project_name!r}, which does not allow {verb}; ask a "
                      f"project admin for role {minimum_role_for(missing[-1])} or above")
        return RegistryError("DENIED", reason, detail={"missing": missing, "role": role})

    async def catalog_filter(self, request: AccessRequest, names: list[str]) -> list[str]:
        subject, _ = await self._subject(request, "registry:catalog:*")
        if subject.sysadmin:
            return names
        cache: dict[str, bool] = {}
        visible = []
        for name in names:
            project = name.split("/", 1)[0]
            if project not in cache:
                cache[project] = "pull" in await self.identity.allowed(subject, name)
            if cache[project]:
                visible.append(name)
        return visible


def _principal(subject: Subject) -> Principal:
    kind = subject.kind if subject is not ANONYMOUS else "anonymous"
    return Principal(subject.name, kind, {"sysadmin": "true" if subject.sysadmin else "false"})
