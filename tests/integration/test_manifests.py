"""Manifests (all four media types, artifacts, subject/referrers), tags, catalog and their errors."""

from __future__ import annotations

import json
import os

import httpx
from sqlalchemy import update

from moorage.db.tables import manifests
from moorage.services import Services
from tests.integration.conftest import unique_name
from tests.integration.oci_client import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    descriptor,
    digest_of,
    error_code,
    push_blob,
    push_image,
)

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


async def _put(client: httpx.AsyncClient, name: str, ref: str, body: bytes, media_type: str) -> httpx.Response:
    return await client.put(f"/v2/{name}/manifests/{ref}", content=body, headers={"Content-Type": media_type})


async def test_docker_schema2_and_manifest_list(client: httpx.AsyncClient) -> None:
    name = unique_name()
    config = b'{"architecture":"arm64","os":"linux"}'
    layer = os.urandom(4096)
    await push_blob(client, name, config)
    await push_blob(client, name, layer)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": descriptor("application/vnd.docker.container.image.v1+json", config),
            "layers": [descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", layer)],
        }
    ).encode()
    assert (await _put(client, name, "arm", manifest, DOCKER_MANIFEST)).status_code == 201
    manifest_list = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_LIST,
            "manifests": [descriptor(DOCKER_MANIFEST, manifest, platform={"architecture": "arm64", "os": "linux"})],
        }
    ).encode()
    assert (await _put(client, name, "multi", manifest_list, DOCKER_LIST)).status_code == 201
    got = await client.get(f"/v2/{name}/manifests/multi", headers={"Accept": DOCKER_LIST})
    assert got.headers["content-type"] == DOCKER_LIST and got.content == manifest_list
    head = await client.head(f"/v2/{name}/manifests/{digest_of(manifest)}", headers={"Accept": DOCKER_MANIFEST})
    assert head.status_code == 200
    assert head.headers["docker-content-digest"] == digest_of(manifest)
    assert int(head.headers["content-length"]) == len(manifest)
    assert head.content == b""


async def test_accept_negotiation_refuses_types_the_client_cannot_read(client: httpx.AsyncClient) -> None:
    name = unique_name()
    await push_image(client, name, "oci", [os.urandom(100)])
    refused = await client.get(f"/v2/{name}/manifests/oci", headers={"Accept": DOCKER_MANIFEST})
    assert refused.status_code == 404 and error_code(refused) == "MANIFEST_UNKNOWN"
    assert "does not accept" in refused.json()["errors"][0]["message"]
    accepted = await client.get(f"/v2/{name}/manifests/oci", headers={"Accept": f"{DOCKER_MANIFEST}, {OCI_MANIFEST}"})
    assert accepted.status_code == 200
    wildcard = await client.get(f"/v2/{name}/manifests/oci", headers={"Accept": "*/*"})
    assert wildcard.status_code == 200


async def test_oci_index_requires_its_children(client: httpx.AsyncClient) -> None:
    name = unique_name()
    _, child = await push_image(client, name, None, [os.urandom(10)])
    missing_child = descriptor(OCI_MANIFEST, b'{"not":"pushed"}')
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor(OCI_MANIFEST, child), missing_child]}
    refused = await _put(client, name, "idx", json.dumps(index).encode(), OCI_INDEX)
    assert refused.status_code == 400 and error_code(refused) == "MANIFEST_BLOB_UNKNOWN"
    assert refused.json()["errors"][0]["detail"]["missing"] == [missing_child["digest"]]
    assert (await client.get(f"/v2/{name}/manifests/idx")).status_code == 404
    index["manifests"] = [descriptor(OCI_MANIFEST, child)]
    assert (await _put(client, name, "idx", json.dumps(index).encode(), OCI_INDEX)).status_code == 201


