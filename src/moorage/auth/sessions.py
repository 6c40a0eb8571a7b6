"""Web UI sessions: a signed cookie bound to the account and the audience ``<service>-ui``, plus its CSRF token.

A session is a credential like the tokens of :mod:`moorage.auth.tokens`: an ES256 JWT signed with
the shared key set (so any node verifies it), naming the account's immutable ``uid`` and its
``gen``\\ eration. It is re-checked through the policy on every request, so a password change, a
deleted user or a disabled robot ends every session on every node within the policy's cache time.
Its audience (``<auth.service>-ui``) is its own: it is good for the UI and the REST API
(``/api/v2.0``, only as a cookie), never for ``/v2`` nor the token service, and a registry or
API token is never good as a session.

CSRF: the browser sends the cookie on its own, so every state-changing request authenticated by
the cookie must also carry :data:`CSRF_HEADER`, whose value the UI reads from the (not HttpOnly)
:data:`CSRF_COOKIE`. The session names the SHA-256 of that value (``csh``), so a token planted in
the CSRF cookie by another site or sub-domain does not match (signed double submit): a cross-site
page can neither read the cookie nor send a custom header without a CORS grant, which Moorage
never gives.

Logging out revokes the session server-side: its ``jti`` goes into the shared ``revoked_sessions``
table, which every node reads on every request authenticated by a session cookie (one primary-key
lookup), so a copied cookie stops working everywhere the moment its owner logs out. A row lives
until the session would have expired anyway and is purged by later logouts.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import jwt
from sqlalchemy import delete, select

from moorage.auth.identity import IdentityError, Subject
from moorage.auth.keys import ALGORITHM, KeySet
from moorage.auth.tokens import LEEWAY, Account
from moorage.db.identity_tables import revoked_sessions
from moorage.db.upsert import insert_ignore

if TYPE_CHECKING:
    from moorage.auth.service import IdentityService

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "SAFE_METHODS",
    "SESSION_COOKIE",
    "SESSION_LIFETIME",
    "Session",
    "SessionTokens",
    "session_audience",
]

SESSION_COOKIE = "moorage_session"
CSRF_COOKIE = "moorage_csrf"
CSRF_HEADER = "X-CSRF-Token"
#: Seconds a UI login lasts (absolute, not sliding): a working day.
SESSION_LIFETIME = 8 * 3600
#: Methods that change nothing: they need no CSRF token.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def session_audience(service: str) -> str:
    """The audience of UI sessions: good for the UI and, as a cookie, for ``/api/v2.0``."""
    return f"{service}-ui"


def _digest(csrf: str) -> str:
    return hashlib.sha256(csrf.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    """A new session: the cookie value, the CSRF token to give the page, and when both expire."""

    token: str
    csrf: str
    expires_at: int


class SessionTokens:
    """Issues and checks session cookies with the shared :class:`KeySet`."""

    def __init__(self, keys: KeySet, *, service: str, lifetime: int = SESSION_LIFETIME) -> None:
        self.keys = keys
        self.service = service
        self.audience = session_audience(service)
        self.lifetime = lifetime

    async def issue(self, account: Account) -> Session:
        """A session for ``account`` (a user; the caller refuses robots and anonymous)."""
        now = int(time.time())
        csrf = secrets.token_urlsafe(32)
        claims = {
            "iss": self.service, "sub": account.name, "aud": self.audience, "iat": now, "nbf": now - 1,
            "exp": now + self.lifetime, "jti": uuid.uuid4().hex, "kind": account.kind, "uid": account.uid,
            "gen": account.generation, "csh": _digest(csrf),
        }
        key = await self.keys.signing_key()
        token = jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})
        return Session(token, csrf, now + self.lifetime)

    async def claims(self, token: str) -> dict[str, Any]:
        """The claims of a valid session cookie, else ``unauthorized`` saying to log in again."""
        expired = IdentityError("unauthorized", "your UI session is not valid (expired or signed out); log in again")
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            raise expired from None
        key = await self.keys.verification_key(kid) if isinstance(kid, str) else None
        if key is None:
            raise expired
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key.public_key, algorithms=[ALGORITHM], audience=self.audience, issuer=self.service,
                leeway=LEEWAY, options={"require": ["exp", "iat", "sub", "aud", "uid", "csh", "jti"]},
            )
        except jwt.PyJWTError:
            raise expired from None
        if not isinstance(claims.get("uid"), str) or not isinstance(claims.get("gen", 0), int):
            raise expired
        return claims

    @staticmethod
    def check_csrf(claims: dict[str, Any], method: str, header: str | None) -> None:
        """Refuse a state-changing request whose CSRF header does not match the session (403)."""
        if method.upper() in SAFE_METHODS:
            return
        if not header or not hmac.compare_digest(_digest(header), str(claims.get("csh", ""))):
            raise IdentityError(
                "forbidden",
                f"a request authenticated by the UI session cookie must send the {CSRF_HEADER} header with the "
                f"value of the {CSRF_COOKIE} cookie; reload the page (scripts use Basic auth or an API token)",
            )

    @staticmethod
    async def revoke(identity: IdentityService, claims: dict[str, Any]) -> None:
        """End the session of ``claims`` on every node (logout). Idempotent: a second logout of the same
        session, or two at once, leave one row. Rows of sessions that have expired anyway are purged."""
        now = datetime.now(UTC)
        expires = datetime.fromtimestamp(int(claims["exp"]) + LEEWAY, UTC)
        async with identity.db.write() as conn:
            await conn.execute(delete(revoked_sessions).where(revoked_sessions.c.expires_at < now))
            await insert_ignore(conn, revoked_sessions,
                                {"jti": str(claims["jti"]), "uid": str(claims["uid"]), "expires_at": expires}, ["jti"])

    @staticmethod
    async def revoked(identity: IdentityService, claims: dict[str, Any]) -> bool:
        """Whether the session of ``claims`` was logged out (read from the shared database, never cached)."""
        async with identity.db.read() as conn:
            query = select(revoked_sessions.c.jti).where(revoked_sessions.c.jti == str(claims["jti"]))
            return (await conn.execute(query)).first() is not None

    @classmethod
    def of(cls, identity: IdentityService) -> SessionTokens:
        """The session tokens of ``identity``'s key set and service (cheap: holds references only)."""
        return cls(identity.keys, service=identity.settings.service)

    async def subject(self, identity: IdentityService, token: str, method: str, csrf_header: str | None) -> Subject:
        """The current subject of a session cookie on a request, CSRF checked for state changes.

        The policy re-reads the account (uid and generation), so a deleted user's or a changed
        password's session ends on every node within the policy's cache time.
        """
        await identity.start()
        claims = await self.claims(token)
        self.check_csrf(claims, method, csrf_header)
        if await self.revoked(identity, claims):
            raise IdentityError("unauthorized", "this UI session was logged out; log in again")
        return await identity.subject_of(claims)
