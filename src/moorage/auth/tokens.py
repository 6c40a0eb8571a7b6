"""Docker registry tokens: signed JWTs (ES256, ``kid`` in the header) issued and verified with :class:`KeySet`.

Every token names its account by immutable ``uid`` and the account's ``gen`` (generation) next
to the login name in ``sub``: a password change, a robot secret refresh or disable bumps the
generation, and a deleted and re-created ``aguest`` has another ``uid``, so every token issued
before stops working on every node (the account is re-read, with a cache of a few seconds).

Each token has an audience (``aud``): registry tokens (the Docker ``access`` claim,
``[{"type","name","actions"}]``, ``auth.token_expiry`` seconds) are minted for ``auth.service``
and are good on ``/v2`` only; API tokens are minted for :func:`api_audience` and are good on
``/api/v2.0`` only. Refresh tokens (``offline_token=true`` or OAuth2 ``access_type=offline``)
carry no access and live :data:`REFRESH_LIFETIME`; they are good at the token endpoint only.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from moorage.auth.keys import ALGORITHM, KeySet
from moorage.auth.token_cache import VerifiedTokens
from moorage.registry.names import unsafe_character

__all__ = ["REFRESH_LIFETIME", "Account", "Scope", "TokenError", "TokenService", "api_audience", "parse_scope",
           "parse_scopes"]

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


@dataclass(frozen=True, slots=True)
class Account:
    """Who a token speaks for: ``kind`` (``user``, ``robot``, ``anonymous``), login ``name``,
    immutable ``uid`` and the account's ``generation`` when the token was issued."""

    kind: str
    name: str
    uid: str = ""
    generation: int = 0


def api_audience(service: str) -> str:
    """The audience of tokens good for the management API (never for ``/v2``)."""
    return f"{service}-api"


def parse_scopes(values: list[str]) -> list[Scope]:
    """Every scope in ``values``; one value may hold several separated by spaces, as Distribution's
    multi-scope challenges do (``scope="repository:a:pull,push repository:b:pull"``)."""
    return [scope for value in values for raw in value.split() if (scope := parse_scope(raw)) is not None]


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
    def __init__(self, keys: KeySet, *, service: str, expiry: int, verified: VerifiedTokens | None = None) -> None:
        """``verified``: the tokens this process already verified (see :mod:`moorage.auth.token_cache`)."""
        self.keys = keys
        self.service = service
        self.expiry = expiry
        self.verified = verified if verified is not None else VerifiedTokens()

    async def _sign(self, claims: dict[str, Any]) -> str:
        key = await self.keys.signing_key()
        return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})

    def _base(self, account: Account, audience: str, lifetime: int) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self.service, "sub": account.name, "aud": audience, "iat": now, "nbf": now - 1,
            "exp": now + lifetime, "jti": uuid.uuid4().hex, "kind": account.kind, "uid": account.uid,
            "gen": account.generation,
        }

    async def issue_access(self, account: Account, access: list[dict[str, Any]]) -> tuple[str, int, int]:
        """A registry token for ``/v2``: ``(token, issued_at, expires_in)``."""
        claims = self._base(account, self.service, self.expiry)
        claims["access"] = access
        return await self._sign(claims), claims["iat"], self.expiry

    async def issue_api(self, account: Account) -> tuple[str, int, int]:
        """A token for the management API (audience :func:`api_audience`), without registry access."""
        claims = self._base(account, api_audience(self.service), self.expiry)
        return await self._sign(claims), claims["iat"], self.expiry

    async def issue_refresh(self, account: Account, fingerprint: str) -> str:
        claims = self._base(account, self.service, REFRESH_LIFETIME)
        claims["typ"] = "refresh"
        claims["fpr"] = fingerprint
        return await self._sign(claims)

    async def verify(self, token: str, *, refresh: bool = False, api: bool = False) -> dict[str, Any]:
        """The claims of a valid token of the right type and audience, else :class:`TokenError`.

        ``api``: a token for the management API (else a registry or refresh token for ``auth.service``).
        A token this process verified for the same purpose before its ``exp`` (and within
        :data:`~moorage.auth.token_cache.TOKEN_CACHE_SECONDS`) is not verified again; whether its
        account may still use it is the caller's check (:meth:`Policy.account`), on every request.
        """
        purpose = "refresh" if refresh else "api" if api else "registry"
        cached = self.verified.get(token, purpose)
        if cached is not None:
            return cached
        claims = await self._verify(token, refresh=refresh, api=api)
        self.verified.put(token, purpose, claims)
        return claims

    async def _verify(self, token: str, *, refresh: bool, api: bool) -> dict[str, Any]:
        audience = api_audience(self.service) if api else self.service
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
                token, key.public_key, algorithms=[ALGORITHM], audience=audience, issuer=self.service,
                leeway=LEEWAY, options={"require": ["exp", "iat", "sub", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("the bearer token has expired; request a new one (clients do this on their own)") from None
        except jwt.InvalidAudienceError:
            raise TokenError(self._wrong_audience(token, api)) from None
        except jwt.PyJWTError as exc:
            raise TokenError(f"the bearer token is invalid ({exc}); log in again") from None
        if not isinstance(claims.get("uid"), str) or not isinstance(claims.get("gen", 0), int):
            raise TokenError("the bearer token names no account (issued before an upgrade?); log in again")
        if (claims.get("typ") == "refresh") != refresh:
            kind = "a refresh token" if not refresh else "an access token"
            raise TokenError(f"got {kind} where the other kind is expected; send the access_token to /v2/")
        return claims

    def _wrong_audience(self, token: str, api: bool) -> str:
        """Why a token of this registry was sent to the wrong entry point, and what to send instead."""
        audience = jwt.decode(token, options={"verify_signature": False}).get("aud")
        api_aud = api_audience(self.service)
        if api and audience == self.service:
            return (
                f"this is a registry token (audience {self.service!r}), good for /v2 only; the API takes Basic "
                f"credentials or a token for audience {api_aud!r} (GET /service/token?service={api_aud})"
            )
        if not api and audience == api_aud:
            return f"this is a management API token (audience {api_aud!r}); /v2 takes registry tokens, log in again"
        return f"the bearer token is for another service ({audience!r}); this registry is {self.service!r}"
