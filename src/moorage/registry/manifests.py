"""Parsing and validating manifest payloads: what a manifest is, and what it references.

Pure functions over bytes; the manifest service decides what to do with the result. The parser
is stricter than Python's ``json`` so that a payload, whose digest is its identity, can be read
only one way and by every client: UTF-8 only, no duplicate keys (``json`` keeps the last one,
Go clients may keep another), no ``NaN``/``Infinity``, sizes within int64 (Go's ``int64``), and
a bounded nesting depth (``json`` recurses once per level: 100,000 levels was a RecursionError).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from moorage.errors import RegistryError
from moorage.numbers import INT64_MAX  # Go clients read ``size`` into an int64 ("cannot unmarshal number")
from moorage.registry import mediatypes as mt
from moorage.registry.digests import Digest, parse_digest

__all__ = ["MAX_CONTAINERS", "MAX_DEPTH", "MEDIA_TYPE", "Descriptor", "ParsedManifest", "config_media_type", "parse_manifest"]

#: Layers a registry need not hold (Docker foreign layers, OCI non-distributable layers).
_NON_DISTRIBUTABLE = (
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.",
)

#: Deepest JSON nesting accepted. Real manifests nest 4 levels (index → descriptor → platform →
#: features); 64 leaves room for any extension and keeps every later walk of the document shallow.
MAX_DEPTH = 64
#: A descriptor's media type or artifact type: printable ASCII, at most 255 characters (the columns'
#: size; PostgreSQL refused longer values, or a NUL, with a 500). Deliberately looser than
#: image-spec's RFC 6838 pattern: artifacts in the wild carry parameters ("text/plain;
#: charset=utf-8" is on GitLab's list of types its users push), and refusing them helps nobody.
MEDIA_TYPE = re.compile(r"[!-~](?:[ -~]{0,253}[!-~])?")
#: Most JSON objects and lists accepted, counted as ``{`` and ``[`` bytes (strings included, so an
#: upper bound). Parsing costs about 3 µs per container, plus the cyclic GC's passes over them:
#: 4 MiB of ``{},`` (1.4 million objects) took 2-10 s of CPU on the event loop. A manifest with
#: 10,000 annotated layers has about 20,000.
MAX_CONTAINERS = 100_000


def _deeper_than(document: Any, limit: int) -> bool:
    """True when ``document`` nests lists/objects more than ``limit`` levels (level by level, no recursion)."""
    level = [document] if isinstance(document, (dict, list)) else []
    for _ in range(limit):
        level = [
            child
            for value in level
            for child in (value.values() if isinstance(value, dict) else value)
            if isinstance(child, (dict, list))
        ]
        if not level:
            return False
    return True


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    external: bool = False  # has ``urls`` or is non-distributable: need not be in the registry
    where: str = ""  # where the manifest holds it (``config``, ``layers[2]``), for error messages


@dataclass(slots=True)
class ParsedManifest:
    media_type: str
    #: What the referrers API lists: ``artifactType``, else (image manifests) the config's media type.
    artifact_type: str | None
    subject: Descriptor | None
    blobs: list[Descriptor] = field(default_factory=list)
    manifests: list[Descriptor] = field(default_factory=list)
    annotations: dict[str, str] | None = None


def _invalid(message: str, detail: Any = None) -> RegistryError:
    return RegistryError("MANIFEST_INVALID", message, detail)


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _check_media_type(value: str, where: str) -> None:
    if MEDIA_TYPE.fullmatch(value) is None:
        raise _invalid(
            f"{where} {value[:80]!r} is not a media type: use printable ASCII, at most 255 characters, "
            "such as application/vnd.example.config.v1+json",
            {"field": where},
        )


def _descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise _invalid(f"{where} must be a descriptor object with mediaType, digest and size", {"descriptor": where})
    media_type = value.get("mediaType")
    size = value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise _invalid(
            f"{where}.mediaType is missing; every descriptor needs a media type", {"descriptor": where}
        )
    _check_media_type(media_type, f"{where}.mediaType")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= INT64_MAX:
        raise _invalid(
            f"{where}.size must be an integer from 0 to 2^63-1 (the blob's length in bytes)",
            {"descriptor": where},
        )
    digest_value = value.get("digest")
    if not isinstance(digest_value, str):
        raise _invalid(f"{where}.digest is missing", {"descriptor": where})
    digest = parse_digest(digest_value, code="MANIFEST_INVALID")
    annotations = value.get("annotations")
    if annotations is not None and not _string_map(annotations):
        raise _invalid(f"{where}.annotations must map strings to strings", {"descriptor": where})
    artifact_type = value.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid(f"{where}.artifactType must be a string", {"descriptor": where})
    if artifact_type is not None:
        _check_media_type(artifact_type, f"{where}.artifactType")
    external = bool(value.get("urls")) or media_type.startswith(_NON_DISTRIBUTABLE)
    return Descriptor(media_type, digest, size, artifact_type, annotations, external, where)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: refuse a repeated key, which JSON readers resolve differently."""
    document = dict(pairs)
    if len(document) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _invalid(
                    f"manifest repeats the key {key!r} in one JSON object; send each key once "
                    "(JSON readers disagree on which value counts)",
                    {"key": key},
                )
            seen.add(key)
    return document


def _no_constant(name: str) -> Any:
    raise _invalid(f"manifest contains {name}, which is not JSON; use a number or a string")


