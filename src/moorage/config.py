"""Typed settings: one YAML file plus ``MOORAGE_…`` environment overrides, validated at start.

A bad key or value raises :class:`ConfigError` whose message names the key (``storage.s3.bucket``)
and what is allowed, so a typo never silently selects a default or a fake backend.

Environment mapping: ``MOORAGE_A__B_C`` sets ``a.b_c``; ``MOORAGE_A_B_C`` works too where the
split is unambiguous against the known keys; the common ones are named outright
(:data:`ENV_ALIASES`). ``MOORAGE_CONFIG`` names the YAML file; variables starting with
``MOORAGE_TEST_`` belong to the test suite.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from moorage.auth.clients import TrustedProxies
from moorage.auth.ldap_settings import LdapSettings
from moorage.net.addresses import DEFAULT_DENIED, AddressPolicy
from moorage.net.tls import TrustStore, TrustStoreError
from moorage.registry.names import InvalidNameError, check_identifier
from moorage.storage.factory import DRIVERS, driver_class

__all__ = [
    "AuthSettings",
    "ConfigError",
    "DatabaseSettings",
    "GcSettings",
    "HttpSettings",
    "JobsSettings",
    "LimitsSettings",
    "LogSettings",
    "MetricsSettings",
    "OidcSettings",
    "OutboundSettings",
    "ProxySettings",
    "QuotaSettings",
    "RedisClusterSettings",
    "RedisSentinelSettings",
    "RedisSettings",
    "Settings",
    "SiteSettings",
    "StorageSettings",
    "WebhookSettings",
    "load_settings",
]

ENV_PREFIX = "MOORAGE_"
ENV_ALIASES: dict[str, tuple[str, ...]] = {
    "MOORAGE_DATA_DIR": ("data_dir",),
    "MOORAGE_DATABASE_URL": ("database", "url"),
    "MOORAGE_REDIS_URL": ("redis", "url"),
    "MOORAGE_ADMIN_PASSWORD": ("auth", "admin_password"),
    "MOORAGE_SECRET_KEY": ("auth", "secret_key"),
    "MOORAGE_LISTEN": ("http", "listen"),
}


class ConfigError(Exception):
    """The configuration is invalid; ``str()`` lists every bad key with what is allowed."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TLSSettings(_Section):
    """``http.tls``: serve HTTPS directly (``moorage serve --tls-cert --tls-key``); both or neither.

    The files are checked at start (readable, the key matches the certificate), so a wrong path
    stops start-up naming the key instead of failing every worker.
    """

    certificate: str | None = None
    key: str | None = None

    @model_validator(mode="after")
    def _pair(self) -> TLSSettings:
        if bool(self.certificate) != bool(self.key):
            missing = "key" if self.certificate else "certificate"
            raise ValueError(f"http.tls.{missing}: set both http.tls.certificate and http.tls.key (--tls-cert and "
                             "--tls-key), or neither")
        if self.certificate and self.key:
            for name, path in (("certificate", self.certificate), ("key", self.key)):
                if not Path(path).is_file():
                    raise ValueError(f"http.tls.{name}: {path} is not a readable file; give the PEM file's path")
            try:
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(self.certificate, self.key)
            except (ssl.SSLError, OSError) as exc:
                raise ValueError(f"http.tls.certificate: {self.certificate} and {self.key} are not a PEM certificate "
                                 f"and its private key ({exc}); make them with 'moorage certs make-server'") from None
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.certificate and self.key)


