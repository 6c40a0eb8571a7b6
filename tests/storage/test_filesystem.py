"""Filesystem-only behaviour: the fsync switch keeps every other guarantee; short writes are never lost."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

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


async def test_many_small_chunks_exceed_no_writev_limit(tmp_path: Path) -> None:
    """3,000 one-byte chunks land in one write batch: more buffers than writev's IOV_MAX (1024)."""
    driver = CheckedDriver(FilesystemDriver(tmp_path, fsync=False))
    data = os.urandom(3000)
    state = await driver.append("uploads/u/data", None, _chunks(*(data[i : i + 1] for i in range(len(data)))))
    await driver.commit("uploads/u/data", state)
    assert (tmp_path / "uploads/u/data").read_bytes() == data


async def test_short_writes_are_continued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writev that writes only part of what it was given (as a full disk or a signal makes it do)."""
    real_writev = os.writev
    calls: list[int] = []

    def short_writev(fd: int, buffers: Sequence[bytes | memoryview]) -> int:
        calls.append(fd)
        first = bytes(buffers[0])
        return real_writev(fd, [first[: max(1, len(first) // 3)]])

    monkeypatch.setattr(os, "writev", short_writev)
    driver = CheckedDriver(FilesystemDriver(tmp_path, fsync=False))
    data = os.urandom(100_000)
    state = await driver.append("uploads/u/data", None, _chunks(data[:40_000], data[40_000:]))
    state = await driver.append("uploads/u/data", state, _chunks(b"tail"))
    await driver.commit("uploads/u/data", state)
    assert (tmp_path / "uploads/u/data").read_bytes() == data + b"tail"
    assert len(calls) > 3  # the short counts really happened


_FILE_SIZE_LIMIT = """
import asyncio, resource, signal, sys
from pathlib import Path
from moorage.storage import StorageError
from moorage.storage.drivers.filesystem import FilesystemDriver

async def chunks():
    yield b"x" * 200_000

async def main():
    driver = FilesystemDriver(Path(sys.argv[1]), fsync=False)
    try:
        state = await driver.append("uploads/u/data", None, chunks())
    except StorageError as exc:
        print("refused:", exc)
    else:
        print("accepted:", state)

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
asyncio.run(main())
"""


def test_a_real_short_write_is_refused_not_recorded(tmp_path: Path) -> None:
    """RLIMIT_FSIZE cuts the first write short at 64 KiB (the kernel returns a short count) and
    fails the next one: the append must fail instead of reporting 200,000 bytes written."""
    result = subprocess.run(
        [sys.executable, "-c", _FILE_SIZE_LIMIT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.startswith("refused:"), result.stdout + result.stderr
    assert "File too large" in result.stdout
