"""Real OCI image layouts built on disk, so the e2e tests and benchmarks never need the internet.

Layers are tarballs of random bytes (incompressible, so every layer is as large on the wire as
asked), gzipped, written straight to ``blobs/sha256/<hex>`` while both the compressed digest and
the uncompressed ``diff_id`` are computed in the same pass: a 100 MiB layer never sits in memory.
The result is a layout that ``skopeo copy oci:<dir>:<tag> docker://…`` and ``podman pull oci:…``
accept as-is (OCI image-layout spec 1.0: ``oci-layout``, ``index.json``, ``blobs/``).

:func:`verify_layout` re-hashes every blob of a layout; the tests use it on what they pull back,
so a registry that serves a single wrong byte is caught even if a client forgot to check.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "MT_OCI_CONFIG",
    "MT_OCI_INDEX",
    "MT_OCI_LAYER_GZIP",
    "MT_OCI_MANIFEST",
    "Blob",
    "BuiltImage",
    "BuiltIndex",
    "LayoutCorrupt",
    "OciLayout",
    "sha256_file",
    "verify_dir",
    "verify_layout",
]

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
_CHUNK = 1 << 20


class LayoutCorrupt(AssertionError):
    """A blob's bytes do not hash to the digest it is stored (or referenced) under."""


@dataclass(frozen=True)
class Blob:
    """An OCI descriptor's essentials: what a manifest says about one blob."""

    digest: str
    size: int
    media_type: str

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        """The JSON descriptor, with optional extra fields (``platform``, ``annotations``)."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


@dataclass(frozen=True)
class BuiltImage:
    """One single-platform image in a layout, with every blob it is made of."""

    layout: Path
    tag: str
    manifest: Blob
    config: Blob
    layers: tuple[Blob, ...]
    files: dict[str, str] = field(default_factory=dict)
    """Path inside the image filesystem → sha256 hex of its content (for checking a container)."""

    @property
    def ref(self) -> str:
        """The containers/image transport reference: ``oci:<dir>:<tag>``."""
        return f"oci:{self.layout}:{self.tag}"

    @property
    def blobs(self) -> tuple[Blob, ...]:
        """Config and layers: the blobs a registry must store for this image."""
        return (self.config, *self.layers)


@dataclass(frozen=True)
class BuiltIndex:
    """A multi-platform image index and the images it lists."""

    layout: Path
    tag: str
    index: Blob
    images: tuple[BuiltImage, ...]

    @property
    def ref(self) -> str:
        """The containers/image transport reference: ``oci:<dir>:<tag>``."""
        return f"oci:{self.layout}:{self.tag}"


class _HashingWriter(io.RawIOBase):
    """A write-only file that hashes and counts what passes through to ``sink``."""

    def __init__(self, sink: BinaryIO) -> None:
        self.sink = sink
        self.hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.hash.update(view)
        self.sink.write(view)
        self.size += len(view)
        return len(view)


def sha256_file(path: Path) -> str:
    """``sha256:<hex>`` of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


def _canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