class HttpSettings(_Section):
    """``http``: how the registry listens and how it builds URLs for clients."""

    listen: str = "127.0.0.1:5000"
    #: Emit relative ``Location`` headers (Distribution's ``http.relativeurls``).
    relativeurls: bool = False
    #: Public base URL (``https://registry.example.com``); overrides Host/X-Forwarded-*.
    host: str | None = None
    #: Peers whose ``X-Forwarded-For/Proto/Host`` headers are believed (addresses or CIDR networks;
    #: ``*`` trusts all). The default is what ``deploy/nginx/moorage.conf`` needs on the node's own
    #: host, where nginx reaches the default IPv4 listener from 127.0.0.1; see docs/configuration.md.
    trusted_proxies: list[str] = Field(default_factory=lambda: ["127.0.0.1"])
    tls: TLSSettings = Field(default_factory=TLSSettings)
    #: Worker processes of ``moorage serve``; 0 = one per CPU core (at most 8). Measured manifest
    #: GETs on 2 cores, SQLite: 2,520/s with 1 worker, 5,440/s with 2.
    workers: int = Field(default=0, ge=0, le=64)

    def worker_count(self) -> int:
        return self.workers or min(os.cpu_count() or 1, 8)

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, value: list[str]) -> list[str]:
        TrustedProxies.parse(value)  # a bad entry stops start-up, named; requests use the same matcher
        return value

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:5000 or 0.0.0.0:5000")
        return value


class DatabaseSettings(_Section):
    """``database``: a SQLAlchemy URL; default SQLite under the data directory."""

    url: str | None = None
    pool_size: int = Field(default=10, ge=1, le=500)
    #: Run migrations when ``serve`` starts (one process migrates, the others wait).
    auto_migrate: bool = True
    #: SQLite only: ``full`` syncs its log at every commit, so an acknowledged push survives a power
    #: loss; ``normal`` survives a process crash only (faster commits). PostgreSQL commits are durable.
    sqlite_synchronous: Literal["full", "normal"] = "full"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("sqlite", "postgresql", "postgres://")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return value


class StorageDeleteSettings(_Section):
    enabled: bool = True


class StorageRedirectSettings(_Section):
    #: ``true``: never redirect clients to the object store; stream through the registry.
    disable: bool = False
    #: Lifetime of presigned/TempURL redirects, seconds.
    expiry: int = Field(default=1200, ge=10, le=7 * 24 * 3600)


class UploadPurgingSettings(_Section):
    """``storage.maintenance.uploadpurging``: Distribution's keys, durations as ``168h``/``30m``/seconds."""

    enabled: bool = True
    age: str = "168h"
    interval: str = "24h"
    dryrun: bool = False

    @field_validator("age", "interval")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value


class ReadOnlySettings(_Section):
    #: Refuse pushes and deletes (e.g. during a storage migration or a restore); pulls go on.
    enabled: bool = False


class MaintenanceSettings(_Section):
    uploadpurging: UploadPurgingSettings = Field(default_factory=UploadPurgingSettings)
    readonly: ReadOnlySettings = Field(default_factory=ReadOnlySettings)


def parse_duration(value: str | float) -> timedelta:
    """``90``, ``90s``, ``30m``, ``168h``, ``7d`` → a timedelta; ``ValueError`` names the format."""
    text = str(value).strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text and text[-1] in units:
            return timedelta(seconds=float(text[:-1]) * units[text[-1]])
        return timedelta(seconds=float(text))
    except ValueError:
        raise ValueError(f"{value!r} is not a duration; write e.g. 90s, 30m, 168h or 7d") from None


