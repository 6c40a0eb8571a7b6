"""The S3 field reports, each proven against the real Ceph RGW (and Swift's s3api).

Every test first shows the quirk is real on this server (so the test could fail if the
driver relied on the broken behaviour), then that the driver works regardless.
"""

from __future__ import annotations

import os
import re
import ssl
import threading
from collections.abc import AsyncIterator
from typing import Any

import botocore.exceptions  # type: ignore[import-untyped]
import httpx
import pytest
from botocore.config import Config  # type: ignore[import-untyped]

from moorage.storage.checked import CheckedDriver
from moorage.storage.drivers.s3 import S3Driver
from moorage.storage.middleware.redirect import NoRedirect
from tests.services.fixtures import Service
from tests.storage.objectstores import ensure_bucket, raw_s3_client, s3_settings, unique


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _read(driver: Any, path: str) -> bytes:
    return b"".join([chunk async for chunk in driver.read(path)])


def _driver(service: Service, *, tls: bool = False, **extra: Any) -> S3Driver:
    settings = s3_settings(service, "quirks", tls=tls, rootdirectory=unique("q"), **extra)
    ensure_bucket(settings)
    return S3Driver(settings, list_page_size=5)


@pytest.mark.ceph
async def test_presigned_head_is_signed_for_head_and_redirects_can_be_disabled(ceph_rgw: Service) -> None:
    s3 = _driver(ceph_rgw)
    try:
        data = os.urandom(1234)
        await s3.put("blob", data)
        get_url = await s3.url_for("blob", "GET", 300)
        head_url = await s3.url_for("blob", "HEAD", 300)
        assert get_url and head_url
        async with httpx.AsyncClient() as http:
            # The field report: a HEAD sent to a URL signed for GET is refused by RGW.
            wrong = await http.head(get_url)
            assert wrong.status_code == 403
            head = await http.head(head_url)
            assert head.status_code == 200 and int(head.headers["content-length"]) == len(data)
            got = await http.get(get_url)
            assert got.status_code == 200 and got.content == data
        off = CheckedDriver(NoRedirect(s3))
        assert await off.url_for("blob", "HEAD", 300) is None
        assert await off.url_for("blob", "GET", 300) is None
        assert await _read(off, "blob") == data  # the registry streams the bytes itself
    finally:
        await s3.aclose()


@pytest.mark.ceph
async def test_listing_without_keycount_across_pages(ceph_rgw: Service) -> None:
    """Older RGWs send no ``<KeyCount>``; strip it from the real answers and list 3+ pages."""
    s3 = _driver(ceph_rgw)
    seen: list[dict[str, Any]] = []

    def strip_keycount(response_dict: dict[str, Any], **_: Any) -> None:
        response_dict["body"] = re.sub(rb"<KeyCount>\d+</KeyCount>", b"", response_dict["body"])

    def record(parsed: dict[str, Any], **_: Any) -> None:
        seen.append(parsed)

    s3.client.meta.events.register("before-parse.s3.ListObjectsV2", strip_keycount)
    s3.client.meta.events.register("after-call.s3.ListObjectsV2", record)
    try:
        expected = {f"gc/d{i % 4}/k{i:02d}" for i in range(17)}
        for path in expected:
            await s3.put(path, b"x")
        listed = {info.path async for info in s3.list("gc")}
        assert listed == expected
        assert len(seen) >= 4, "the listing must have crossed several pages"
        assert all("KeyCount" not in page for page in seen), "the hook must have removed KeyCount"
        assert (await s3.stat("gc/d1")).is_dir
    finally:
        await s3.aclose()


@pytest.mark.ceph
async def test_empty_complete_multipart_etag_is_not_needed(ceph_rgw: Service) -> None:
    s3 = _driver(ceph_rgw)
    answers: list[dict[str, Any]] = []
    s3.client.meta.events.register(
        "after-call.s3.CompleteMultipartUpload", lambda parsed, **_: answers.append(parsed)
    )
    try:
        data = os.urandom(6 * 1024 * 1024 + 11)
        state = await s3.append("up/data", None, _chunks(data[:100], data[100:]))
        assert state["upload_id"] and len(state["parts"]) == 1
        await s3.commit("up/data", state)
        assert answers and answers[0].get("ETag", "") in ("", '""'), "RGW 16.2 answers <ETag></ETag>"
        assert await _read(s3, "up/data") == data
        head = raw_s3_client(s3.settings).head_object(Bucket=s3.bucket, Key=s3._key("up/data"))
        assert head["ETag"].endswith('-2"')  # the real ETag appears on HEAD only
    finally:
        await s3.aclose()


