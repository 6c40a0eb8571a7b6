"""Names, tags, digests and manifests are validated before anything is written."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moorage.errors import RegistryError
from moorage.registry.digests import parse_digest
from moorage.registry.manifests import parse_manifest
from moorage.registry.names import validate_name, validate_tag

GOOD_NAMES = ["a", "library/ubuntu", "a.b/c_d/e__f", "x-y--z/0", "a" * 255]
BAD_NAMES = ["", "A", "a/", "/a", "a//b", "a..b", "-a", "a-", "a___b", "a b", "a" * 256, "a/.b", "a\n"]


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_good_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names(name: str) -> None:
    with pytest.raises(RegistryError) as caught:
        validate_name(name)
    assert caught.value.code == "NAME_INVALID"


@pytest.mark.parametrize("tag", ["latest", "v1.2.3", "_x", "A" * 128])
def test_good_tags(tag: str) -> None:
    assert validate_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", "-x", ".x", "a" * 129, "a/b", "a:b", "latest\n"])
def test_bad_tags(tag: str) -> None:
    """``MANIFEST_INVALID``: the OCI spec has no tag code (``TAG_INVALID`` is Distribution's)."""
    with pytest.raises(RegistryError) as caught:
        validate_tag(tag)
    assert caught.value.code == "MANIFEST_INVALID"


def test_digests() -> None:
    assert str(parse_digest("sha256:" + "a" * 64)) == "sha256:" + "a" * 64
    assert parse_digest("sha512:" + "0" * 128).algorithm == "sha512"
    for bad in (
        "sha256:" + "a" * 63,
        "sha256:" + "A" * 64,
        "sha256",
        "sha512:" + "a" * 64,
        ":" + "a" * 64,
        "sha256:" + "a" * 64 + "\n",
    ):
        with pytest.raises(RegistryError) as caught:
            parse_digest(bad)
        assert caught.value.code == "DIGEST_INVALID"
    with pytest.raises(RegistryError) as unsupported:
        parse_digest("md5:" + "a" * 32)
    assert unsupported.value.status == 400


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_manifest_parser(payload: bytes) -> None:
    try:
        parse_manifest(payload, "application/vnd.oci.image.manifest.v1+json")
    except RegistryError as error:
        assert error.code == "MANIFEST_INVALID"


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=20,
    )
)
def test_arbitrary_json_never_crashes_the_manifest_parser(document: object) -> None:
    for wrapper in (document, {"schemaVersion": 2, "config": document, "layers": document},
                    {"schemaVersion": 2, "manifests": document, "subject": document}):
        try:
            parse_manifest(json.dumps(wrapper).encode(), None)
        except RegistryError as error:
            assert error.code in {"MANIFEST_INVALID", "UNSUPPORTED"}


def test_artifact_type_falls_back_to_config_media_type() -> None:
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": "sha256:" + "1" * 64, "size": 2},
        "layers": [],
    }
    assert parse_manifest(json.dumps(manifest).encode(), None).artifact_type == "application/vnd.cncf.helm.config.v1+json"