class StorageSettings(BaseModel):
    """``storage``: Distribution's keys. Exactly one driver section (``filesystem``, ``s3``, ...).

    The driver section is validated against that driver's own ``Settings`` model, so
    ``storage.s3.bukcet`` is reported by name.
    """

    model_config = ConfigDict(extra="allow")

    _driver_name: str = PrivateAttr(default="filesystem")
    _driver_settings: BaseModel | None = PrivateAttr(default=None)

    delete: StorageDeleteSettings = Field(default_factory=StorageDeleteSettings)
    redirect: StorageRedirectSettings = Field(default_factory=StorageRedirectSettings)
    maintenance: MaintenanceSettings = Field(default_factory=MaintenanceSettings)
    #: Distribution's blob-descriptor cache setting; accepted so configs carry over (Redis is ``redis``).
    cache: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_driver(self) -> StorageSettings:
        extra = dict(self.model_extra or {})
        unknown = [name for name in extra if name not in DRIVERS]
        if unknown:
            raise ValueError(
                f"unknown key(s) {', '.join(unknown)}; a driver section is one of {', '.join(sorted(DRIVERS))}"
            )
        if len(extra) > 1:
            raise ValueError(f"configure exactly one storage driver, got {', '.join(sorted(extra))}")
        name = next(iter(extra), "filesystem")
        settings_model = driver_class(name).Settings
        try:
            parsed = settings_model.model_validate(extra.get(name) or {})
        except ValidationError as exc:
            raise ValueError(_format_errors(exc, prefix=f"storage.{name}")) from None
        self._driver_name = name
        self._driver_settings = parsed
        return self

    @property
    def driver_name(self) -> str:
        """The configured driver section's name (``filesystem`` when none is given)."""
        return self._driver_name

    @property
    def driver_settings(self) -> BaseModel:
        """That section, validated against the driver's own ``Settings`` model."""
        if self._driver_settings is None:  # pragma: no cover - the validator always sets it
            raise RuntimeError("storage settings were not validated")
        return self._driver_settings


def _identifier(value: str, key: str) -> str:
    """A name the registry hands to clients or other services: printable, no control or whitespace characters."""
    try:
        return check_identifier(value, key)
    except InvalidNameError as exc:
        raise ValueError(exc.message) from None


def _check_addresses(addresses: list[str]) -> list[str]:
    for address in addresses:
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"{address!r} must be HOST:PORT")
    return addresses


class RedisSentinelSettings(_Section):
    """``redis.sentinel``: the Sentinels to ask, and the name of the master they watch."""

    addresses: list[str] = Field(default_factory=list)
    master: str = "mymaster"
    #: Password of the Redis servers (``requirepass``); Sentinels' own password below.
    password: str | None = None
    sentinel_password: str | None = None
    db: int = Field(default=0, ge=0)

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        return _check_addresses(value)

    @field_validator("master")
    @classmethod
    def _master(cls, value: str) -> str:
        return _identifier(value, "master name")


class RedisClusterSettings(_Section):
    """``redis.cluster``: any few nodes of the cluster; redis-py discovers the rest and follows MOVED/ASK."""

    addresses: list[str] = Field(default_factory=list)
    password: str | None = None

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        return _check_addresses(value)


class RedisSettings(_Section):
    """``redis``: optional cache, rate limits and short locks. Losing it never breaks correctness.

    At most one of ``url`` (a single server), ``sentinel.addresses`` or ``cluster.addresses``.
    """

    url: str | None = None
    sentinel: RedisSentinelSettings = Field(default_factory=RedisSentinelSettings)
    cluster: RedisClusterSettings = Field(default_factory=RedisClusterSettings)
    #: Seconds one Redis command may take before the request goes on without the cache.
    timeout: float = Field(default=0.5, gt=0, le=30)
    #: Seconds a cached manifest or blob size lives (invalidation is explicit; this bounds memory).
    ttl: int = Field(default=300, ge=1)
    #: Seconds a node trusts the cache generation it last read from the database (see docs/operations.md).
    fence_lease: float = Field(default=2.0, gt=0, le=60)
    key_prefix: str = "moorage"

    @field_validator("key_prefix")
    @classmethod
    def _key_prefix(cls, value: str) -> str:
        return _identifier(value, "key prefix")

    @property
    def mode(self) -> Literal["none", "single", "sentinel", "cluster"]:
        if self.cluster.addresses:
            return "cluster"
        if self.sentinel.addresses:
            return "sentinel"
        return "single" if self.url else "none"

    @model_validator(mode="after")
    def _one_mode(self) -> RedisSettings:
        chosen = [name for name, on in (("url", self.url), ("sentinel", self.sentinel.addresses),
                                        ("cluster", self.cluster.addresses)) if on]
        if len(chosen) > 1:
            raise ValueError(f"configure one of url, sentinel.addresses, cluster.addresses; got {', '.join(chosen)}")
        if self.url and not self.url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("url must be a redis://, rediss:// or unix:// URL")
        return self


