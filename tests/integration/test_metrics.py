"""``/metrics`` counts requests by endpoint and status without repository names in labels."""

from __future__ import annotations

import httpx

from tests.integration.conftest import unique_name
from tests.integration.oci_client import push_blob


async def test_requests_and_bytes_are_counted(client: httpx.AsyncClient) -> None:
    name = unique_name()
    digest = await push_blob(client, name, b"x" * 1000)
    await client.get(f"/v2/{name}/blobs/{digest}")
    await client.get(f"/v2/{name}/manifests/missing")
    text = (await client.get("/metrics")).text
    assert 'moorage_http_requests_total{endpoint="blob_upload",method="POST",status="201"}' in text
    assert 'moorage_http_requests_total{endpoint="manifest",method="GET",status="404"}' in text
    assert 'moorage_http_response_bytes_total{endpoint="blob"}' in text
    assert name not in text
