"""The OpenID provider as Moorage sees it: discovery, its key set, the token endpoint, ID-token checks.

Discovery (``<issuer>/.well-known/openid-configuration``) is read once per process and again
hourly; the JWKS is re-read every hour and at once when a token names a ``kid`` it lacks (the
provider rotated its keys), at most once per :data:`JWKS_MISS_INTERVAL`. ID tokens are checked with PyJWT (signature with
the JWKS key, ``iss``, ``aud``, ``exp``/``iat``/``nbf`` with ``auth.oidc.leeway``, ``nonce``,
``azp``); only asymmetric algorithms the provider announces are accepted, never ``none`` nor an
HMAC keyed by the client secret.

Every refusal is an :class:`OidcError` whose ``reason`` is for the log and names what to fix;
clients get a generic message (see :mod:`moorage.auth.oidc.logins`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import structlog

from moorage.config import OidcSettings
from moorage.net.tls import TrustStore

__all__ = ["ASYMMETRIC_ALGORITHMS", "JWKS_MISS_INTERVAL", "OidcError", "OidcProvider", "TokenResponse"]

log = structlog.get_logger("moorage.oidc")

#: Algorithms an ID token may use: public-key signatures only (RFC 8725 3.1: no ``none``, and an
#: HMAC keyed by a client secret would let anyone holding that secret mint identities).
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
#: Seconds between re-reads of discovery and of the JWKS when nothing forces one.
REFRESH_SECONDS = 3600.0
#: Least seconds between two JWKS re-reads triggered by an unknown ``kid`` (a re-read waits out the rest). ID tokens reach Moorage only
#: from the provider's token endpoint (never from the client), so this only bounds a misbehaving provider.
JWKS_MISS_INTERVAL = 1.0
#: Seconds one request to the provider may take.
TIMEOUT = 10.0


class OidcError(Exception):
    """A refused OIDC step. ``reason``: for the log, says what failed and what to check.

    ``kind``: ``invalid`` (a token or callback that must not be accepted: counted by the login
    throttle), ``refused`` (the provider said no, e.g. ``invalid_grant`` on a refresh), or
    ``unavailable`` (the provider could not be reached or answered nonsense).
    """

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TokenResponse:
    """What the token endpoint returned; ``id_token`` may be absent on a refresh (OIDC Core 12.2)."""

    id_token: str | None
    access_token: str | None
    refresh_token: str | None
    expires_in: int | None


class OidcProvider:
    """One configured provider, shared by every request of a process; safe to use concurrently."""

    def __init__(self, settings: OidcSettings, trust: TrustStore) -> None:
        """``trust``: the outbound CAs (``outbound.ca_bundle``), plus ``auth.oidc.ca_bundle`` for this provider."""
        if settings.issuer is None or settings.client_id is None:
            raise ValueError("auth.oidc.issuer and auth.oidc.client_id are required for OIDC")
        self.settings = settings
        self.issuer = settings.issuer.rstrip("/")
        self.client_id = settings.client_id
        self._http = httpx.AsyncClient(
            verify=trust.context(str(settings.ca_bundle) if settings.ca_bundle else None), timeout=TIMEOUT,
            follow_redirects=False,
            headers={"Accept": "application/json"},
        )
        self._discovery: dict[str, Any] | None = None
        self._discovered_at = 0.0
        self._jwks: dict[str, jwt.PyJWK] = {}
        self._jwks_at = 0.0
        self._lock = asyncio.Lock()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            response = await self._http.get(url)
        except httpx.HTTPError as exc:
            raise OidcError("unavailable", f"cannot read the provider's {what} at {url}: {exc!r}; check "
                            "auth.oidc.issuer, the network and (private CA) auth.oidc.ca_bundle") from None
        if response.status_code != 200:
            raise OidcError("unavailable", f"the provider answered {response.status_code} for its {what} at {url}")
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise OidcError("unavailable", f"the provider's {what} at {url} is not a JSON object")
        return data

    async def discovery(self) -> dict[str, Any]:
        """The provider's metadata; its ``issuer`` must be exactly the configured one (OIDC Discovery 4.3)."""
        if self._discovery is not None and time.monotonic() - self._discovered_at < REFRESH_SECONDS:
            return self._discovery
        async with self._lock:
            if self._discovery is None or time.monotonic() - self._discovered_at >= REFRESH_SECONDS:
                url = f"{self.issuer}/.well-known/openid-configuration"
                data = await self._get_json(url, "discovery document")
                if str(data.get("issuer", "")).rstrip("/") != self.issuer:
                    raise OidcError("invalid", f"the discovery document at {url} names issuer {data.get('issuer')!r}, "
                                    f"not the configured {self.issuer!r}; set auth.oidc.issuer to the provider's issuer")
                for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                    if not isinstance(data.get(key), str):
                        raise OidcError("unavailable", f"the discovery document at {url} has no {key}")
                self._discovery = data
                self._discovered_at = time.monotonic()
        return self._discovery

    async def _load_jwks(self) -> None:
        meta = await self.discovery()
        data = await self._get_json(str(meta["jwks_uri"]), "JWKS")
        keys: dict[str, jwt.PyJWK] = {}
        for entry in data.get("keys", []) if isinstance(data.get("keys"), list) else []:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK.from_dict(entry)
            except jwt.PyJWTError:
                continue  # a key type this PyJWT cannot use: tokens signed with it are refused by kid
            keys[str(entry.get("kid", ""))] = key
        self._jwks = keys
        self._jwks_at = time.monotonic()

    async def signing_keys(self) -> list[str]:
        """The kids of the provider's JWKS, read now (``moorage check``)."""
        async with self._lock:
            await self._load_jwks()
        return sorted(self._jwks)

    async def _key(self, kid: str) -> jwt.PyJWK | None:
        """The provider's key ``kid``; re-reads the JWKS when it is missing (key rotation)."""
        if not self._jwks or time.monotonic() - self._jwks_at >= REFRESH_SECONDS:
            async with self._lock:
                if not self._jwks or time.monotonic() - self._jwks_at >= REFRESH_SECONDS:
                    await self._load_jwks()
        key = self._jwks.get(kid)
        if key is None:
            async with self._lock:
                if kid not in self._jwks:
                    # A key rotated just after the last read must still be found: wait out the rest of
                    # the interval (at most JWKS_MISS_INTERVAL) instead of refusing the login
                    wait = JWKS_MISS_INTERVAL - (time.monotonic() - self._jwks_at)
                    if wait > 0:
                        await asyncio.sleep(wait)
                    await self._load_jwks()
                    log.info("oidc_jwks_reloaded", kid=kid, kids=sorted(self._jwks))
            key = self._jwks.get(kid)
        return key

    async def verify_id_token(self, token: str, *, nonce: str | None) -> dict[str, Any]:
        """The claims of a valid ID token for this client; ``nonce`` must match when given (a login).

        Raises :class:`OidcError` (``invalid``) naming the check that failed.
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise OidcError("invalid", f"the ID token is not a well-formed JWT ({exc})") from None
        alg = str(header.get("alg", ""))
        meta = await self.discovery()
        announced = meta.get("id_token_signing_alg_values_supported") or ["RS256"]
        allowed = sorted(ASYMMETRIC_ALGORITHMS.intersection(announced if isinstance(announced, list) else []))
        if alg not in allowed:
            raise OidcError("invalid", f"the ID token uses alg {alg!r}; only {', '.join(allowed) or 'none'} "
                            "(asymmetric algorithms the provider announces) are accepted")
        kid = str(header.get("kid", ""))
        key = await self._key(kid)
        if key is None:
            raise OidcError("invalid", f"the ID token is signed with key {kid!r}, which is not in the provider's "
                            f"JWKS (re-read just now); a forged token, or the provider signs "
                            "with a key it does not publish")
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=[alg], audience=self.client_id, issuer=self.issuer,
                leeway=self.settings.leeway, options={"require": ["iss", "sub", "aud", "exp", "iat"]},
            )
        except jwt.ExpiredSignatureError:
            raise OidcError("invalid", "the ID token has expired (exp is past, beyond auth.oidc.leeway); "
                            "check the clocks of Moorage and the provider") from None
        except jwt.ImmatureSignatureError:
            raise OidcError("invalid", "the ID token is not valid yet (iat or nbf in the future, beyond "
                            "auth.oidc.leeway); check the clocks of Moorage and the provider") from None
        except jwt.InvalidIssuerError:
            raise OidcError("invalid", f"the ID token's issuer {_claim(token, 'iss')!r} is not the configured "
                            f"{self.issuer!r}") from None
        except jwt.InvalidAudienceError:
            raise OidcError("invalid", f"the ID token is for audience {_claim(token, 'aud')!r}, not this client "
                            f"{self.client_id!r}") from None
        except jwt.InvalidSignatureError:
            raise OidcError("invalid", f"the ID token's signature does not verify with the provider's key "
                            f"{kid!r}") from None
        except jwt.PyJWTError as exc:
            raise OidcError("invalid", f"the ID token was refused: {exc}") from None
        audience = claims["aud"]
        if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != self.client_id:
            raise OidcError("invalid", "the ID token names several audiences but its azp is not this client")
        if nonce is not None and claims.get("nonce") != nonce:
            raise OidcError("invalid", "the ID token's nonce does not match the one this login sent "
                            "(a token replayed from another login)")
        return claims

    async def _token_request(self, form: dict[str, str]) -> TokenResponse:
        meta = await self.discovery()
        url = str(meta["token_endpoint"])
        auth: httpx.Auth = httpx.Auth()  # the base class sends no credentials (a public client, or client_secret_post)
        if self.settings.client_secret:
            methods = meta.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
            if "client_secret_basic" in methods:
                auth = httpx.BasicAuth(self.client_id, self.settings.client_secret)
            else:
                form = {**form, "client_secret": self.settings.client_secret}
        form = {**form, "client_id": self.client_id}
        try:
            response = await self._http.post(url, data=form, auth=auth)
        except httpx.HTTPError as exc:
            raise OidcError("unavailable", f"cannot reach the provider's token endpoint {url}: {exc!r}") from None
        try:
            data = response.json()
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        if response.status_code != 200:
            error = str(data.get("error", "")) or f"HTTP {response.status_code}"
            description = str(data.get("error_description", ""))
            kind = "refused" if error in ("invalid_grant", "unauthorized_client", "access_denied") else "unavailable"
            raise OidcError(kind, f"the provider's token endpoint refused the {form.get('grant_type')} grant: "
                            f"{error} {description}".strip())
        expires_in = data.get("expires_in")
        return TokenResponse(
            _str_or_none(data.get("id_token")), _str_or_none(data.get("access_token")),
            _str_or_none(data.get("refresh_token")), int(expires_in) if isinstance(expires_in, int) else None,
        )

    async def exchange_code(self, code: str, *, code_verifier: str, redirect_uri: str) -> TokenResponse:
        """The authorization code grant with its PKCE verifier (RFC 7636)."""
        return await self._token_request({
            "grant_type": "authorization_code", "code": code, "code_verifier": code_verifier,
            "redirect_uri": redirect_uri,
        })

    async def refresh(self, refresh_token: str) -> TokenResponse:
        """The refresh token grant; ``refused`` when the provider ended the grant (user removed, disabled)."""
        return await self._token_request({"grant_type": "refresh_token", "refresh_token": refresh_token})

    async def userinfo(self, access_token: str) -> dict[str, Any]:
        """The userinfo claims (when a refresh returns no ID token); ``{}`` without the endpoint."""
        meta = await self.discovery()
        url = meta.get("userinfo_endpoint")
        if not isinstance(url, str):
            return {}
        try:
            response = await self._http.get(url, headers={"Authorization": f"Bearer {access_token}"})
        except httpx.HTTPError as exc:
            raise OidcError("unavailable", f"cannot reach the provider's userinfo endpoint {url}: {exc!r}") from None
        if response.status_code in (401, 403):
            raise OidcError("refused", f"the provider's userinfo endpoint refused the access token "
                            f"({response.status_code})")
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code != 200 or not isinstance(data, dict):
            raise OidcError("unavailable", f"the provider's userinfo endpoint answered {response.status_code}")
        return data


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _claim(token: str, name: str) -> object:
    """A claim of a token already refused (for the log line only; never trusted)."""
    try:
        return jwt.decode(token, options={"verify_signature": False}).get(name)
    except jwt.PyJWTError:
        return None