class SiteSettings(_Section):
    """``sites.<name>``: one site's own storage (any driver) and, optionally, its own Redis.

    All sites share ``database``; docs/multi-site.md has the model.
    """

    storage: StorageSettings = Field(default_factory=StorageSettings)
    redis: RedisSettings | None = None
    #: A pull here of a blob only another site holds: ``stream`` it through this node, or
    #: ``redirect`` the client to the other site's presigned URL (streams when it cannot presign).
    fallback: Literal["stream", "redirect"] = "stream"


SourceName = Literal["local", "ldap", "oidc", "robot"]


class OidcSettings(_Section):
    """``auth.oidc``: single sign-on through an OpenID Connect provider (docs/sso.md).

    Off while ``issuer`` is unset. Local users (the admin always) and robots keep working beside it.
    """

    #: The provider's issuer URL; discovery reads ``<issuer>/.well-known/openid-configuration``.
    issuer: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    #: Shown on the login page's button: "Log in with <name>".
    name: str = "SSO"
    scopes: list[str] = Field(default_factory=lambda: ["openid", "profile", "email"])
    #: Extra authorization-request parameters (Google: ``access_type: offline``, ``prompt: consent``).
    extra_auth_params: dict[str, str] = Field(default_factory=dict)
    #: Claims read from the ID token (or the userinfo endpoint when the token lacks them).
    username_claim: str = "preferred_username"
    email_claim: str = "email"
    groups_claim: str = "groups"
    #: Members of this group (in ``groups_claim``) are system administrators; re-read at every login
    #: and refresh. Unset: the sysadmin flag is left to administrators.
    admin_group: str | None = None
    #: PEM file of the CA(s) that signed the provider's TLS certificate (a private CA).
    ca_bundle: Path | None = None
    #: The callback URL registered at the provider; by default ``<external base URL>/c/oidc/callback``
    #: from ``http.host`` or a trusted proxy's ``X-Forwarded-Proto/Host``.
    redirect_url: str | None = None
    #: Seconds a CLI secret stays valid after the last web login when the provider gives no refresh token.
    cli_secret_lifetime: int = Field(default=7 * 24 * 3600, ge=60)
    #: Clock skew tolerated on ID-token times, seconds.
    leeway: int = Field(default=60, ge=0, le=600)

    @property
    def enabled(self) -> bool:
        return self.issuer is not None

    @model_validator(mode="after")
    def _complete(self) -> OidcSettings:
        if self.issuer is None:
            return self
        if not self.issuer.startswith(("https://", "http://")):
            raise ValueError("issuer must be the provider's https:// URL (its discovery document names the same)")
        if not self.client_id:
            raise ValueError("client_id is required with issuer: register Moorage as a client at the provider")
        if "openid" not in self.scopes:
            raise ValueError("scopes must include openid (without it the provider returns no ID token)")
        if self.ca_bundle is not None and not self.ca_bundle.is_file():
            raise ValueError(f"ca_bundle {self.ca_bundle} is not a readable file; give the PEM file of the provider's CA")
        if self.redirect_url is not None and not self.redirect_url.startswith(("https://", "http://")):
            raise ValueError("redirect_url must be an absolute URL ending in /c/oidc/callback")
        return self


