"""Blob reads (full, ranged, HEAD), deletes, and what happens when storage lost the bytes."""

from __future__ import annotations

import os

import httpx

from moorage.registry.digests import parse_digest
from moorage.registry.paths import blob_path
from moorage.services import Services
from tests.integration.conftest import unique_name
from tests.integration.oci_client import digest_of, error_code, push_blob


async def test_head_and_get_carry_digest_and_length(client: httpx.AsyncClient) -> None:
    name = unique_name()
    data = os.urandom(3 * 1024 * 1024 + 5)
    digest = await push_blob(client, name, data)
    head = await client.head(f"/v2/{name}/blobs/{digest}")
    assert head.status_code == 200
    assert head.headers["docker-content-digest"] == digest
    assert int(head.headers["content-length"]) == len(data)
    assert head.content == b""
    got = await client.get(f"/v2/{name}/blobs/{digest}")
    assert got.content == data and got.headers["docker-content-digest"] == digest


async def test_range_requests(client: httpx.AsyncClient) -> None:
    name = unique_name()
    data = os.urandom(10_000)
    digest = await push_blob(client, name, data)
    url = f"/v2/{name}/blobs/{digest}"
    for header, expected, content_range in (
        ("bytes=0-99", data[:100], "bytes 0-99/10000"),
        ("bytes=9990-", data[9990:], "bytes 9990-9999/10000"),
        ("bytes=-10", data[-10:], "bytes 9990-9999/10000"),
        ("bytes=9000-20000", data[9000:], "bytes 9000-9999/10000"),
    ):
        response = await client.get(url, headers={"Range": header})
        assert response.status_code == 206, header
        assert response.content == expected
        assert response.headers["content-range"] == content_range
        assert int(response.headers["content-length"]) == len(expected)
    for bad in ("bytes=10000-", "bytes=5-2", "bytes=0-1,5-6", "items=0-1", "bytes=x-y", "bytes=-0"):
        response = await client.get(url, headers={"Range": bad})
        assert response.status_code == 416, bad
        assert error_code(response) == "RANGE_INVALID"
        assert response.headers["content-range"] == "bytes */10000"


async def test_unknown_blob_and_blob_of_another_repository(client: httpx.AsyncClient) -> None:
    name, other = unique_name(), unique_name()
    digest = await push_blob(client, other, b"mine")
    for path in (f"/v2/{name}/blobs/{digest}", f"/v2/{name}/blobs/{digest_of(b'never')}"):
        response = await client.get(path)
        assert response.status_code == 404 and error_code(response) == "BLOB_UNKNOWN"
        head = await client.head(path)
        assert head.status_code == 404 and head.content == b""


async def test_delete_blob_unlinks_it_from_one_repository(client: httpx.AsyncClient) -> None:
    first, second = unique_name(), unique_name()
    data = os.urandom(100)
    digest = await push_blob(client, first, data)
    await push_blob(client, second, data)
    assert (await client.delete(f"/v2/{first}/blobs/{digest}")).status_code == 202
    assert (await client.head(f"/v2/{first}/blobs/{digest}")).status_code == 404
    assert (await client.get(f"/v2/{second}/blobs/{digest}")).content == data
    again = await client.delete(f"/v2/{first}/blobs/{digest}")
    assert again.status_code == 404 and error_code(again) == "BLOB_UNKNOWN"


async def test_bytes_missing_from_storage_are_reported_not_served(
    client: httpx.AsyncClient, services: Services
) -> None:
    name = unique_name()
    data = os.urandom(100)
    digest = await push_blob(client, name, data)
    await services.storage.delete(blob_path(parse_digest(digest)))
    response = await client.get(f"/v2/{name}/blobs/{digest}")
    assert response.status_code == 404 and error_code(response) == "BLOB_UNKNOWN"
    assert "missing from storage" in response.json()["errors"][0]["message"]


async def test_unknown_endpoints_and_methods(client: httpx.AsyncClient) -> None:
    name = unique_name()
    wrong_method = await client.post(f"/v2/{name}/tags/list")
    assert wrong_method.status_code == 405 and error_code(wrong_method) == "UNSUPPORTED"
    assert wrong_method.headers["allow"] == "GET"
    nowhere = await client.get(f"/v2/{name}/nothing/here")
    assert nowhere.status_code == 404


async def test_read_only_mode_refuses_writes_and_serves_reads(database_url: str, tmp_path: os.PathLike[str]) -> None:
    from pathlib import Path

    from moorage.app import create_app
    from tests.integration.conftest import make_settings

    name = unique_name()
    writable = make_settings(database_url, Path(tmp_path))
    read_only = make_settings(database_url, Path(tmp_path), MOORAGE_STORAGE__MAINTENANCE__READONLY__ENABLED="true")
    built = Services.from_settings(writable)
    try:
        for settings, push_status in ((writable, 201), (read_only, 405)):
            transport = httpx.ASGITransport(app=create_app(settings, built))
            async with httpx.AsyncClient(transport=transport, base_url="http://r.test") as http:
                data = b"payload" if push_status == 201 else b"refused"
                response = await http.post(
                    f"/v2/{name}/blobs/uploads/", params={"digest": digest_of(data)}, content=data
                )
                assert response.status_code == push_status, response.text
                pulled = await http.get(f"/v2/{name}/blobs/{digest_of(b'payload')}")
                assert pulled.status_code == 200
        assert "read-only" in response.json()["errors"][0]["message"]
    finally:
        await built.aclose()
