"""``site`` and ``sites`` (docs/multi-site.md): a node takes its site's storage and Redis; a site the
map does not define is a start-up error naming the field; single-site configs are unchanged."""

from __future__ import annotations

import pytest

from moorage.config import ConfigError, load_settings

SITES = {
    "MOORAGE_SITES__A__STORAGE__FILESYSTEM__ROOTDIRECTORY": "/srv/a",
    "MOORAGE_SITES__B__STORAGE__FILESYSTEM__ROOTDIRECTORY": "/srv/b",
    "MOORAGE_SITES__B__REDIS__URL": "redis://redis-b:6379/0",
    "MOORAGE_REDIS_URL": "redis://shared:6379/0",
}


def test_a_node_takes_its_sites_storage_and_redis() -> None:
    a = load_settings(environ={**SITES, "MOORAGE_SITE": "a"})
    b = load_settings(environ={**SITES, "MOORAGE_SITE": "b"})
    assert a.site == "a" and a.storage.driver_settings.rootdirectory == "/srv/a"  # type: ignore[attr-defined]
    assert b.storage.driver_settings.rootdirectory == "/srv/b"  # type: ignore[attr-defined]
    assert a.redis.url == "redis://shared:6379/0"  # no Redis of its own: the shared one
    assert b.redis.url == "redis://redis-b:6379/0"
    assert a.site_redis("b").url == "redis://redis-b:6379/0" and b.site_redis("a").url == "redis://shared:6379/0"


def test_a_site_the_map_does_not_define_fails_naming_the_field() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={**SITES, "MOORAGE_SITE": "c"})
    assert str(raised.value).startswith("site: 'c' is not defined in sites (defined: a, b)")
    with pytest.raises(ConfigError, match=r"^site: 'a' is not defined in sites \(defined: none\)"):
        load_settings(environ={"MOORAGE_SITE": "a"})


def test_sites_without_naming_this_nodes_site_fail() -> None:
    with pytest.raises(ConfigError, match=r"^site: name this node's site, one of a, b"):
        load_settings(environ=SITES)


def test_a_bad_key_in_a_sites_storage_is_named() -> None:
    with pytest.raises(ConfigError, match=r"sites\.a\.storage.*s3\.bukcet|sites.*bukcet"):
        load_settings(environ={"MOORAGE_SITE": "a", "MOORAGE_SITES__A__STORAGE__S3__BUKCET": "x"})


def test_single_site_configs_are_unchanged() -> None:
    settings = load_settings(environ={"MOORAGE_STORAGE__FILESYSTEM__ROOTDIRECTORY": "/srv/one"})
    assert settings.site is None and settings.sites == {}
    assert settings.storage.driver_settings.rootdirectory == "/srv/one"  # type: ignore[attr-defined]
