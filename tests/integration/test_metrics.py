"""``/metrics``: requests by route template and status (never a repository name), bytes, uploads,
storage calls by driver and outcome, and the job table's backlog."""

from __future__ import annotations

import hashlib
import re

import httpx

from moorage.services import Services
from tests.integration.conftest import unique_name
from tests.integration.oci_client import push_blob, push_image


def _value(text: str, sample: str) -> float:
    """The value of one exact sample line (name and labels) in the exposition ``text``."""
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    assert match is not None, f"{sample} not in /metrics"
    return float(match.group(1))


async def test_requests_and_bytes_are_counted_by_route_template(client: httpx.AsyncClient) -> None:
    name = unique_name()
    digest = await push_blob(client, name, b"x" * 1000)
    await client.get(f"/v2/{name}/blobs/{digest}")
    await client.get(f"/v2/{name}/manifests/missing")
    await client.get("/api/v2.0/ping")
    await client.get("/api/v2.0/projects/p1/webhook/policies")  # inside the REST mount: its own template
    await client.get("/no/such/path")
    text = (await client.get("/metrics")).text
    assert _value(text, 'moorage_http_requests_total{method="POST",route="/v2/{name}/blobs/uploads/",status="201"}') >= 1
    assert _value(text, 'moorage_http_requests_total{method="GET",route="/v2/{name}/manifests/{reference}",'
                        'status="404"}') >= 1
    assert _value(text, 'moorage_http_response_bytes_total{route="/v2/{name}/blobs/{digest}"}') >= 1000
    assert _value(text, 'moorage_http_request_bytes_total{route="/v2/{name}/blobs/uploads/"}') >= 1000
    assert _value(text, 'moorage_http_requests_total{method="GET",route="/api/v2.0/ping",status="200"}') >= 1
    assert _value(text, 'moorage_http_requests_total{method="GET",'
                        'route="/api/v2.0/projects/{project_name_or_id}/webhook/policies",status="501"}') >= 1
    assert _value(text, 'moorage_http_requests_total{method="GET",route="unmatched",status="404"}') >= 1
    assert "/no/such/path" not in text
    assert name.split("/")[1] not in text


async def test_uploads_storage_calls_and_the_job_backlog_are_measured(client: httpx.AsyncClient,
                                                                       services: Services) -> None:
    name = unique_name()
    started = await client.post(f"/v2/{name}/blobs/uploads/")
    location = started.headers["location"]
    data = b"y" * 4096
    done = await client.put(location, params={"digest": "sha256:" + hashlib.sha256(data).hexdigest()}, content=data)
    assert done.status_code == 201, done.text
    await push_image(client, name, "v1", [b"layer"])
    await client.head(f"/v2/{name}/blobs/sha256:{'0' * 64}")
    await services.jobs.enqueue("metrics.test", {}, dedup_key=f"metrics:{name}")

    text = (await client.get("/metrics")).text
    assert _value(text, 'moorage_blob_upload_duration_seconds_count{kind="chunked"}') >= 1
    assert _value(text, 'moorage_blob_upload_bytes_total{kind="chunked"}') >= 4096
    assert _value(text, 'moorage_storage_operations_total{driver="filesystem",operation="move",outcome="ok"}') >= 1
    assert _value(text, 'moorage_storage_operation_duration_seconds_count{driver="filesystem",operation="append"}') >= 1
    assert _value(text, 'moorage_jobs{kind="metrics.test",state="queued"}') >= 1
    assert _value(text, 'moorage_jobs_oldest_due_age_seconds{kind="metrics.test"}') >= 0
    for job in await services.jobs.claim("metrics-test", limit=10, kinds=["metrics.test"]):
        await services.jobs.succeed("metrics-test", job.id)  # leave no queued job for other tests
