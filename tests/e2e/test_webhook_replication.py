"""A replication task that ends sends Harbor's ``REPLICATION`` webhook to the local project's policies.

Moorage (token mode) pushes to Debian's docker-registry behind htpasswd on an event-based policy;
a real HTTP receiver on a loopback socket gets the push's ``PUSH_ARTIFACT`` and, once the task
ran, one ``REPLICATION`` event naming both sides, the trigger and the outcome.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.clients import Skopeo
from tests.e2e.identity_helpers import ADMIN_PASSWORD, AdminApi, start_token_moorage
from tests.e2e.images import OciLayout
from tests.e2e.servers import RegistryProcess, start_reference
from tests.e2e.test_replication import FAST_JOBS, PEER_PASSWORD, PEER_USER, endpoint, finished, policy
from tests.integration.webhook_receiver import Receiver
from tests.proxy.upstream import htpasswd_file

CREDS = f"admin:{ADMIN_PASSWORD}"


@pytest.fixture(scope="module")
def sides(e2e_workdir: Path) -> Iterator[tuple[RegistryProcess, RegistryProcess]]:
    passwords = htpasswd_file(e2e_workdir / "hooks-htpasswd", PEER_USER, PEER_PASSWORD)
    peer = start_reference(e2e_workdir, label="hooks-peer", htpasswd=passwords)
    try:
        node = start_token_moorage(e2e_workdir, label="moorage-hooks-replication", extra_env={
            **FAST_JOBS, "MOORAGE_WEBHOOKS__ALLOW_NETWORKS": "[127.0.0.1/32]"})
        try:
            yield node, peer
        finally:
            node.stop()
    finally:
        peer.stop()


def test_a_finished_replication_task_is_a_replication_event(
    sides: tuple[RegistryProcess, RegistryProcess], layout: OciLayout, skopeo: Skopeo
) -> None:
    node, peer = sides
    receiver = Receiver()
    api = AdminApi(node)
    try:
        project = api.project()
        r = httpx.post(f"{node.url}/api/v2.0/projects/{project}/webhook/policies", auth=("admin", ADMIN_PASSWORD),
                       json={"name": "repl", "event_types": ["REPLICATION", "PUSH_ARTIFACT"],
                             "targets": [{"type": "http", "address": receiver.url}]})
        assert r.status_code == 201, r.text
        dest = endpoint(api, peer.url)
        policy_id = policy(api, dest_registry={"id": dest}, dest_namespace="mirror", dest_namespace_replace_count=1,
                           trigger={"type": "event_based"}, filters=[{"type": "name", "value": f"{project}/**"}])
        image = layout.add_image("v1", (16 * 1024,))
        skopeo.copy(image.ref, f"docker://{node.host}/{project}/app:v1", "--dest-creds", CREDS)
        [execution] = finished(api, policy_id)
        assert execution["status"] == "Succeed", execution

        deadline = time.monotonic() + 60  # a bound on waiting for the delivery job, not a timing assertion
        while len(receiver.snapshot()) < 2:
            assert time.monotonic() < deadline, [request.json() for request in receiver.snapshot()]
            time.sleep(0.2)
        by_type = {request.json()["type"]: request.json() for request in receiver.snapshot()}
        assert sorted(by_type) == ["PUSH_ARTIFACT", "REPLICATION"]
        replication = by_type["REPLICATION"]["event_data"]["replication"]
        assert by_type["REPLICATION"]["operator"] == "EVENT_BASED"
        assert replication["job_status"] == "Success" and replication["trigger_type"] == "EVENT_BASED"
        assert replication["src_resource"]["repository"] == f"{project}/app"
        assert replication["src_resource"]["namespace"] == project
        assert replication["dest_resource"]["repository"] == "mirror/app"
        assert replication["successful_artifact"] == [
            {"type": "image", "status": "Success", "name_tag": f"{project}/app:v1"}]
    finally:
        api.close()
        receiver.stop()
