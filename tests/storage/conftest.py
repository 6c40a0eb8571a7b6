"""The ``driver`` fixture: every storage driver the shared suite runs against."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from moorage.storage.checked import CheckedDriver
from moorage.storage.drivers.filesystem import FilesystemDriver
from moorage.storage.drivers.memory import MemoryDriver


@pytest.fixture(params=["inmemory", "filesystem"])
async def driver(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CheckedDriver]:
    if request.param == "inmemory":
        yield CheckedDriver(MemoryDriver())
    else:
        yield CheckedDriver(FilesystemDriver(tmp_path / "storage"))