class AuthSettings(_Section):
    """``auth``: identity and tokens (see docs/configuration.md)."""

    #: Encrypts token-signing keys and secrets at rest; must be the same on every node.
    secret_key: str | None = None
    admin_password: str | None = None
    #: ``none`` is an open registry (anyone may push and pull); ``token`` enables projects and users.
    mode: Literal["none", "token"] = "none"
    token_expiry: int = Field(default=1800, ge=60, le=7 * 24 * 3600)
    service: str = "moorage"
    anonymous_pull: bool = True
    #: Tell authenticated users whether a project they may not see is missing or private (default:
    #: one answer for both, so nobody learns which private projects exist; admins always get the cause).
    disclose_project_existence: bool = False
    #: Login throttling (per user name and client address, shared by every node through the database).
    login_max_failures: int = Field(default=5, ge=1, le=1000)
    login_window: int = Field(default=300, ge=1)
    login_lockout: int = Field(default=300, ge=1)
    #: Identity sources, in the order they are asked about a name that has no account yet
    #: (moorage.auth.sources; ``admin`` always logs in locally). ``robot`` enables robot accounts.
    sources: list[SourceName] = Field(default_factory=lambda: list[SourceName](["local", "robot"]))
    #: The LDAP/AD directory (``ldap`` in ``sources``); see docs/sso.md.
    ldap: LdapSettings | None = None
    #: Single sign-on through an OpenID provider (``oidc`` in ``sources``); see docs/sso.md.
    oidc: OidcSettings = Field(default_factory=OidcSettings)

    @field_validator("sources")
    @classmethod
    def _sources(cls, value: list[SourceName]) -> list[SourceName]:
        twice = sorted({name for name in value if value.count(name) > 1})
        if twice:
            raise ValueError(f"auth.sources lists {', '.join(twice)} more than once; name each source once")
        return value

    @field_validator("service")
    @classmethod
    def _service(cls, value: str) -> str:
        return _identifier(value, "service name")

    @model_validator(mode="after")
    def _token_mode_needs_secret(self) -> AuthSettings:
        if self.mode == "token" and not self.secret_key:
            raise ValueError(
                "auth.secret_key (MOORAGE_SECRET_KEY) is required with auth.mode: token: it encrypts the "
                "token-signing keys in the database; set the same random secret on every node"
            )
        if "oidc" in self.sources and not self.oidc.enabled:
            raise ValueError("auth.sources lists oidc but auth.oidc.issuer is not set; configure the provider "
                             "(docs/sso.md) or remove oidc from auth.sources")
        if self.oidc.enabled and "oidc" not in self.sources:
            raise ValueError("auth.oidc.issuer is set but auth.sources does not list oidc; add it, e.g. "
                             "sources: [local, oidc, robot] (docs/sso.md)")
        if "ldap" in self.sources and self.ldap is None:
            raise ValueError("auth.sources lists ldap but auth.ldap is not set; configure the directory (docs/sso.md)")
        return self


class JobsSettings(_Section):
    """``jobs``: background job runner on every node."""

    enabled: bool = True
    #: A job whose node stopped renewing its lease is run again this long after the last renewal.
    lease_seconds: int = Field(default=60, ge=2)
    poll_seconds: float = Field(default=2.0, gt=0)
    #: Jobs one node runs at the same time.
    concurrency: int = Field(default=4, ge=1, le=64)
    #: Finished jobs and webhook deliveries are deleted this many days after they finished (0: kept).
    history_days: int = Field(default=30, ge=0)


class GcSettings(_Section):
    """``gc``: online garbage collection (docs/gc.md)."""

    #: Nothing younger than this is collected: blobs pushed, linked or published, untagged manifests.
    grace_period: str = "2h"
    #: Blobs marked and deleted per transaction.
    batch_size: int = Field(default=500, ge=1, le=10_000)

    @field_validator("grace_period")
    @classmethod
    def _duration(cls, value: str) -> str:
        if parse_duration(value).total_seconds() < 0:
            raise ValueError("the grace period cannot be negative")
        return value