async def test_manifest_with_unknown_blob_is_refused_and_nothing_is_written(
    client: httpx.AsyncClient, services: Services
) -> None:
    name = unique_name()
    config = b"{}"
    await push_blob(client, name, config)
    layer = os.urandom(100)  # never pushed
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor("application/vnd.oci.image.config.v1+json", config),
            "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", layer)],
        }
    ).encode()
    response = await _put(client, name, "t", body, OCI_MANIFEST)
    assert response.status_code == 400 and error_code(response) == "MANIFEST_BLOB_UNKNOWN"
    assert digest_of(layer) in response.json()["errors"][0]["message"]
    assert (await client.get(f"/v2/{name}/tags/list")).json()["tags"] == []
    digest = digest_of(body)
    assert [i async for i in services.storage.list(f"blobs/sha256/{digest[7:9]}/{digest[7:]}")] == []


async def test_a_blob_of_another_repository_does_not_count(client: httpx.AsyncClient) -> None:
    other, name = unique_name(), unique_name()
    _, body = await push_image(client, other, "x", [os.urandom(10)])
    response = await _put(client, name, "x", body, OCI_MANIFEST)
    assert response.status_code == 400 and error_code(response) == "MANIFEST_BLOB_UNKNOWN"


async def test_invalid_manifests(client: httpx.AsyncClient) -> None:
    name = unique_name()
    cases = [
        (b"not json", OCI_MANIFEST),
        (b"[]", OCI_MANIFEST),
        (json.dumps({"schemaVersion": 1}).encode(), OCI_MANIFEST),
        (json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST}).encode(), OCI_MANIFEST),
        (json.dumps({"schemaVersion": 2, "mediaType": "application/x-unknown"}).encode(), "application/x-unknown"),
        (
            json.dumps(
                {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": "a/b", "digest": "sha256:zz", "size": 1}}
            ).encode(),
            OCI_MANIFEST,
        ),
        (json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": {}}).encode(), OCI_INDEX),
        (json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST}).encode(), OCI_INDEX),
        (b"{}", "application/vnd.docker.distribution.manifest.v1+prettyjws"),
    ]
    for body, media_type in cases:
        response = await _put(client, name, "bad", body, media_type)
        assert response.status_code == 400, (body, response.text)
        assert error_code(response) == "MANIFEST_INVALID", (body, response.text)
    assert (await client.get(f"/v2/{name}/manifests/bad")).status_code == 404


async def test_digest_reference_must_match_content(client: httpx.AsyncClient) -> None:
    name = unique_name()
    _, body = await push_image(client, name, "t", [os.urandom(10)])
    wrong = digest_of(b"other")
    response = await _put(client, name, wrong, body, OCI_MANIFEST)
    assert response.status_code == 400 and error_code(response) == "DIGEST_INVALID"


async def test_oversize_manifest_is_refused_before_it_is_read(client: httpx.AsyncClient) -> None:
    name = unique_name()
    big = b'{"schemaVersion": 2, "annotations": {"x": "' + b"a" * (4 * 1024 * 1024) + b'"}}'
    response = await _put(client, name, "big", big, OCI_MANIFEST)
    assert response.status_code == 413 and error_code(response) == "MANIFEST_TOO_LARGE"
    assert "limits.manifest_max_bytes" in response.json()["errors"][0]["message"]


async def test_bad_names_tags_and_references(client: httpx.AsyncClient) -> None:
    for path in ("/v2/UPPER/tags/list", "/v2/a//b/tags/list", "/v2/-x/manifests/latest", "/v2/a..b/blobs/uploads/"):
        response = await (client.post(path) if path.endswith("uploads/") else client.get(path))
        assert response.status_code == 400 and error_code(response) == "NAME_INVALID", path
    long_name = "/".join(["abcdefghij"] * 24)
    assert error_code(await client.get(f"/v2/{long_name}/tags/list")) == "NAME_INVALID"
    name = unique_name()
    _, body = await push_image(client, name, "ok", [b"x"])
    bad_tag = await _put(client, name, "-bad", body, OCI_MANIFEST)
    assert bad_tag.status_code == 400 and error_code(bad_tag) == "MANIFEST_INVALID"
    assert "tag '-bad' is invalid" in bad_tag.json()["errors"][0]["message"]
    assert error_code(await _put(client, name, "sha256:1234", body, OCI_MANIFEST)) == "DIGEST_INVALID"
    assert error_code(await client.get(f"/v2/{name}/blobs/sha256:xyz")) == "DIGEST_INVALID"


