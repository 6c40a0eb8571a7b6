"""The identity facade one process holds in token mode: credentials → subject → grants → tokens.

Built by :meth:`IdentityService.from_settings` (sync; nothing touches the database) and started
lazily by :meth:`start` (creates the shared signing key and the initial admin once, whichever
node comes first). Both the ``/v2`` access controller and the REST API use it; every decision
about rights and what a refusal discloses is its :class:`~moorage.auth.policy.Policy`'s.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from moorage.auth.audit import AuditLog
from moorage.auth.bootstrap import hand_over_initial_password
from moorage.auth.groups import GroupRef, GroupStore, normalize_dn
from moorage.auth.identity import ANONYMOUS, IdentityError, IdentityStore, Subject
from moorage.auth.keys import KeySet, SecretBox
from moorage.auth.ldap import LdapSource
from moorage.auth.oidc import OidcService
from moorage.auth.policy import Policy
from moorage.auth.robots import PREFIX, RobotStore
from moorage.auth.sources import SourceChain, SourceError
from moorage.auth.throttle import LoginThrottle
from moorage.auth.tokens import REFRESH_LIFETIME, Account, Scope, TokenError, TokenService
from moorage.config import AuthSettings
from moorage.db.session import Database
from moorage.net.tls import TrustStore
from moorage.registry.names import InvalidNameError, check_login, ldap_filter_character

__all__ = ["Credentials", "IdentityService", "parse_authorization"]

log = structlog.get_logger("moorage.identity")

#: How long a login waits for the tries in flight (other checks of the same name and client) to end.
RESERVE_WAIT = 5.0


@dataclass(frozen=True, slots=True)
class Credentials:
    """What an ``Authorization`` header carried: ``scheme`` is ``basic``, ``bearer`` or ``none``."""

    scheme: str
    username: str = ""
    secret: str = ""


def parse_authorization(header: str | None) -> Credentials:
    if not header:
        return Credentials("none")
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer" and value:
        return Credentials("bearer", secret=value)
    if scheme == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise IdentityError("unauthorized", "the Basic credentials are not valid base64 of 'user:password'") from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise IdentityError("unauthorized", "the Basic credentials must be 'user:password' in base64")
        return Credentials("basic", username, password)
    raise IdentityError(
        "unauthorized", f"the Authorization scheme {scheme!r} is not supported; send Basic or Bearer credentials"
    )


class IdentityService:
    def __init__(self, db: Database, settings: AuthSettings, *, data_dir: Path | None = None,
                 trust: TrustStore | None = None) -> None:
        """``data_dir``: where a generated initial admin password is written (mode 0600); ``trust``: the CAs
        outbound connections (LDAP, OIDC) verify with (:mod:`moorage.net.tls`)."""
        if not settings.secret_key:
            raise ValueError(
                "auth.secret_key (MOORAGE_SECRET_KEY) is required with auth.mode: token; "
                "set the same random secret on every node"
            )
        self.db = db
        self.settings = settings
        self.data_dir = data_dir
        self.store = IdentityStore(db, on_change=self._forget)
        self.robots = RobotStore(db, on_change=self._forget)
        self.groups = GroupStore(db, on_change=self._forget)
        #: Who checks a login (auth.sources, in order); external sources register here at start-up.
        self.sources = SourceChain(self.store, self.robots, self.groups, settings.sources)
        #: The LDAP source when ``auth.ldap`` is set (also asked whether a group DN exists).
        self.ldap = LdapSource(settings.ldap, trust=trust) if settings.ldap is not None else None
        if self.ldap is not None:
            self.sources.register(self.ldap)
        self.policy = Policy(self.store, self.robots, anonymous_pull=settings.anonymous_pull,
                             disclose_existence=settings.disclose_project_existence)
        self.audit = AuditLog(db)
        self.throttle = LoginThrottle(
            db, max_failures=settings.login_max_failures, window=settings.login_window,
            lockout=settings.login_lockout,
        )
        self.keys = KeySet(db, SecretBox(settings.secret_key), max(settings.token_expiry, REFRESH_LIFETIME))
        self.tokens = TokenService(self.keys, service=settings.service, expiry=settings.token_expiry)
        #: Single sign-on and CLI secrets when ``auth.oidc.issuer`` is set (the chain's ``oidc`` source).
        self.oidc = OidcService(
            db, settings.oidc, secret_key=settings.secret_key, store=self.store, chain=self.sources,
            throttle=self.throttle, audit=self.audit, trust=trust or TrustStore(),
        ) if settings.oidc.enabled else None
        self._started = False
        self._start_lock = asyncio.Lock()

    def _forget(self) -> None:
        self.policy.forget()

    async def start(self) -> None:
        """Create the shared signing key and the initial admin unless another node already did."""
        if self._started:
            return
        async with self._start_lock:
            if self._started:
                return
            self.sources.check_configured()
            await self.keys.ensure()
            generated = await self.store.bootstrap_admin(self.settings.admin_password)
            if generated is not None:
                # Handed over once (the row now exists, so no later start generates another), and
                # never through the structured log: see moorage.auth.bootstrap.
                where = hand_over_initial_password(self.data_dir, generated)
                log.warning(
                    "initial_admin_created", username="admin",
                    password_file=str(where) if where is not None else "printed on the console (stderr)",
                    hint="log in, change the password (PUT /api/v2.0/users/<id>/password), then delete the file",
                )
            self._started = True

    async def aclose(self) -> None:
        """Write the audit rows still queued (pulls are written behind); called at shutdown."""
        await self.audit.aclose()
        if self.oidc is not None:
            await self.oidc.aclose()

    # -- credentials -----------------------------------------------------------------------
    async def login(self, username: str, password: str, client: str) -> Subject:
        """:meth:`_login`, recorded in the audit log (success, failure or throttled; see :meth:`AuditLog.login`)."""
        method = "robot" if username.startswith(PREFIX) else "password"
        try:
            subject = await self._login(username, password, client)
        except IdentityError as exc:
            outcome = "throttled" if exc.kind == "throttled" else "failure"
            if self.oidc is not None and method == "password" and await self.oidc.identities.is_oidc_user(username):
                method = "cli_secret"
            await self.audit.login(username, client, method, outcome, detail=exc.detail or exc.message)
            raise
        if subject.source == "oidc":
            method = "cli_secret"
        await self.audit.login(username, client, method, "success", fingerprint=subject.fingerprint)
        return subject

    async def _login(self, username: str, password: str, client: str) -> Subject:
        """Check a name and password or robot secret, throttled per (name, client) across nodes.

        A password this process verified within a minute is accepted without a write (Basic auth
        on every ``/v2`` request stays cheap); any other attempt first reserves one of the
        ``auth.login_max_failures`` tries (see :mod:`moorage.auth.throttle`), so parallel guesses
        get no more tries than serial ones.
        """
        await self.start()
        if ldap_filter_character(username) is not None:
            raise await self._injection(username, client)
        try:
            check_login(username)  # "admin\n" is not admin: refused before it reaches the throttle or the audit log
        except InvalidNameError as exc:
            raise IdentityError("unauthorized", f"{exc.message}; log in with the exact account name") from None
        until, counted = await self.throttle.state(username, client)
        if until is not None:
            raise self._throttled(username, client, until)
        subject = await self._check(username, password, cached_only=True)
        if subject is not None:
            if counted:
                await self.throttle.succeeded(username, client)
            return subject
        deadline = time.monotonic() + RESERVE_WAIT
        while True:
            reserved, until = await self.throttle.reserve(username, client)
            if reserved:
                break
            if until is not None:
                raise self._throttled(username, client, until)
            if time.monotonic() > deadline:
                raise IdentityError(
                    "throttled",
                    f"too many logins for {username!r} from {client} are being checked at once; try again in a "
                    "few seconds",
                )
            await asyncio.sleep(0.05)  # the tries left are in flight: wait for them to end
            subject = await self._check(username, password, cached_only=True)
            if subject is not None:  # one of them verified this very password in this process
                return subject
        try:
            subject = await self._check(username, password, cached_only=False)
        except IdentityError:  # right secret, but a disabled or expired robot: not a guess
            await self.throttle.succeeded(username, client)
            raise
        except SourceError as exc:  # the directory could not answer: neither a guess nor a login
            await asyncio.shield(self.throttle.release(username, client))
            log.error("identity_source_unavailable", username=username, client=client, error=str(exc))
            raise IdentityError(
                "unauthorized", f"the password of {username!r} could not be checked right now; try again later"
            ) from None
        except BaseException:  # cancelled (client gone) or a database error: neither a guess nor a login
            await asyncio.shield(self.throttle.release(username, client))
            raise
        if subject is None:
            await self.throttle.failed(username, client)
            raise IdentityError(
                "unauthorized",
                f"invalid username or password for {username!r}; check them (robot accounts log in as "
                "'robot$<name>' or 'robot$<project>+<name>' with their secret)",
            )
        await self.throttle.succeeded(username, client)
        return subject

    async def _check(self, username: str, password: str, *, cached_only: bool) -> Subject | None:
        return await self.sources.check(username, password, cached_only=cached_only)

    async def check_ldap_group(self, dn: str | None) -> None:
        """Before an LDAP group is created by DN (``/usergroups``, ``member_group``): with a directory
        configured, the DN must name a group there (Harbor checks it too), so a typo is refused
        instead of mapping nobody. ``invalid`` naming ``ldap_group_dn`` otherwise; a directory that
        cannot answer is ``unavailable``-worded ``invalid`` too (nothing is saved either way)."""
        if self.ldap is None or not dn:
            return
        normalize_dn(dn)  # text that is no DN is refused as such, without asking the directory
        try:
            exists = await self.ldap.group_exists(dn)
        except SourceError as exc:
            log.error("identity_source_unavailable", group=dn, error=str(exc))
            raise IdentityError("invalid", "ldap_group_dn could not be checked: the directory does not answer; "
                                "try again later") from None
        if not exists:
            raise IdentityError(
                "invalid", f"ldap_group_dn {dn!r} names no group in the directory (auth.ldap.group_filter); check "
                "the DN",
            )

    async def search_ldap_groups(self, name: str | None, dn: str | None) -> list[GroupRef]:
        """Groups of the directory by exact name or DN (``/ldap/groups/search``); ``unsupported``
        without ``auth.ldap`` (412, as Harbor outside LDAP mode), ``invalid`` for a bad DN or a directory that does not answer."""
        if self.ldap is None:
            raise IdentityError("precondition", "no LDAP directory is configured; set auth.ldap (docs/sso.md)")
        if dn:
            normalize_dn(dn)
        try:
            return await self.ldap.search_groups(name, dn)
        except SourceError as exc:
            log.error("identity_source_unavailable", error=str(exc))
            raise IdentityError("invalid", "the directory could not be searched right now; try again later") from None

    async def _injection(self, username: str, client: str) -> IdentityError:
        """A login name holding an LDAP filter character (``*``, ``(``, ``)``, ``\\``, NUL): no source
        is asked, the attempt counts as a failed login for (name, client), the log says why, and
        the client gets the answer of any wrong password (the audit row is written by :meth:`login`)."""
        char = ldap_filter_character(username)
        log.warning("login_refused_ldap_filter_characters", username=username, client=client, character=char,
                    reason="the login name holds a character with a meaning in LDAP search filters (an injection "
                    "attempt, or a typing error); no source was asked")
        until, _ = await self.throttle.state(username, client)
        if until is not None:
            return self._throttled(username, client, until)
        reserved, until = await self.throttle.reserve(username, client)
        if reserved:
            await self.throttle.failed(username, client)
        elif until is not None:
            return self._throttled(username, client, until)
        return IdentityError(
            "unauthorized", f"invalid username or password for {username!r}; check them",
            detail=f"refused: the login name holds {char!r}, which means something in an LDAP search filter "
            "(injection attempt); no source was asked",
        )

    @staticmethod
    def _throttled(username: str, client: str, until: datetime) -> IdentityError:
        return IdentityError(
            "throttled",
            f"too many failed logins for {username!r} from {client}; try again after "
            f"{until:%H:%M:%S} UTC or ask an administrator to reset the password",
        )

    @staticmethod
    def account_of(subject: Subject) -> Account:
        """What a token issued to ``subject`` names: its kind, name, immutable uid and generation."""
        return Account(subject.kind, subject.name, subject.uid, subject.generation)

    async def subject_of(self, claims: dict[str, Any]) -> Subject:
        """The current subject of a verified token (re-read, so revocations and role changes apply)."""
        account = Account(str(claims.get("kind", "user")), str(claims["sub"]), str(claims.get("uid", "")),
                          int(claims.get("gen", 0)))
        return await self.policy.account(account)

    async def from_refresh_token(self, token: str, client: str = "") -> Subject:
        """The subject of a refresh token (``grant_type=refresh_token``), recorded as a login."""
        try:
            subject = await self._from_refresh_token(token)
        except IdentityError as exc:
            await self.audit.login("(refresh token)", client, "refresh_token", "failure", detail=exc.message)
            raise
        await self.audit.login(subject.name, client, "refresh_token", "success", fingerprint=subject.fingerprint)
        return subject

    async def _from_refresh_token(self, token: str) -> Subject:
        try:
            claims = await self.tokens.verify(token, refresh=True)
        except TokenError as exc:
            raise IdentityError("unauthorized", f"refresh token rejected: {exc}") from None
        subject = await self.subject_of(claims)
        if subject.fingerprint != claims.get("fpr"):
            raise IdentityError(
                "unauthorized", "the refresh token was revoked by a password or secret change; log in again"
            )
        try:  # an external source re-checks the user: groups recomputed, a removed user refused
            return await self.sources.refresh(subject)
        except SourceError as exc:
            log.error("identity_source_unavailable", username=subject.name, error=str(exc))
            raise IdentityError("unauthorized", "the account could not be checked right now; try again later") from None

    async def from_credentials(self, credentials: Credentials, client: str, *, api: bool = False) -> Subject:
        """The subject of Basic or Bearer credentials on a ``/v2`` request, or with ``api`` a REST request.

        A bearer token must have been minted for that entry point (its audience): a registry token
        is refused by the API, an API token by ``/v2``.
        """
        if credentials.scheme == "none":
            return ANONYMOUS
        if credentials.scheme == "basic":
            return await self.login(credentials.username, credentials.secret, client)
        await self.start()
        try:
            claims = await self.tokens.verify(credentials.secret, api=api)
        except TokenError as exc:
            raise IdentityError("unauthorized", str(exc)) from None
        return await self.subject_of(claims)

    async def grant(self, subject: Subject, scopes: list[Scope]) -> list[dict[str, Any]]:
        """The intersection of requested and allowed actions, per scope (the policy decides)."""
        return await self.policy.grant(subject, [(scope.type, scope.name, scope.actions) for scope in scopes])

    async def oci_event(self, principal: Any, operation: str, repository: str, reference: str, client: str,
                        resource_type: str = "artifact", auth: str | None = None) -> None:
        """Audit hook of the ``/v2`` routes: every manifest pull, push and delete, and blob deletes
        (``resource_type`` ``blob``); ``auth`` is how the caller authenticated."""
        await self.audit.record(
            getattr(principal, "name", "anonymous"), operation, resource_type, f"{repository}:{reference}"
            if ":" not in reference else f"{repository}@{reference}",
            project=repository.split("/", 1)[0], client=client, auth=auth, behind=operation == "pull",
        )