class OutboundSettings(_Section):
    """``outbound``: TLS trust of every connection Moorage opens (storage, OIDC, LDAP, replication,
    proxy cache, webhooks); see :mod:`moorage.net.tls`."""

    #: PEM file of extra CAs to trust, e.g. the private CA of an internal S3 or LDAP server.
    ca_bundle: str | None = None
    #: Trust the operating system's CA store as well (``false``: only ``ca_bundle``).
    system_cas: bool = True

    @model_validator(mode="after")
    def _readable(self) -> OutboundSettings:
        try:
            self.trust_store().check()
        except TrustStoreError as exc:
            raise ValueError(str(exc)) from None
        return self

    def trust_store(self) -> TrustStore:
        """The :class:`TrustStore` these settings describe (services build one and pass it on)."""
        return TrustStore(self.ca_bundle, self.system_cas)
class ProxySettings(_Section):
    """``proxy``: the proxy cache (docs/proxy-cache.md); projects become caches through the REST API."""

    #: How long a tag fetched upstream is answered without asking the upstream again (a HEAD).
    tag_ttl: str = "5m"
    #: Seconds one upstream request may take (connect: at most 10).
    timeout: float = Field(default=30.0, gt=0, le=3600)
    #: Requests in flight to one upstream endpoint, per process.
    concurrency: int = Field(default=8, ge=1, le=256)
    #: Seconds a blob fetch's single-flight lease lasts unrenewed (a dead node's fetch is retried after it).
    fetch_lease: float = Field(default=30.0, ge=2, le=3600)
    #: Seconds between checks of a pull that waits for another node's fetch of the same blob.
    poll_seconds: float = Field(default=0.1, gt=0, le=10)
    #: Mirror mode: upstream host as clients name it (``docker.io``, ``quay.io``) → proxy project serving it,
    #: chosen by the ``ns=`` query parameter a mirror client sends (containerd does).
    mirrors: dict[str, str] = Field(default_factory=dict)
    #: Mirror mode for clients that send no ``ns=`` (podman/skopeo of containers/image 5.x): a name whose
    #: first component is no project here is served from this proxy project.
    default_mirror: str | None = None
    #: A proxy project over its cache limit (``metadata.proxy_cache_limit``) evicts the least recently pulled
    #: artifacts until its usage is at most this fraction of the limit, so the next cold pull does not evict again.
    eviction_low_water: float = Field(default=0.9, gt=0, le=1)

    @field_validator("tag_ttl")
    @classmethod
    def _ttl(cls, value: str) -> str:
        if parse_duration(value).total_seconds() < 0:
            raise ValueError("the tag TTL cannot be negative")
        return value

    @field_validator("mirrors")
    @classmethod
    def _mirrors(cls, value: dict[str, str]) -> dict[str, str]:
        out = {}
        for host, project in value.items():
            if not host or any(ch.isspace() or ch in "/?#" for ch in host):
                raise ValueError(f"{host!r} must be a registry host as clients name it, e.g. docker.io")
            if not project or "/" in project:
                raise ValueError(f"mirror {host!r}: {project!r} must be the name of a proxy-cache project")
            out[host.strip().lower()] = project
        return out

    @field_validator("default_mirror")
    @classmethod
    def _default_mirror(cls, value: str | None) -> str | None:
        if value is not None and (not value or "/" in value):
            raise ValueError(f"{value!r} must be the name of a proxy-cache project")
        return value


class WebhookSettings(_Section):
    """``webhooks``: delivery of project webhook policies (docs/deploy.md "Webhooks")."""

    #: Seconds one delivery attempt may take (connect, send, answer).
    timeout: float = Field(default=10.0, gt=0, le=120)
    #: Attempts per event and target; retries back off 2, 4, 8, … seconds (at most 5 minutes).
    max_attempts: int = Field(default=5, ge=1, le=20)
    #: Networks targets may not resolve into; the most specific entry of both lists wins, allow on a tie.
    deny_networks: list[str] = Field(default_factory=lambda: list(DEFAULT_DENIED))
    #: Networks opened inside denied ones, e.g. ``[127.0.0.1/32]`` for a receiver on the node itself.
    allow_networks: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _networks(self) -> WebhookSettings:
        self.address_policy()
        return self

    def address_policy(self) -> AddressPolicy:
        """The rule webhook targets are checked with (:mod:`moorage.net.addresses`)."""
        return AddressPolicy.parse(self.deny_networks, self.allow_networks)

