"""Filesystem-only behaviour: the fsync switch keeps every other guarantee; short writes are never lost."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from moorage.storage import InvalidOffsetError
from moorage.storage.checked import CheckedDriver
from moorage.storage.drivers.filesystem import FilesystemDriver, filesystem_type


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


_MOUNTINFO = """\
27 1 252:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
98 27 0:52 / /srv/registry\\040data rw,relatime shared:50 - nfs4 filer:/export rw,vers=4.2
99 98 0:53 / /srv/registry\\040data/cache rw,relatime shared:51 - tmpfs tmpfs rw
"""


def test_filesystem_type_is_read_from_the_mount_table(tmp_path: Path) -> None:
    assert filesystem_type(Path("/srv/registry data/blobs"), _MOUNTINFO) == "nfs4"
    assert filesystem_type(Path("/srv/registry data/cache/x"), _MOUNTINFO) == "tmpfs"
    assert filesystem_type(Path("/srv/registry"), _MOUNTINFO) == "ext4"
    assert filesystem_type(Path("/srv/registry data"), "") == ""
    # Metadata calls run inline only on a local filesystem (this test's tmp_path is one).
    local = filesystem_type(tmp_path) in {"ext4", "xfs", "btrfs", "tmpfs", "overlay", "zfs"}
    assert FilesystemDriver(tmp_path).inline_metadata is local


_GUARD = 30.0  # seconds the watchdog waits before unblocking a frozen loop (then the test fails)


async def test_a_blocking_open_does_not_freeze_the_event_loop(tmp_path: Path) -> None:
    """On a network filesystem, open() blocks for as long as the server stalls. A FIFO without a
    writer blocks open() the same way, for real: the loop must go on serving other requests."""
    driver = CheckedDriver(FilesystemDriver(tmp_path, fsync=False, inline_metadata=False))
    fifo = tmp_path / "blobs" / "stalled" / "data"
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    loop_ran = threading.Event()

    def watchdog() -> None:
        loop_ran.wait(_GUARD)
        os.close(os.open(fifo, os.O_WRONLY))  # the other end: the blocked open() returns

    guard = threading.Thread(target=watchdog, daemon=True)
    guard.start()
    reading = asyncio.ensure_future(_read_all(driver, "blobs/stalled/data"))
    try:
        await driver.put("manifests/other", b"served meanwhile")
        assert not reading.done()  # still waiting in open(), in a worker thread
        await driver.stat("manifests/other")
        assert [info.path async for info in driver.list("manifests")] == ["manifests/other"]
        loop_ran.set()
        assert await reading == b""
    finally:
        loop_ran.set()
        await asyncio.to_thread(guard.join)
        await asyncio.gather(reading, return_exceptions=True)


async def _read_all(driver: CheckedDriver, path: str) -> bytes:
    return b"".join([chunk async for chunk in driver.read(path)])


async def test_commit_never_extends_with_zeros(tmp_path: Path) -> None:
    """A state that claims more bytes than are stored must not be published padded with zeros."""
    driver = CheckedDriver(FilesystemDriver(tmp_path, fsync=False))
    state = await driver.append("uploads/u/data", None, _chunks(b"0123456789"))
    with pytest.raises(InvalidOffsetError):
        await driver.commit("uploads/u/data", {"size": state["size"] + 10})
    assert not (tmp_path / "uploads/u/data").exists()


@pytest.mark.parametrize(("redirect", "metrics"), [(False, True), (True, False), (False, False)])
async def test_every_wrapper_passes_local_files_through(tmp_path: Path, redirect: bool, metrics: bool) -> None:
    """``storage.redirect.disable`` and the metrics wrapper must not hide the filesystem's files:
    without ``open_local`` blob GETs fall back to streaming through Python (moorage.api.files)."""
    from moorage.storage.drivers.memory import MemoryDriver
    from moorage.storage.factory import build_driver

    driver = build_driver("filesystem", FilesystemDriver.Settings(rootdirectory=str(tmp_path / "s")), tmp_path,
                          redirect=redirect, metrics=metrics)
    await driver.put("a/b", b"bytes")
    local = await driver.open_local("a/b")
    assert local is not None
    with local:
        assert local.read() == b"bytes"
    memory = build_driver("inmemory", MemoryDriver.Settings(), tmp_path, redirect=redirect, metrics=metrics)
    await memory.put("a/b", b"bytes")
    assert await memory.open_local("a/b") is None