@pytest.mark.ceph
async def test_boto3_streaming_checksums_over_https(ceph_rgw: Service) -> None:
    """boto3 ≥ 1.36 defaults send aws-chunked trailers that RGW over HTTPS answers with 411."""
    settings = s3_settings(ceph_rgw, "quirks", tls=True, rootdirectory=unique("tls"))
    ensure_bucket(settings)
    import boto3  # type: ignore[import-untyped]

    default = boto3.client(
        "s3",
        endpoint_url=settings.endpoint_url(),
        aws_access_key_id=settings.accesskey,
        aws_secret_access_key=settings.secretkey,
        region_name=settings.region,
        verify=settings.cabundle,
        config=Config(s3={"addressing_style": "path"}),
    )
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        default.put_object(Bucket=settings.bucket, Key=f"{settings.rootdirectory}/default", Body=b"x" * 1000)
    assert refused.value.response["Error"]["Code"] == "MissingContentLength"
    default.close()

    s3 = S3Driver(settings)
    try:
        data = os.urandom(11 * 1024 * 1024)
        state = await s3.append("tls/data", None, _chunks(data))  # UploadPart over HTTPS
        assert len(state["parts"]) == 2
        await s3.commit("tls/data", state)
        await s3.put("tls/small", b"small")  # PutObject over HTTPS
        assert await _read(s3, "tls/data") == data
        url = await s3.url_for("tls/small", "HEAD", 60)
        assert url is not None
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=settings.cabundle)) as http:
            assert (await http.head(url)).status_code == 200
    finally:
        await s3.aclose()


@pytest.mark.swift
async def test_delete_objects_on_swift_s3api_sends_content_md5(swift_saio: Service) -> None:
    settings = s3_settings(swift_saio, unique("s3api"), rootdirectory="r")
    ensure_bucket(settings)
    raw = raw_s3_client(settings)
    raw.put_object(Bucket=settings.bucket, Key="r/probe", Body=b"1")
    # Without Content-MD5 (boto3 ≥ 1.36 sends only a CRC32) Swift's s3api refuses the batch.
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        raw.delete_objects(Bucket=settings.bucket, Delete={"Objects": [{"Key": "r/probe"}]})
    assert refused.value.response["Error"]["Code"] == "InvalidRequest"
    raw.close()
    s3 = S3Driver(settings, list_page_size=3)
    try:
        for i in range(7):
            await s3.put(f"tree/k{i}", b"v")
        await s3.append("tree/pending/data", None, _chunks(b"unfinished"))
        await s3.delete("tree")
        assert [info async for info in s3.list("tree")] == []
        state = await s3.append("big/data", None, _chunks(os.urandom(5 * 1024 * 1024 + 1)))
        await s3.commit("big/data", state)
        await s3.move("big/data", "moved/data")
        assert (await s3.stat("moved/data")).size == 5 * 1024 * 1024 + 1
    finally:
        await s3.aclose()


@pytest.mark.parametrize(
    "name",
    [pytest.param("ceph_rgw", marks=pytest.mark.ceph), pytest.param("swift_saio", marks=pytest.mark.swift)],
)
async def test_move_above_the_copy_threshold_uses_multipart_copy(
    request: pytest.FixtureRequest, name: str
) -> None:
    """CopyObject stops at 5 GiB; above ``multipartcopythresholdsize`` a move copies in parts.

    quay's ``storage/cloud.py`` skips multipart copy on RadosGW ("RadosGW does not support
    multipart copy", https://github.com/ceph/ceph/pull/5139, Ceph 0.94). Pacific has
    UploadPartCopy, and so has Swift's s3api: the threshold is lowered to its 5 MiB minimum
    here so an 11 MiB move really goes through UploadPartCopy on both servers.
    """
    service: Service = request.getfixturevalue(name)
    five = 5 * 1024 * 1024
    settings = s3_settings(
        service,
        "quirks" if name == "ceph_rgw" else unique("s3api"),
        rootdirectory=unique("mpcopy"),
        multipartcopythresholdsize=five,
        multipartcopychunksize=five,
    )
    ensure_bucket(settings)
    s3 = S3Driver(settings)
    copied: list[str] = []
    s3.client.meta.events.register(
        "before-parameter-build.s3.UploadPartCopy",
        lambda params, **_: copied.append(params["CopySourceRange"]),
    )
    try:
        data = os.urandom(2 * five + 3)
        await s3.put("src/data", data)
        await s3.move("src/data", "dst/data")
        assert sorted(copied) == sorted(
            [f"bytes=0-{five - 1}", f"bytes={five}-{2 * five - 1}", f"bytes={2 * five}-{2 * five + 2}"]
        )
        assert await _read(s3, "dst/data") == data
        assert [info.path async for info in s3.list("src")] == []
    finally:
        await s3.aclose()


@pytest.mark.ceph
async def test_presigning_with_the_credential_chain_runs_off_the_event_loop(
    ceph_rgw: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without configured keys botocore may refresh credentials over the network while signing
    (instance metadata, container credentials, SSO): that must not happen on the event loop."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ceph_rgw["S3_ACCESS_KEY"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ceph_rgw["S3_SECRET_KEY"])
    s3 = _driver(ceph_rgw, accesskey=None, secretkey=None)
    threads: list[str] = []
    s3.client.meta.events.register(
        "before-parameter-build.s3.GetObject", lambda **_: threads.append(threading.current_thread().name)
    )
    try:
        await s3.put("blob", b"signed with the chain's keys")
        url = await s3.url_for("blob", "GET", 300)
        assert url is not None
        async with httpx.AsyncClient() as http:
            got = await http.get(url)
        assert got.status_code == 200 and got.content == b"signed with the chain's keys"
        assert threads and threading.main_thread().name not in threads
    finally:
        await s3.aclose()