def _load(payload: bytes) -> Any:
    """Strict JSON (see the module docstring); ``MANIFEST_INVALID`` saying what is wrong.

    Nesting: ``json``'s C scanner counts its levels against the interpreter's recursion limit and
    raises ``RecursionError`` (cleanly, after at most ~1,000 levels, so cheaply) for anything
    deeper; what it does parse is then held to :data:`MAX_DEPTH`. Cost is bounded by the size
    limit the payload was read under and :data:`MAX_CONTAINERS`: one C-speed parse and one walk
    over its containers.
    """
    too_deep = _invalid(f"manifest nests lists/objects more than {MAX_DEPTH} levels deep; flatten it")
    containers = payload.count(b"{") + payload.count(b"[")
    if containers > MAX_CONTAINERS:
        raise _invalid(
            f"manifest has {containers} '{{' and '[' characters; at most {MAX_CONTAINERS} JSON objects and "
            "lists are accepted: split it (e.g. an index of smaller manifests)",
            {"limit": MAX_CONTAINERS},
        )
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid(f"manifest is not UTF-8: {exc}") from None
    try:
        document = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise _invalid(f"manifest is not valid JSON: {exc}") from None
    except RecursionError:
        raise too_deep from None
    except ValueError as exc:  # an integer longer than sys.get_int_max_str_digits() digits
        raise _invalid(f"manifest cannot be read: {exc}") from None
    if _deeper_than(document, MAX_DEPTH):
        raise too_deep
    return document


def _header_type(content_type: str) -> str:
    return content_type.split(";")[0].strip().lower()


def _media_type(document: dict[str, Any], content_type: str | None) -> str:
    """The manifest's media type, checked against ``Content-Type`` when it came over HTTP.

    distribution-spec "Pushing Manifests": when the manifest has a ``mediaType`` the client MUST
    send it as ``Content-Type``. Docker, podman/skopeo/buildah (containers/image), crane, oras and
    helm (oras-go) all send the manifest's type, so refusing a missing or different header
    (``text/plain``, ``application/json``) breaks none of them and keeps a payload from being
    stored as one type and served as another.
    """
    declared = document.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise _invalid("mediaType must be a string")
    header = None if content_type is None else _header_type(content_type)
    if header in mt.SCHEMA1_TYPES or declared in mt.SCHEMA1_TYPES:
        raise _invalid(
            "Docker schema 1 manifests are not supported; push with a current client "
            "(it converts to schema 2), or convert with 'skopeo copy --format v2s2'"
        )
    if declared is not None and declared not in mt.MANIFEST_TYPES:
        raise _invalid(
            f"unsupported manifest media type {declared!r}; supported: {', '.join(sorted(mt.MANIFEST_TYPES))}",
            {"mediaType": declared},
        )
    if header is None:  # not pushed over HTTP (an import): trust the body, infer from its shape
        return declared or (mt.OCI_INDEX if "manifests" in document else mt.OCI_MANIFEST)
    if declared is not None:
        if header != declared:
            shown = f"Content-Type {header}" if header else "no Content-Type"
            raise _invalid(
                f"{shown} does not match the manifest's mediaType {declared}; "
                f"send 'Content-Type: {declared}'",
                {"mediaType": declared, "contentType": header},
            )
        return declared
    if header not in mt.MANIFEST_TYPES:
        shown = f"Content-Type {header!r}" if header else "no Content-Type"
        raise _invalid(
            f"the manifest has no mediaType and {shown} is not a manifest type; send the manifest's "
            f"type as Content-Type (one of {', '.join(sorted(mt.MANIFEST_TYPES))})",
            {"contentType": header},
        )
    return header


def parse_manifest(payload: bytes, content_type: str | None) -> ParsedManifest:
    """Parse and validate ``payload``; raises ``MANIFEST_INVALID`` saying what is wrong.

    ``content_type`` is the request's ``Content-Type`` (``""`` when the client sent none), or
    ``None`` when the payload did not come with a request (importing a storage tree): then the
    media type comes from the body alone.
    """
    document = _load(payload)
    if not isinstance(document, dict):
        raise _invalid("manifest must be a JSON object")
    schema_version = document.get("schemaVersion")
    if type(schema_version) is not int or schema_version != 2:  # 2.0 and true are not 2 to Go clients
        raise _invalid("schemaVersion must be 2")
    media_type = _media_type(document, content_type)
    subject = _descriptor(document["subject"], "subject") if document.get("subject") is not None else None
    annotations = document.get("annotations")
    if annotations is not None and not _string_map(annotations):
        raise _invalid("annotations must map strings to strings")
    artifact_type = document.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid("artifactType must be a string")
    if artifact_type is not None:
        _check_media_type(artifact_type, "artifactType")
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
    # distribution-spec "Listing Referrers": with no artifactType, an image manifest is listed
    # with its config's media type, whatever it is (image config and empty config included).
    if not parsed.artifact_type:
        parsed.artifact_type = config_descriptor.media_type
    return parsed


def config_media_type(payload: bytes) -> str | None:
    """The config descriptor's media type of a stored image manifest, or ``None``.

    Tolerant on purpose: it reads rows stored before the fallback above existed, which were
    validated by the rules of their day.
    """
    try:
        document = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    config = document.get("config") if isinstance(document, dict) else None
    media_type = config.get("mediaType") if isinstance(config, dict) else None
    return media_type if isinstance(media_type, str) else None
