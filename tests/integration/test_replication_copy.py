"""The artifact copier between two real registries (two databases, two storages), in-process.

Both sides are :class:`~moorage.replication.local.LocalAdapter` here; the remote adapter runs the
same copier against real peers in tests/e2e/test_replication.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from moorage.app import create_app
from moorage.config import Settings
from moorage.db.migrate import upgrade
from moorage.registry.digests import parse_digest
from moorage.replication.copier import ArtifactCopier
from moorage.replication.local import LocalAdapter
from moorage.services import Services
from tests.integration.conftest import make_settings, unique_name
from tests.integration.oci_client import OCI_INDEX, OCI_MANIFEST, digest_of, push_blob, push_image


def adapter(services: Services) -> LocalAdapter:
    return LocalAdapter(blobs=services.blobs, manifests=services.manifests, uploads=services.uploads)


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[Services]:
    """A second registry with its own SQLite database and filesystem storage."""
    url = f"sqlite:///{tmp_path / 'peer.db'}"
    upgrade(url)
    built = Services.from_settings(make_settings(url, tmp_path / "peer-data"))
    yield built
    await built.aclose()


async def http(settings: Settings, services: Services) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(settings, services)),
                             base_url="http://registry.test")


async def pulled_blob(services: Services, repository: str, digest: str) -> bytes:
    size = await services.blobs.size(repository, parse_digest(digest))
    return b"".join([chunk async for chunk in await services.blobs.open(parse_digest(digest), None, size)])


async def test_an_image_arrives_whole_and_a_second_copy_moves_nothing(
    settings: Settings, services: Services, peer: Services
) -> None:
    name = unique_name("rep")
    layers = [b"layer-one" * 1000, b"layer-two" * 3000]
    async with await http(settings, services) as client:
        digest, body = await push_image(client, name, "v1", layers)
    copier = ArtifactCopier(adapter(services), adapter(peer))
    first = await copier.copy(name, "v1", "mirror/app", "v1")
    assert (first.digest, first.blobs_copied, first.manifests) == (digest, 3, 1)
    config_size = json.loads(body)["config"]["size"]
    assert first.bytes == sum(map(len, layers)) + config_size
    stored = await peer.manifests.get("mirror/app", "v1")
    assert (stored.digest, stored.payload) == (digest, body)
    for layer in layers:
        assert await pulled_blob(peer, "mirror/app", digest_of(layer)) == layer
    again = await ArtifactCopier(adapter(services), adapter(peer)).copy(name, "v1", "mirror/app", "v1")
    assert (again.blobs_copied, again.blobs_skipped, again.manifests, again.bytes) == (0, 0, 0, 0)


async def test_an_index_brings_its_children_and_referrers_follow_their_subject(
    settings: Settings, services: Services, peer: Services
) -> None:
    name = unique_name("rep")
    async with await http(settings, services) as client:
        amd, amd_body = await push_image(client, name, None, [b"amd64 layer"])
        arm, arm_body = await push_image(client, name, None, [b"arm64 layer"])
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": amd, "size": len(amd_body),
             "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": OCI_MANIFEST, "digest": arm, "size": len(arm_body),
             "platform": {"architecture": "arm64", "os": "linux"}},
        ]}).encode()
        response = await client.put(f"/v2/{name}/manifests/multi", content=index, headers={"Content-Type": OCI_INDEX})
        assert response.status_code == 201, response.text
        empty = await push_blob(client, name, b"{}")
        signature = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.signature",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2}],
            "subject": {"mediaType": OCI_INDEX, "digest": digest_of(index), "size": len(index)},
        }).encode()
        response = await client.put(f"/v2/{name}/manifests/{digest_of(signature)}", content=signature,
                                    headers={"Content-Type": OCI_MANIFEST})
        assert response.status_code == 201, response.text
    result = await ArtifactCopier(adapter(services), adapter(peer)).copy(name, "multi", "mirror/multi", "multi")
    assert result.manifests == 4  # two children, the index, the signature
    assert (await peer.manifests.get("mirror/multi", "multi")).payload == index
    for child in (amd, arm, digest_of(signature)):
        assert (await peer.manifests.get("mirror/multi", parse_digest(child))).digest == child
    assert await pulled_blob(peer, "mirror/multi", digest_of(b"arm64 layer")) == b"arm64 layer"


async def test_override_off_leaves_a_tag_that_points_elsewhere(
    settings: Settings, services: Services, peer: Services, tmp_path: Path
) -> None:
    name = unique_name("rep")
    async with await http(settings, services) as client:
        await push_image(client, name, "stable", [b"source build"])
    async with await http(peer.settings, peer) as client:
        theirs, _ = await push_image(client, "mirror/keep", "stable", [b"destination build"])
    result = await ArtifactCopier(adapter(services), adapter(peer), override=False).copy(
        name, "stable", "mirror/keep", "stable")
    assert result.skipped is not None and "override is off" in result.skipped
    assert (await peer.manifests.get("mirror/keep", "stable")).digest == theirs
    forced = await ArtifactCopier(adapter(services), adapter(peer), override=True).copy(
        name, "stable", "mirror/keep", "stable")
    assert (await peer.manifests.get("mirror/keep", "stable")).digest == forced.digest != theirs


async def test_a_layer_shared_by_two_repositories_is_mounted_not_sent_twice(
    settings: Settings, services: Services, peer: Services
) -> None:
    shared = b"base layer" * 5000
    one, two = unique_name("rep"), unique_name("rep")
    async with await http(settings, services) as client:
        await push_image(client, one, "v1", [shared, b"one"])
        await push_image(client, two, "v1", [shared, b"two"])
    copier = ArtifactCopier(adapter(services), adapter(peer))
    await copier.copy(one, "v1", "mirror/one", "v1")
    second = await copier.copy(two, "v1", "mirror/two", "v1")
    assert (second.blobs_mounted, second.blobs_copied) == (2, 1)  # the base and the same config mounted
    assert await pulled_blob(peer, "mirror/two", digest_of(shared)) == shared
