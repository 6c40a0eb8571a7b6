"""The browser login: authorization code flow with PKCE (S256), ``state`` and ``nonce``.

:meth:`OidcLogins.start` stores a row in ``oidc_logins`` (the SHA-256 of ``state``, the nonce, the
PKCE verifier, the redirect URI and where to go after) and returns the provider's authorization
URL plus the ``state`` the web layer also puts in a cookie. :meth:`OidcLogins.finish` (the
callback, on any node) checks the ``state`` against that cookie, consumes the row with one
``DELETE`` (so a replayed callback finds nothing), exchanges the code with the verifier, checks the
ID token (signature by the provider's JWKS, issuer, audience, times, nonce) and onboards the user.

Every refusal is logged with its reason (``oidc_login_refused``), audited as a ``login_failure``
(method ``oidc``) and counted by the login throttle under the name ``(oidc)`` for the client's
address; the client only learns that single sign-on failed (and the request id to quote).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

import structlog
from sqlalchemy import delete, insert

from moorage.auth.audit import AuditLog
from moorage.auth.identity import IdentityError, IdentityStore, Subject, utcnow
from moorage.auth.oidc.identities import OidcIdentities
from moorage.auth.oidc.provider import OidcError, OidcProvider
from moorage.auth.throttle import LoginThrottle
from moorage.config import OidcSettings
from moorage.db.oidc_tables import oidc_logins
from moorage.db.session import Database

__all__ = ["CALLBACK_PATH", "LOGIN_TTL", "THROTTLE_NAME", "LoginStart", "OidcLoginError", "OidcLogins"]

log = structlog.get_logger("moorage.oidc")

CALLBACK_PATH = "/c/oidc/callback"
#: Seconds a user has to finish the login at the provider.
LOGIN_TTL = 600
#: The login name OIDC failures are throttled and audited under (the user is not known yet).
THROTTLE_NAME = "(oidc)"


class OidcLoginError(Exception):
    """A refused callback: ``message`` is for the client (generic), ``request_id`` ties it to the log line."""

    def __init__(self, message: str, request_id: str, *, throttled: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id
        self.throttled = throttled


@dataclass(frozen=True, slots=True)
class LoginStart:
    url: str
    state: str


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256: BASE64URL(SHA256(verifier)) without padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


def safe_next(path: str | None) -> str:
    """Where to go after the login: a local path only (no open redirect to another site)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path or len(path) > 1024:
        return "/projects"
    return path if path.isprintable() else "/projects"


