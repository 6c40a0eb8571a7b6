"""A tiny OCI push/pull helper over httpx for integration tests (real HTTP semantics, no mocks)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def push_blob(client: httpx.AsyncClient, name: str, data: bytes) -> str:
    """Monolithic POST ?digest=; returns the digest."""
    digest = digest_of(data)
    response = await client.post(f"/v2/{name}/blobs/uploads/", params={"digest": digest}, content=data)
    assert response.status_code == 201, response.text
    return digest


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data), **extra}


async def push_image(
    client: httpx.AsyncClient, name: str, tag: str | None, layers: list[bytes], **manifest_extra: Any
) -> tuple[str, bytes]:
    """Push config + layers + an OCI manifest; returns (manifest digest, manifest bytes)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}).encode()
    await push_blob(client, name, config)
    for layer in layers:
        await push_blob(client, name, layer)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER, layer) for layer in layers],
        **manifest_extra,
    }
    body = json.dumps(manifest).encode()
    digest = digest_of(body)
    response = await client.put(
        f"/v2/{name}/manifests/{tag or digest}", content=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert response.status_code == 201, response.text
    return digest, body


def error_code(response: httpx.Response) -> str:
    """The first spec error code of a JSON error response (and check the envelope's shape)."""
    body = response.json()
    assert set(body) == {"errors"}, body
    error = body["errors"][0]
    assert isinstance(error["message"], str) and error["message"], body
    return str(error["code"])
