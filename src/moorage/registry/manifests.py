"""Parsing and validating manifest payloads: what a manifest is, and what it references.

Pure functions over bytes; the manifest service decides what to do with the result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from moorage.errors import RegistryError
from moorage.registry import mediatypes as mt
from moorage.registry.digests import Digest, parse_digest

__all__ = ["Descriptor", "ParsedManifest", "parse_manifest"]

#: Layers a registry need not hold (Docker foreign layers, OCI non-distributable layers).
_NON_DISTRIBUTABLE = (
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.",
)


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    external: bool = False  # has ``urls`` or is non-distributable: need not be in the registry


@dataclass(slots=True)
class ParsedManifest:
    media_type: str
    artifact_type: str | None
    subject: Descriptor | None
    blobs: list[Descriptor] = field(default_factory=list)
    manifests: list[Descriptor] = field(default_factory=list)
    annotations: dict[str, str] | None = None


def _invalid(message: str, detail: Any = None) -> RegistryError:
    return RegistryError("MANIFEST_INVALID", message, detail)


def _descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise _invalid(f"{where} must be a descriptor object with mediaType, digest and size")
    media_type = value.get("mediaType")
    size = value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise _invalid(f"{where}.mediaType is missing; every descriptor needs a media type")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where}.size must be a non-negative integer")
    digest_value = value.get("digest")
    if not isinstance(digest_value, str):
        raise _invalid(f"{where}.digest is missing")
    digest = parse_digest(digest_value, code="MANIFEST_INVALID")
    annotations = value.get("annotations")
    if annotations is not None and not (
        isinstance(annotations, dict) and all(isinstance(v, str) for v in annotations.values())
    ):
        raise _invalid(f"{where}.annotations must map strings to strings")
    artifact_type = value.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid(f"{where}.artifactType must be a string")
    external = bool(value.get("urls")) or media_type.startswith(_NON_DISTRIBUTABLE)
    return Descriptor(media_type, digest, size, artifact_type, annotations, external)


def _media_type(document: dict[str, Any], content_type: str | None) -> str:
    declared = document.get("mediaType")
    header = (content_type or "").split(";")[0].strip().lower() or None
    if declared is not None and not isinstance(declared, str):
        raise _invalid("mediaType must be a string")
    if header in mt.SCHEMA1_TYPES or declared in mt.SCHEMA1_TYPES:
        raise _invalid(
            "Docker schema 1 manifests are not supported; push with a current client "
            "(it converts to schema 2), or convert with 'skopeo copy --format v2s2'"
        )
    if declared and header and header in mt.MANIFEST_TYPES and declared != header:
        raise _invalid(
            f"Content-Type {header} does not match the manifest's mediaType {declared}; send the same type in both"
        )
    chosen = declared or (header if header in mt.MANIFEST_TYPES else None)
    if chosen is None:
        # OCI allows omitting mediaType in the body; infer from the shape.
        chosen = mt.OCI_INDEX if "manifests" in document else mt.OCI_MANIFEST
    if chosen not in mt.MANIFEST_TYPES:
        raise _invalid(
            f"unsupported manifest media type {chosen!r}; supported: {', '.join(sorted(mt.MANIFEST_TYPES))}",
            {"mediaType": chosen},
        )
    return chosen


def parse_manifest(payload: bytes, content_type: str | None) -> ParsedManifest:
    """Parse and validate ``payload``; raises ``MANIFEST_INVALID`` saying what is wrong."""
    try:
        document = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _invalid(f"manifest is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise _invalid("manifest must be a JSON object")
    if document.get("schemaVersion") != 2:
        raise _invalid("schemaVersion must be 2")
    media_type = _media_type(document, content_type)
    subject = _descriptor(document["subject"], "subject") if document.get("subject") is not None else None
    annotations = document.get("annotations")
    if annotations is not None and not isinstance(annotations, dict):
        raise _invalid("annotations must be an object")
    artifact_type = document.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid("artifactType must be a string")
    parsed = ParsedManifest(media_type, artifact_type, subject, annotations=annotations)
    if media_type in mt.INDEX_TYPES:
        children = document.get("manifests")
        if not isinstance(children, list):
            raise _invalid(f"{media_type} needs a 'manifests' list")
        parsed.manifests = [_descriptor(c, f"manifests[{i}]") for i, c in enumerate(children)]
        return parsed
    config = document.get("config")
    layers = document.get("layers", [])
    if config is None:
        raise _invalid(f"{media_type} needs a 'config' descriptor")
    if not isinstance(layers, list):
        raise _invalid("'layers' must be a list of descriptors")
    config_descriptor = _descriptor(config, "config")
    parsed.blobs = [config_descriptor, *(_descriptor(layer, f"layers[{i}]") for i, layer in enumerate(layers))]
    # image-spec: artifactType falls back to config.mediaType, unless that is an image config
    # or the empty config.
    if (
        parsed.artifact_type is None
        and media_type == mt.OCI_MANIFEST
        and config_descriptor.media_type not in ("application/vnd.oci.image.config.v1+json", mt.OCI_EMPTY_CONFIG)
    ):
        parsed.artifact_type = config_descriptor.media_type
    return parsed