async def test_reads_of_a_reference_that_names_no_manifest_are_404(client: httpx.AsyncClient) -> None:
    """distribution-spec: not found MUST be 404; TAG_INVALID is no OCI code (it was a 400)."""
    name = unique_name()
    await push_image(client, name, "ok", [b"x"])
    for reference in ("-bad", "a" * 129, "sha256:1234", "md5:" + "a" * 32, "ok%0A", "%C3%A9"):
        for method in ("GET", "HEAD", "DELETE"):
            response = await client.request(method, f"/v2/{name}/manifests/{reference}")
            assert response.status_code == 404, (method, reference, response.text)
            if method != "HEAD":
                assert error_code(response) == "MANIFEST_UNKNOWN", (method, reference)
    message = (await client.get(f"/v2/{name}/manifests/-bad")).json()["errors"][0]["message"]
    assert "tag '-bad' is invalid" in message
    assert (await client.get(f"/v2/{name}/manifests/ok")).status_code == 200  # the DELETEs changed nothing


async def test_tag_with_trailing_newline_is_not_a_tag(client: httpx.AsyncClient) -> None:
    """``re.match`` with ``$`` accepted "v1\n" as a tag (and "name\n" as a repository)."""
    name = unique_name()
    _, body = await push_image(client, name, "v1", [b"x"])
    response = await _put(client, name, "v2%0A", body, OCI_MANIFEST)
    assert response.status_code == 400 and error_code(response) == "MANIFEST_INVALID"
    newline_name = await client.get(f"/v2/{name}%0A/tags/list")
    assert newline_name.status_code == 400 and error_code(newline_name) == "NAME_INVALID"
    assert (await client.get(f"/v2/{name}/tags/list")).json()["tags"] == ["v1"]


