"""The metadata store: SQLAlchemy 2 Core tables, engines, and Alembic migrations.

The database is the source of truth for repositories, manifests, tags, blob links and
upload sessions (DESIGN.md); storage only holds bytes.
"""
