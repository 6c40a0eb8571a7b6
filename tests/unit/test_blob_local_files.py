"""The :class:`Blobs` wrappers pass ``local_file`` on, and multi-site reads fall back when this site lacks the file."""

from __future__ import annotations

import io
from typing import Any, BinaryIO, cast

import pytest

from moorage.cache.store import RegistryCache
from moorage.cache.wrappers import CachedBlobService
from moorage.errors import RegistryError
from moorage.registry.digests import parse_digest
from moorage.registry.interfaces import Blobs
from moorage.sites.blobs import SiteBlobs
from moorage.sites.model import Sites

DIGEST = parse_digest("sha256:" + "a" * 64)


class _Inner:
    def __init__(self, outcome: BinaryIO | RegistryError | None) -> None:
        self.outcome = outcome

    async def local_file(self, digest: Any) -> BinaryIO | None:
        if isinstance(self.outcome, RegistryError):
            raise self.outcome
        return self.outcome


async def test_a_site_without_the_file_answers_none_so_the_read_goes_to_another_site() -> None:
    lost = RegistryError("BLOB_UNKNOWN", "missing from storage")
    site = SiteBlobs(cast(Blobs, _Inner(lost)), cast(Sites, None), redirect_expiry=60)
    assert await site.local_file(DIGEST) is None  # then open() streams from a site that has it
    file = io.BytesIO(b"x")
    assert await SiteBlobs(cast(Blobs, _Inner(file)), cast(Sites, None), redirect_expiry=60).local_file(DIGEST) is file
    other = RegistryError("UNAVAILABLE", "database down", status=503)
    with pytest.raises(RegistryError):
        await SiteBlobs(cast(Blobs, _Inner(other)), cast(Sites, None), redirect_expiry=60).local_file(DIGEST)


async def test_the_cache_wrapper_passes_local_files_on() -> None:
    file = io.BytesIO(b"x")
    cached = CachedBlobService(cast(Blobs, _Inner(file)), cast(RegistryCache, None))
    assert await cached.local_file(DIGEST) is file
