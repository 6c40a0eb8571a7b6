"""Every storage key the registry writes, in Distribution's layout, in one place.

```
blobs/<algorithm>/<first two hex>/<hex>/data     content-addressed bytes (layers, configs, manifests)
uploads/<uuid>/data                              an unfinished upload (driver-specific pieces below it)
uploads/<uuid>/verify                            a committed upload being re-read for a non-sha256 digest
_health/<node>/probe                             each node's storage health probe (``/api/v2.0/health``)
```
Repositories, tags and links live in the database, never in storage.
"""

from __future__ import annotations

from moorage.registry.digests import Digest

__all__ = ["blob_path", "health_probe_path", "upload_dir", "upload_path"]


def blob_path(digest: Digest) -> str:
    return f"blobs/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}/data"


def upload_dir(upload_id: str) -> str:
    return f"uploads/{upload_id}"


def upload_path(upload_id: str) -> str:
    return f"uploads/{upload_id}/data"


def health_probe_path(node: str) -> str:
    """A small key each node writes, reads and deletes to prove storage works for it."""
    return f"_health/{node}/probe"
