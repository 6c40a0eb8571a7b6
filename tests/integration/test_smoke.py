"""The base endpoint and one push/pull round trip, on both databases."""

from __future__ import annotations

import os

import httpx

from tests.integration.conftest import unique_name
from tests.integration.oci_client import push_image


async def test_base_endpoint_announces_the_api_version(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2/")
    assert response.status_code == 200
    assert response.headers["docker-distribution-api-version"] == "registry/2.0"


async def test_push_then_pull_round_trip(client: httpx.AsyncClient) -> None:
    name = unique_name()
    layers = [os.urandom(1000), os.urandom(70_000)]
    digest, body = await push_image(client, name, "v1", layers)
    got = await client.get(f"/v2/{name}/manifests/v1")
    assert got.status_code == 200 and got.content == body
    assert got.headers["docker-content-digest"] == digest
    for layer in layers:
        from tests.integration.oci_client import digest_of

        blob = await client.get(f"/v2/{name}/blobs/{digest_of(layer)}")
        assert blob.status_code == 200 and blob.content == layer
