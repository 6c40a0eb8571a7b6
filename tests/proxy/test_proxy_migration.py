"""Migration 0015_registries_proxy: its tables come with the upgrade and go with the downgrade."""

from __future__ import annotations

from sqlalchemy import create_engine, inspect

from moorage.db.migrate import current_heads, downgrade, upgrade
from moorage.db.session import sync_url
from tests.integration.test_migrations import fresh_url

__all__ = ["fresh_url"]

TABLES = {"registries", "proxy_projects", "proxy_manifests", "proxy_tags", "proxy_fetches"}


def test_proxy_tables_come_and_go_with_their_migration(fresh_url: str) -> None:
    upgrade(fresh_url, "0015_registries_proxy")
    assert "0015_registries_proxy" in current_heads(fresh_url)
    engine = create_engine(sync_url(fresh_url))
    try:
        assert TABLES <= set(inspect(engine).get_table_names())
        downgrade(fresh_url, "0011_quotas")
        assert not TABLES & set(inspect(engine).get_table_names())
        upgrade(fresh_url, "0015_registries_proxy")
        assert TABLES <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
