"""Put images straight into an upstream registry over HTTP (no client tool): what the proxy then serves.

Each image is one random layer and a config, pushed monolithically (``POST ?digest=``), then the
manifest by tag. Nothing here imports pytest; the benchmark uses it too.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = ["PushedImage", "htpasswd_file", "push_image", "random_layer", "tar_layer"]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@dataclass(frozen=True)
class PushedImage:
    manifest_digest: str
    manifest: bytes
    layers: tuple[str, ...]
    config: str


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _push_blob(http: httpx.Client, base: str, name: str, data: bytes) -> str:
    digest = _digest(data)
    if http.head(f"{base}/v2/{name}/blobs/{digest}").status_code == 200:
        return digest
    # Open a session, then PUT the bytes: Distribution 2.8 ignores ?digest= on a POST and does not read its
    # body, which then corrupts the next request on the same connection (bodies over ~64 KiB)
    r = http.post(f"{base}/v2/{name}/blobs/uploads/")
    r.raise_for_status()
    location = r.headers["location"]
    url = location if location.startswith("http") else base + location
    url += ("&" if "?" in url else "?") + "digest=" + digest  # keep Distribution's _state parameter
    r = http.put(url, content=data, headers={"Content-Type": "application/octet-stream"})
    r.raise_for_status()
    return digest


def push_image(base: str, name: str, tag: str, layers: list[bytes], auth: tuple[str, str] | None = None,
               *, label: str = "") -> PushedImage:
    """Push ``layers`` (and a config naming ``label``) as ``name:tag`` to the registry at ``base``."""
    with httpx.Client(auth=auth, timeout=120) as http:
        layer_digests = [_push_blob(http, base, name, layer) for layer in layers]
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"label": label}},
                             "rootfs": {"type": "layers", "diff_ids": layer_digests}}).encode()
        config_digest = _push_blob(http, base, name, config)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                       "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": len(layer)}
                       for d, layer in zip(layer_digests, layers, strict=True)],
        }).encode()
        r = http.put(f"{base}/v2/{name}/manifests/{tag}", content=manifest, headers={"Content-Type": OCI_MANIFEST})
        r.raise_for_status()
    return PushedImage(_digest(manifest), manifest, tuple(layer_digests), config_digest)


def random_layer(size: int) -> bytes:
    """``size`` random bytes: a blob for HTTP-level tests (clients that unpack need :func:`tar_layer`)."""
    return os.urandom(size)


def tar_layer(size: int, name: str = "payload.bin") -> tuple[bytes, str]:
    """An uncompressed tar layer holding one file of ``size`` random bytes: (layer, the file's hex SHA-256).

    Uncompressed, so its digest is also its diff_id (what :func:`push_image` writes in the config).
    """
    content = os.urandom(size)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue(), hashlib.sha256(content).hexdigest()


def htpasswd_file(path: Path, username: str, password: str) -> Path:
    """A bcrypt htpasswd file as Distribution's ``auth.htpasswd`` wants it (libcrypt's ``$2b$``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # crypt is deprecated in 3.11, gone in 3.13
        import crypt

        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))
    path.write_text(f"{username}:{hashed}\n")
    return path
