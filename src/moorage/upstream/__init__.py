"""Other registries: endpoints (``/api/v2.0/registries``) and the client that talks to them.

The proxy cache uses them today and replication will tomorrow: nothing here knows about
projects or the cache.
"""

from moorage.upstream.client import (
    MANIFEST_ACCEPT,
    Connection,
    UpstreamBlob,
    UpstreamClient,
    UpstreamError,
    UpstreamManifest,
)

__all__ = ["MANIFEST_ACCEPT", "Connection", "UpstreamBlob", "UpstreamClient", "UpstreamError", "UpstreamManifest"]
