"""Replication with real peers: Debian's docker-registry behind htpasswd and a second ``moorage serve``.

* event-based push, Moorage → docker-registry: a skopeo push is at the destination, tag last;
* pull-based on a cron schedule, docker-registry → Moorage, on three nodes sharing PostgreSQL:
  one execution for the due minute, however many nodes tick;
* Moorage → Moorage (type harbor): a multi-arch index with its children, and a signature that
  follows its subject through the referrers API although the tag filter does not select it;
* refusals: wrong credentials fail the task with the destination's answer in its log;
* kill -9 of the node running an execution: another node resumes it; each blob is closed at the
  destination once (its access log), and the tag appears only once the copy is whole.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.clients import Skopeo, run
from tests.e2e.identity_helpers import ADMIN_PASSWORD, AdminApi, start_token_moorage, uid
from tests.e2e.images import MT_OCI_MANIFEST, OciLayout
from tests.e2e.servers import RegistryProcess, start_reference, throwaway_postgres_database
from tests.proxy.upstream import htpasswd_file, push_image, random_layer

CREDS = f"admin:{ADMIN_PASSWORD}"
PEER_USER, PEER_PASSWORD = "replicator", "Repl1cator-secret"
FAST_JOBS = {"MOORAGE_JOBS__POLL_SECONDS": "0.2", "MOORAGE_HTTP__WORKERS": "1"}
KIB = 1024


@pytest.fixture(scope="module")
def peer(e2e_workdir: Path) -> Iterator[RegistryProcess]:
    """docker-registry behind htpasswd: the destination of pushes, the source of pulls."""
    passwords = htpasswd_file(e2e_workdir / "replication-htpasswd", PEER_USER, PEER_PASSWORD)
    server = start_reference(e2e_workdir, label="replication-peer", htpasswd=passwords)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def moorage(e2e_workdir: Path) -> Iterator[RegistryProcess]:
    server = start_token_moorage(e2e_workdir, label="moorage-replication", extra_env=FAST_JOBS)
    try:
        yield server
    finally:
        server.stop()


def endpoint(api: AdminApi, url: str, kind: str = "docker-registry", user: str = PEER_USER,
             password: str = PEER_PASSWORD) -> int:
    r = api.http.post("/registries", json={"name": uid("ep"), "type": kind, "url": url, "credential": {
        "type": "basic", "access_key": user, "access_secret": password}})
    assert r.status_code == 201, r.text
    return int(r.headers["location"].rsplit("/", 1)[1])


def policy(api: AdminApi, **body: Any) -> int:
    r = api.http.post("/replication/policies", json={"name": uid("policy"), **body})
    assert r.status_code == 201, r.text
    return int(r.headers["location"].rsplit("/", 1)[1])


def executions(api: AdminApi, policy_id: int) -> list[dict[str, Any]]:
    r = api.http.get("/replication/executions", params={"policy_id": policy_id})
    assert r.status_code == 200, r.text
    return list(r.json())


def finished(api: AdminApi, policy_id: int, count: int = 1, timeout: float = 90) -> list[dict[str, Any]]:
    """Wait until ``count`` executions of the policy ended; all of them, newest first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = executions(api, policy_id)
        if len(found) >= count and all(e["status"] != "InProgress" for e in found):
            return found
        time.sleep(0.3)
    raise AssertionError(f"policy {policy_id}: executions did not finish: {executions(api, policy_id)}")


def task_logs(api: AdminApi, execution_id: int) -> list[str]:
    tasks = api.http.get(f"/replication/executions/{execution_id}/tasks").json()
    return [api.http.get(f"/replication/executions/{execution_id}/tasks/{t['id']}/log").text for t in tasks]


def peer_digest(skopeo: Skopeo, ref: str) -> str:
    return run([*skopeo._base(), "inspect", "--tls-verify=false", "--creds", f"{PEER_USER}:{PEER_PASSWORD}",
                "--format", "{{.Digest}}", ref]).stdout.strip()


def moorage_digest(skopeo: Skopeo, ref: str) -> str:
    return run([*skopeo._base(), "inspect", "--tls-verify=false", "--creds", CREDS, "--format", "{{.Digest}}",
                ref]).stdout.strip()


def test_a_push_is_replicated_to_docker_registry_once(
    moorage: RegistryProcess, peer: RegistryProcess, layout: OciLayout, skopeo: Skopeo
) -> None:
    api = AdminApi(moorage)
    try:
        project = api.project()
        dest = endpoint(api, peer.url)
        assert api.http.post("/registries/ping", json={"id": dest}).status_code == 200
        policy_id = policy(api, dest_registry={"id": dest}, dest_namespace="mirror", dest_namespace_replace_count=1,
                           trigger={"type": "event_based"}, filters=[{"type": "name", "value": f"{project}/**"}])
        image = layout.add_image("v1", (96 * KIB, 48 * KIB))
        skopeo.copy(image.ref, f"docker://{moorage.host}/{project}/app:v1", "--dest-creds", CREDS)
        [execution] = finished(api, policy_id)
        assert (execution["status"], execution["total"], execution["succeed"]) == ("Succeed", 1, 1), execution
        pushed = moorage_digest(skopeo, f"docker://{moorage.host}/{project}/app:v1")
        assert peer_digest(skopeo, f"docker://{peer.host}/mirror/app:v1") == pushed
        [log] = task_logs(api, execution["id"])
        assert "tagged mirror/app:v1" in log and "3 copied" in log, log
        # the same image pushed again: a new event, nothing to send
        skopeo.copy(image.ref, f"docker://{moorage.host}/{project}/app:v1", "--dest-creds", CREDS)
        time.sleep(1)
        assert len(executions(api, policy_id)) == 1  # same repository, tag and digest: the same event
    finally:
        api.close()


