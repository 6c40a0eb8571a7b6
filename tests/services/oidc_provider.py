"""A real OpenID provider for the OIDC tests: npm's certified ``oidc-provider`` on Debian's Node.js.

``tests/services/oidc/`` holds ``package.json`` and ``package-lock.json`` (the versions are pinned
there) and ``provider.mjs`` (its configuration and the test-only endpoints: accounts, tampering,
the login form). :func:`installed_provider` runs ``npm ci`` once into a cache directory keyed by
the lock file's hash; :class:`OidcProvider` runs one provider process on 127.0.0.1 and drives it:

* :meth:`OidcProvider.register_client` registers a client through the provider's own dynamic
  registration endpoint (``grant_types`` decides whether it gets refresh tokens);
* :meth:`OidcProvider.put_account` / :meth:`OidcProvider.remove_account` change its users (a
  removed account's refresh grants then fail with ``invalid_grant``);
* :meth:`OidcProvider.tamper` forges the next ID token the token endpoint returns (``alg-none``,
  ``unknown-key``, ``wrong-nonce``, ``expired``, ``not-yet-valid``, ``issuer``);
* :meth:`OidcProvider.restart` with new keys rotates its JWKS.

:func:`browser_login` plays the browser against Moorage and the provider with httpx.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.conftest import skip_or_fail

__all__ = ["OidcProvider", "browser_login", "free_port", "installed_provider", "new_jwk"]

HERE = Path(__file__).resolve().parent / "oidc"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def installed_provider() -> Path:
    """A directory holding ``provider.mjs`` and its ``node_modules`` (``npm ci`` of the committed lock)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        skip_or_fail("Debian's nodejs and npm are needed for the OIDC tests (scripts/test.sh installs them)")
    lock = (HERE / "package-lock.json").read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "moorage-test"
    target = cache / f"oidc-provider-{hashlib.sha256(lock).hexdigest()[:12]}"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "oidc-provider.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # parallel sessions install once
        if not (target / "node_modules" / "oidc-provider" / "package.json").is_file():
            target.mkdir(exist_ok=True)
            for name in ("package.json", "package-lock.json"):
                shutil.copy(HERE / name, target / name)
            result = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=target,
                                    capture_output=True, text=True, timeout=600, check=False)
            if result.returncode != 0:
                skip_or_fail(f"npm ci of tests/services/oidc failed: {result.stderr[-2000:]}")
        shutil.copy(HERE / "provider.mjs", target / "provider.mjs")  # node resolves imports beside the script
    return target


