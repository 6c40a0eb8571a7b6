"""The GC migration goes down and up again on both databases, and keeps what it can."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from moorage.db.migrate import current_heads, downgrade, upgrade
from moorage.db.session import sync_url


def test_blob_state_migration_downgrades_and_upgrades(fresh_database_url: str) -> None:
    url = fresh_database_url
    engine = sa.create_engine(sync_url(url))
    stamp = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        with engine.begin() as conn:
            for index, state in enumerate(("active", "pending", "deleting")):
                conn.execute(
                    sa.text(
                        "INSERT INTO blobs (digest, size, created_at, state, state_at) "
                        "VALUES (:digest, 1, :stamp, :state, :stamp)"
                    ),
                    {"digest": f"sha256:{index:064x}", "stamp": stamp, "state": state},
                )
            conn.execute(sa.text("INSERT INTO repositories (id, name, created_at) VALUES (1, 'a/b', :t)"), {"t": stamp})
            conn.execute(
                sa.text("INSERT INTO repository_blobs (repository_id, blob_id, created_at) SELECT 1, id, :t FROM blobs"),
                {"t": stamp},
            )
        downgrade(url, "0007_repository_project")  # below 0008 and whatever follows it (0009)
        assert "0008_gc_blob_state" not in current_heads(url)
        with engine.connect() as conn:
            columns = {column["name"] for column in sa.inspect(conn).get_columns("blobs")}
            kept = conn.execute(sa.text("SELECT digest FROM blobs")).scalars().all()
            links = conn.execute(sa.text("SELECT count(*) FROM repository_blobs")).scalar_one()
        assert "state" not in columns and "state_at" not in columns
        assert kept == [f"sha256:{0:064x}"]  # half-published and half-deleted rows do not survive
        assert links == 1  # nor do their links (SQLite migrations run without cascades)
        upgrade(url)
        with engine.connect() as conn:
            row = conn.execute(sa.text("SELECT state, state_at, created_at FROM blobs")).one()
        assert row.state == "active" and row.state_at == row.created_at
    finally:
        engine.dispose()