async def test_delete_tag_then_manifest(client: httpx.AsyncClient) -> None:
    name = unique_name()
    digest, _ = await push_image(client, name, "one", [os.urandom(10)])
    await client.put(
        f"/v2/{name}/manifests/two",
        content=(await client.get(f"/v2/{name}/manifests/one")).content,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert (await client.delete(f"/v2/{name}/manifests/one")).status_code == 202
    gone = await client.get(f"/v2/{name}/manifests/one")
    assert gone.status_code == 404 and error_code(gone) == "MANIFEST_UNKNOWN"
    assert (await client.get(f"/v2/{name}/manifests/{digest}")).status_code == 200
    assert (await client.delete(f"/v2/{name}/manifests/{digest}")).status_code == 202
    assert (await client.get(f"/v2/{name}/manifests/two")).status_code == 404
    assert (await client.get(f"/v2/{name}/tags/list")).json()["tags"] == []
    again = await client.delete(f"/v2/{name}/manifests/{digest}")
    assert again.status_code == 404 and error_code(again) == "MANIFEST_UNKNOWN"


async def test_deletes_can_be_disabled(database_url: str, tmp_path: os.PathLike[str]) -> None:
    from pathlib import Path

    from moorage.app import create_app
    from tests.integration.conftest import make_settings

    settings = make_settings(database_url, Path(tmp_path), MOORAGE_STORAGE__DELETE__ENABLED="false")
    built = Services.from_settings(settings)
    try:
        transport = httpx.ASGITransport(app=create_app(settings, built))
        async with httpx.AsyncClient(transport=transport, base_url="http://r.test") as http:
            name = unique_name()
            digest, _ = await push_image(http, name, "t", [b"x"])
            response = await http.delete(f"/v2/{name}/manifests/{digest}")
            assert response.status_code == 405 and error_code(response) == "UNSUPPORTED"
            assert "storage.delete.enabled" in response.json()["errors"][0]["message"]
            assert (await http.get(f"/v2/{name}/manifests/t")).status_code == 200
    finally:
        await built.aclose()


async def test_tags_list_pagination(client: httpx.AsyncClient) -> None:
    name = unique_name()
    _, body = await push_image(client, name, "t00", [b"x"])
    tags = [f"t{i:02d}" for i in range(12)]
    for tag in tags[1:]:
        await _put(client, name, tag, body, OCI_MANIFEST)
    seen: list[str] = []
    url: str | None = f"/v2/{name}/tags/list?n=5"
    while url:
        response = await client.get(url)
        assert response.status_code == 200
        seen += response.json()["tags"]
        link = response.headers.get("link")
        url = link[1 : link.index(">")] if link else None
    assert seen == tags
    assert (await client.get(f"/v2/{name}/tags/list", params={"n": "x"})).status_code == 400
    for path in (f"/v2/{name}/tags/list", "/v2/_catalog"):  # n=0 was an IndexError (500), found by the fuzz test
        empty = await client.get(path, params={"n": "0"})
        assert empty.status_code == 200 and "link" not in empty.headers, empty.text
        assert empty.json()["tags" if "tags" in path else "repositories"] == []
    unknown = await client.get(f"/v2/{unique_name()}/tags/list")
    assert unknown.status_code == 404 and error_code(unknown) == "NAME_UNKNOWN"


async def test_catalog_pagination_lists_repositories_with_manifests(client: httpx.AsyncClient) -> None:
    prefix = unique_name("cat")
    names = [f"{prefix}/r{i}" for i in range(4)]
    for name in names:
        await push_image(client, name, "t", [b"y"])
    await client.post(f"/v2/{prefix}/only-upload/blobs/uploads/")  # no manifest: not listed
    listed: list[str] = []
    url: str | None = "/v2/_catalog?n=2"
    while url:
        response = await client.get(url)
        listed += response.json()["repositories"]
        link = response.headers.get("link")
        url = link[1 : link.index(">")] if link else None
    assert [n for n in listed if n.startswith(prefix)] == names


async def test_artifact_with_subject_and_referrers(client: httpx.AsyncClient) -> None:
    name = unique_name()
    subject_digest, subject_body = await push_image(client, name, "app", [os.urandom(50)])
    empty = b"{}"
    await push_blob(client, name, empty)
    referrers = {}
    for artifact_type in ("application/vnd.example.sbom", "application/vnd.example.signature"):
        payload = os.urandom(30)
        await push_blob(client, name, payload)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": artifact_type,
                "config": descriptor("application/vnd.oci.empty.v1+json", empty),
                "layers": [descriptor("application/octet-stream", payload)],
                "subject": descriptor(OCI_MANIFEST, subject_body),
                "annotations": {"org.example.kind": artifact_type},
            }
        ).encode()
        response = await _put(client, name, digest_of(manifest), manifest, OCI_MANIFEST)
        assert response.status_code == 201
        assert response.headers["oci-subject"] == subject_digest
        referrers[artifact_type] = digest_of(manifest)
    listing = await client.get(f"/v2/{name}/referrers/{subject_digest}")
    assert listing.status_code == 200 and listing.headers["content-type"] == OCI_INDEX
    found = {m["artifactType"]: m["digest"] for m in listing.json()["manifests"]}
    assert found == referrers
    assert all(m["annotations"]["org.example.kind"] == m["artifactType"] for m in listing.json()["manifests"])
    filtered = await client.get(
        f"/v2/{name}/referrers/{subject_digest}", params={"artifactType": "application/vnd.example.sbom"}
    )
    assert filtered.headers["oci-filters-applied"] == "artifactType"
    assert [m["digest"] for m in filtered.json()["manifests"]] == [referrers["application/vnd.example.sbom"]]
    none = await client.get(f"/v2/{name}/referrers/{digest_of(b'nothing')}")
    assert none.status_code == 200 and none.json()["manifests"] == []
    assert error_code(await client.get(f"/v2/{name}/referrers/sha256:bad")) == "DIGEST_INVALID"