def new_jwk(kid: str) -> dict[str, Any]:
    """A fresh RS256 private JWK (the provider signs with the first key of its JWKS)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key))
    return {**jwk, "kid": kid, "alg": "RS256", "use": "sig"}


@dataclass
class OidcProvider:
    """One ``oidc-provider`` process; ``issuer`` is its URL (``https`` with ``tls``)."""

    workdir: Path
    id_token_ttl: int = 20
    tls: tuple[Path, Path] | None = None
    port: int = field(default_factory=free_port)
    keys: list[dict[str, Any]] = field(default_factory=lambda: [new_jwk("key-1")])
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    clients: list[dict[str, Any]] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    ca_bundle: Path | None = None

    @property
    def issuer(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> OidcProvider:
        directory = installed_provider()
        jwks = self.workdir / f"jwks-{self.port}.json"
        jwks.write_text(json.dumps({"keys": self.keys}))
        env = {**os.environ, "OIDC_ISSUER": self.issuer, "OIDC_PORT": str(self.port),
               "OIDC_ID_TOKEN_TTL": str(self.id_token_ttl), "OIDC_JWKS_FILE": str(jwks),
               "OIDC_ACCOUNTS": json.dumps(self.accounts), "OIDC_CLIENTS": json.dumps(self.clients),
               "NODE_NO_WARNINGS": "1"}
        if self.tls:
            env.update(OIDC_TLS_CERT=str(self.tls[0]), OIDC_TLS_KEY=str(self.tls[1]))
        log = self.workdir / f"oidc-provider-{self.port}.log"
        with open(log, "ab") as output:
            self.process = subprocess.Popen(["node", str(directory / "provider.mjs")], cwd=directory, env=env,
                                            stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"oidc-provider exited: {log.read_text()[-2000:]}")
            try:
                if self._get("/.well-known/openid-configuration").status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("oidc-provider did not answer within 30 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self, keys: list[dict[str, Any]]) -> None:
        """Stop, then start with ``keys`` (the first signs): a key rotation. Accounts and clients are kept."""
        self.stop()
        self.keys = keys
        self.start()

    def verify(self) -> ssl.SSLContext | bool:
        """What the test's own HTTP clients verify the provider with (its private CA, when it has one)."""
        return ssl.create_default_context(cafile=str(self.ca_bundle)) if self.ca_bundle else True

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.issuer, verify=self.verify(), timeout=10)

    def _get(self, path: str) -> httpx.Response:
        with self._client() as client:
            return client.get(path)

    def register_client(self, redirect_uri: str, *, refresh: bool = True) -> tuple[str, str]:
        """``(client_id, client_secret)`` of a new confidential client (dynamic registration, RFC 7591)."""
        body = {"redirect_uris": [redirect_uri], "response_types": ["code"],
                "grant_types": ["authorization_code", "refresh_token"] if refresh else ["authorization_code"],
                "token_endpoint_auth_method": "client_secret_basic"}
        with self._client() as client:
            r = client.post("/reg", json=body)
        assert r.status_code == 201, r.text
        data = r.json()
        self.clients.append({**body, "client_id": data["client_id"], "client_secret": data["client_secret"]})
        return str(data["client_id"]), str(data["client_secret"])

    def put_account(self, login: str, password: str, **claims: Any) -> None:
        self.accounts[login] = {"password": password, "claims": claims}
        with self._client() as client:
            assert client.put(f"/_test/accounts/{login}", json=self.accounts[login]).status_code == 204

    def remove_account(self, login: str) -> None:
        self.accounts.pop(login, None)
        with self._client() as client:
            assert client.delete(f"/_test/accounts/{login}").status_code == 204

    def tamper(self, mode: str) -> None:
        with self._client() as client:
            assert client.post("/_test/tamper", json={"mode": mode}).status_code == 204


async def provider_login(http: httpx.AsyncClient, authorize_url: str, login: str, password: str) -> str:
    """Follow the provider's side of a login; returns the URL it redirects the browser to (the callback)."""
    r = await http.get(authorize_url)
    assert r.status_code in (302, 303), r.text
    interaction = str(httpx.URL(authorize_url).join(r.headers["location"]))
    r = await http.post(interaction + "/login", data={"login": login, "password": password})
    assert r.status_code == 303, r.text
    location = str(httpx.URL(interaction).join(r.headers["location"]))
    while location.startswith(str(httpx.URL(authorize_url).copy_with(path="/", query=None, fragment=None))):
        r = await http.get(location)
        assert r.status_code in (302, 303), r.text
        location = str(httpx.URL(location).join(r.headers["location"]))
    return location


async def browser_login(moorage: httpx.AsyncClient, provider: httpx.AsyncClient, login: str, password: str,
                        next_path: str = "/projects") -> httpx.Response:
    """A whole browser login: Moorage's ``/c/oidc/login``, the provider, then Moorage's callback.

    ``moorage`` and ``provider`` keep their cookies (the browser's jar, split by host); the answer
    is the callback's response (303 to ``next_path`` with the session cookies, or back to /login).
    """
    r = await moorage.get("/c/oidc/login", params={"next": next_path})
    assert r.status_code == 303, r.text
    callback = await provider_login(provider, r.headers["location"], login, password)
    parts = urlsplit(callback)
    assert parts.path == "/c/oidc/callback", callback
    assert "code" in parse_qs(parts.query) or "error" in parse_qs(parts.query), callback
    return await moorage.get(f"{parts.path}?{parts.query}")
