"""Docker registry tokens: signed JWTs (ES256, ``kid`` in the header) issued and verified with :class:`KeySet`.

Access tokens carry the Docker spec's ``access`` claim (``[{"type","name","actions"}]``) and
live ``auth.token_expiry`` seconds. Refresh tokens (``offline_token=true`` or OAuth2
``access_type=offline``) carry no access, only who the subject is and a fingerprint of its
credential hash, and live :data:`REFRESH_LIFETIME`; every use re-reads the user or robot, so a
password change, a secret refresh, a disable or a delete ends them on every node.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from moorage.auth.keys import ALGORITHM, KeySet
from moorage.registry.names import unsafe_character

__all__ = ["REFRESH_LIFETIME", "Scope", "TokenError", "TokenService", "parse_scope"]

REFRESH_LIFETIME = 30 * 24 * 3600
#: Clock skew tolerated between nodes when checking ``exp``/``nbf``/``iat``.
LEEWAY = 30


class TokenError(Exception):
    """A token that cannot be used; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Scope:
    type: str
    name: str
    actions: tuple[str, ...]


def parse_scope(raw: str) -> Scope | None:
    """``repository:team/app:pull,push`` → :class:`Scope` (names may contain ``:``; ``(class)`` is dropped).

    ``None`` for a malformed scope or one with a control or whitespace character
    (see :mod:`moorage.registry.names`).
    """
    first, sep, rest = raw.partition(":")
    if not sep:
        return None
    name, sep, actions = rest.rpartition(":")
    if not sep or not name:
        return None
    resource_type = first.split("(", 1)[0]
    if unsafe_character(raw) is not None:  # "proja\n/app": a look-alike of another name, never granted
        return None
    return Scope(resource_type, name, tuple(a for a in actions.split(",") if a))


class TokenService:
    def __init__(self, keys: KeySet, *, service: str, expiry: int) -> None:
        self.keys = keys
        self.service = service
        self.expiry = expiry

    async def _sign(self, claims: dict[str, Any]) -> str:
        key = await self.keys.signing_key()
        return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})

    def _base(self, subject: str, kind: str, lifetime: int) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self.service, "sub": subject, "aud": self.service, "iat": now, "nbf": now - 1,
            "exp": now + lifetime, "jti": uuid.uuid4().hex, "kind": kind,
        }

    async def issue_access(self, subject: str, kind: str, access: list[dict[str, Any]]) -> tuple[str, int, int]:
        """``(token, issued_at, expires_in)``."""
        claims = self._base(subject, kind, self.expiry)
        claims["access"] = access
        return await self._sign(claims), claims["iat"], self.expiry

    async def issue_refresh(self, subject: str, kind: str, fingerprint: str) -> str:
        claims = self._base(subject, kind, REFRESH_LIFETIME)
        claims["typ"] = "refresh"
        claims["fpr"] = fingerprint
        return await self._sign(claims)

    async def verify(self, token: str, *, refresh: bool = False) -> dict[str, Any]:
        """The claims of a valid token of the right type, else :class:`TokenError`."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("the bearer token is not a JWT; log in again to get a new one") from None
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise TokenError("the bearer token has no 'kid' header, so it was not issued by this registry")
        key = await self.keys.verification_key(kid)
        if key is None:
            raise TokenError(
                f"the bearer token was signed with key {kid!r}, which this registry does not know (or retired "
                "long ago); log in again (every node shares its keys through the database)"
            )
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key.public_key, algorithms=[ALGORITHM], audience=self.service, issuer=self.service,
                leeway=LEEWAY, options={"require": ["exp", "iat", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("the bearer token has expired; request a new one (clients do this on their own)") from None
        except jwt.InvalidAudienceError:
            raise TokenError(f"the bearer token is for another service; this registry is {self.service!r}") from None
        except jwt.PyJWTError as exc:
            raise TokenError(f"the bearer token is invalid ({exc}); log in again") from None
        if (claims.get("typ") == "refresh") != refresh:
            kind = "a refresh token" if not refresh else "an access token"
            raise TokenError(f"got {kind} where the other kind is expected; send the access_token to /v2/")
        return claims
