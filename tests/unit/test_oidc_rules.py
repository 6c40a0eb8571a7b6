"""OIDC rules that need no provider: PKCE's S256, where a login may send the browser, the configuration."""

from __future__ import annotations

import pytest

from moorage.auth.oidc.logins import pkce_challenge, safe_next
from moorage.config import ConfigError, load_settings

TOKEN = {"MOORAGE_AUTH__MODE": "token", "MOORAGE_SECRET_KEY": "k" * 32}


def test_pkce_s256_matches_rfc_7636_appendix_b() -> None:
    assert pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


@pytest.mark.parametrize("path", [None, "", "projects", "//evil.example/x", "https://evil.example/", "/\\evil.example",
                                  "/a\nb", "/" + "x" * 2000])
def test_a_login_never_sends_the_browser_off_site(path: str | None) -> None:
    assert safe_next(path) == "/projects"


def test_a_local_path_is_kept() -> None:
    assert safe_next("/projects/team/repositories?page=2") == "/projects/team/repositories?page=2"


@pytest.mark.parametrize(("environ", "named"), [
    ({"MOORAGE_AUTH__OIDC__ISSUER": "https://idp.example", "MOORAGE_AUTH__SOURCES": "[local, oidc]"},
     "client_id is required"),
    ({"MOORAGE_AUTH__OIDC__ISSUER": "https://idp.example", "MOORAGE_AUTH__OIDC__CLIENT_ID": "m"},
     "auth.sources does not list oidc"),
    ({"MOORAGE_AUTH__OIDC__ISSUER": "idp.example", "MOORAGE_AUTH__OIDC__CLIENT_ID": "m",
      "MOORAGE_AUTH__SOURCES": "[local, oidc]"}, "issuer must be"),
    ({"MOORAGE_AUTH__OIDC__ISSUER": "https://idp.example", "MOORAGE_AUTH__OIDC__CLIENT_ID": "m",
      "MOORAGE_AUTH__SOURCES": "[local, oidc]", "MOORAGE_AUTH__OIDC__SCOPES": "[profile]"}, "must include openid"),
    ({"MOORAGE_AUTH__OIDC__ISSUER": "https://idp.example", "MOORAGE_AUTH__OIDC__CLIENT_ID": "m",
      "MOORAGE_AUTH__SOURCES": "[local, oidc]", "MOORAGE_AUTH__OIDC__CA_BUNDLE": "/nonexistent.pem"}, "ca_bundle"),
    ({"MOORAGE_AUTH__SOURCES": "[local, oidc]"}, "oidc"),
])
def test_bad_oidc_settings_are_named(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(environ={**TOKEN, **environ})
