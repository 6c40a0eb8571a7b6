"""Two ``moorage serve`` nodes on one PostgreSQL database deliver each webhook event exactly once.

Both nodes run their job runners; pushes alternate between them (skopeo), so events are
enqueued on both and either node may claim any delivery. A real HTTP receiver on a loopback
socket (opened with ``webhooks.allow_networks``) records every request. Exactly once means:
one request per event id, as many requests as pushes, and every ``webhook.deliver`` job
succeeded on its first attempt, so no node will send anything again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest

from tests.e2e.clients import run
from tests.e2e.identity_helpers import ADMIN_PASSWORD, AdminApi, start_token_moorage
from tests.e2e.images import OciLayout
from tests.e2e.servers import RegistryProcess, start_together, throwaway_postgres_database
from tests.ha.conftest import require
from tests.integration.webhook_receiver import Receiver

PUSHES = 8


@pytest.fixture
def nodes(tmp_path: Path, postgres_admin_url: str) -> Iterator[list[RegistryProcess]]:
    require("skopeo", "skopeo")
    env = {"MOORAGE_HTTP__WORKERS": "1", "MOORAGE_DATA_DIR": str(tmp_path / "shared"),
           "MOORAGE_WEBHOOKS__ALLOW_NETWORKS": "[127.0.0.1/32]", "MOORAGE_JOBS__POLL_SECONDS": "0.2"}
    with throwaway_postgres_database(postgres_admin_url, prefix="moorage_hooks") as url:
        started = start_together([
            partial(start_token_moorage, tmp_path, label=f"hooks{i}", database_url=url, extra_env=env)
            for i in range(2)
        ])
        try:
            yield started
        finally:
            for node in started:
                node.stop()


def test_each_push_is_delivered_once_whichever_node_saw_it(nodes: list[RegistryProcess], tmp_path: Path) -> None:
    receiver = Receiver()
    api = AdminApi(nodes[0])
    try:
        project = api.project()
        r = httpx.post(f"{nodes[1].url}/api/v2.0/projects/{project}/webhook/policies", auth=("admin", ADMIN_PASSWORD),
                       json={"name": "ha", "event_types": ["PUSH_ARTIFACT"],
                             "targets": [{"type": "http", "address": receiver.url}]})
        assert r.status_code == 201, r.text
        policy_id = r.headers["Location"].rsplit("/", 1)[1]

        layout = OciLayout(tmp_path / "layout")
        policy = tmp_path / "policy.json"
        policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
        for i in range(PUSHES):
            image = layout.add_image(f"v{i}", (4096 + i,))
            node = nodes[i % 2]
            run(["skopeo", "--policy", str(policy), "copy", "--dest-tls-verify=false", "--dest-creds",
                 f"admin:{ADMIN_PASSWORD}", image.ref, f"docker://{node.host}/{project}/app:v{i}"])

        deadline = time.monotonic() + 120  # a bound on waiting, not a timing assertion
        while True:
            jobs = api.http.get("/jobs", params={"kind": "webhook.deliver", "limit": 100}).json()["jobs"]
            if len(jobs) == PUSHES and all(job["state"] in ("succeeded", "failed") for job in jobs):
                break
            assert time.monotonic() < deadline, jobs
            time.sleep(0.2)

        assert [(job["state"], job["attempts"]) for job in jobs] == [("succeeded", 1)] * PUSHES
        got = receiver.snapshot()
        event_ids = [request.headers["x-moorage-event-id"] for request in got]
        assert len(got) == PUSHES and len(set(event_ids)) == PUSHES
        assert sorted(request.json()["event_data"]["resources"][0]["tag"] for request in got) == sorted(
            f"v{i}" for i in range(PUSHES))
        log = api.http.get(f"/projects/{project}/webhook/jobs", params={"policy_id": policy_id, "page_size": 100})
        assert sorted(entry["status"] for entry in log.json()) == ["Success"] * PUSHES
        keys = {job["dedup_key"] for job in jobs}
        assert keys == {f"webhook:{policy_id}:{event_id}:0" for event_id in event_ids}  # one job per event
    finally:
        api.close()
        receiver.stop()
