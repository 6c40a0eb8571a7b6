"""Single sign-on through an OpenID Connect provider (``auth.oidc``, docs/sso.md).

:class:`OidcService` is what the identity facade holds when ``auth.oidc.issuer`` is set: the
provider (:mod:`.provider`), the browser login (:mod:`.logins`) and the OIDC users with their CLI
secrets and refreshes (:mod:`.identities`). It uses the identity service's store, throttle, audit
log and ``auth.secret_key``; it builds no HTTP answer (the web layer, :mod:`moorage.web.oidc`, does).
"""

from __future__ import annotations

from moorage.auth.audit import AuditLog
from moorage.auth.identity import IdentityStore
from moorage.auth.keys import SecretBox
from moorage.auth.oidc.identities import OidcIdentities, OidcIdentity
from moorage.auth.oidc.logins import CALLBACK_PATH, LoginStart, OidcLoginError, OidcLogins
from moorage.auth.oidc.provider import OidcError, OidcProvider
from moorage.auth.sources import SourceChain
from moorage.auth.throttle import LoginThrottle
from moorage.config import OidcSettings
from moorage.db.session import Database
from moorage.net.tls import TrustStore

__all__ = [
    "CALLBACK_PATH",
    "LoginStart",
    "OidcError",
    "OidcIdentity",
    "OidcLoginError",
    "OidcService",
]


class OidcService:
    def __init__(self, db: Database, settings: OidcSettings, *, secret_key: str, store: IdentityStore,
                 chain: SourceChain, throttle: LoginThrottle, audit: AuditLog, trust: TrustStore) -> None:
        """Registers :attr:`identities` as the ``oidc`` source of ``chain``."""
        self.settings = settings
        self.provider = OidcProvider(settings, trust)
        box = SecretBox(secret_key, purpose=b"oidc-secrets")
        self.identities = OidcIdentities(db, store, chain, self.provider, box, settings)
        chain.register(self.identities)
        self.logins = OidcLogins(db, settings, self.provider, self.identities, store, throttle, audit)

    @property
    def name(self) -> str:
        """The provider's name on the login button."""
        return self.settings.name

    async def aclose(self) -> None:
        await self.provider.aclose()
