"""The Swift field reports, each proven on the real Ceph RGW and the real OpenStack Swift."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from moorage.storage.driver import StorageUnavailableError
from moorage.storage.drivers.swift import SwiftDriver
from moorage.storage.drivers.swift_http import bulk_delete_failure, bulk_delete_limit, cluster_info
from tests.e2e.servers import free_port
from tests.services.fixtures import Service
from tests.services.hostproxy import host_rewriting_proxy
from tests.storage.objectstores import swift_settings, unique

SERVICES = [
    pytest.param("ceph_rgw", marks=pytest.mark.ceph),
    pytest.param("swift_saio", marks=pytest.mark.swift),
]


async def _read(driver: SwiftDriver, path: str) -> bytes:
    return b"".join([chunk async for chunk in driver.read(path)])


def _service(request: pytest.FixtureRequest, name: str) -> Service:
    service: Service = request.getfixturevalue(name)
    return service


@pytest.mark.parametrize("name", SERVICES)
async def test_wrong_advertised_storage_url_names_the_fix(request: pytest.FixtureRequest, name: str) -> None:
    """Behind a proxy the auth answer names an internal host:port; ``storageurl`` overrides it."""
    service = _service(request, name)
    auth = urlsplit(service["SWIFT_AUTH_URL"])
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    async with host_rewriting_proxy(auth.port or 80, dead) as port:
        authurl = f"http://127.0.0.1:{port}{auth.path}"
        broken = SwiftDriver(swift_settings(service, unique("proxied"), authurl=authurl))
        try:
            with pytest.raises(StorageUnavailableError) as refused:
                await broken.put("probe", b"x")
            message = str(refused.value)
            assert dead in message and "storage.swift.storageurl" in message
            checks = await broken.self_check()
            failed = [c for c in checks if not c.ok]
            assert failed and "storageurl" in failed[0].fix
            # `moorage check` prints the detail shortened to 400 characters: the fix must survive.
            assert dead in failed[0].detail and "storage.swift.storageurl" in failed[0].detail
        finally:
            await broken.aclose()

        # The storage URL as this node must use it: the advertised path on the real host:port.
        advertised = urlsplit(broken._auth.advertised_url if broken._auth else "")
        real = f"http://127.0.0.1:{auth.port}{advertised.path}"
        fixed = SwiftDriver(swift_settings(service, unique("proxied"), authurl=authurl, storageurl=real))
        try:
            await fixed.put("probe", b"works")
            assert await _read(fixed, "probe") == b"works"
            assert all(c.ok for c in await fixed.self_check())
        finally:
            await fixed.aclose()


@pytest.mark.parametrize(("name", "digest"), [("ceph_rgw", "sha1"), ("swift_saio", "sha256")])
async def test_tempurl_digest_is_detected(request: pytest.FixtureRequest, name: str, digest: str) -> None:
    """RGW Pacific checks only HMAC-SHA1; Swift lists sha256 in /info, and auto picks it."""
    service = _service(request, name)
    driver = SwiftDriver(swift_settings(service, unique("tempurl")))
    data = os.urandom(2048)
    try:
        await driver.put("blob", data)
        get_url = await driver.url_for("blob", "GET", 300)
        head_url = await driver.url_for("blob", "HEAD", 300)
        assert driver._digest == digest
        assert get_url and head_url
        async with httpx.AsyncClient() as http:
            got = await http.get(get_url)
            assert got.status_code == 200 and got.content == data
            head = await http.head(head_url)
            assert head.status_code == 200 and int(head.headers["content-length"]) == len(data)
        if name == "ceph_rgw":
            forced = SwiftDriver(swift_settings(service, driver.container, tempurldigest="sha256"))
            try:
                url = await forced.url_for("blob", "GET", 300)
                assert url is not None
                async with httpx.AsyncClient() as http:
                    assert (await http.get(url)).status_code in (401, 403), (
                        "RGW 16.2 rejects SHA-256 TempURLs"
                    )
            finally:
                await forced.aclose()
    finally:
        await driver.aclose()


@pytest.mark.parametrize(
    ("name", "path", "status"), [("ceph_rgw", "/auth", 204), ("swift_saio", "/auth/v1.0", 200)]
)
async def test_v1_auth_paths_and_statuses(
    request: pytest.FixtureRequest, name: str, path: str, status: int
) -> None:
    service = _service(request, name)
    base = urlsplit(service["SWIFT_AUTH_URL"])
    headers = {"X-Auth-User": service["SWIFT_USER"], "X-Auth-Key": service["SWIFT_KEY"]}
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"http://{base.netloc}{path}", headers=headers)
        assert answer.status_code == status and answer.headers.get("x-storage-url")
        if name == "swift_saio":
            # OpenStack Swift knows no other v1 path: the driver must retry on /auth/v1.0.
            assert (await http.get(f"http://{base.netloc}/auth", headers=headers)).status_code >= 400
    # Configured as ".../auth" on both: RGW answers there, Swift after the /v1.0 retry.
    driver = SwiftDriver(swift_settings(service, unique("v1"), authurl=f"http://{base.netloc}/auth"))
    try:
        await driver.put("probe", b"ok")
        assert await _read(driver, "probe") == b"ok"
    finally:
        await driver.aclose()


@pytest.mark.parametrize("name", SERVICES)
async def test_wrong_credentials_say_what_to_check(request: pytest.FixtureRequest, name: str) -> None:
    service = _service(request, name)
    driver = SwiftDriver(swift_settings(service, unique("creds"), password="wrong"))
    try:
        with pytest.raises(StorageUnavailableError, match="username"):
            await driver.stat("anything")
    finally:
        await driver.aclose()


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@pytest.mark.parametrize("name", SERVICES)
async def test_resume_in_another_process_state_only(request: pytest.FixtureRequest, name: str) -> None:
    """A second driver instance (another node) continues from the JSON state alone."""
    service = _service(request, name)
    settings: Any = swift_settings(service, unique("resume"), chunksize=1024 * 1024)
    first, second = SwiftDriver(settings), SwiftDriver(settings)
    try:
        part_a, part_b = os.urandom(1_500_000), os.urandom(700_000)
        state = await first.append("u/data", None, _chunks(part_a))
        state = await second.append("u/data", state, _chunks(part_b))
        await second.commit("u/data", state)
        await first.move("u/data", "blob/data")
        assert await _read(first, "blob/data") == part_a + part_b
    finally:
        await first.aclose()
        await second.aclose()


@pytest.mark.parametrize("name", SERVICES)
@pytest.mark.parametrize("bulk", [True, False], ids=["bulk-delete", "single-deletes"])
async def test_delete_many_with_and_without_bulk_delete(request: pytest.FixtureRequest, name: str, bulk: bool) -> None:
    """Both clusters advertise ``bulk_delete`` in ``/info`` and GC's batch uses it; a cluster that
    does not (``_bulk`` 0, as the driver records it then) gets parallel single deletes instead."""
    service = _service(request, name)
    driver = SwiftDriver(swift_settings(service, unique("bulk"), chunksize=1024 * 1024))
    try:
        paths = [f"blobs/b{i}/data" for i in range(12)]
        for path in paths:
            await driver.put(path, b"x" * 10)
        state = await driver.append("blobs/big/data", None, _chunks(os.urandom(3 * 1024 * 1024)))
        await driver.commit("blobs/big/data", state)  # an SLO manifest and three segments
        auth = await driver._login()
        assert bulk_delete_limit(await cluster_info(driver.http, auth, driver.settings)) > 0
        if not bulk:
            driver._bulk = 0
        await driver.delete_many([*paths, "blobs/big/data", "blobs/missing/data"])
        assert [info.path async for info in driver.list("blobs")] == []
        assert [name async for name in driver._list_keys("blobs/", "blobs")] == []  # no segment left
    finally:
        await driver.aclose()


def test_bulk_delete_answers_are_read_for_failures_not_for_missing_names() -> None:
    """The answer is 200 whatever happened: only its JSON says whether names were refused."""
    gone = b'{"Number Deleted": 1, "Number Not Found": 1, "Response Status": "200 OK", "Errors": []}'
    assert bulk_delete_failure(gone, ["a", "b"]) is None
    refused = (
        b'{"Number Deleted": 0, "Response Status": "400 Bad Request", "Response Body": "",'
        b' "Errors": [["/c/a", "403 Forbidden"], ["/c/b", "404 Not Found"]]}'
    )
    failure = bulk_delete_failure(refused, ["a", "b"])
    assert failure is not None and "1 object(s) refused" in failure and "/c/a: 403 Forbidden" in failure
    assert bulk_delete_failure(b"<html>proxy error</html>", ["a"]) == "no JSON in the answer: <html>proxy error</html>"
    assert bulk_delete_limit({"bulk_delete": {"max_deletes_per_request": 50_000}}) == 10_000
    assert bulk_delete_limit({"bulk_delete": {}}) == 1000
    assert bulk_delete_limit({"slo": {}}) == 0
