"""Configuration: YAML + environment, and errors that name the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from moorage.config import ConfigError, load_settings


def test_defaults_are_the_embedded_registry() -> None:
    settings = load_settings(environ={})
    assert settings.storage.driver_name == "filesystem"
    assert settings.database_url.startswith("sqlite:///") and settings.database_url.endswith("moorage-data/moorage.db")
    assert settings.http.listen == "127.0.0.1:5000"


def test_yaml_file_with_distribution_storage_keys(tmp_path: Path) -> None:
    config = tmp_path / "moorage.yml"
    config.write_text(
        "http:\n  relativeurls: true\n"
        "storage:\n  filesystem:\n    rootdirectory: /srv/registry\n  delete:\n    enabled: false\n"
        "  redirect:\n    disable: true\n"
    )
    settings = load_settings(config, environ={})
    assert settings.http.relativeurls
    assert settings.storage.driver_settings.rootdirectory == "/srv/registry"  # type: ignore[attr-defined]
    assert not settings.storage.delete.enabled and settings.storage.redirect.disable


def test_environment_overrides_file_and_aliases(tmp_path: Path) -> None:
    config = tmp_path / "moorage.yml"
    config.write_text("http:\n  listen: 0.0.0.0:6000\n")
    settings = load_settings(
        config,
        environ={
            "MOORAGE_HTTP__LISTEN": "127.0.0.1:7000",
            "MOORAGE_DATABASE_URL": "postgresql://u@db/moorage",
            "MOORAGE_LIMITS_MANIFEST_MAX_BYTES": "8192",
            "MOORAGE_HTTP_TRUSTED_PROXIES": "[10.0.0.0/8]",
            "MOORAGE_STORAGE__FILESYSTEM__ROOTDIRECTORY": "/x",
            "MOORAGE_TEST_ANYTHING": "ignored",
        },
    )
    assert settings.http.listen == "127.0.0.1:7000"
    assert settings.database_url == "postgresql://u@db/moorage"
    assert settings.limits.manifest_max_bytes == 8192
    assert settings.http.trusted_proxies == ["10.0.0.0/8"]
    assert settings.storage.driver_settings.rootdirectory == "/x"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"MOORAGE_HTTP__LISTEN": "nonsense"}, "http.listen"),
        ({"MOORAGE_HTTP__LISTNE": "x"}, "http.listne"),
        ({"MOORAGE_NOPE": "1"}, "MOORAGE_NOPE"),
        ({"MOORAGE_LIMITS__MANIFEST_MAX_BYTES": "-5"}, "limits.manifest_max_bytes"),
        ({"MOORAGE_STORAGE__FILESYSTEM__ROOTDIR": "/x"}, "storage.filesystem.rootdir"),
        ({"MOORAGE_STORAGE__S4__BUCKET": "b"}, "s4"),
        ({"MOORAGE_DATABASE_URL": "mysql://x"}, "database.url"),
        ({"MOORAGE_LOG__LEVEL": "loud"}, "log.level"),
    ],
)
def test_bad_keys_and_values_are_named(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=environ)
    assert named in str(caught.value)


def test_two_storage_drivers_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "moorage.yml"
    config.write_text("storage:\n  filesystem: {}\n  inmemory: {}\n")
    with pytest.raises(ConfigError, match="exactly one storage driver"):
        load_settings(config, environ={})


def test_unreadable_or_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yml", environ={})
    bad = tmp_path / "bad.yml"
    bad.write_text("http: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad, environ={})


def test_upload_purging_durations() -> None:
    from datetime import timedelta

    from moorage.config import parse_duration

    assert parse_duration("168h") == timedelta(days=7)
    assert parse_duration("90") == timedelta(seconds=90)
    settings = load_settings(environ={"MOORAGE_STORAGE__MAINTENANCE__UPLOADPURGING__AGE": "2h"})
    assert settings.storage.maintenance.uploadpurging.age == "2h"
    with pytest.raises(ConfigError, match="storage.maintenance.uploadpurging.age"):
        load_settings(environ={"MOORAGE_STORAGE__MAINTENANCE__UPLOADPURGING__AGE": "soon"})


_LDAP = {"MOORAGE_AUTH__MODE": "token", "MOORAGE_SECRET_KEY": "k", "MOORAGE_AUTH__SOURCES": "[local, ldap]"}


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        (_LDAP, "auth.ldap is not set"),
        ({**_LDAP, "MOORAGE_AUTH__SOURCES": "[local, local]"}, "lists local more than once"),
        ({**_LDAP, "MOORAGE_AUTH__SOURCES": "[local, kerberos]"}, "auth.sources"),
        ({**_LDAP, "MOORAGE_AUTH__LDAP__URL": "http://dir", "MOORAGE_AUTH__LDAP__USER_BASE": "dc=x"}, "ldap://"),
        ({**_LDAP, "MOORAGE_AUTH__LDAP__URL": "ldaps://dir", "MOORAGE_AUTH__LDAP__USER_BASE": "dc=x",
          "MOORAGE_AUTH__LDAP__START_TLS": "true"}, "start_tls"),
        ({**_LDAP, "MOORAGE_AUTH__LDAP__URL": "ldap://dir", "MOORAGE_AUTH__LDAP__USER_BASE": "dc=x",
          "MOORAGE_AUTH__LDAP__USER_FILTER": "objectClass=person"}, "parentheses"),
        ({**_LDAP, "MOORAGE_AUTH__LDAP__URL": "ldap://dir", "MOORAGE_AUTH__LDAP__USER_BASE": "dc=x",
          "MOORAGE_AUTH__LDAP__BIND_DN": "cn=svc"}, "bind_password"),
        ({**_LDAP, "MOORAGE_AUTH__LDAP__URL": "ldap://dir", "MOORAGE_AUTH__LDAP__USER_BASE": "dc=x",
          "MOORAGE_AUTH__LDAP__CA_FILE": "/nonexistent/ca.pem"}, "ca_file"),
    ],
)
def test_bad_identity_sources_are_named(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=environ)
    assert named in str(caught.value)


def test_kubernetes_service_links_of_a_release_named_moorage_are_not_settings() -> None:
    """A pod of a Service ``moorage`` gets ``MOORAGE_PORT=tcp://…`` and friends; start-up must not fail on them."""
    links = {
        "MOORAGE_SERVICE_HOST": "10.96.0.7", "MOORAGE_SERVICE_PORT": "5000", "MOORAGE_SERVICE_PORT_HTTP": "5000",
        "MOORAGE_PORT": "tcp://10.96.0.7:5000", "MOORAGE_PORT_5000_TCP": "tcp://10.96.0.7:5000",
        "MOORAGE_PORT_5000_TCP_PROTO": "tcp", "MOORAGE_PORT_5000_TCP_PORT": "5000",
        "MOORAGE_PORT_5000_TCP_ADDR": "10.96.0.7", "MOORAGE_REGISTRY_SERVICE_HOST": "fd00::7",
    }
    assert load_settings(environ=links) == load_settings(environ={})
    with pytest.raises(ConfigError):  # the same names with a value that is no address stay errors
        load_settings(environ={"MOORAGE_PORT": "5000x"})
