"""The manifest parser reads a payload one way only, at bounded cost, as every client would."""

from __future__ import annotations

import json
from typing import Any

import pytest

from moorage.errors import RegistryError
from moorage.numbers import INT64_MAX
from moorage.registry.manifests import MAX_CONTAINERS, MAX_DEPTH, parse_manifest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DIGEST = "sha256:" + "1" * 64


def _manifest(**extra: Any) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": DIGEST, "size": 2},
        "layers": [],
        **extra,
    }


def _refused(payload: bytes, content_type: str | None = OCI_MANIFEST) -> RegistryError:
    with pytest.raises(RegistryError) as caught:
        parse_manifest(payload, content_type)
    assert caught.value.code == "MANIFEST_INVALID", caught.value.message
    return caught.value


@pytest.mark.parametrize("opening, closing", [(b"[", b"]"), (b"{\"a\":", b"}")])
def test_deep_nesting_is_refused_before_json_recurses(opening: bytes, closing: bytes) -> None:
    error = _refused(opening * 100_000 + closing * 100_000)
    assert f"more than {MAX_DEPTH} levels" in error.message
    assert f"more than {MAX_DEPTH} levels" in _refused(opening * 100_000).message  # never closed


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    brackets = "[{" * 200 + '\\"' + "[" * 100
    parsed = parse_manifest(json.dumps(_manifest(annotations={"a": brackets})).encode(), OCI_MANIFEST)
    assert parsed.annotations == {"a": brackets}


def test_nesting_at_the_limit_is_only_refused_above_it() -> None:
    def nested(depth: int) -> dict[str, Any]:
        value: Any = "x"
        for _ in range(depth - 1):  # the manifest object itself is the first level
            value = [value]
        return _manifest(extra=value)

    parse_manifest(json.dumps(nested(MAX_DEPTH)).encode(), OCI_MANIFEST)
    _refused(json.dumps(nested(MAX_DEPTH + 1)).encode())


def test_more_containers_than_the_limit_are_refused_before_parsing() -> None:
    """4 MiB of ``{},`` parses into 1.4 million objects: seconds of CPU on the event loop."""
    error = _refused(b"[" + b"{}," * (4 * 1024 * 1024 // 3) + b"{}]")
    assert error.detail == {"limit": MAX_CONTAINERS}
    at_limit = b"[" + b"[]," * (MAX_CONTAINERS - 2) + b"[]]"
    assert "must be a JSON object" in _refused(at_limit).message  # parsed, then refused for its shape


@pytest.mark.parametrize(
    "payload",
    [
        b'{"schemaVersion": 2, "mediaType": "a", "mediaType": "' + OCI_MANIFEST.encode() + b'"}',
        json.dumps(_manifest()).replace('"size": 2', '"size": 2, "size": 3').encode(),
        json.dumps(_manifest(annotations={"k": "v"})).replace('"k": "v"', '"k": "v", "k": "w"').encode(),
    ],
)
def test_duplicate_keys_are_refused_at_any_depth(payload: bytes) -> None:
    assert "repeats the key" in _refused(payload).message


@pytest.mark.parametrize("size", [-1, INT64_MAX + 1, 2**70, 1.5, "2", True])
def test_descriptor_sizes_outside_int64_are_refused_naming_the_descriptor(size: object) -> None:
    manifest = _manifest(layers=[{"mediaType": "application/octet-stream", "digest": DIGEST, "size": size}])
    error = _refused(json.dumps(manifest).encode())
    assert error.detail == {"descriptor": "layers[0]"} and "layers[0].size" in error.message


def test_int64_max_is_a_valid_size() -> None:
    manifest = _manifest(layers=[{"mediaType": "application/octet-stream", "digest": DIGEST, "size": INT64_MAX}])
    assert parse_manifest(json.dumps(manifest).encode(), OCI_MANIFEST).blobs[1].size == INT64_MAX


@pytest.mark.parametrize(
    "payload",
    [
        json.dumps(_manifest()).replace('"size": 2', '"size": NaN').encode(),
        json.dumps(_manifest()).replace('"size": 2', '"size": Infinity').encode(),
        json.dumps(_manifest()).replace('"size": 2', '"size": ' + "9" * 5000).encode(),
        json.dumps(_manifest()).replace('"schemaVersion": 2', '"schemaVersion": 2.0').encode(),
        json.dumps(_manifest()).replace('"schemaVersion": 2', '"schemaVersion": true').encode(),
        json.dumps(_manifest()).encode("utf-16"),
        json.dumps(_manifest(annotations={"k": 1})).encode(),
    ],
    ids=["nan", "infinity", "huge-int", "float-version", "bool-version", "utf-16", "annotation-not-string"],
)
def test_payloads_other_readers_see_differently_are_refused(payload: bytes) -> None:
    _refused(payload)


@pytest.mark.parametrize("content_type", ["", "text/plain", "application/json", OCI_INDEX])
def test_content_type_must_be_the_declared_media_type(content_type: str) -> None:
    error = _refused(json.dumps(_manifest()).encode(), content_type)
    assert f"send 'Content-Type: {OCI_MANIFEST}'" in error.message


def test_content_type_parameters_and_case_are_ignored() -> None:
    payload = json.dumps(_manifest()).encode()
    assert parse_manifest(payload, OCI_MANIFEST.upper() + "; charset=utf-8").media_type == OCI_MANIFEST


def test_without_media_type_the_content_type_decides() -> None:
    manifest = _manifest()
    del manifest["mediaType"]
    payload = json.dumps(manifest).encode()
    assert parse_manifest(payload, OCI_MANIFEST).media_type == OCI_MANIFEST
    for content_type in ("", "text/plain"):
        assert "no mediaType" in _refused(payload, content_type).message
    assert parse_manifest(payload, None).media_type == OCI_MANIFEST  # an import: no request, inferred


@pytest.mark.parametrize(
    "config_type",
    ["application/vnd.oci.image.config.v1+json", "application/vnd.oci.empty.v1+json", "application/x.custom"],
)
def test_artifact_type_falls_back_to_any_config_media_type(config_type: str) -> None:
    manifest = _manifest()
    manifest["config"]["mediaType"] = config_type
    assert parse_manifest(json.dumps(manifest).encode(), OCI_MANIFEST).artifact_type == config_type
    manifest["artifactType"] = "application/x.declared"
    assert parse_manifest(json.dumps(manifest).encode(), OCI_MANIFEST).artifact_type == "application/x.declared"