async def test_subject_may_be_pushed_before_its_target(client: httpx.AsyncClient) -> None:
    """distribution-spec 1.1: a manifest whose subject does not exist yet is accepted."""
    name = unique_name()
    empty = b"{}"
    await push_blob(client, name, empty)
    future_subject = {"mediaType": OCI_MANIFEST, "digest": digest_of(b"later"), "size": 5}
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.note",
            "config": descriptor("application/vnd.oci.empty.v1+json", empty),
            "layers": [],
            "subject": future_subject,
        }
    ).encode()
    assert (await _put(client, name, digest_of(manifest), manifest, OCI_MANIFEST)).status_code == 201
    listing = await client.get(f"/v2/{name}/referrers/{future_subject['digest']}")
    assert len(listing.json()["manifests"]) == 1


async def _push_referrer(
    client: httpx.AsyncClient, name: str, subject: bytes, config_type: str, config: bytes = b"{}"
) -> str:
    """An image manifest with a ``subject`` and no ``artifactType``; returns its digest."""
    await push_blob(client, name, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(config_type, config),
            "layers": [],
            "subject": descriptor(OCI_MANIFEST, subject),
        }
    ).encode()
    assert (await _put(client, name, digest_of(manifest), manifest, OCI_MANIFEST)).status_code == 201
    return digest_of(manifest)


async def _listed(client: httpx.AsyncClient, name: str, subject: str, artifact_type: str | None = None) -> dict[str, str]:
    params = {"artifactType": artifact_type} if artifact_type else {}
    listing = await client.get(f"/v2/{name}/referrers/{subject}", params=params)
    assert listing.status_code == 200, listing.text
    return {m["digest"]: m.get("artifactType") for m in listing.json()["manifests"]}


async def test_referrer_without_artifact_type_is_listed_with_its_config_media_type(client: httpx.AsyncClient) -> None:
    """distribution-spec "Listing Referrers": no exception for the image-config or empty types."""
    name = unique_name()
    subject_digest, subject = await push_image(client, name, "app", [b"s"])
    image_config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    types = {
        await _push_referrer(client, name, subject, OCI_CONFIG, image_config): OCI_CONFIG,
        await _push_referrer(client, name, subject, "application/vnd.oci.empty.v1+json"): "application/vnd.oci.empty.v1+json",
        await _push_referrer(client, name, subject, "application/x.custom+json"): "application/x.custom+json",
    }
    assert await _listed(client, name, subject_digest) == types
    for digest, artifact_type in types.items():
        assert await _listed(client, name, subject_digest, artifact_type) == {digest: artifact_type}


async def test_referrers_stored_before_the_fallback_list_and_filter_the_same(
    client: httpx.AsyncClient, services: Services
) -> None:
    """Rows written by earlier versions have no artifact type for image/empty configs: read at listing."""
    name = unique_name()
    subject_digest, subject = await push_image(client, name, "app", [b"s"])
    empty = await _push_referrer(client, name, subject, "application/vnd.oci.empty.v1+json")
    custom = await _push_referrer(client, name, subject, "application/x.custom+json")
    async with services.db.write() as conn:  # what the old code stored for the empty config
        await conn.execute(update(manifests).where(manifests.c.digest == empty).values(artifact_type=None))
    expected = {empty: "application/vnd.oci.empty.v1+json", custom: "application/x.custom+json"}
    assert await _listed(client, name, subject_digest) == expected
    assert await _listed(client, name, subject_digest, "application/vnd.oci.empty.v1+json") == {empty: expected[empty]}
    assert await _listed(client, name, subject_digest, "application/x.custom+json") == {custom: expected[custom]}
    assert await _listed(client, name, subject_digest, "application/x.other") == {}


