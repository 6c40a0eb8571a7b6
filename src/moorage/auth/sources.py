"""Identity sources and the chain that asks them: who checks a login's password, in which order.

Sources (``auth.sources``, in order): ``local`` (accounts with an argon2 password in the
database), ``robot`` (robot accounts, ``robot$…``), ``ldap`` (:mod:`moorage.auth.ldap`) and
``oidc`` (an OpenID provider, whose users log in to registry clients with a CLI secret). An
external source is an :class:`AccountSource` registered with :meth:`SourceChain.register`.

**The rule for a name that exists in two sources** (docs/sso.md, proven by
``tests/integration/test_sources.py``): an account belongs to exactly one source, recorded in
``users.source`` when the account is created, and only that source checks its credentials.

1. ``robot$…`` names are robot accounts (no user name may hold ``$``), checked by the robot store.
2. A name that has an account is checked by the account's source alone, whatever the order: the
   local ``alice`` stays local when the directory also has an ``alice``, the directory's password
   does not open the local account, and the local password is never sent to the directory. The
   built-in ``admin`` is local and logs in even when ``local`` is not listed (the way back in
   when a directory is down or misconfigured); other local accounts need ``local`` listed.
3. A name without an account is offered to the external sources in ``auth.sources`` order: the
   first that knows the name decides (its password check is final, later sources are not
   asked), and on success it creates the account, which then belongs to it (rule 2). A source
   that cannot onboard at a password login (OIDC: first login is in the browser) passes.
4. An account created by one source is never taken over by another: :meth:`SourceChain.onboard`
   refuses a name that belongs to another source with a ``conflict`` that names it.

At each login (and :meth:`SourceChain.refresh`, at each refresh-token use) the source's answer
is applied to the account: e-mail, real name, system-administrator flag (when the source
decides it) and the user's groups of the source's type (:meth:`GroupStore.sync`), so a user's
rights (their own role and their groups' roles, :mod:`moorage.auth.policy`) follow the source.

The interface is small and stable; the OIDC source implements it as the LDAP one does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from moorage.auth.groups import GroupRef, GroupStore
from moorage.auth.identity import IdentityError, IdentityStore, Subject, User
from moorage.auth.passwords import recently_verified, remember_verified, verify_secret_async
from moorage.auth.robots import PREFIX, RobotStore

__all__ = [
    "BUILTIN_SOURCES",
    "AccountSource",
    "ExternalAccount",
    "SourceChain",
    "SourceError",
    "UnknownAccount",
]

log = structlog.get_logger("moorage.identity.sources")

#: Sources the chain has without registration.
BUILTIN_SOURCES = ("local", "robot")
#: The account that always logs in locally.
ADMIN = "admin"


class SourceError(Exception):
    """The source could not answer (unreachable, misconfigured, refused the service account).

    The message is for the log and says what to fix; the client gets a generic refusal and the
    attempt is not counted as a wrong password.
    """


class UnknownAccount(Exception):
    """The source does not know this name: the chain asks the next source (rule 3)."""


@dataclass(frozen=True, slots=True)
class ExternalAccount:
    """What a source says about a user at a login or refresh.

    ``groups``: every group of the source's type the user is in now (replaces the previous ones).
    ``sysadmin``: ``True``/``False`` when the source decides (an admin group), ``None`` to leave it.
    ``holds_for``: ``None`` for the verification cache's usual minute.
    """

    username: str
    email: str | None = None
    realname: str | None = None
    groups: tuple[GroupRef, ...] = ()
    sysadmin: bool | None = None
    #: Seconds this answer holds (an OIDC login until its ID token expires): the chain's verification
    #: cache keeps a password check no longer than this, so the source is asked again when it is due.
    holds_for: float | None = None


class AccountSource(Protocol):
    """An external identity source (LDAP, OIDC).

    ``name``: its word in ``auth.sources`` and ``users.source``. ``group_type``: the Harbor group
    type of the groups it reports (1 LDAP, 3 OIDC). ``creates_groups``: whether groups it reports
    are created when missing (OIDC, as Harbor does) or only matched against groups an
    administrator created (LDAP).
    """

    @property
    def name(self) -> str: ...

    @property
    def group_type(self) -> int: ...

    @property
    def creates_groups(self) -> bool: ...

    async def authenticate(self, username: str, password: str, user: User | None) -> ExternalAccount | None:
        """Check a password login. ``user`` is the existing account (owned by this source) or ``None``.

        Returns the account's current data when the password (or CLI secret) is right, ``None``
        when it is wrong; raises :class:`UnknownAccount` when the source does not know the name
        and :class:`SourceError` when it cannot answer. Runs after the login throttle reserved a try.
        """
        ...

    async def refresh(self, user: User) -> ExternalAccount | None:
        """The account's current data at a refresh-token use, ``None`` when the user is gone or
        disabled at the source (the chain then revokes every token of the account); raises
        :class:`SourceError` when the source cannot answer."""
        ...


def _cache_key(user: User) -> str:
    """What the verification cache remembers an external password under: changes with the account
    (and with its stored hash, which an OIDC CLI secret change replaces)."""
    return f"!{user.source}:{user.uid}:{user.generation}:{user.password_hash}"


def _remember(user: User, password: str, account: ExternalAccount) -> None:
    if account.holds_for is None:
        remember_verified(_cache_key(user), password)
    else:
        remember_verified(_cache_key(user), password, account.holds_for)


class SourceChain:
    """The configured sources in order, and the name-clash rule (see the module docstring)."""

    def __init__(self, store: IdentityStore, robots: RobotStore, groups: GroupStore, order: Sequence[str]) -> None:
        self.store = store
        self.robots = robots
        self.groups = groups
        self.order = tuple(order)
        self._sources: dict[str, AccountSource] = {}

    def register(self, source: AccountSource) -> None:
        """Add an external source (at start-up); it is asked only when ``auth.sources`` lists it."""
        if source.name in BUILTIN_SOURCES:
            raise ValueError(f"{source.name!r} is a built-in source; register external sources only")
        self._sources[source.name] = source

    def source(self, name: str) -> AccountSource | None:
        """The registered source called ``name`` when ``auth.sources`` lists it."""
        return self._sources.get(name) if name in self.order else None

    def check_configured(self) -> None:
        """Raise :class:`ValueError` naming a listed source that nothing provides (start-up check)."""
        missing = [name for name in self.order if name not in BUILTIN_SOURCES and name not in self._sources]
        if missing:
            raise ValueError(
                f"auth.sources lists {', '.join(missing)}, but that source is not configured; add its "
                "settings (docs/sso.md) or remove it from auth.sources"
            )

    # -- logins ------------------------------------------------------------------------------
    async def check(self, username: str, password: str, *, cached_only: bool) -> Subject | None:
        """The subject when the credentials are right, else ``None`` (throttling is the caller's).

        ``cached_only``: answer only from this process's verification cache (``None`` means "not
        known to be right"). Raises :class:`SourceError` when the deciding source cannot answer,
        and :class:`IdentityError` for right credentials of an account that may not log in.
        """
        if username.startswith(PREFIX):
            if "robot" not in self.order:
                return None if cached_only else self._refused(username, "robot accounts are not in auth.sources")
            return await self.robots.check(username, password, cached_only=cached_only)
        user = await self.store.user_by_name(username)
        if user is None:
            return None if cached_only else await self._first_login(username, password)
        if user.source == "local":
            if "local" not in self.order and username != ADMIN:
                return None if cached_only else self._refused(username, "local accounts are not in auth.sources")
            return await self.store.check_password(username, password, cached_only=cached_only)
        source = self.source(user.source)
        if source is None:
            return None if cached_only else self._refused(
                username, f"the account belongs to the {user.source} source, which auth.sources does not enable"
            )
        if cached_only:
            verified = recently_verified(_cache_key(user), password)
        else:
            try:
                account = await source.authenticate(username, password, user)
            except UnknownAccount:
                log.warning("login_refused", username=username, source=source.name,
                            reason="the source no longer knows this user")
                return None
            if account is None:
                return None
            user = await self.apply(user, source, account)
            _remember(user, password, account)
            verified = True
        if verified and user.disabled:  # disabled in Moorage, whatever the source says (right password: say why)
            raise IdentityError("forbidden", f"user {username!r} is disabled; ask a system administrator to enable it")
        return self.store.user_subject(user) if verified else None

    async def _first_login(self, username: str, password: str) -> Subject | None:
        for name in self.order:
            source = self._sources.get(name)
            if source is None:
                continue
            try:
                account = await source.authenticate(username, password, None)
            except UnknownAccount:
                continue
            if account is None:  # the first source that knows the name decides (rule 3)
                return None
            user = await self.onboard(source, account)
            _remember(user, password, account)
            return self.store.user_subject(user)
        await verify_secret_async(None, password)  # as long as a wrong password of a real account
        return None

    @staticmethod
    def _refused(username: str, reason: str) -> None:
        log.warning("login_refused", username=username, reason=reason)

    # -- accounts ----------------------------------------------------------------------------
    async def onboard(self, source: AccountSource, account: ExternalAccount) -> User:
        """The account of a user ``source`` vouched for, created at the first login (rule 3).

        Raises :class:`IdentityError`: ``conflict`` when the name belongs to an account of
        another source (rule 4; the message names it), ``invalid`` for a name Moorage does not
        accept (names.py's user-name grammar).
        """
        user = await self.store.user_by_name(account.username)
        if user is None:
            try:
                user = await self.store.create_external_user(
                    account.username, source.name, email=account.email, realname=account.realname,
                    sysadmin=bool(account.sysadmin),
                )
                log.info("account_created", username=user.username, source=source.name)
            except IdentityError as exc:
                if exc.kind != "conflict":
                    raise
                user = await self.store.user_by_name(account.username)  # a concurrent first login
                if user is None:
                    raise
        if user.source != source.name:
            log.warning("login_name_clash", username=account.username, account_source=user.source,
                        login_source=source.name)
            raise IdentityError(
                "conflict",
                f"the name {account.username!r} belongs to a {user.source} account, and a name belongs to one "
                f"identity source; rename one of them or ask an administrator (docs/sso.md, name clashes)",
            )
        return await self.apply(user, source, account)

    async def apply(self, user: User, source: AccountSource, account: ExternalAccount) -> User:
        """Bring the account in line with what the source says now: profile, admin flag, groups."""
        changes: dict[str, object] = {}
        if account.email is not None and account.email != user.email:
            changes["email"] = account.email
        if account.realname is not None and account.realname != user.realname:
            changes["realname"] = account.realname
        if account.sysadmin is not None and account.sysadmin != user.sysadmin:
            changes["sysadmin"] = account.sysadmin
            log.info("sysadmin_changed_by_source", username=user.username, source=source.name,
                     sysadmin=account.sysadmin)
        if changes:
            user = await self.store.update_user(user.id, **changes)
        await self.groups.sync(user.id, source.group_type, account.groups, create_missing=source.creates_groups)
        return user

    async def refresh(self, subject: Subject) -> Subject:
        """Re-ask the account's source at a refresh-token use: groups and admin flag recomputed,
        and an account gone or disabled at the source refused (every token of it revoked).

        Raises :class:`IdentityError` (``unauthorized``) with the reason; :class:`SourceError`
        when the source cannot answer.
        """
        if subject.kind != "user":
            return subject
        user = await self.store.user_by_uid(subject.uid)
        if user is None:
            raise IdentityError("unauthorized", f"user {subject.name!r} no longer exists; log in again")
        if user.source == "local":
            return subject
        source = self.source(user.source)
        if source is None:
            raise IdentityError(
                "unauthorized", f"user {user.username!r} belongs to the {user.source} source, which is not enabled"
            )
        account = await source.refresh(user)
        if account is None:
            await self.store.revoke(user.id)
            log.warning("account_revoked_by_source", username=user.username, source=source.name)
            raise IdentityError(
                "unauthorized", f"user {user.username!r} no longer exists or is disabled in {source.name}; "
                "ask an administrator",
            )
        return self.store.user_subject(await self.apply(user, source, account))
