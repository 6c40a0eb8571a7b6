"""The one test suite every storage driver must pass (Distribution's ``driver/testsuites``).

``tests/storage/test_drivers.py`` runs it against each driver through the ``driver``
fixture; a new driver joins by adding a parameter there, never by copying tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from moorage.storage import InvalidOffsetError, LocalFiles, PathNotFoundError, StorageDriver


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _read_all(driver: StorageDriver, path: str, offset: int = 0, length: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in driver.read(path, offset, length)])


def _key(*parts: str) -> str:
    return "/".join(("suite", uuid.uuid4().hex, *parts))


async def test_put_then_read_and_stat(driver: StorageDriver) -> None:
    path = _key("small")
    await driver.put(path, b"hello world")
    assert await _read_all(driver, path) == b"hello world"
    info = await driver.stat(path)
    assert info.size == 11 and not info.is_dir
    await driver.put(path, b"replaced")
    assert await _read_all(driver, path) == b"replaced"


async def test_empty_object(driver: StorageDriver) -> None:
    path = _key("empty")
    await driver.put(path, b"")
    assert await _read_all(driver, path) == b""
    assert (await driver.stat(path)).size == 0


async def test_missing_paths_raise_path_not_found(driver: StorageDriver) -> None:
    path = _key("missing")
    with pytest.raises(PathNotFoundError):
        await driver.stat(path)
    with pytest.raises(PathNotFoundError):
        await _read_all(driver, path)
    with pytest.raises(PathNotFoundError):
        await driver.delete(path)
    with pytest.raises(PathNotFoundError):
        await driver.move(path, _key("elsewhere"))


async def test_ranged_reads(driver: StorageDriver) -> None:
    path = _key("ranged")
    data = os.urandom(3 * 1024 * 1024 + 17)
    await driver.put(path, data)
    assert await _read_all(driver, path, 5) == data[5:]
    assert await _read_all(driver, path, 1000, 4096) == data[1000:5096]
    assert await _read_all(driver, path, len(data)) == b""
    assert await _read_all(driver, path, len(data) - 3, 100) == data[-3:]
    with pytest.raises(InvalidOffsetError):
        await _read_all(driver, path, len(data) + 1)


async def test_append_in_many_small_chunks_then_commit_and_move(driver: StorageDriver) -> None:
    """Chunks far below S3's 5 MiB part minimum must still assemble into one object."""
    upload = _key("upload", "data")
    final = _key("final", "data")
    pieces = [os.urandom(n) for n in (1, 70_000, 1024 * 1024, 3, 6 * 1024 * 1024 + 5, 512 * 1024)]
    state = None
    for piece in pieces:
        state = await driver.append(upload, state, _chunks(piece[: len(piece) // 2], piece[len(piece) // 2 :]))
    assert state is not None and state["size"] == sum(map(len, pieces))
    with pytest.raises(PathNotFoundError):
        await driver.stat(final)
    await driver.commit(upload, state)
    await driver.commit(upload, state)  # a retry whose first answer was lost changes nothing
    await driver.move(upload, final)
    data = b"".join(pieces)
    assert hashlib.sha256(await _read_all(driver, final)).digest() == hashlib.sha256(data).digest()
    assert (await driver.stat(final)).size == len(data)
    with pytest.raises(PathNotFoundError):
        await driver.stat(upload)


async def test_append_state_survives_serialisation(driver: StorageDriver) -> None:
    """The state goes through JSON (the database) between chunks; nothing may depend on identity."""
    import json

    upload = _key("json", "data")
    state = await driver.append(upload, None, _chunks(b"a" * 10))
    state = json.loads(json.dumps(state))
    state = await driver.append(upload, state, _chunks(b"b" * 10))
    state = json.loads(json.dumps(state))
    await driver.commit(upload, state)
    assert await _read_all(driver, upload) == b"a" * 10 + b"b" * 10


async def test_retried_append_discards_unpersisted_bytes(driver: StorageDriver) -> None:
    """A chunk whose new state was never saved (client cut off, node died) is replaced by the retry."""
    upload = _key("retry", "data")
    first = await driver.append(upload, None, _chunks(b"x" * 100))
    await driver.append(upload, first, _chunks(b"lost" * 1000))  # state of this call is dropped
    second = await driver.append(upload, first, _chunks(b"y" * 50))
    assert second["size"] == 150
    await driver.commit(upload, second)
    assert await _read_all(driver, upload) == b"x" * 100 + b"y" * 50


async def test_empty_append_then_commit(driver: StorageDriver) -> None:
    upload = _key("zero", "data")
    state = await driver.append(upload, None, _chunks())
    assert state["size"] == 0
    await driver.commit(upload, state)
    assert (await driver.stat(upload)).size == 0


async def test_list_is_recursive_and_complete(driver: StorageDriver) -> None:
    """More keys than one listing page on most backends would need on a small page size."""
    base = _key("listing")
    expected = {f"{base}/d{i % 3}/k{i}" for i in range(25)}
    for path in expected:
        await driver.put(path, b"x")
    listed = {info.path async for info in driver.list(base)}
    assert listed == expected
    assert [info async for info in driver.list(_key("nothing-here"))] == []
    dir_info = await driver.stat(f"{base}/d1")
    assert dir_info.is_dir


async def test_delete_removes_prefix_and_unfinished_writes(driver: StorageDriver) -> None:
    base = _key("deltree")
    await driver.put(f"{base}/a", b"1")
    await driver.put(f"{base}/sub/b", b"2")
    await driver.append(f"{base}/pending/data", None, _chunks(b"unfinished" * 1000))
    await driver.delete(base)
    assert [info async for info in driver.list(base)] == []
    with pytest.raises(PathNotFoundError):
        await driver.stat(f"{base}/a")


async def test_url_for_is_signed_for_the_method(driver: StorageDriver) -> None:
    """A HEAD must never be sent to a URL signed for GET (the RGW SignatureDoesNotMatch report)."""
    path = _key("presign")
    data = os.urandom(4096)
    await driver.put(path, data)
    get_url = await driver.url_for(path, "GET", 300)
    head_url = await driver.url_for(path, "HEAD", 300)
    if get_url is None:
        assert head_url is None  # a driver that cannot redirect says so for every method
        return
    assert head_url is not None
    # A self-signed store (RGW over HTTPS) names its CA; a context, as httpx deprecates verify=<path>.
    bundle = os.environ.get("MOORAGE_TEST_CA_BUNDLE")
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=bundle) if bundle else True
    async with httpx.AsyncClient(verify=verify) as client:
        got = await client.get(get_url)
        assert got.status_code == 200 and got.content == data
        head = await client.head(head_url)
        assert head.status_code == 200, head.text
        assert int(head.headers["content-length"]) == len(data)


async def _uploaded(driver: StorageDriver, data: bytes) -> str:
    """A committed upload of ``data`` at a fresh path, appended in two calls like a chunked push."""
    path = _key("upload", "data")
    half = len(data) // 2
    state = await driver.append(path, None, _chunks(data[:half]))
    state = await driver.append(path, state, _chunks(data[half:]))
    await driver.commit(path, state)
    return path


async def test_concurrent_moves_to_one_key_leave_one_whole_object(driver: StorageDriver) -> None:
    """Two pushes of one blob completing together (two nodes) must both succeed and leave the
    whole object; a later third push of it is a no-op that still removes its own upload.

    On Swift each move used to delete the segments under the destination that its own manifest
    did not name, i.e. the other writer's fresh ones, leaving a manifest whose segments were gone.
    """
    data = os.urandom(2 * 1024 * 1024 + 4099)  # several Swift segments in the suite's set-up
    final = _key("blob", "data")
    sources = [await _uploaded(driver, data) for _ in range(2)]
    await asyncio.gather(*(driver.move(source, final) for source in sources))
    expected = hashlib.sha256(data).hexdigest()
    assert hashlib.sha256(await _read_all(driver, final)).hexdigest() == expected
    third = await _uploaded(driver, data)
    await driver.move(third, final)
    assert hashlib.sha256(await _read_all(driver, final)).hexdigest() == expected
    for source in (*sources, third):
        with pytest.raises(PathNotFoundError):
            await driver.stat(source)
    assert {info.path async for info in driver.list(final.rsplit("/", 1)[0])} == {final}


async def test_concurrent_puts_of_one_object_to_one_key(driver: StorageDriver) -> None:
    """Eight concurrent puts of the same bytes object to one key all succeed and leave it whole.

    The filesystem driver named its temporary file after the process and the bytes object, so
    two such puts shared it and one failed with PathNotFoundError.
    """
    data = os.urandom(256 * 1024)
    path = _key("put", "data")
    await asyncio.gather(*(driver.put(path, data) for _ in range(8)))
    assert await _read_all(driver, path) == data
    assert {info.path async for info in driver.list(path.rsplit("/", 1)[0])} == {path}


async def test_move_replaces_an_object_of_another_size(driver: StorageDriver) -> None:
    """Only an object of the same size counts as already published; anything else is damage to repair."""
    data = os.urandom(1024 * 1024 + 7)
    final = _key("damaged", "data")
    await driver.put(final, data[:100])
    await driver.move(await _uploaded(driver, data), final)
    assert await _read_all(driver, final) == data


async def test_delete_many_removes_each_object_and_skips_missing_ones(driver: StorageDriver) -> None:
    """GC's batch delete: every object goes, with its Swift segments and its emptied folder;
    a path with nothing stored is no error; a key beside them and a folder shared with a kept
    object stay."""
    base = _key("batch")
    small = [f"{base}/b{i}/data" for i in range(30)]
    for path in small:
        await driver.put(path, path.encode())
    large = f"{base}/segmented/data"
    await driver.move(await _uploaded(driver, os.urandom(2 * 1024 * 1024 + 11)), large)  # Swift: segments
    kept = f"{base}/b0/kept"
    await driver.put(kept, b"stays")
    await driver.delete_many([*small, large, f"{base}/never-stored/data"])
    assert {info.path async for info in driver.list(base)} == {kept}
    assert await _read_all(driver, kept) == b"stays"
    for path in (small[1], large):
        with pytest.raises(PathNotFoundError):
            await driver.stat(path)
    for folder in (f"{base}/b1", f"{base}/segmented"):
        with pytest.raises(PathNotFoundError):
            await driver.stat(folder)  # on the filesystem: the emptied folder is gone too
    await driver.delete_many([])
    await driver.delete_many(small[:3])  # all gone already: nothing to do, nothing to raise


async def test_open_local_is_the_stored_file_or_none(driver: StorageDriver) -> None:
    """The optional :class:`LocalFiles` capability, through the checking wrapper every driver is in.

    The filesystem driver hands out the object's file (read-only, unbuffered: sendfile reads the
    descriptor), which stays readable when the object is deleted meanwhile (GC while a pull runs);
    object stores answer ``None`` and keep streaming or redirecting.
    """
    assert isinstance(driver, LocalFiles)
    path = _key("local")
    data = os.urandom(70_000)
    await driver.put(path, data)
    local = await driver.open_local(path)
    if getattr(driver, "name", "") != "filesystem":
        assert local is None
        return
    assert local is not None
    with local:
        await driver.delete(path)
        assert os.pread(local.fileno(), 100_000, 0) == data
        assert os.pread(local.fileno(), 10, 69_995) == data[-5:]
        assert not local.writable()
    with pytest.raises(PathNotFoundError):
        await driver.open_local(path)