async def test_deeply_nested_manifest_is_manifest_invalid_and_stores_nothing(
    client: httpx.AsyncClient, services: Services
) -> None:
    name = unique_name()
    await push_image(client, name, "keep", [b"x"])
    for body in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000):
        response = await _put(client, name, "deep", body, OCI_MANIFEST)
        assert response.status_code == 400 and error_code(response) == "MANIFEST_INVALID", response.text
        digest = digest_of(body)
        assert [i async for i in services.storage.list(f"blobs/sha256/{digest[7:9]}/{digest[7:]}")] == []
    assert (await client.get(f"/v2/{name}/tags/list")).json()["tags"] == ["keep"]


def _image(config: dict[str, object], layers: list[dict[str, object]]) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers}).encode()


async def test_descriptor_sizes_must_match_the_stored_blobs(client: httpx.AsyncClient) -> None:
    name = unique_name()
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = os.urandom(1000)
    await push_blob(client, name, config)
    await push_blob(client, name, layer)
    good_config, good_layer = descriptor(OCI_CONFIG, config), descriptor(OCI_LAYER, layer)
    cases = [
        (_image({**good_config, "size": 1}, [good_layer]), "config", "SIZE"),
        (_image(good_config, [{**good_layer, "size": 5}]), "layers[0]", "SIZE"),
        (_image(good_config, [good_layer, {**good_layer, "size": 999}]), "layers[1]", "SIZE"),
        (_image(good_config, [{**good_layer, "size": 2**70}]), "layers[0]", "INT64"),
        (_image(good_config, [{**good_layer, "size": -1000}]), "layers[0]", "INT64"),
    ]
    for body, where, kind in cases:
        response = await _put(client, name, "bad", body, OCI_MANIFEST)
        assert response.status_code == 400 and error_code(response) == "MANIFEST_INVALID", response.text
        error = response.json()["errors"][0]
        assert error["detail"]["descriptor"] == where and where in error["message"]
        if kind == "SIZE":
            assert error["detail"]["stored"] in (len(config), len(layer))
    assert (await client.get(f"/v2/{name}/manifests/bad")).status_code == 404
    good = _image(good_config, [good_layer])
    assert (await _put(client, name, "good", good, OCI_MANIFEST)).status_code == 201
    child = descriptor(OCI_MANIFEST, good)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{**child, "size": len(good) + 1}]}
    response = await _put(client, name, "idx", json.dumps(index).encode(), OCI_INDEX)
    assert response.status_code == 400 and error_code(response) == "MANIFEST_INVALID"
    assert response.json()["errors"][0]["detail"] == {
        "descriptor": "manifests[0]", "digest": child["digest"], "size": len(good) + 1, "stored": len(good)
    }
    index["manifests"] = [child]
    assert (await _put(client, name, "idx", json.dumps(index).encode(), OCI_INDEX)).status_code == 201


async def test_content_type_must_match_the_manifest_media_type(client: httpx.AsyncClient) -> None:
    name = unique_name()
    _, body = await push_image(client, name, "ok", [b"x"])
    for headers in ({}, {"Content-Type": "text/plain"}, {"Content-Type": "application/json"}, {"Content-Type": OCI_INDEX}):
        response = await client.put(f"/v2/{name}/manifests/ct", content=body, headers=headers)
        assert response.status_code == 400 and error_code(response) == "MANIFEST_INVALID", headers
        assert f"send 'Content-Type: {OCI_MANIFEST}'" in response.json()["errors"][0]["message"]
    assert (await client.get(f"/v2/{name}/manifests/ct")).status_code == 404
    with_charset = await client.put(
        f"/v2/{name}/manifests/ct", content=body, headers={"Content-Type": f"{OCI_MANIFEST}; charset=utf-8"}
    )
    assert with_charset.status_code == 201
    without_media_type = json.loads(body)
    del without_media_type["mediaType"]
    untyped = json.dumps(without_media_type).encode()
    refused = await client.put(f"/v2/{name}/manifests/untyped", content=untyped)
    assert refused.status_code == 400 and error_code(refused) == "MANIFEST_INVALID"
    assert (await _put(client, name, "untyped", untyped, OCI_MANIFEST)).status_code == 201
    got = await client.get(f"/v2/{name}/manifests/untyped")
    assert got.headers["content-type"] == OCI_MANIFEST and got.content == untyped


