"""The ``driver`` fixture: every storage driver the shared suite runs against.

The object-store variants start their service once per session (``tests/services``) and give
each test its own ``rootdirectory``/``prefix`` in a per-session bucket or container, so tests
never see each other's keys. The object-store drivers list with a page size of 7 keys, so the
suite's listing test crosses several pages on a real server.

``swift-s3api`` runs the ``s3`` driver against OpenStack Swift's S3 emulation (s3api): a second,
independent S3 implementation besides RGW, with its own quirks (Content-MD5 on DeleteObjects).
``filesystem-threads`` runs the filesystem driver the way it runs on a network filesystem.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from moorage.storage.checked import CheckedDriver
from moorage.storage.drivers.filesystem import FilesystemDriver
from moorage.storage.drivers.memory import MemoryDriver
from tests.storage.objectstores import ensure_bucket, s3_settings, swift_settings, unique

_BUCKETS: dict[str, str] = {}


def _bucket(kind: str) -> str:
    """One bucket per variant and session: creating a bucket costs RGW a few pool updates."""
    if kind not in _BUCKETS:
        _BUCKETS[kind] = unique(f"suite-{kind}")
    return _BUCKETS[kind]


@pytest.fixture(
    params=[
        "inmemory",
        "filesystem",
        "filesystem-threads",
        "ceph-s3",
        "ceph-s3-https",
        "ceph-swift",
        "openstack-swift",
        "swift-s3api",
    ]
)
async def driver(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[CheckedDriver]:
    kind = request.param
    if kind == "inmemory":
        yield CheckedDriver(MemoryDriver())
        return
    if kind.startswith("filesystem"):
        # "filesystem-threads": stat and open in worker threads, as on a network filesystem.
        threads = kind.endswith("threads")
        yield CheckedDriver(FilesystemDriver(tmp_path / "storage", inline_metadata=False if threads else None))
        return
    if kind.endswith("swift"):
        from moorage.storage.drivers.swift import SwiftDriver

        service = request.getfixturevalue("ceph_rgw" if kind == "ceph-swift" else "swift_saio")
        # A small segment size, so the suite's 6 MiB append spans several segments.
        swift = SwiftDriver(
            swift_settings(service, _bucket(kind), prefix=unique("t"), chunksize=1024 * 1024), list_limit=7
        )
        try:
            yield CheckedDriver(swift)
        finally:
            await swift.aclose()
        return
    from moorage.storage.drivers.s3 import S3Driver

    service = request.getfixturevalue("swift_saio" if kind == "swift-s3api" else "ceph_rgw")
    tls = kind.endswith("https")
    settings = s3_settings(service, _bucket(kind), tls=tls, rootdirectory=unique("t"))
    ensure_bucket(settings)
    if tls:
        # The suite's url_for test fetches the presigned URLs; trust the RGW's own CA only.
        monkeypatch.setenv("MOORAGE_TEST_CA_BUNDLE", service["S3_CA_BUNDLE"])
    s3 = S3Driver(settings, list_page_size=7)
    try:
        yield CheckedDriver(s3)
    finally:
        await s3.aclose()
