"""Manifest media types the registry understands, and what each may reference."""

from __future__ import annotations

__all__ = [
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "IMAGE_TYPES",
    "INDEX_TYPES",
    "MANIFEST_TYPES",
    "OCI_EMPTY_CONFIG",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "SCHEMA1_TYPES",
]

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"

#: Image manifests: reference a config blob and layer blobs.
IMAGE_TYPES = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
#: Indexes: reference other manifests.
INDEX_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
MANIFEST_TYPES = IMAGE_TYPES | INDEX_TYPES
#: Deprecated signed schema 1: refused with a message saying how to convert.
SCHEMA1_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)