async def test_duplicate_keys_are_refused_at_any_depth(client: httpx.AsyncClient) -> None:
    """The same bytes (one digest) must not be read two ways by two clients."""
    name = unique_name()
    _, body = await push_image(client, name, "ok", [b"x"])
    text = body.decode()
    twice_media_type = text.replace("{", '{"mediaType": "application/vnd.oci.image.index.v1+json", ', 1)
    twice_size = text.replace('"size": ', '"size": 1, "size": ', 1)
    for duplicated in (twice_media_type, twice_size):
        response = await _put(client, name, "dup", duplicated.encode(), OCI_MANIFEST)
        assert response.status_code == 400 and error_code(response) == "MANIFEST_INVALID", duplicated
        assert "repeats the key" in response.json()["errors"][0]["message"]
    assert (await client.get(f"/v2/{name}/manifests/dup")).status_code == 404


async def test_media_types_that_do_not_fit_the_database_are_refused(client: httpx.AsyncClient) -> None:
    """The columns hold 255 characters: PostgreSQL answered a longer artifactType, or a NUL, with a 500."""
    name = unique_name()
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    await push_blob(client, name, config)
    for bad in ("application/" + "a" * 244, "application/x\x00y", "application/\u00e9", " a/b", "a/b\n"):
        as_artifact_type = json.loads(_image(descriptor(OCI_CONFIG, config), []))
        as_artifact_type["artifactType"] = bad
        for body in (json.dumps(as_artifact_type).encode(), _image(descriptor(bad, config), [])):
            response = await _put(client, name, "bad", body, OCI_MANIFEST)
            assert response.status_code == 400 and error_code(response) == "MANIFEST_INVALID", response.text
            assert "is not a media type" in response.json()["errors"][0]["message"]
    for good in ("application/" + "a" * 243, "text/plain; charset=utf-8"):  # 255 characters; a parameter
        body = _image(descriptor(good, config), [])
        assert (await _put(client, name, "good", body, OCI_MANIFEST)).status_code == 201
        stored = await client.get(f"/v2/{name}/manifests/good")
        assert stored.status_code == 200 and json.loads(stored.content)["config"]["mediaType"] == good


async def test_nul_in_listing_cursors_and_filters_is_not_a_database_error(client: httpx.AsyncClient) -> None:
    """PostgreSQL refuses NUL in text: ?last=%00 and ?artifactType=%00 were 500s there."""
    name = unique_name()
    digest, _ = await push_image(client, name, "b", [b"x"])
    await _put(client, name, "a", (await client.get(f"/v2/{name}/manifests/b")).content, OCI_MANIFEST)
    tags = await client.get(f"/v2/{name}/tags/list", params={"last": "a\x00z"})
    assert tags.status_code == 200 and tags.json()["tags"] == ["b"], tags.text
    catalog = await client.get("/v2/_catalog", params={"last": name + "\x00"})
    assert catalog.status_code == 200 and name not in catalog.json()["repositories"], catalog.text
    referrers = await client.get(f"/v2/{name}/referrers/{digest}", params={"artifactType": "a/b\x00"})
    assert referrers.status_code == 200 and referrers.json()["manifests"] == [], referrers.text