def test_wrong_credentials_fail_the_task_with_the_answer(
    moorage: RegistryProcess, peer: RegistryProcess, layout: OciLayout, skopeo: Skopeo
) -> None:
    api = AdminApi(moorage)
    try:
        project = api.project()
        bad = endpoint(api, peer.url, password="wrong-password")
        ping = api.http.post("/registries/ping", json={"id": bad})
        assert ping.status_code != 200 and "credentials" in ping.text, ping.text
        image = layout.add_image("v1", (16 * KIB,))
        skopeo.copy(image.ref, f"docker://{moorage.host}/{project}/app:v1", "--dest-creds", CREDS)
        policy_id = policy(api, dest_registry={"id": bad}, filters=[{"type": "name", "value": f"{project}/**"}])
        r = api.http.post("/replication/executions", json={"policy_id": policy_id})
        assert r.status_code == 201, r.text
        [execution] = finished(api, policy_id)
        assert (execution["status"], execution["failed"]) == ("Failed", 1), execution
        [log] = task_logs(api, execution["id"])
        assert "401" in log and "credentials" in log, log
    finally:
        api.close()


def test_moorage_to_moorage_brings_index_children_and_referrers(
    moorage: RegistryProcess, e2e_workdir: Path, layout: OciLayout, skopeo: Skopeo
) -> None:
    other = start_token_moorage(e2e_workdir, label="moorage-replica", extra_env=FAST_JOBS)
    api, remote = AdminApi(moorage), AdminApi(other)
    try:
        project = api.project()
        remote_project = remote.project()
        index = layout.add_index("v1")
        subject = index.index.descriptor()
        empty = layout.add_bytes(b"{}", "application/vnd.oci.empty.v1+json")
        signature = layout.add_json({
            "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST, "artifactType": "application/vnd.example.signature",
            "config": empty.descriptor(), "layers": [empty.descriptor()], "subject": subject,
        }, MT_OCI_MANIFEST)
        layout.tag("sig", signature)
        skopeo.copy(index.ref, f"docker://{moorage.host}/{project}/multi:v1", "--all", "--dest-creds", CREDS)
        skopeo.copy(f"oci:{layout.root}:sig", f"docker://{moorage.host}/{project}/multi:sig", "--dest-creds", CREDS)
        dest = endpoint(api, other.url, kind="harbor", user="admin", password=ADMIN_PASSWORD)
        policy_id = policy(api, dest_registry={"id": dest}, dest_namespace=remote_project,
                           filters=[{"type": "name", "value": f"{project}/multi"}, {"type": "tag", "value": "v1"}])
        assert api.http.post("/replication/executions", json={"policy_id": policy_id}).status_code == 201
        [execution] = finished(api, policy_id)
        assert (execution["status"], execution["total"]) == ("Succeed", 1), (execution, task_logs(api, execution["id"]))
        assert moorage_digest(skopeo, f"docker://{other.host}/{remote_project}/multi:v1") == index.index.digest
        with httpx.Client(base_url=other.url, timeout=30) as http:
            token = http.get("/service/token", params={"service": "moorage", "scope":
                             f"repository:{remote_project}/multi:pull"}, auth=("admin", ADMIN_PASSWORD)).json()["token"]
            referrers = http.get(f"/v2/{remote_project}/multi/referrers/{index.index.digest}",
                                 headers={"Authorization": f"Bearer {token}"})
        assert referrers.status_code == 200, referrers.text
        assert [m["digest"] for m in referrers.json()["manifests"]] == [signature.digest]
        # and back, pull-based from the other's private project: its catalog is read logged in
        back = api.project()
        source = endpoint(api, other.url, kind="harbor", user="admin", password=ADMIN_PASSWORD)
        pull_id = policy(api, src_registry={"id": source}, dest_namespace=back,
                         filters=[{"type": "name", "value": f"{remote_project}/**"}])
        assert api.http.post("/replication/executions", json={"policy_id": pull_id}).status_code == 201
        [pulled] = finished(api, pull_id)
        assert (pulled["status"], pulled["total"]) == ("Succeed", 1), (pulled, task_logs(api, pulled["id"]))
        assert moorage_digest(skopeo, f"docker://{moorage.host}/{back}/multi:v1") == index.index.digest
    finally:
        api.close()
        remote.close()
        other.stop()


