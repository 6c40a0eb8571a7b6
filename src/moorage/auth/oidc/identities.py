"""The OIDC identity source: onboarding at the first browser login, the CLI secret, and keeping it alive
after the ID token expires.

:class:`OidcIdentities` is the ``oidc`` :class:`~moorage.auth.sources.AccountSource` of the identity
chain: accounts it creates belong to it (``users.source = 'oidc'``, the chain's name-clash rule),
and what the provider says at each login and refresh (e-mail, name, the groups claim as OIDC
groups, the admin group) is applied by the chain, so rights follow the provider.

The field report behind this module: Harbor's CLI secret died with the ID token when the
provider's connector did not implement refresh, so ``docker login`` failed "every so often". Here
a CLI secret (Basic ``user:secret`` on ``/v2`` and the token service) is checked against two rules:

* the identity has a refresh token: once the last ID token has expired, the login refreshes at
  the provider (one node at a time, the others wait for its answer) and re-reads the claims
  (groups, admin group, e-mail). A provider that refuses the refresh (user removed or disabled
  there) ends the identity: every CLI login and every Moorage token of the user is refused until
  the user logs in through the web UI again;
* it has none (the provider issues no refresh tokens to this client): the secret is good for
  ``auth.oidc.cli_secret_lifetime`` after the last web login, whatever the ID token's lifetime.

The link to the provider's ``(issuer, subject)`` lives in ``oidc_identities``; the user's
``password_hash`` is an unusable ``!oidc:<random>`` that changes with every CLI secret, so refresh
tokens issued under an old secret (their fingerprint) and the chain's verification cache end with it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from moorage.auth.groups import OIDC, GroupRef
from moorage.auth.identity import IdentityError, IdentityStore, User, utcnow
from moorage.auth.keys import SecretBox
from moorage.auth.oidc.provider import OidcError, OidcProvider
from moorage.auth.passwords import PasswordPolicyError, check_password_policy
from moorage.auth.sources import ExternalAccount, SourceChain, SourceError, UnknownAccount
from moorage.config import OidcSettings
from moorage.db.identity_tables import users
from moorage.db.oidc_tables import oidc_identities
from moorage.db.session import Database
from moorage.db.times import aware
from moorage.registry.names import InvalidNameError, check_username

__all__ = ["OidcIdentities", "OidcIdentity", "claimed_groups"]

log = structlog.get_logger("moorage.oidc")

#: How long one node may hold the refresh of an identity before another may take it over.
REFRESH_CLAIM = timedelta(seconds=30)
#: How long a login waits for another node's refresh of the same identity.
REFRESH_WAIT = 15.0
#: How long a first login waits for a concurrent one that created the account to link it.
LINK_WAIT = 2.0
#: Validity assumed after a refresh that returned neither an ID token nor ``expires_in``.
DEFAULT_VALIDITY = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class OidcIdentity:
    user_id: int
    issuer: str
    subject: str
    has_refresh_token: bool
    has_cli_secret: bool
    verified_until: datetime
    secret_expires_at: datetime
    revoked: bool
    groups: tuple[str, ...]
    created_at: datetime
    updated_at: datetime


def _identity(row: Any) -> OidcIdentity:
    return OidcIdentity(
        int(row.user_id), row.issuer, row.subject, row.refresh_token is not None, row.cli_secret is not None,
        aware(row.verified_until), aware(row.secret_expires_at), bool(row.revoked),
        tuple(json.loads(row.groups or "[]")), aware(row.created_at), aware(row.updated_at),
    )


def claimed_groups(claims: dict[str, Any], claim: str) -> list[str]:
    """The groups a token names: a list of strings, or one string (Azure AD and Dex send lists)."""
    value = claims.get(claim)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return sorted({item for item in value if isinstance(item, str)})
    return []


def _unusable_hash() -> str:
    """What ``users.password_hash`` holds for an OIDC user: never a valid argon2 hash, new per secret."""
    return f"!oidc:{secrets.token_hex(16)}"


class OidcIdentities:
    """The ``oidc_identities`` table behind onboarding, CLI secrets and refreshes; the chain's ``oidc`` source."""

    name = "oidc"
    group_type = OIDC
    #: Groups named by the provider's claim are created when first seen (Harbor's OIDC groups).
    creates_groups = True

    def __init__(self, db: Database, store: IdentityStore, chain: SourceChain, provider: OidcProvider,
                 box: SecretBox, settings: OidcSettings) -> None:
        self.db = db
        self.store = store
        self.chain = chain
        self.provider = provider
        self.box = box
        self.settings = settings

    # -- reads ---------------------------------------------------------------------------
    async def of_user(self, user_id: int) -> OidcIdentity | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(oidc_identities).where(oidc_identities.c.user_id == user_id))).first()
        return None if row is None else _identity(row)

    async def is_oidc_user(self, username: str) -> bool:
        """Whether ``username`` logs in through the provider (its password is a CLI secret)."""
        user = await self.store.user_by_name(username)
        return user is not None and user.source == self.name

    async def cli_secret(self, user_id: int) -> str | None:
        """The user's CLI secret in clear (for its owner's profile), ``None`` until one is set."""
        async with self.db.read() as conn:
            row = (await conn.execute(
                select(oidc_identities.c.cli_secret).where(oidc_identities.c.user_id == user_id))).first()
        return None if row is None or row.cli_secret is None else self._open(row.cli_secret)

    def _open(self, sealed: str) -> str:
        try:
            return self.box.open(sealed).decode()
        except RuntimeError:
            raise IdentityError("unauthorized", "a stored OIDC secret cannot be decrypted: auth.secret_key differs "
                                "from the one that encrypted it; set the same secret on every node") from None

    def _account(self, username: str, claims: dict[str, Any] | None, groups: list[str],
                 holds_until: datetime | None = None) -> ExternalAccount:
        """What the chain applies to the account: ``claims`` fresh from the provider, or ``None`` (stored
        groups); ``holds_until``: when a CLI login must be checked here again (refresh or expiry due)."""
        email = claims.get(self.settings.email_claim) if claims is not None else None
        realname = claims.get("name") if claims is not None else None
        return ExternalAccount(
            username, email=email if isinstance(email, str) else None,
            realname=realname if isinstance(realname, str) else None,
            groups=tuple(GroupRef(OIDC, group) for group in groups),
            sysadmin=None if self.settings.admin_group is None else self.settings.admin_group in groups,
            holds_for=None if holds_until is None else max(0.0, (holds_until - utcnow()).total_seconds()),
        )

    # -- login ---------------------------------------------------------------------------
    async def onboard(self, claims: dict[str, Any], refresh_token: str | None) -> User:
        """The user of verified ID-token ``claims``: created at the first login, updated at every one.

        Raises ``IdentityError``: ``conflict`` when the name from ``auth.oidc.username_claim`` belongs
        to an account of another source (the chain's rule) or of another provider account,
        ``invalid`` when the claim is missing or no valid user name.
        """
        issuer, subject = str(claims["iss"]).rstrip("/"), str(claims["sub"])
        now = utcnow()
        groups = claimed_groups(claims, self.settings.groups_claim)
        values: dict[str, Any] = {
            "refresh_token": self.box.seal(refresh_token.encode()) if refresh_token else None,
            "verified_until": datetime.fromtimestamp(int(claims["exp"]), UTC),
            "secret_expires_at": now + timedelta(seconds=self.settings.cli_secret_lifetime),
            "refreshing_until": None, "revoked": False, "groups": json.dumps(groups), "last_login_at": now,
            "updated_at": now,
        }
        user_id = await self._user_id(issuer, subject)
        if user_id is not None:
            user = await self.store.user_by_id(user_id)
        else:
            user = await self._create(claims, issuer, subject, values, groups)
        async with self.db.write() as conn:
            await conn.execute(update(oidc_identities).where(oidc_identities.c.user_id == user.id).values(**values))
        return await self.chain.apply(user, self, self._account(user.username, claims, groups))

    async def _user_id(self, issuer: str, subject: str) -> int | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(oidc_identities.c.user_id).where(
                oidc_identities.c.issuer == issuer, oidc_identities.c.subject == subject))).first()
        return None if row is None else int(row.user_id)

    async def _link_of(self, user_id: int) -> tuple[str, str] | None:
        """The ``(issuer, subject)`` linked to an OIDC account, waiting briefly for a concurrent first login
        that created the account but has not linked it yet."""
        deadline = asyncio.get_running_loop().time() + LINK_WAIT
        while True:
            async with self.db.read() as conn:
                row = (await conn.execute(select(oidc_identities.c.issuer, oidc_identities.c.subject).where(
                    oidc_identities.c.user_id == user_id))).first()
            if row is not None:
                return str(row.issuer), str(row.subject)
            if asyncio.get_running_loop().time() > deadline:
                return None
            await asyncio.sleep(0.05)

    async def _create(self, claims: dict[str, Any], issuer: str, subject: str, values: dict[str, Any],
                      groups: list[str]) -> User:
        claim = self.settings.username_claim
        username = claims.get(claim)
        if not isinstance(username, str) or not username:
            raise IdentityError("invalid", f"the ID token has no {claim!r} claim to name the user; set "
                                "auth.oidc.username_claim to a claim the provider sends (e.g. email) or add the scope "
                                "that carries it to auth.oidc.scopes")
        try:
            check_username(username)
        except InvalidNameError as exc:
            raise IdentityError("invalid", f"the {claim!r} claim {username!r} is not a valid Moorage user name: "
                                f"{exc.message}; choose another auth.oidc.username_claim") from None
        taken = IdentityError(
            "conflict", f"the user name {username!r} (the provider's {claim!r} claim) belongs to another provider "
            "account already known here; an administrator must rename or delete that user, or set "
            "auth.oidc.username_claim to a claim that is unique (e.g. email)")
        existing = await self.store.user_by_name(username)
        if existing is not None and existing.source == self.name:
            linked = await self._link_of(existing.id)
            if linked == (issuer, subject):
                return existing  # the same person's concurrent first login linked it a moment ago
            if linked is not None:
                raise taken  # before the chain applies this login's claims to someone else's account
            # An OIDC account without a link: its first login failed between the two writes; ours to link.
        user = await self.chain.onboard(self, self._account(username, claims, groups))  # the name-clash rule
        try:
            async with self.db.write() as conn:
                await conn.execute(insert(oidc_identities).values(
                    user_id=user.id, issuer=issuer, subject=subject, cli_secret=None, created_at=utcnow(), **values))
        except IntegrityError:
            if await self._user_id(issuer, subject) == user.id:  # the same person's concurrent first login
                return user
            raise taken from None
        async with self.db.write() as conn:  # a fresh unusable hash: this account's own fingerprint
            await conn.execute(update(users).where(users.c.id == user.id).values(password_hash=_unusable_hash()))
        log.info("oidc_user_onboarded", username=username, issuer=issuer, subject=subject)
        return await self.store.user_by_id(user.id)

    # -- CLI secret ------------------------------------------------------------------------
    async def set_cli_secret(self, user_id: int, secret: str) -> None:
        """Replace the CLI secret (Harbor's password rules).

        The unusable password hash changes with it, so refresh tokens issued under the old secret
        (their fingerprint) and logins cached under it are refused at once; access tokens end at
        their expiry (``auth.token_expiry``) and UI sessions go on: the generation is not bumped, or
        setting a secret in the UI would log its user out.
        """
        if await self.of_user(user_id) is None:
            raise IdentityError("invalid", f"user {user_id} is not an OIDC user: only users who log in through the "
                                "identity provider have a CLI secret; local users use their password")
        try:
            check_password_policy(secret)
        except PasswordPolicyError as exc:
            raise IdentityError("invalid", f"secret: {exc}") from None
        now = utcnow()
        async with self.db.write() as conn:
            await conn.execute(update(oidc_identities).where(oidc_identities.c.user_id == user_id)
                               .values(cli_secret=self.box.seal(secret.encode()), updated_at=now))
            await conn.execute(update(users).where(users.c.id == user_id).values(
                password_hash=_unusable_hash(), updated_at=now))
        self.store.on_change()

    async def authenticate(self, username: str, password: str, user: User | None) -> ExternalAccount | None:
        """The chain's password check: ``password`` is ``user``'s CLI secret and the identity still holds.

        ``None`` for a wrong secret. Raises :class:`UnknownAccount` for a name without an account
        (the first login is in the browser), ``IdentityError`` (``unauthorized``) for the right secret
        of an identity that no longer holds, saying why (not a guess: the throttle does not count
        it), :class:`SourceError` when a due refresh cannot reach the provider.
        """
        if user is None:
            raise UnknownAccount(username)
        async with self.db.read() as conn:
            row = (await conn.execute(select(oidc_identities).where(oidc_identities.c.user_id == user.id))).first()
        if row is None or row.cli_secret is None:
            return None
        if not hmac.compare_digest(self._open(row.cli_secret).encode(), password.encode()):
            return None
        identity = _identity(row)
        if identity.revoked:
            raise IdentityError("unauthorized", f"the identity provider ended the session of {username!r} (the user "
                                "was removed or disabled there, or the grant revoked); log in through the web UI again")
        account = await self._current(user, identity)
        if account is None:
            raise IdentityError("unauthorized", f"the CLI secret of {username!r} has expired "
                                f"({self.settings.cli_secret_lifetime} s after the last web login, as the identity "
                                "provider issues no refresh token); log in through the web UI once to renew it")
        return account

    async def refresh(self, user: User) -> ExternalAccount | None:
        """The chain's refresh-token check: the account's current data, ``None`` when the provider ended it."""
        identity = await self.of_user(user.id)
        if identity is None or identity.revoked:
            return None
        try:
            return await self._current(user, identity)
        except IdentityError:
            return None

    async def _current(self, user: User, identity: OidcIdentity) -> ExternalAccount | None:
        """The account while the provider's word holds (refreshing it when due); ``None`` once a refresh-less
        secret's lifetime is over."""
        now = utcnow()
        if not identity.has_refresh_token:  # the secret's own lifetime, whatever the ID token's
            return self._account(user.username, None, list(identity.groups), identity.secret_expires_at) \
                if now < identity.secret_expires_at else None
        if now < identity.verified_until:
            return self._account(user.username, None, list(identity.groups), identity.verified_until)
        claims = await self.renew(user.id)
        fresh = await self.of_user(user.id)
        if fresh is None:
            return None
        return self._account(user.username, claims, list(fresh.groups), fresh.verified_until)

    # -- refresh -----------------------------------------------------------------------------
    async def renew(self, user_id: int) -> dict[str, Any] | None:
        """Refresh the identity at the provider; one node at a time, the others wait for its result.

        Returns the fresh claims (``None`` when another request refreshed meanwhile). Raises
        ``IdentityError`` when the provider refuses (the identity is then revoked),
        :class:`SourceError` when it cannot be reached.
        """
        deadline = asyncio.get_running_loop().time() + REFRESH_WAIT
        while True:
            now = utcnow()
            async with self.db.write() as conn:
                claimed = await conn.execute(
                    update(oidc_identities).where(
                        oidc_identities.c.user_id == user_id, oidc_identities.c.revoked.is_(False),
                        oidc_identities.c.verified_until <= now,
                        or_(oidc_identities.c.refreshing_until.is_(None), oidc_identities.c.refreshing_until < now),
                    ).values(refreshing_until=now + REFRESH_CLAIM)
                )
            if claimed.rowcount == 1:
                return await self._refresh_claimed(user_id)
            identity = await self.of_user(user_id)
            if identity is None:
                raise IdentityError("unauthorized", "the user was deleted; log in through the web UI")
            if identity.revoked:
                raise IdentityError("unauthorized", "the identity provider ended this user's session (user removed "
                                    "or disabled there); log in through the web UI again")
            if utcnow() < identity.verified_until:
                return None  # another request or node refreshed it meanwhile
            if asyncio.get_running_loop().time() > deadline:
                raise SourceError("another node has been renewing this login at the identity provider for "
                                  f"{REFRESH_WAIT:g} s; check that the provider answers")
            await asyncio.sleep(0.1)

    async def _refresh_claimed(self, user_id: int) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = (await conn.execute(select(oidc_identities).where(oidc_identities.c.user_id == user_id))).first()
        if row is None or row.refresh_token is None:
            raise IdentityError("unauthorized", "this login has no refresh token; log in through the web UI again")
        try:
            tokens = await self.provider.refresh(self._open(row.refresh_token))
            if tokens.id_token is not None:
                claims = await self.provider.verify_id_token(tokens.id_token, nonce=None)
                until = datetime.fromtimestamp(int(claims["exp"]), UTC)
            else:
                claims = await self.provider.userinfo(tokens.access_token) if tokens.access_token else {}
                claims.setdefault("sub", row.subject)
                seconds = tokens.expires_in
                until = utcnow() + (timedelta(seconds=seconds) if seconds else DEFAULT_VALIDITY)
            if str(claims.get("sub")) != row.subject:
                raise OidcError("invalid", f"the refreshed identity names subject {claims.get('sub')!r}, not "
                                f"{row.subject!r}")
        except OidcError as exc:
            if exc.kind == "unavailable":
                async with self.db.write() as conn:
                    await conn.execute(update(oidc_identities).where(oidc_identities.c.user_id == user_id)
                                       .values(refreshing_until=None))
                raise SourceError(f"cannot renew the OIDC login of user {user_id}: {exc.reason}") from None
            await self.revoke(user_id, exc.reason)
            raise IdentityError("unauthorized", "the identity provider no longer accepts this login (user removed or "
                                "disabled there); log in through the web UI again") from None
        now = utcnow()
        values: dict[str, Any] = {"verified_until": until, "refreshing_until": None, "updated_at": now}
        if tokens.refresh_token is not None:  # rotated: the old one is spent
            values["refresh_token"] = self.box.seal(tokens.refresh_token.encode())
        if self.settings.groups_claim in claims:
            values["groups"] = json.dumps(claimed_groups(claims, self.settings.groups_claim))
        async with self.db.write() as conn:
            await conn.execute(update(oidc_identities).where(oidc_identities.c.user_id == user_id).values(**values))
        log.info("oidc_refreshed", user_id=user_id, valid_until=until.isoformat())
        return claims

    async def revoke(self, user_id: int, reason: str) -> None:
        """The provider refused this identity: no CLI login, and every Moorage token of the user ends."""
        async with self.db.write() as conn:
            await conn.execute(update(oidc_identities).where(oidc_identities.c.user_id == user_id).values(
                revoked=True, refresh_token=None, refreshing_until=None, updated_at=utcnow()))
        await self.store.revoke(user_id)
        log.warning("oidc_identity_revoked", user_id=user_id, reason=reason)
