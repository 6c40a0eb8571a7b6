"""Filesystem-only behaviour: the fsync switch keeps every other guarantee."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from moorage.storage.checked import CheckedDriver
from moorage.storage.drivers.filesystem import FilesystemDriver


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_without_fsync_objects_are_still_published_atomically(tmp_path: Path) -> None:
    driver = CheckedDriver(FilesystemDriver(tmp_path, fsync=False))
    state = await driver.append("uploads/u/data", None, _chunks(b"abc", b"def"))
    assert not (tmp_path / "uploads/u/data").exists()  # unfinished writes are invisible
    await driver.commit("uploads/u/data", state)
    await driver.move("uploads/u/data", "blobs/sha256/ab/abcdef/data")
    assert (tmp_path / "blobs/sha256/ab/abcdef/data").read_bytes() == b"abcdef"
    assert [i.path async for i in driver.list("uploads")] == []


def test_fsync_is_configurable_and_on_by_default() -> None:
    from moorage.config import load_settings

    assert load_settings(environ={}).storage.driver_settings.fsync is True  # type: ignore[attr-defined]
    off = load_settings(environ={"MOORAGE_STORAGE__FILESYSTEM__FSYNC": "false"})
    assert off.storage.driver_settings.fsync is False  # type: ignore[attr-defined]
