"""S3 server-side encryption and storage class reach every object the driver creates.

Ceph RGW 16.2 accepts ``x-amz-server-side-encryption: AES256`` only over TLS and does not
report it back on HEAD, so the test reads the requests on the wire: the driver talks plain
HTTP to a recording forwarder (``tests/storage/wiretap.py``), which talks TLS to the real RGW.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from moorage.storage.drivers.s3 import S3Driver
from moorage.storage.drivers.s3_support import MIN_PART_SIZE
from tests.services.fixtures import Service
from tests.storage.objectstores import ensure_bucket, s3_settings, unique
from tests.storage.wiretap import Recorded, wiretap


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def _creates_object(request: Recorded) -> bool:
    """PutObject, CopyObject and CreateMultipartUpload; parts (``partNumber=``) belong to an upload."""
    query = urlsplit(request.target).query
    if request.method == "POST":
        return "uploads" in query.split("&")
    return request.method == "PUT" and "partNumber=" not in query


@pytest.mark.ceph
async def test_encryption_and_storage_class_on_every_created_object(ceph_rgw: Service) -> None:
    tls_port = urlsplit(ceph_rgw["S3_ENDPOINT_TLS"]).port
    assert tls_port is not None
    ensure_bucket(s3_settings(ceph_rgw, "sse", tls=True))
    async with wiretap(tls_port, ceph_rgw["S3_CA_BUNDLE"]) as tap:
        settings = s3_settings(
            ceph_rgw,
            "sse",
            regionendpoint=f"http://127.0.0.1:{tap.port}",
            rootdirectory=unique("sse"),
            encrypt=True,
            storageclass="STANDARD",
            multipartcopythresholdsize=MIN_PART_SIZE,
            multipartcopychunksize=MIN_PART_SIZE,
        )
        s3 = S3Driver(settings)
        try:
            await s3.put("manifest", b"{}")
            big = os.urandom(MIN_PART_SIZE + 1000)
            state = await s3.append("uploads/a/data", None, _chunks(big))  # a part and a tail
            await s3.commit("uploads/a/data", state)
            await s3.move("uploads/a/data", "blobs/big/data")  # above the threshold: multipart copy
            small = await s3.append("uploads/b/data", None, _chunks(b"small blob"))  # only a tail
            await s3.commit("uploads/b/data", small)
            await s3.move("uploads/b/data", "blobs/small/data")  # CopyObject
            stored = b"".join([chunk async for chunk in s3.read("blobs/big/data")])
        finally:
            await s3.aclose()
    assert not tap.errors
    assert hashlib.sha256(stored).digest() == hashlib.sha256(big).digest()
    created = [r for r in tap.requests if _creates_object(r)]
    kinds = {
        "tail": [r for r in created if ".tail." in r.target],
        "copy": [r for r in created if "x-amz-copy-source" in r.headers],
        "multipart": [r for r in created if r.method == "POST"],
    }
    assert len(kinds["tail"]) == 2 and len(kinds["copy"]) == 1 and len(kinds["multipart"]) == 2, created
    unencrypted = [
        f"{r.method} {r.target}"
        for r in created
        if r.headers.get("x-amz-server-side-encryption") != "AES256"
        or r.headers.get("x-amz-storage-class") != "STANDARD"
    ]
    assert unencrypted == []