class OidcLogins:
    def __init__(self, db: Database, settings: OidcSettings, provider: OidcProvider, identities: OidcIdentities,
                 store: IdentityStore, throttle: LoginThrottle, audit: AuditLog) -> None:
        self.db = db
        self.settings = settings
        self.provider = provider
        self.identities = identities
        self.store = store
        self.throttle = throttle
        self.audit = audit

    def redirect_uri(self, base_url: str) -> str:
        """``auth.oidc.redirect_url``, else the external base URL (``http.host`` or a trusted proxy's) + callback."""
        return self.settings.redirect_url or base_url.rstrip("/") + CALLBACK_PATH

    async def start(self, base_url: str, next_path: str | None) -> LoginStart:
        """Record a login in flight and return the provider's authorization URL."""
        meta = await self.provider.discovery()
        state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(64)
        redirect_uri = self.redirect_uri(base_url)
        now = utcnow()
        async with self.db.write() as conn:
            await conn.execute(delete(oidc_logins).where(oidc_logins.c.expires_at < now))
            await conn.execute(insert(oidc_logins).values(
                state_hash=_digest(state), nonce=nonce, code_verifier=verifier, redirect_uri=redirect_uri,
                next_path=safe_next(next_path), expires_at=now + timedelta(seconds=LOGIN_TTL)))
        params = {
            **self.settings.extra_auth_params,
            "response_type": "code", "client_id": self.provider.client_id, "redirect_uri": redirect_uri,
            "scope": " ".join(self.settings.scopes), "state": state, "nonce": nonce,
            "code_challenge": pkce_challenge(verifier), "code_challenge_method": "S256",
        }
        endpoint = str(meta["authorization_endpoint"])
        return LoginStart(f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(params)}", state)

    async def finish(self, *, state: str | None, cookie_state: str | None, code: str | None, error: str | None,
                     client: str) -> tuple[Subject, str]:
        """The callback: ``(subject, where to go next)``, or :class:`OidcLoginError` with a generic message."""
        request_id = uuid.uuid4().hex
        until, _ = await self.throttle.state(THROTTLE_NAME, client)
        if until is not None:
            await self.audit.login(THROTTLE_NAME, client, "oidc", "throttled", detail="too many failed OIDC logins")
            raise OidcLoginError(f"too many failed single sign-on attempts from {client}; try again after "
                                 f"{until:%H:%M:%S} UTC", request_id, throttled=True)
        reserved, until = await self.throttle.reserve(THROTTLE_NAME, client)
        if not reserved:  # locked, or every try left is being checked right now (parallel callbacks)
            detail = f"try again after {until:%H:%M:%S} UTC" if until is not None else "try again in a few seconds"
            await self.audit.login(THROTTLE_NAME, client, "oidc", "throttled", detail="too many OIDC logins at once")
            raise OidcLoginError(f"too many failed single sign-on attempts from {client}; {detail}", request_id,
                                 throttled=True)
        username = THROTTLE_NAME
        try:
            if error:
                raise OidcError("refused", f"the provider returned error={error!r} to the callback (the user "
                                "cancelled, or the client is not allowed)")
            if not state or not cookie_state or not hmac.compare_digest(state.encode(), cookie_state.encode()):
                raise OidcError("invalid", "the callback's state does not match this browser's login cookie "
                                "(a forged or cross-browser callback, or cookies are blocked)")
            async with self.db.write() as conn:
                row = (await conn.execute(
                    delete(oidc_logins).where(oidc_logins.c.state_hash == _digest(state),
                                              oidc_logins.c.expires_at >= utcnow())
                    .returning(oidc_logins.c.nonce, oidc_logins.c.code_verifier, oidc_logins.c.redirect_uri,
                               oidc_logins.c.next_path))).first()
            if row is None:
                raise OidcError("invalid", "the callback's state is unknown, already used or older than "
                                f"{LOGIN_TTL} s (a replayed callback)")
            if not code:
                raise OidcError("invalid", "the callback carries no code")
            tokens = await self.provider.exchange_code(code, code_verifier=row.code_verifier,
                                                       redirect_uri=row.redirect_uri)
            if tokens.id_token is None:
                raise OidcError("invalid", "the token endpoint returned no ID token; add 'openid' to the client's "
                                "scopes at the provider")
            claims = await self.provider.verify_id_token(tokens.id_token, nonce=row.nonce)
            username = str(claims.get(self.settings.username_claim, username))
            user = await self.identities.onboard(claims, tokens.refresh_token)
        except (OidcError, IdentityError) as exc:
            reason = exc.reason if isinstance(exc, OidcError) else exc.message
            log.warning("oidc_login_refused", reason=reason, client=client, request_id=request_id, username=username)
            await self.audit.login(username, client, "oidc", "failure", detail=reason)
            await self.throttle.failed(THROTTLE_NAME, client)
            message = "single sign-on failed"
            if isinstance(exc, IdentityError) and exc.kind in ("conflict", "invalid"):
                message = f"single sign-on failed: {exc.message}"  # about the account, not the token: say it
            raise OidcLoginError(f"{message}; try again, and if it keeps failing give the administrator the "
                                 f"reference {request_id} (the server log has the reason)", request_id) from None
        except BaseException:
            await self.throttle.release(THROTTLE_NAME, client)
            raise
        await self.throttle.succeeded(THROTTLE_NAME, client)
        subject = self.store.user_subject(user)
        await self.audit.login(user.username, client, "oidc", "success", fingerprint=subject.fingerprint)
        return subject, str(row.next_path)
