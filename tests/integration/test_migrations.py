"""Migration 0007 (repositories → project_id) on SQLite and PostgreSQL: back-fill, downgrade, upgrade again.

Each run uses a fresh database, since it steps the schema back and forth.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, inspect, text

from moorage.db.migrate import current_heads, downgrade, pending, upgrade
from moorage.db.session import configure_sqlite, sync_url


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    admin = str(request.getfixturevalue("postgres_admin_url"))
    name = f"moorage_migrate_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_project_link_is_back_filled_and_downgrades_without_losing_rows(fresh_url: str) -> None:
    upgrade(fresh_url, "0002_identity")
    upgrade(fresh_url, "0003_jobs")
    engine = create_engine(sync_url(fresh_url))
    if engine.dialect.name == "sqlite":
        configure_sqlite(engine)  # foreign keys on, as the application runs
    now = datetime.now(UTC)
    try:
        with engine.begin() as conn:
            for pid, name in ((1, "a_b"), (2, "axb")):
                conn.execute(
                    text("INSERT INTO projects (id, name, public, created_at, updated_at) VALUES (:i, :n, true, :t, :t)"),
                    {"i": pid, "n": name, "t": now},
                )
            # '_' must not match like a LIKE wildcard; a name that only starts with the project's
            # name (a_bc/...) or has no project stays without one
            for rid, name in ((1, "a_b/x"), (2, "axb/y"), (3, "a_bc/z"), (4, "free/w"), (5, "single")):
                conn.execute(
                    text("INSERT INTO repositories (id, name, created_at) VALUES (:i, :n, :t)"),
                    {"i": rid, "n": name, "t": now},
                )
            conn.execute(
                text(
                    "INSERT INTO manifests (id, repository_id, digest, media_type, size, payload, created_at) "
                    "VALUES (1, 1, 'sha256:00', 'application/json', 1, :p, :t)"
                ),
                {"p": b"{}", "t": now},
            )
        upgrade(fresh_url)
        assert "0010_gc_executions" in current_heads(fresh_url)  # after 0003_jobs
        assert not pending(fresh_url)  # every head reached (0008 follows 0007, later ones follow it)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT name, project_id FROM repositories ORDER BY id")).all()
            assert [tuple(r) for r in rows] == [
                ("a_b/x", 1), ("axb/y", 2), ("a_bc/z", None), ("free/w", None), ("single", None)
            ]
        assert "ix_repositories_project_id" in {i["name"] for i in inspect(engine).get_indexes("repositories")}
        assert {fk["referred_table"] for fk in inspect(engine).get_foreign_keys("repositories")} == {"projects"}

        downgrade(fresh_url, "0002_identity")
        inspector = inspect(engine)
        assert "project_id" not in {c["name"] for c in inspector.get_columns("repositories")}
        assert {"jobs", "projects"} <= set(inspector.get_table_names())
        with engine.connect() as conn:  # the table rebuild on SQLite cascaded into nothing
            assert conn.execute(text("SELECT count(*) FROM repositories")).scalar_one() == 5
            assert conn.execute(text("SELECT count(*) FROM manifests")).scalar_one() == 1

        upgrade(fresh_url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT project_id FROM repositories WHERE id = 1")).scalar_one() == 1
            assert conn.execute(text("SELECT count(*) FROM manifests")).scalar_one() == 1
    finally:
        engine.dispose()


def test_immutable_tag_rules_table_comes_and_goes_with_its_migration(fresh_url: str) -> None:
    """0009 adds ``immutable_tag_rules`` (rows deleted with their project); its downgrade drops only it."""
    upgrade(fresh_url, "0008_gc_blob_state")
    engine = create_engine(sync_url(fresh_url))
    if fresh_url.startswith("sqlite"):
        configure_sqlite(engine)
    try:
        assert "immutable_tag_rules" not in inspect(engine).get_table_names()
        upgrade(fresh_url, "0009_immutable_tag_rules")
        now = datetime.now(UTC)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO projects (id, name, public, created_at, updated_at) "
                              "VALUES (1, 'p', false, :t, :t)"), {"t": now})
            conn.execute(text("INSERT INTO immutable_tag_rules (project_id, tag_pattern, repository_pattern, "
                              "disabled, created_at) VALUES (1, 'v*', '**', false, :t)"), {"t": now})
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM projects WHERE id = 1"))
            assert conn.execute(text("SELECT count(*) FROM immutable_tag_rules")).scalar_one() == 0
        downgrade(fresh_url, "0008_gc_blob_state")
        assert "immutable_tag_rules" not in inspect(engine).get_table_names()
        assert "projects" in inspect(engine).get_table_names()
        upgrade(fresh_url, "0009_immutable_tag_rules")
        assert "immutable_tag_rules" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_retention_migration_adds_pull_times_and_its_tables_and_downgrades_cleanly(fresh_url: str) -> None:
    """0012 adds ``manifests.pulled_at`` and the retention and job-stop tables; the downgrade keeps every manifest."""
    upgrade(fresh_url, "0016_webhooks")
    upgrade(fresh_url, "0010_gc_executions")
    engine = create_engine(sync_url(fresh_url))
    if engine.dialect.name == "sqlite":
        configure_sqlite(engine)
    tables = {"retention_policies", "retention_executions", "retention_tasks", "job_stops"}
    now = datetime.now(UTC)
    try:
        assert not tables & set(inspect(engine).get_table_names())
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO repositories (id, name, created_at) VALUES (1, 'p/app', :t)"), {"t": now})
            conn.execute(text("INSERT INTO manifests (id, repository_id, digest, media_type, size, payload, created_at) "
                              "VALUES (1, 1, 'sha256:00', 'application/json', 2, :p, :t)"), {"p": b"{}", "t": now})
        upgrade(fresh_url, "0012_retention")
        assert tables <= set(inspect(engine).get_table_names())
        with engine.begin() as conn:
            conn.execute(text("UPDATE manifests SET pulled_at = :t"), {"t": now})
            conn.execute(text("INSERT INTO projects (id, name, public, created_at, updated_at) "
                              "VALUES (1, 'p', false, :t, :t)"), {"t": now})
            conn.execute(text("INSERT INTO retention_policies (project_id, algorithm, rules, cron, created_at, "
                              "updated_at) VALUES (1, 'or', '[]', '', :t, :t)"), {"t": now})
        with engine.begin() as conn:  # the policy goes with its project
            conn.execute(text("DELETE FROM projects WHERE id = 1"))
            assert conn.execute(text("SELECT count(*) FROM retention_policies")).scalar_one() == 0
        downgrade(fresh_url, "0016_webhooks")
        inspector = inspect(engine)
        assert not tables & set(inspector.get_table_names())
        assert "pulled_at" not in {c["name"] for c in inspector.get_columns("manifests")}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM manifests")).scalar_one() == 1
        upgrade(fresh_url, "0011_quotas")
        assert "0011_quotas" in current_heads(fresh_url)
    finally:
        engine.dispose()


def test_oidc_tables_come_and_go_with_their_migration(fresh_url: str) -> None:
    """0013 adds ``oidc_identities`` (deleted with their user) and ``oidc_logins``; its downgrade drops only them."""
    upgrade(fresh_url, "0012_retention")
    engine = create_engine(sync_url(fresh_url))
    if fresh_url.startswith("sqlite"):
        configure_sqlite(engine)
    try:
        assert "oidc_identities" not in inspect(engine).get_table_names()
        upgrade(fresh_url, "0013_oidc")
        now = datetime.now(UTC)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO users (id, username, password_hash, sysadmin, uid, source, created_at, "
                              "updated_at) VALUES (7, 'o', '!oidc:x', false, 'u7', 'oidc', :t, :t)"), {"t": now})
            conn.execute(text("INSERT INTO oidc_identities (user_id, issuer, subject, verified_until, "
                              "secret_expires_at, revoked, groups, last_login_at, created_at, updated_at) "
                              "VALUES (7, 'https://idp', 's', :t, :t, false, '[]', :t, :t, :t)"), {"t": now})
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM users WHERE id = 7"))
            assert conn.execute(text("SELECT count(*) FROM oidc_identities")).scalar_one() == 0
        downgrade(fresh_url, "0012_retention")
        tables = inspect(engine).get_table_names()
        assert "oidc_identities" not in tables and "oidc_logins" not in tables and "users" in tables
        upgrade(fresh_url, "0013_oidc")
        assert {"oidc_identities", "oidc_logins"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_quotas_are_back_filled_with_each_blob_counted_once_and_dropped_by_the_downgrade(fresh_url: str) -> None:
    """0011 gives every project an unlimited quota and its usage: each blob linked into its repositories, once."""
    upgrade(fresh_url, "0013_oidc")
    engine = create_engine(sync_url(fresh_url))
    if fresh_url.startswith("sqlite"):
        configure_sqlite(engine)
    now = datetime.now(UTC)
    try:
        with engine.begin() as conn:
            for pid, name in ((1, "p"), (2, "q")):
                conn.execute(text("INSERT INTO projects (id, name, public, created_at, updated_at) "
                                  "VALUES (:i, :n, false, :t, :t)"), {"i": pid, "n": name, "t": now})
            for rid, name, project in ((1, "p/a", 1), (2, "p/b", 1), (3, "q/a", 2), (4, "free", None)):
                conn.execute(text("INSERT INTO repositories (id, name, project_id, created_at) VALUES (:i, :n, :p, :t)"),
                             {"i": rid, "n": name, "p": project, "t": now})
            for bid, size in ((1, 100), (2, 20), (3, 3)):
                conn.execute(text("INSERT INTO blobs (id, digest, size, created_at, state, state_at) "
                                  "VALUES (:i, :d, :s, :t, 'active', :t)"),
                             {"i": bid, "d": f"sha256:{bid:064x}", "s": size, "t": now})
            # blob 1 in both repositories of p (counted once), blob 2 in p and q, blob 3 only outside projects
            for rid, bid in ((1, 1), (2, 1), (2, 2), (3, 2), (4, 3)):
                conn.execute(text("INSERT INTO repository_blobs (repository_id, blob_id, created_at) "
                                  "VALUES (:r, :b, :t)"), {"r": rid, "b": bid, "t": now})
        upgrade(fresh_url, "0011_quotas")
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT project_id, storage_limit, count_limit, storage_used FROM quotas "
                                     "ORDER BY project_id")).all()
            assert [tuple(r) for r in rows] == [(1, -1, -1, 120), (2, -1, -1, 20)]
            assert conn.execute(text("SELECT count(*) FROM project_blobs")).scalar_one() == 3
        downgrade(fresh_url, "0013_oidc")
        assert not {"quotas", "project_blobs"} & set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM repository_blobs")).scalar_one() == 5
        upgrade(fresh_url)
        assert "quotas" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_session_revocations_and_disabled_users_come_and_go_with_0018(fresh_url: str) -> None:
    """0018 adds ``revoked_sessions`` and ``users.disabled`` (existing users enabled); its downgrade drops
    only them and keeps the users."""
    upgrade(fresh_url, "0015_registries_proxy")
    engine = create_engine(sync_url(fresh_url))
    now = datetime.now(UTC)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO users (id, username, password_hash, sysadmin, uid, created_at, updated_at) "
                              "VALUES (7, 'u', 'x', false, 'abc', :t, :t)"), {"t": now})
        upgrade(fresh_url, "0018_ui_sessions")
        with engine.begin() as conn:
            assert conn.execute(text("SELECT disabled FROM users WHERE id = 7")).scalar_one() in (False, 0)
            conn.execute(text("INSERT INTO revoked_sessions (jti, uid, expires_at) VALUES ('j', 'abc', :t)"), {"t": now})
        downgrade(fresh_url, "0015_registries_proxy")
        inspector = inspect(engine)
        assert "revoked_sessions" not in inspector.get_table_names()
        assert "disabled" not in {c["name"] for c in inspector.get_columns("users")}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT username FROM users WHERE id = 7")).scalar_one() == "u"
        upgrade(fresh_url)
        assert "revoked_sessions" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_replication_tables_come_and_go_with_0017(fresh_url: str) -> None:
    """0017 adds the replication policies, executions and tasks; its downgrade drops only them."""
    upgrade(fresh_url, "0017_replication")
    engine = create_engine(sync_url(fresh_url))
    tables = {"replication_policies", "replication_executions", "replication_tasks"}
    try:
        assert tables <= set(inspect(engine).get_table_names())
        downgrade(fresh_url, "0018_ui_sessions")
        names = set(inspect(engine).get_table_names())
        assert not tables & names and {"registries", "revoked_sessions"} <= names
        upgrade(fresh_url)
        assert tables <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_blob_sites_comes_and_goes_with_0019(fresh_url: str) -> None:
    """0019 adds ``blob_sites`` (multi-site); its downgrade drops only it, blobs stay."""
    upgrade(fresh_url, "0019_sites")
    engine = create_engine(sync_url(fresh_url))
    try:
        assert "blob_sites" in set(inspect(engine).get_table_names())
        downgrade(fresh_url, "0017_replication")
        names = set(inspect(engine).get_table_names())
        assert "blob_sites" not in names and {"blobs", "replication_tasks"} <= names
        upgrade(fresh_url)
        assert "blob_sites" in set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_proxy_cache_limit_comes_and_goes_with_0021(fresh_url: str) -> None:
    """0021 adds ``proxy_projects.cache_limit`` (-1, no limit, for existing proxy projects) and the pointer to
    the latest eviction job; its downgrade drops only them."""
    upgrade(fresh_url, "0019_sites")
    engine = create_engine(sync_url(fresh_url))
    now = datetime.now(UTC)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO projects (id, name, public, created_at, updated_at) "
                              "VALUES (1, 'hub', true, :t, :t)"), {"t": now})
            conn.execute(text("INSERT INTO proxy_projects (project_id, registry_id, registry_name, created_at) "
                              "VALUES (1, NULL, 'gone', :t)"), {"t": now})
        upgrade(fresh_url, "0021_proxy_cache_limit")
        with engine.connect() as conn:
            row = conn.execute(text("SELECT cache_limit, evict_job_id FROM proxy_projects")).one()
        assert tuple(row) == (-1, None)
        downgrade(fresh_url, "0019_sites")
        columns = {c["name"] for c in inspect(engine).get_columns("proxy_projects")}
        assert "cache_limit" not in columns and "evict_job_id" not in columns and "registry_name" in columns
        with engine.connect() as conn:
            assert conn.execute(text("SELECT registry_name FROM proxy_projects")).scalar_one() == "gone"
        upgrade(fresh_url)
        assert "0020_manifest_digest_index" in current_heads(fresh_url)  # 0020 follows 0021
    finally:
        engine.dispose()


def test_manifest_digest_index_comes_and_goes_with_0020(fresh_url: str) -> None:
    """0020 (after 0021, so 0021 is no head any more) indexes ``manifests.digest`` alone; its downgrade drops only that index."""
    upgrade(fresh_url)
    heads = current_heads(fresh_url)
    assert "0020_manifest_digest_index" in heads and "0021_proxy_cache_limit" not in heads
    engine = create_engine(sync_url(fresh_url))
    try:
        indexes = {i["name"]: i["column_names"] for i in inspect(engine).get_indexes("manifests")}
        assert indexes["ix_manifests_digest"] == ["digest"]
        downgrade(fresh_url, "0021_proxy_cache_limit")
        indexes = {i["name"]: i["column_names"] for i in inspect(engine).get_indexes("manifests")}
        assert "ix_manifests_digest" not in indexes and "ix_manifests_subject" in indexes
        upgrade(fresh_url)
        assert "0020_manifest_digest_index" in current_heads(fresh_url)
    finally:
        engine.dispose()