class RetentionSettings(_Section):
    """``retention``: tag retention policies (docs/lifecycle.md)."""

    #: Record when each artifact was last pulled (written behind in batches; retention's pull rules need it).
    record_pull_time: bool = True


class QuotaSettings(_Section):
    """``quotas``: the limits a new project gets when its creator gives none (docs/lifecycle.md); -1 is unlimited."""

    #: Bytes of storage (each blob counted once per project); Harbor's ``storage_per_project``.
    storage_per_project: int = Field(default=-1, ge=-1)
    #: Artifacts (manifests) per project.
    count_per_project: int = Field(default=-1, ge=-1)


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["console", "json"] = "console"
    access_log: bool = False


class MetricsSettings(_Section):
    enabled: bool = True


class LimitsSettings(_Section):
    """``limits``: sizes the registry refuses before writing anything."""

    manifest_max_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    #: Largest page of ``tags/list`` and ``_catalog`` answers.
    page_max: int = Field(default=1000, ge=1, le=100_000)


class Settings(_Section):
    """The whole configuration. Construct with :func:`load_settings`."""

    data_dir: Path = Path("moorage-data")
    http: HttpSettings = Field(default_factory=HttpSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    jobs: JobsSettings = Field(default_factory=JobsSettings)
    gc: GcSettings = Field(default_factory=GcSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    quotas: QuotaSettings = Field(default_factory=QuotaSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    outbound: OutboundSettings = Field(default_factory=OutboundSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    proxy: ProxySettings = Field(default_factory=ProxySettings)
    #: This node's site, a key of ``sites`` (docs/multi-site.md); unset: one site, ``storage`` as is.
    site: str | None = None
    sites: dict[str, SiteSettings] = Field(default_factory=dict)
    _shared_redis: RedisSettings | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _own_site(self) -> Settings:
        """Check ``site`` names a defined site, then make that site's storage and Redis this node's."""
        for name in self.sites:
            _identifier(name, "site name")
            if len(name) > 40:  # it names job kinds and rows (docs/multi-site.md)
                raise ValueError(f"sites: site name {name[:50]!r}… is longer than 40 characters; use a short name")
        if self.site is None:
            if self.sites:
                raise ValueError(f"site: name this node's site, one of {', '.join(sorted(self.sites))} (sites is set)")
            return self
        if self.site not in self.sites:
            defined = ", ".join(sorted(self.sites)) or "none"
            raise ValueError(
                f"site: {self.site!r} is not defined in sites (defined: {defined}); add sites.{self.site} with its "
                "storage section or fix the name"
            )
        own = self.sites[self.site]
        self._shared_redis = self.redis
        self.storage = own.storage
        if own.redis is not None:
            self.redis = own.redis
        return self

    def site_redis(self, name: str) -> RedisSettings:
        """The Redis site ``name`` uses: its own, else the top-level ``redis`` section."""
        own = self.sites[name].redis
        return own if own is not None else (self._shared_redis or self.redis)

    @property
    def database_url(self) -> str:
        """The configured URL, or SQLite at ``<data_dir>/moorage.db``."""
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.data_dir / 'moorage.db').resolve()}"


#: A top-level check's message that starts with the key it is about (``site: …``).
_NAMES_ITS_KEY = re.compile(r"[a-z][a-z0-9_.]*: ")


def _format_errors(exc: ValidationError, prefix: str = "") -> str:
    lines = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"] if part != "__root__")
        key = ".".join(part for part in (prefix, location) if part)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key; check the spelling against docs/configuration.md"
        if (key and message.startswith(key + ".")) or (not key and _NAMES_ITS_KEY.match(message)):
            lines.append(message)  # a nested section (or a whole-config check) already named its own keys
        else:
            lines.append(f"{key or '(top level)'}: {message}")
    return "; ".join(lines)


def _known_keys(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    keys: set[tuple[str, ...]] = set()
    for name, field in model.model_fields.items():
        path = (*prefix, name)
        keys.add(path)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys |= _known_keys(annotation, path)
    return keys


#: The variables Kubernetes puts in every pod for each Service (docker links' format), e.g. for a
#: Service ``moorage``: ``MOORAGE_SERVICE_HOST=10.0.0.7``, ``MOORAGE_PORT=tcp://10.0.0.7:5000``,
#: ``MOORAGE_PORT_5000_TCP_ADDR=10.0.0.7``. They are not settings: a release named ``moorage``
#: must not fail to start on them.
_SERVICE_LINK_NAME = re.compile(
    r"MOORAGE(?:_[A-Z0-9]+)*_(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?|PORT(?:_\d+_(?:TCP|UDP|SCTP)(?:_(?:PROTO|PORT|ADDR))?)?)"
)
_SERVICE_LINK_VALUE = re.compile(r"(?:tcp|udp|sctp)://[0-9A-Fa-f.:\[\]]+:\d+|[0-9A-Fa-f.:]+|tcp|udp|sctp")


def _service_link(var: str, value: str) -> bool:
    """Whether ``var=value`` is a Kubernetes service-link variable (name and value both of that shape)."""
    return _SERVICE_LINK_NAME.fullmatch(var) is not None and _SERVICE_LINK_VALUE.fullmatch(value) is not None


def _env_path(var: str, known: set[tuple[str, ...]]) -> tuple[str, ...]:
    if var in ENV_ALIASES:
        return ENV_ALIASES[var]
    body = var[len(ENV_PREFIX) :].lower()
    if "__" in body:
        return tuple(body.split("__"))
    words = body.split("_")
    # Every way of joining neighbouring words with "_" that names a known key.
    matches: list[tuple[str, ...]] = []

    def walk(index: int, path: tuple[str, ...]) -> None:
        if index == len(words):
            if path in known:
                matches.append(path)
            return
        for end in range(index + 1, len(words) + 1):
            candidate = (*path, "_".join(words[index:end]))
            if end == len(words) or any(k[: len(candidate)] == candidate for k in known):
                walk(end, candidate)

    walk(0, ())
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ConfigError(f"{var}: unknown setting; use MOORAGE_SECTION__KEY, see docs/configuration.md")
    options = ", ".join(".".join(m) for m in matches)
    raise ConfigError(f"{var}: ambiguous (could be {options}); write it with '__' between sections")


def _set(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def _env_value(raw: str) -> Any:
    """Environment values are YAML scalars/lists (``true``, ``5``, ``[a, b]``), else plain strings."""
    try:
        return yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        return raw


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read ``path`` (YAML) if given, apply ``MOORAGE_…`` variables, validate.

    Raises :class:`ConfigError` naming every bad key.
    """
    tree: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        tree = loaded
    environ = os.environ if environ is None else environ
    known = _known_keys(Settings)
    # Driver sections are free-form at this level; let MOORAGE_STORAGE__S3__BUCKET through.
    for var in sorted(environ):
        if not var.startswith(ENV_PREFIX) or var.startswith("MOORAGE_TEST_") or var == "MOORAGE_CONFIG":
            continue
        if _service_link(var, environ[var]):
            continue
        body = var[len(ENV_PREFIX) :].lower()
        env_path = tuple(body.split("__")) if body.startswith("storage__") else _env_path(var, known)
        _set(tree, env_path, _env_value(environ[var]))
    try:
        return Settings.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc)) from None
