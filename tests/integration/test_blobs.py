"""Blob reads (full, ranged, HEAD), deletes, and what happens when storage lost the bytes."""

from __future__ import annotations

import os

import httpx

from moorage.registry.digests import parse_digest
from moorage.registry.paths import blob_path
from moorage.services import Services
from tests.integration.conftest import unique_name
from tests.integration.oci_client import digest_of, error_code, push_blob, push_image


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
    # Header values travel as latin-1: '²' (0xB2) is str.isdigit() but not a digit int() reads.
    for bad in ("bytes=10000-", "bytes=5-2", "bytes=0-1,5-6", "bytes=x-y", "bytes=-0", "bytes=1_0-2_0",
                "bytes=-1_0", "bytes=²-³", "bytes=+1-2", "bytes= 1 - 2"):
        response = await client.get(url, headers={b"Range": bad.encode("latin-1")})
        assert response.status_code == 416, bad
        assert error_code(response) == "RANGE_INVALID"
        assert response.headers["content-range"] == "bytes */10000"
    # RFC 9110 §14.2: a Range in a unit the server does not understand is ignored.
    other_unit = await client.get(url, headers={"Range": "items=0-1"})
    assert other_unit.status_code == 200 and other_unit.content == data


async def test_suffix_ranges_on_empty_and_shorter_blobs(client: httpx.AsyncClient) -> None:
    """RFC 9110 §14.1: a suffix longer than the blob is the whole blob; the empty blob has no byte to send."""
    name = unique_name()
    empty = await push_blob(client, name, b"")
    for header in ("bytes=-5", "bytes=0-", "bytes=0-0"):
        response = await client.get(f"/v2/{name}/blobs/{empty}", headers={"Range": header})
        assert response.status_code == 416, header
        assert error_code(response) == "RANGE_INVALID"
        assert response.headers["content-range"] == "bytes */0"
    whole = await client.get(f"/v2/{name}/blobs/{empty}")
    assert whole.status_code == 200 and whole.content == b""
    short = await push_blob(client, name, b"abc")
    clipped = await client.get(f"/v2/{name}/blobs/{short}", headers={"Range": "bytes=-5"})
    assert clipped.status_code == 206 and clipped.content == b"abc"
    assert clipped.headers["content-range"] == "bytes 0-2/3" and clipped.headers["content-length"] == "3"


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
    for settings, push_status in ((writable, 201), (read_only, 405)):
        built = Services.from_settings(settings)  # read-only mode lives in the services, not in the app
        try:
            transport = httpx.ASGITransport(app=create_app(settings, built))
            async with httpx.AsyncClient(transport=transport, base_url="http://r.test") as http:
                data = b"payload" if push_status == 201 else b"refused"
                response = await http.post(
                    f"/v2/{name}/blobs/uploads/", params={"digest": digest_of(data)}, content=data
                )
                assert response.status_code == push_status, response.text
                pulled = await http.get(f"/v2/{name}/blobs/{digest_of(b'payload')}")
                assert pulled.status_code == 200
        finally:
            await built.aclose()
    assert "read-only" in response.json()["errors"][0]["message"]


async def test_numbers_in_headers_queries_and_paths_are_ascii_digits(client: httpx.AsyncClient) -> None:
    """``int()`` reads ``1_0``, ``+5`` and ``١٢`` as numbers; HTTP and our queries do not."""
    name = unique_name()
    data = os.urandom(10)
    digest = digest_of(data)
    # Header values travel as latin-1: '²' (0xB2) is str.isdigit() but int() refuses it (it was a 500).
    for length in ("1_0", "+10", "²", " 1 0"):
        response = await client.post(
            f"/v2/{name}/blobs/uploads/", params={"digest": digest}, content=data,
            headers={b"Content-Length": length.encode("latin-1")},
        )
        assert response.status_code == 400 and error_code(response) == "SIZE_INVALID", length
    assert (await client.head(f"/v2/{name}/blobs/{digest}")).status_code == 404  # nothing was stored
    started = await client.post(f"/v2/{name}/blobs/uploads/")
    location = started.headers["location"]
    for content_range in ("0-9_0", "0-+9", "0-9/1_0", "0-²", "¹-9"):
        response = await client.patch(
            location, content=data, headers={b"Content-Range": content_range.encode("latin-1")}
        )
        assert response.status_code == 416 and error_code(response) == "RANGE_INVALID", content_range
    assert (await client.get(location)).headers["range"] == "0-0"  # no chunk was accepted
    accepted = await client.patch(location, content=data, headers={"Content-Range": "bytes 0-9/*"})
    assert accepted.status_code == 202 and accepted.headers["range"] == "0-9"
    await push_blob(client, name, data)
    for n in ("1_0", "+1", "١", "²", "9" * 30):
        response = await client.get(f"/v2/{name}/tags/list", params={"n": n})
        assert response.status_code == 400 and error_code(response) == "PAGINATION_NUMBER_INVALID", n
    for query in ({"limit": "1_0"}, {"limit": "²"}, {"before": "1_0"}, {"before": "٣"}, {"before": "9" * 12}):
        jobs = await client.get("/api/v2.0/jobs", params=query)
        assert jobs.status_code == 400, query
    for job_id in ("1_0", "²", "٣", "9" * 30):
        assert (await client.get(f"/api/v2.0/jobs/{job_id}")).status_code == 404, job_id


async def test_a_blob_a_manifest_references_cannot_be_deleted(client: httpx.AsyncClient) -> None:
    """Unlinking a layer of a manifest left a manifest that served while its layer 404ed: refuse, name it."""
    import json

    name, other = unique_name(), unique_name()
    layers = [os.urandom(300), os.urandom(400)]
    manifest_digest, body = await push_image(client, name, "v1", layers)
    config_digest = json.loads(body)["config"]["digest"]
    spare = await push_blob(client, name, os.urandom(50))
    await push_blob(client, other, layers[0])  # the same layer elsewhere, held by no manifest there
    for blob in (digest_of(layers[0]), digest_of(layers[1]), config_digest, manifest_digest):
        refused = await client.delete(f"/v2/{name}/blobs/{blob}")
        assert refused.status_code == 409 and error_code(refused) == "DENIED", blob
        error = refused.json()["errors"][0]
        assert manifest_digest in error["message"] and "delete the manifest first" in error["message"]
        assert error["detail"] == {"digest": blob, "manifests": [manifest_digest]}
        assert (await client.head(f"/v2/{name}/blobs/{blob}")).status_code == 200  # nothing changed
    assert (await client.get(f"/v2/{name}/blobs/{digest_of(layers[0])}")).content == layers[0]
    assert (await client.delete(f"/v2/{name}/blobs/{spare}")).status_code == 202
    assert (await client.delete(f"/v2/{other}/blobs/{digest_of(layers[0])}")).status_code == 202
    assert (await client.delete(f"/v2/{name}/manifests/{manifest_digest}")).status_code == 202
    assert (await client.delete(f"/v2/{name}/blobs/{digest_of(layers[0])}")).status_code == 202
    assert (await client.head(f"/v2/{name}/blobs/{digest_of(layers[0])}")).status_code == 404
