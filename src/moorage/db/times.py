"""Timestamps read back from the database, the same on both backends.

SQLite returns naive datetimes for timezone-aware columns; every value was written in UTC, so
reading one back means attaching UTC. Services call these instead of each keeping its own copy.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["aware", "aware_or_none"]


def aware(value: datetime) -> datetime:
    """``value`` with UTC attached when the backend (SQLite) returned it naive."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def aware_or_none(value: datetime | None) -> datetime | None:
    """:func:`aware` for a nullable column."""
    return None if value is None else aware(value)
