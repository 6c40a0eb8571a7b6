"""Blob uploads: monolithic, POST+PUT, chunked, status, cancel, mount, and their error paths."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from moorage.services import Services
from tests.integration.conftest import unique_name
from tests.integration.oci_client import digest_of, error_code, push_blob


async def _start(client: httpx.AsyncClient, name: str) -> str:
    response = await client.post(f"/v2/{name}/blobs/uploads/")
    assert response.status_code == 202, response.text
    assert response.headers["docker-upload-uuid"]
    assert response.headers["range"] == "0-0"
    return response.headers["location"]


async def _storage_keys(services: Services, prefix: str) -> list[str]:
    return [info.path async for info in services.storage.list(prefix)]


async def test_monolithic_post_with_digest(client: httpx.AsyncClient) -> None:
    name = unique_name()
    data = os.urandom(5000)
    response = await client.post(f"/v2/{name}/blobs/uploads/", params={"digest": digest_of(data)}, content=data)
    assert response.status_code == 201
    assert response.headers["docker-content-digest"] == digest_of(data)
    assert response.headers["location"].endswith(f"/v2/{name}/blobs/{digest_of(data)}")
    head = await client.head(f"/v2/{name}/blobs/{digest_of(data)}")
    assert head.status_code == 200 and int(head.headers["content-length"]) == 5000


async def test_post_then_single_put(client: httpx.AsyncClient) -> None:
    name = unique_name()
    data = os.urandom(12345)
    location = await _start(client, name)
    response = await client.put(location, params={"digest": digest_of(data)}, content=data)
    assert response.status_code == 201, response.text
    got = await client.get(f"/v2/{name}/blobs/{digest_of(data)}")
    assert got.content == data


async def test_chunked_upload_with_status_and_resume(client: httpx.AsyncClient) -> None:
    name = unique_name()
    data = os.urandom(300_000)
    location = await _start(client, name)
    offset = 0
    for size in (100_000, 1, 99_999):
        chunk = data[offset : offset + size]
        response = await client.patch(
            location,
            content=chunk,
            headers={"Content-Range": f"{offset}-{offset + size - 1}", "Content-Type": "application/octet-stream"},
        )
        assert response.status_code == 202, response.text
        offset += size
        assert response.headers["range"] == f"0-{offset - 1}"
        location = response.headers["location"]
    status = await client.get(location)
    assert status.status_code == 204 and status.headers["range"] == f"0-{offset - 1}"
    response = await client.put(location, params={"digest": digest_of(data)}, content=data[offset:])
    assert response.status_code == 201, response.text
    assert (await client.get(f"/v2/{name}/blobs/{digest_of(data)}")).content == data


async def test_out_of_order_chunk_is_416_and_changes_nothing(client: httpx.AsyncClient) -> None:
    name = unique_name()
    data = os.urandom(2000)
    location = await _start(client, name)
    await client.patch(location, content=data[:1000], headers={"Content-Range": "0-999"})
    response = await client.patch(location, content=data[1500:], headers={"Content-Range": "1500-1999"})
    assert response.status_code == 416
    assert error_code(response) == "RANGE_INVALID"
    assert response.headers["range"] == "0-999"
    status = await client.get(location)
    assert status.headers["range"] == "0-999"
    # The client resumes from the right offset and completes.
    await client.patch(location, content=data[1000:], headers={"Content-Range": "1000-1999"})
    done = await client.put(location, params={"digest": digest_of(data)})
    assert done.status_code == 201


async def test_content_range_length_mismatch_is_refused(client: httpx.AsyncClient) -> None:
    name = unique_name()
    location = await _start(client, name)
    response = await client.patch(location, content=b"x" * 10, headers={"Content-Range": "0-19"})
    assert response.status_code == 416
    assert error_code(response) == "RANGE_INVALID"
    bad = await client.patch(location, content=b"x", headers={"Content-Range": "nonsense"})
    assert bad.status_code == 416 and error_code(bad) == "RANGE_INVALID"
    assert (await client.get(location)).headers["range"] == "0-0"


async def test_wrong_digest_changes_nothing_and_retry_succeeds(client: httpx.AsyncClient, services: Services) -> None:
    name = unique_name()
    data = os.urandom(4000)
    location = await _start(client, name)
    await client.patch(location, content=data[:3000])
    wrong = digest_of(b"something else")
    response = await client.put(location, params={"digest": wrong}, content=data[3000:])
    assert response.status_code == 400 and error_code(response) == "DIGEST_INVALID"
    assert (await client.head(f"/v2/{name}/blobs/{wrong}")).status_code == 404
    assert (await client.get(location)).headers["range"] == "0-2999"  # the final chunk was not kept
    retry = await client.put(location, params={"digest": digest_of(data)}, content=data[3000:])
    assert retry.status_code == 201
    assert (await client.get(f"/v2/{name}/blobs/{digest_of(data)}")).content == data
    assert await _storage_keys(services, "uploads") == []


async def test_monolithic_wrong_digest_leaves_no_blob_and_no_upload(
    client: httpx.AsyncClient, services: Services
) -> None:
    name = unique_name()
    data = os.urandom(3000)
    wrong = digest_of(b"nope")
    response = await client.post(f"/v2/{name}/blobs/uploads/", params={"digest": wrong}, content=data)
    assert response.status_code == 400 and error_code(response) == "DIGEST_INVALID"
    assert (await client.head(f"/v2/{name}/blobs/{wrong}")).status_code == 404
    assert (await client.head(f"/v2/{name}/blobs/{digest_of(data)}")).status_code == 404
    assert await _storage_keys(services, "uploads") == []
    assert await _storage_keys(services, f"blobs/sha256/{wrong[7:9]}/{wrong[7:]}") == []


async def test_invalid_digest_parameters(client: httpx.AsyncClient) -> None:
    name = unique_name()
    for bad in ("sha256:abc", "md5:" + "a" * 32, "sha256:" + "A" * 64, "nodigest"):
        response = await client.post(f"/v2/{name}/blobs/uploads/", params={"digest": bad}, content=b"x")
        assert response.status_code == 400, (bad, response.text)
        assert error_code(response) in {"DIGEST_INVALID", "UNSUPPORTED"}
    location = await _start(client, name)
    missing = await client.put(location, content=b"x")
    assert missing.status_code == 400 and error_code(missing) == "DIGEST_INVALID"


async def test_sha512_digests_are_verified(client: httpx.AsyncClient) -> None:
    import hashlib

    name = unique_name()
    data = os.urandom(70_000)
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    response = await client.post(f"/v2/{name}/blobs/uploads/", params={"digest": digest}, content=data)
    assert response.status_code == 201, response.text
    assert (await client.get(f"/v2/{name}/blobs/{digest}")).content == data
    location = await _start(client, name)
    await client.patch(location, content=data[:1000])
    done = await client.put(location, params={"digest": digest}, content=data[1000:])
    assert done.status_code == 201, done.text
    wrong = "sha512:" + hashlib.sha512(b"other").hexdigest()
    monolithic = await client.post(f"/v2/{name}/blobs/uploads/", params={"digest": wrong}, content=data)
    assert monolithic.status_code == 400 and error_code(monolithic) == "DIGEST_INVALID"


async def test_cancel_and_unknown_uploads(client: httpx.AsyncClient, services: Services) -> None:
    name = unique_name()
    location = await _start(client, name)
    await client.patch(location, content=b"partial" * 100)
    assert (await client.delete(location)).status_code == 204
    gone = await client.get(location)
    assert gone.status_code == 404 and error_code(gone) == "BLOB_UPLOAD_UNKNOWN"
    assert await _storage_keys(services, "uploads") == []
    for bad in ("not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        response = await client.patch(f"/v2/{name}/blobs/uploads/{bad}", content=b"x")
        assert response.status_code == 404 and error_code(response) == "BLOB_UPLOAD_UNKNOWN"
    # An upload belongs to its repository.
    other = await _start(client, name)
    stolen = await client.get(other.replace(name, unique_name()))
    assert stolen.status_code == 404


async def test_cross_repository_mount(client: httpx.AsyncClient) -> None:
    source, target = unique_name(), unique_name()
    data = os.urandom(2048)
    digest = await push_blob(client, source, data)
    mounted = await client.post(f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": source})
    assert mounted.status_code == 201
    assert mounted.headers["location"].endswith(f"/v2/{target}/blobs/{digest}")
    assert (await client.get(f"/v2/{target}/blobs/{digest}")).content == data
    # Not mountable (unknown in the source): a normal upload session starts instead.
    unknown = digest_of(b"unknown")
    fallback = await client.post(f"/v2/{target}/blobs/uploads/", params={"mount": unknown, "from": source})
    assert fallback.status_code == 202 and "/blobs/uploads/" in fallback.headers["location"]


async def _location(database_url: str, data_dir: Path, headers: dict[str, str], **overrides: object) -> str:
    """The ``Location`` of a new upload on an app built with ``overrides``."""
    from moorage.app import create_app
    from tests.integration.conftest import make_settings

    settings = make_settings(database_url, data_dir, **overrides)
    built = Services.from_settings(settings)
    try:
        transport = httpx.ASGITransport(app=create_app(settings, built))  # peer address 127.0.0.1
        async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as http:
            response = await http.post(f"/v2/{unique_name()}/blobs/uploads/", headers=headers)
            assert response.status_code == 202
            return response.headers["location"]
    finally:
        await built.aclose()


async def test_relative_locations_when_configured(database_url: str, tmp_path: Path) -> None:
    location = await _location(database_url, tmp_path, {}, MOORAGE_HTTP__RELATIVEURLS="true")
    assert location.startswith("/v2/")


async def test_forwarded_headers_only_from_trusted_proxies(database_url: str, tmp_path: Path) -> None:
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "registry.example.com"}
    trusted = await _location(database_url, tmp_path, forwarded)
    assert trusted.startswith("https://registry.example.com/v2/")
    untrusted = await _location(database_url, tmp_path, forwarded, MOORAGE_HTTP__TRUSTED_PROXIES="[10.9.9.9]")
    assert untrusted.startswith("http://registry.test/v2/")
    fixed = await _location(database_url, tmp_path, forwarded, MOORAGE_HTTP__HOST="https://r.example.org")
    assert fixed.startswith("https://r.example.org/v2/")


async def test_retry_after_a_crash_between_publish_and_link(client: httpx.AsyncClient, services: Services) -> None:
    """The node died after moving the bytes under the blob key but before committing the link row."""
    import json as _json

    from sqlalchemy import select

    from moorage.db.tables import uploads
    from moorage.registry.digests import parse_digest
    from moorage.registry.paths import blob_path, upload_path

    name = unique_name()
    data = os.urandom(50_000)
    location = await _start(client, name)
    await client.patch(location, content=data)
    upload_id = location.rsplit("/", 1)[1]
    async with services.db.read() as conn:
        row = (await conn.execute(select(uploads.c.storage_state).where(uploads.c.id == upload_id))).one()
    state = _json.loads(row.storage_state)
    await services.storage.commit(upload_path(upload_id), state)
    await services.storage.move(upload_path(upload_id), blob_path(parse_digest(digest_of(data))))
    assert (await client.head(f"/v2/{name}/blobs/{digest_of(data)}")).status_code == 404  # not linked: invisible
    retry = await client.put(location, params={"digest": digest_of(data)})
    assert retry.status_code == 201, retry.text
    assert (await client.get(f"/v2/{name}/blobs/{digest_of(data)}")).content == data


async def test_concurrent_chunks_of_one_upload_never_interleave(client: httpx.AsyncClient) -> None:
    """While one PATCH streams, a second one is refused; after it, the upload resumes normally."""
    import asyncio

    name = unique_name()
    location = await _start(client, name)
    first_half_sent = asyncio.Event()
    release = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b"a" * 1000
        first_half_sent.set()
        await release.wait()
        yield b"b" * 1000

    slow = asyncio.create_task(client.patch(location, content=slow_body()))
    await asyncio.wait_for(first_half_sent.wait(), 10)
    rival = await client.patch(location, content=b"c" * 500)
    assert rival.status_code == 416 and error_code(rival) == "BLOB_UPLOAD_INVALID"
    assert "another request is writing" in rival.json()["errors"][0]["message"]
    release.set()
    assert (await slow).status_code == 202
    data = b"a" * 1000 + b"b" * 1000
    done = await client.put(location, params={"digest": digest_of(data)})
    assert done.status_code == 201, done.text
    assert (await client.get(f"/v2/{name}/blobs/{digest_of(data)}")).content == data


async def test_a_cut_off_chunk_releases_the_upload(client: httpx.AsyncClient) -> None:
    """A body that fails mid-stream leaves the upload as before and free for the retry."""

    class Cut(Exception):
        pass

    async def failing_body() -> AsyncIterator[bytes]:
        yield b"x" * 100
        raise Cut

    name = unique_name()
    location = await _start(client, name)
    try:
        await client.patch(location, content=failing_body())
    except Cut:
        pass
    assert (await client.get(location)).headers["range"] == "0-0"
    retry = await client.patch(location, content=b"y" * 100)
    assert retry.status_code == 202 and retry.headers["range"] == "0-99"


async def test_a_body_longer_than_declared_is_size_invalid_not_a_storage_failure(client: httpx.AsyncClient) -> None:
    """The error the chunk stream raises inside the driver reaches the client as itself (the storage
    wrapper turned it into a 503 "storage backend failed"), and the upload is unchanged."""
    name = unique_name()
    location = await _start(client, name)

    async def body() -> AsyncIterator[bytes]:
        yield b"x" * 5
        yield b"y" * 5

    response = await client.patch(location, content=body(), headers={"Content-Range": "0-4"})
    assert response.status_code == 400 and error_code(response) == "SIZE_INVALID", response.text
    assert (await client.get(location)).headers["range"] == "0-0"
    retry = await client.patch(location, content=b"x" * 5, headers={"Content-Range": "0-4"})
    assert retry.status_code == 202 and retry.headers["range"] == "0-4"
