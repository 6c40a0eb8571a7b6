"""Set-up for the OIDC integration tests: a real ``oidc-provider`` and an in-process Moorage that uses it.

:func:`sso_registry` yields an :class:`Sso`: the token-mode registry (``idp``, see
test_identity_helpers), the provider, and a "browser" whose cookies are split by host as a real
browser's are. Each registry registers its own client at the provider (dynamic registration),
so tests share one provider process per module.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from moorage.app import create_app
from moorage.auth.sessions import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE
from moorage.services import Services
from tests.integration.conftest import make_settings
from tests.integration.test_identity_helpers import TOKEN_ENV, Idp
from tests.services.oidc_provider import OidcProvider, browser_login

__all__ = ["BASE_URL", "Sso", "sso_registry"]

BASE_URL = "http://registry.test"
PROVIDER_PASSWORD = "provider-pw"


@dataclass
class Sso:
    idp: Idp
    provider: OidcProvider
    transport: httpx.ASGITransport

    def browser(self) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
        """A fresh browser: ``(moorage side, provider side)``, each with its own cookie jar."""
        moorage = httpx.AsyncClient(transport=self.transport, base_url=BASE_URL)
        provider = httpx.AsyncClient(verify=self.provider.verify(),
                                     timeout=10)
        return moorage, provider

    def account(self, prefix: str = "o", **claims: Any) -> str:
        login = f"{prefix}{uuid.uuid4().hex[:10]}"
        self.provider.put_account(login, PROVIDER_PASSWORD, email=f"{login}@example.com", **claims)
        return login

    async def login(self, login: str, next_path: str = "/projects") -> httpx.Response:
        """One browser login of ``login``; the callback's response (its cookies are the session's)."""
        moorage, provider = self.browser()
        async with moorage, provider:
            return await browser_login(moorage, provider, login, PROVIDER_PASSWORD, next_path)

    async def session(self, login: str) -> dict[str, str]:
        """Headers that act as ``login``'s UI session (cookie and CSRF header)."""
        r = await self.login(login)
        assert r.status_code == 303 and r.headers["location"] == "/projects", (r.status_code, r.headers)
        session, csrf = r.cookies[SESSION_COOKIE], r.cookies[CSRF_COOKIE]
        return {"Cookie": f"{SESSION_COOKIE}={session}; {CSRF_COOKIE}={csrf}", CSRF_HEADER: csrf}


async def sso_registry(database_url: str, data_dir: Path, provider: OidcProvider, *, refresh: bool = True,
                       client_address: str = "127.0.0.1", trust_provider_ca: bool = True,
                       **extra: object) -> AsyncIterator[Sso]:
    """``trust_provider_ca``: give Moorage the provider's private CA (``auth.oidc.ca_bundle``) when it has one."""
    client_id, client_secret = provider.register_client(f"{BASE_URL}/c/oidc/callback", refresh=refresh)
    env = {**TOKEN_ENV, "MOORAGE_AUTH__OIDC__ISSUER": provider.issuer, "MOORAGE_AUTH__OIDC__CLIENT_ID": client_id,
           "MOORAGE_AUTH__OIDC__CLIENT_SECRET": client_secret, "MOORAGE_AUTH__OIDC__NAME": "Test provider",
           "MOORAGE_AUTH__SOURCES": "[local, oidc, robot]",
           "MOORAGE_AUTH__OIDC__SCOPES": "[openid, profile, email, groups]", **extra}
    if provider.ca_bundle is not None and trust_provider_ca:
        env["MOORAGE_AUTH__OIDC__CA_BUNDLE"] = str(provider.ca_bundle)
    settings = make_settings(database_url, data_dir, **env)
    services = Services.from_settings(settings)
    assert services.identity is not None
    await services.identity.start()
    app = create_app(settings, services)
    transport = httpx.ASGITransport(app=app, client=(client_address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        yield Sso(Idp(settings, services, http), provider, transport)
    await services.aclose()
