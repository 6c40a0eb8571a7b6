"""``history.prune`` is scheduled from ``jobs.history_days`` (0: never).

What the prune removes and keeps is tested with real webhook deliveries in
tests/integration/test_webhooks.py (``test_old_finished_rows_are_pruned_and_everything_else_is_kept``).
"""

from __future__ import annotations

from pathlib import Path

from moorage.jobs.history import HISTORY_PRUNE
from tests.integration.test_identity_helpers import make_idp


async def test_history_days_zero_schedules_no_prune(database_url: str, tmp_path: Path) -> None:
    async for value in make_idp(database_url, tmp_path, MOORAGE_JOBS__HISTORY_DAYS="0"):
        assert HISTORY_PRUNE not in {p.kind for p in value.services.periodic_jobs}
    async for value in make_idp(database_url, tmp_path / "default"):
        assert [p.payload for p in value.services.periodic_jobs if p.kind == HISTORY_PRUNE] == [{"days": 30}]