@pytest.fixture(scope="module")
def cluster(e2e_workdir: Path, postgres_admin_url: str) -> Iterator[list[RegistryProcess]]:
    """Three nodes on one PostgreSQL and one storage, with short job leases (a dead node's execution moves on
    in seconds)."""
    shared = e2e_workdir / "replication-cluster-storage"
    shared.mkdir(exist_ok=True)
    env = {**FAST_JOBS, "MOORAGE_JOBS__LEASE_SECONDS": "3", "MOORAGE_STORAGE__FILESYSTEM__ROOTDIRECTORY": str(shared)}
    with throwaway_postgres_database(postgres_admin_url, "moorage_repl") as url:
        nodes: list[RegistryProcess] = []
        try:
            for index in range(3):
                nodes.append(start_token_moorage(e2e_workdir, label=f"repl-node{index}", database_url=url,
                                                 extra_env=env))
            yield nodes
        finally:
            for node in nodes:
                node.stop()


def blob_closes(peer: RegistryProcess, repository: str, digest: str) -> int:
    """How many uploads of ``digest`` into ``repository`` the peer closed (``PUT …?digest=``)."""
    pattern = re.compile(rf'"PUT /v2/{re.escape(repository)}/blobs/uploads/[^ "]*digest={re.escape(digest)}')
    return sum(1 for line in peer.log_path.read_text(errors="replace").splitlines() if pattern.search(line))


def test_a_pull_policy_on_a_schedule_runs_once_per_due_minute_on_three_nodes(
    cluster: list[RegistryProcess], peer: RegistryProcess, skopeo: Skopeo
) -> None:
    source = uid("upstream") + "/app"
    pushed = push_image(peer.url, source, "v1", [random_layer(64 * KIB)], auth=(PEER_USER, PEER_PASSWORD))
    api = AdminApi(cluster[0])
    try:
        project = api.project()
        src = endpoint(api, peer.url)
        policy_id = policy(api, src_registry={"id": src}, dest_namespace=project, trigger={
            "type": "scheduled", "trigger_settings": {"cron": "* * * * *"}},
            filters=[{"type": "name", "value": source}])
        found = finished(api, policy_id, timeout=150)  # the next whole minute, then the copy
        assert all(e["status"] == "Succeed" and e["trigger"] == "scheduled" for e in found), found
        minutes = [e["start_time"][:16] for e in found]
        assert len(set(minutes)) == len(minutes), found  # three nodes tick; one execution per due minute
        assert moorage_digest(skopeo, f"docker://{cluster[1].host}/{project}/app:v1") == pushed.manifest_digest
    finally:
        api.close()


def test_kill_9_of_the_node_running_an_execution_resumes_elsewhere_without_copying_twice(
    cluster: list[RegistryProcess], peer: RegistryProcess, layout: OciLayout, skopeo: Skopeo
) -> None:
    api = AdminApi(cluster[0])
    try:
        project = api.project()
        image = layout.add_image("v1", (1024 * KIB, 1024 * KIB, 1024 * KIB))
        skopeo.copy(image.ref, f"docker://{cluster[0].host}/{project}/big:v1", "--dest-creds", CREDS)
        dest = endpoint(api, peer.url)
        namespace = uid("killed")
        policy_id = policy(api, dest_registry={"id": dest}, dest_namespace=namespace, speed=384,
                           filters=[{"type": "name", "value": f"{project}/big"}])
        r = api.http.post("/replication/executions", json={"policy_id": policy_id})
        assert r.status_code == 201, r.text
        execution = api.http.get(r.headers["location"].removeprefix("/api/v2.0")).json()
        owner = ""
        deadline = time.monotonic() + 60
        while not owner and time.monotonic() < deadline:  # the node whose runner holds the job's lease
            job = api.http.get(f"{cluster[0].url}/api/v2.0/jobs/{execution['job_id']}").json()
            owner = job.get("lease_owner") or ""
            time.sleep(0.2)
        pid = int(owner.split(":")[1])
        victim = next(node for node in cluster if os.getpgid(pid) == node.process.pid)
        time.sleep(3)  # mid-copy: 3 MiB at 384 KiB/s takes 8 s
        tag = f"{peer.url}/v2/{namespace}/big/manifests/v1"
        # Distribution answers 404 for an OCI manifest that the Accept header does not name
        with httpx.Client(auth=(PEER_USER, PEER_PASSWORD), timeout=10, headers={"Accept": MT_OCI_MANIFEST}) as http:
            assert http.head(tag).status_code == 404  # never a tag before its blobs
            os.killpg(victim.process.pid, signal.SIGKILL)
            victim.process.wait(10)
            survivor = AdminApi(next(node for node in cluster if node is not victim))
            try:
                [done] = finished(survivor, policy_id, timeout=120)
                logs = task_logs(survivor, done["id"])
            finally:
                survivor.close()
            assert done["status"] == "Succeed", (done, logs)
            assert http.head(tag).status_code == 200, "\n".join(logs)
        assert peer_digest(skopeo, f"docker://{peer.host}/{namespace}/big:v1") == image.manifest.digest
        for blob in image.blobs:
            assert blob_closes(peer, f"{namespace}/big", blob.digest) == 1, blob.digest
    finally:
        api.close()
