"""Every storage key the registry writes, in Distribution's layout, in one place.

```
blobs/<algorithm>/<first two hex>/<hex>/data     content-addressed bytes (layers, configs, manifests)
uploads/<uuid>/data                              an unfinished upload (driver-specific pieces below it)
uploads/<uuid>/verify                            a committed upload being re-read for a non-sha256 digest
```
Repositories, tags and links live in the database, never in storage.
"""

from __future__ import annotations

from moorage.registry.digests import Digest

__all__ = ["blob_path", "upload_dir", "upload_path"]


def blob_path(digest: Digest) -> str:
    return f"blobs/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}/data"


def upload_dir(upload_id: str) -> str:
    return f"uploads/{upload_id}"


def upload_path(upload_id: str) -> str:
    return f"uploads/{upload_id}/data"