class OciLayout:
    """An OCI image layout directory that images, indexes and artifacts are written into.

    Every ``add_*`` method writes its blobs and then records the tag in ``index.json``, so the
    layout on disk is valid after each call.
    """

    def __init__(self, root: Path, *, create: bool = True) -> None:
        """Open the layout at ``root``; with ``create`` make it (empty) when it does not exist."""
        self.root = root
        if create:
            (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
            (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
            if not (root / "index.json").exists():
                self._write_index([])

    # -- blobs -----------------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        """Where a blob with this digest lives in the layout."""
        alg, _, hex_ = digest.partition(":")
        return self.root / "blobs" / alg / hex_

    def add_bytes(self, data: bytes, media_type: str) -> Blob:
        """Store a small blob (config, manifest, artifact file) and describe it."""
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        path = self.blob_path(digest)
        if not path.exists():
            path.write_bytes(data)
        return Blob(digest, len(data), media_type)

    def add_json(self, doc: dict[str, Any], media_type: str) -> Blob:
        """Store a JSON document canonically encoded (its digest is then reproducible)."""
        return self.add_bytes(_canonical(doc), media_type)

    def add_random_layer(self, size: int, name: str = "payload.bin") -> tuple[Blob, str, str]:
        """Write a gzipped tar layer holding one file of ``size`` random bytes.

        Returns the layer blob, its ``diff_id`` (sha256 of the uncompressed tar, as the image
        config must list it) and the sha256 hex of the file content. Compression level 1:
        random bytes do not compress, so higher levels only burn CPU.
        """
        fd, tmp_name = tempfile.mkstemp(dir=self.root / "blobs", prefix=".layer-")
        content_hash = hashlib.sha256()
        with os.fdopen(fd, "wb") as raw:
            compressed = _HashingWriter(raw)
            with gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=1, mtime=0) as gz:
                uncompressed = _HashingWriter(gz)  # type: ignore[arg-type]
                with tarfile.open(fileobj=uncompressed, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                    info = tarfile.TarInfo(name)
                    info.size = size
                    info.mode = 0o644
                    tar.addfile(info, _RandomReader(size, content_hash))
        digest = f"sha256:{compressed.hash.hexdigest()}"
        os.replace(tmp_name, self.blob_path(digest))
        blob = Blob(digest, compressed.size, MT_OCI_LAYER_GZIP)
        return blob, f"sha256:{uncompressed.hash.hexdigest()}", content_hash.hexdigest()

    # -- images ----------------------------------------------------------------------------
    def add_image(
        self,
        tag: str,
        layer_sizes: Sequence[int],
        *,
        architecture: str = "amd64",
        os_name: str = "linux",
        record_tag: bool = True,
    ) -> BuiltImage:
        """Build a single-platform image of random layers and tag it in the layout.

        Each layer holds ``layerN.bin``; the config has a ``Cmd`` so that podman/buildah treat
        it as a runnable image even though nothing in it can run.
        """
        layers: list[Blob] = []
        diff_ids: list[str] = []
        files: dict[str, str] = {}
        for i, size in enumerate(layer_sizes):
            name = f"layer{i}.bin"
            blob, diff_id, content = self.add_random_layer(size, name)
            layers.append(blob)
            diff_ids.append(diff_id)
            files[name] = content
        config = self.add_json(
            {
                "architecture": architecture,
                "os": os_name,
                "created": "2026-01-01T00:00:00Z",
                "config": {"Cmd": ["/layer0.bin"], "Labels": {"org.moorage.test": tag}},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
                "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "moorage tests"}] * len(layers),
            },
            MT_OCI_CONFIG,
        )
        manifest = self.add_json(
            {
                "schemaVersion": 2,
                "mediaType": MT_OCI_MANIFEST,
                "config": config.descriptor(),
                "layers": [layer.descriptor() for layer in layers],
            },
            MT_OCI_MANIFEST,
        )
        if record_tag:
            self.tag(tag, manifest)
        return BuiltImage(self.root, tag, manifest, config, tuple(layers), files)

    def add_index(
        self,
        tag: str,
        platforms: Iterable[tuple[str, str]] = (("linux", "amd64"), ("linux", "arm64")),
        layer_sizes: Sequence[int] = (64 * 1024, 32 * 1024),
    ) -> BuiltIndex:
        """Build one image per ``(os, architecture)`` and an OCI index listing them, tagged ``tag``."""
        images: list[BuiltImage] = []
        entries: list[dict[str, Any]] = []
        for os_name, arch in platforms:
            image = self.add_image(
                f"{tag}-{arch}", layer_sizes, architecture=arch, os_name=os_name, record_tag=False
            )
            images.append(image)
            entries.append(image.manifest.descriptor(platform={"os": os_name, "architecture": arch}))
        index = self.add_json(
            {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": entries}, MT_OCI_INDEX
        )
        self.tag(tag, index)
        return BuiltIndex(self.root, tag, index, tuple(images))

    # -- index.json ------------------------------------------------------------------------
    def tag(self, tag: str, target: Blob) -> None:
        """Point ``tag`` at a manifest or index in ``index.json`` (replacing an older entry)."""
        entries = [m for m in self._read_index() if m.get("annotations", {}).get(REF_NAME) != tag]
        entries.append(target.descriptor(annotations={REF_NAME: tag}))
        self._write_index(entries)

    def tags(self) -> dict[str, dict[str, Any]]:
        """Tag → descriptor, as recorded in ``index.json``."""
        return {
            m["annotations"][REF_NAME]: m for m in self._read_index() if REF_NAME in m.get("annotations", {})
        }

    def read_json(self, digest: str) -> dict[str, Any]:
        """Parse a JSON blob (manifest, index, config) of this layout."""
        doc: dict[str, Any] = json.loads(self.blob_path(digest).read_bytes())
        return doc

    def _read_index(self) -> list[dict[str, Any]]:
        manifests: list[dict[str, Any]] = json.loads((self.root / "index.json").read_text())["manifests"]
        return manifests

    def _write_index(self, manifests: list[dict[str, Any]]) -> None:
        doc = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": manifests}
        (self.root / "index.json").write_text(json.dumps(doc, indent=1))


class _RandomReader(io.RawIOBase):
    """``size`` random bytes as a readable file, hashed as they are read (the tar member)."""

    def __init__(self, size: int, hasher: Any) -> None:
        self.remaining = size
        self.hasher = hasher

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.remaining, _CHUNK)
        if n <= 0:
            return 0
        data = os.urandom(n)
        buffer[:n] = data
        self.hasher.update(data)
        self.remaining -= n
        return n


def verify_layout(root: Path) -> dict[str, int]:
    """Re-hash every blob of a layout and follow every descriptor from ``index.json``.

    Returns digest → size of every blob reachable from the index. Raises :class:`LayoutCorrupt`
    when a file does not hash to its name, when a descriptor's size disagrees with the file,
    or when a referenced blob is missing: a pull that "succeeded" with wrong bytes fails here.
    """
    layout = OciLayout(root, create=False)
    seen: dict[str, int] = {}
    pending: list[dict[str, Any]] = list(layout._read_index())
    while pending:
        desc = pending.pop()
        digest, size = desc["digest"], desc["size"]
        if digest in seen:
            continue
        path = layout.blob_path(digest)
        if not path.is_file():
            raise LayoutCorrupt(f"{root}: blob {digest} referenced but missing")
        actual = sha256_file(path)
        if actual != digest:
            raise LayoutCorrupt(f"{root}: blob {digest} hashes to {actual}")
        if path.stat().st_size != size:
            raise LayoutCorrupt(
                f"{root}: blob {digest} is {path.stat().st_size} bytes, descriptor says {size}"
            )
        seen[digest] = size
        media_type = desc.get("mediaType", "")
        if media_type.endswith(("manifest.v1+json", "manifest.v2+json")):
            doc = layout.read_json(digest)
            pending.append(doc["config"])
            pending.extend(doc.get("layers", []))
        elif media_type.endswith(("index.v1+json", "manifest.list.v2+json")):
            pending.extend(layout.read_json(digest).get("manifests", []))
    return seen


def verify_dir(root: Path) -> set[str]:
    """Re-hash every blob of a containers/image ``dir:`` copy (files named by their hex digest).

    Returns the set of ``sha256:<hex>`` digests found, manifest excluded. Raises
    :class:`LayoutCorrupt` when a blob does not hash to its name.
    """
    found: set[str] = set()
    for path in root.iterdir():
        name = path.name
        if len(name) == 64 and all(c in "0123456789abcdef" for c in name):
            actual = sha256_file(path)
            if actual != f"sha256:{name}":
                raise LayoutCorrupt(f"{path}: hashes to {actual}")
            found.add(actual)
    return found
