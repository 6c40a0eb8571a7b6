"""Webhook policies (Harbor's API) and deliveries to a real HTTP receiver on a loopback socket.

Token mode on SQLite and PostgreSQL. The node's own job runner delivers (no stand-ins): events
from ``/v2`` and REST become delivery rows and ``webhook.deliver`` jobs, sent with Harbor's
payload or as CloudEvents, signed when the target has a secret, retried after a failure, and
logged per policy in ``/webhook/jobs``. Bad policies are 400s naming the field, nothing saved.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from moorage.db.jobs_tables import gc_executions, jobs
from moorage.db.webhook_tables import webhook_deliveries
from moorage.jobs import JobRunner
from moorage.jobs.history import HISTORY_PRUNE
from tests.integration.oci_client import push_image
from tests.integration.test_identity_helpers import Idp, make_idp, uid
from tests.integration.webhook_receiver import Received, Receiver

SECRET = "hmac-secret-of-the-target"


@pytest.fixture
async def idp(database_url: str, tmp_path: Path) -> AsyncIterator[Idp]:
    async for value in make_idp(database_url, tmp_path, MOORAGE_WEBHOOKS__ALLOW_NETWORKS="[127.0.0.1/32]"):
        runner = JobRunner(value.services.jobs, value.services.job_handlers, poll_seconds=0.05)
        runner.start()
        try:
            yield value
        finally:
            await runner.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.stop()


def _policy(address: str, events: list[str], **target: Any) -> dict[str, Any]:
    return {"name": "ci", "description": "tell CI", "enabled": True, "event_types": events,
            "targets": [{"type": "http", "address": address, "skip_cert_verify": False, **target}]}


async def _wait_for(receiver: Receiver, count: int) -> list[Received]:
    for _ in range(600):  # a bound, not a timing assertion: deliveries come from the job runner
        got = receiver.snapshot()
        if len(got) >= count:
            return got
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {count} webhook requests, got {len(receiver.snapshot())}")


async def _push(idp: Idp, name: str, tag: str, layer: bytes) -> str:
    idp.http.headers.update(idp.admin)
    try:
        digest, _ = await push_image(idp.http, name, tag, [layer])
        return digest
    finally:
        del idp.http.headers["Authorization"]


async def test_push_pull_delete_are_delivered_once_in_harbors_format_and_signed(idp: Idp, receiver: Receiver) -> None:
    project = await idp.project()
    r = await idp.api("POST", f"/projects/{project}/webhook/policies", idp.admin,
                      json=_policy(receiver.url, ["PUSH_ARTIFACT", "PULL_ARTIFACT", "DELETE_ARTIFACT"],
                                   auth_header="Bearer ci-token", secret=SECRET))
    assert r.status_code == 201, r.text
    policy_id = int(r.headers["Location"].rsplit("/", 1)[1])

    digest = await _push(idp, f"{project}/app", "v1", b"layer-one")
    pulled = await idp.http.get(f"/v2/{project}/app/manifests/v1", headers=idp.admin)
    assert pulled.status_code == 200
    deleted = await idp.api("DELETE", f"/projects/{project}/repositories/app/artifacts/{digest}", idp.admin)
    assert deleted.status_code == 200, deleted.text

    got = await _wait_for(receiver, 3)
    by_type = {request.json()["type"]: request for request in got}
    assert sorted(by_type) == ["DELETE_ARTIFACT", "PULL_ARTIFACT", "PUSH_ARTIFACT"]
    push = by_type["PUSH_ARTIFACT"]
    body = push.json()
    assert body["operator"] == "admin"
    assert body["event_data"]["resources"] == [
        {"digest": digest, "tag": "v1", "resource_url": f"registry.test/{project}/app:v1"}]
    assert body["event_data"]["repository"] | {"date_created": 0} == {
        "date_created": 0, "name": "app", "namespace": project, "repo_full_name": f"{project}/app",
        "repo_type": "private"}
    assert push.headers["authorization"] == "Bearer ci-token"
    assert push.headers["content-type"] == "application/json"
    expected = "sha256=" + hmac.new(SECRET.encode(), push.body, hashlib.sha256).hexdigest()
    assert push.headers["x-moorage-signature-256"] == expected
    assert len({request.headers["x-moorage-event-id"] for request in got}) == 3

    jobs = await idp.api("GET", f"/projects/{project}/webhook/jobs", idp.admin, params={"policy_id": policy_id})
    assert jobs.status_code == 200, jobs.text
    assert sorted((j["event_type"], j["status"], j["attempts"]) for j in jobs.json()) == [
        ("DELETE_ARTIFACT", "Success", 1), ("PULL_ARTIFACT", "Success", 1), ("PUSH_ARTIFACT", "Success", 1)]
    shown = (await idp.api("GET", f"/projects/{project}/webhook/policies/{policy_id}", idp.admin)).json()
    assert shown["targets"][0]["has_secret"] is True and "secret" not in shown["targets"][0]


async def test_cloudevents_target_and_a_failed_attempt_is_retried(idp: Idp, tmp_path: Path) -> None:
    receiver = Receiver(fail_first=1)
    try:
        project = await idp.project()
        r = await idp.api("POST", f"/projects/{project}/webhook/policies", idp.admin,
                          json=_policy(receiver.url, ["PUSH_ARTIFACT"], payload_format="CloudEvents"))
        assert r.status_code == 201, r.text
        policy_id = int(r.headers["Location"].rsplit("/", 1)[1])
        digest = await _push(idp, f"{project}/app", "v2", b"layer-two")
        first, second = await _wait_for(receiver, 2)
        assert first.body == second.body  # the same event, sent again after the 500
        event = second.json()
        assert second.headers["content-type"] == "application/cloudevents+json"
        assert event["specversion"] == "1.0" and event["type"] == "harbor.artifact.pushed"
        assert event["id"] == second.headers["x-moorage-event-id"]
        assert event["source"].endswith(f"/webhook/policies/{policy_id}")
        assert event["data"]["resources"][0]["digest"] == digest
        for _ in range(200):
            jobs = (await idp.api("GET", f"/projects/{project}/webhook/jobs", idp.admin,
                                  params={"policy_id": policy_id})).json()
            if jobs[0]["status"] == "Success":
                break
            await asyncio.sleep(0.05)
        assert [(j["status"], j["attempts"]) for j in jobs] == [("Success", 2)]
    finally:
        receiver.stop()


async def test_a_push_over_the_quota_is_a_quota_exceed_event(idp: Idp, receiver: Receiver) -> None:
    project = uid("proj")
    r = await idp.api("POST", "/projects", idp.admin, json={"project_name": project, "storage_limit": 600})
    assert r.status_code == 201, r.text
    r = await idp.api("POST", f"/projects/{project}/webhook/policies", idp.admin,
                      json=_policy(receiver.url, ["QUOTA_EXCEED"]))
    assert r.status_code == 201, r.text
    idp.http.headers.update(idp.admin)
    try:
        refused = await idp.http.post(f"/v2/{project}/app/blobs/uploads/",
                                      params={"digest": "sha256:" + hashlib.sha256(b"z" * 1000).hexdigest()},
                                      content=b"z" * 1000)
    finally:
        del idp.http.headers["Authorization"]
    assert refused.status_code == 403, refused.text
    (got,) = await _wait_for(receiver, 1)
    body = got.json()
    assert body["type"] == "QUOTA_EXCEED"
    assert body["event_data"]["repository"]["repo_full_name"] == f"{project}/app"
    assert "quota exceeded" in body["event_data"]["custom_attributes"]["Details"]


async def test_a_receiver_slower_than_the_timeout_is_an_error_after_the_last_attempt(
    database_url: str, tmp_path: Path
) -> None:
    receiver = Receiver(delay=2.0)
    try:
        async for idp in make_idp(database_url, tmp_path, MOORAGE_WEBHOOKS__ALLOW_NETWORKS="[127.0.0.1/32]",
                                  MOORAGE_WEBHOOKS__TIMEOUT="0.3", MOORAGE_WEBHOOKS__MAX_ATTEMPTS="1"):
            runner = JobRunner(idp.services.jobs, idp.services.job_handlers, poll_seconds=0.05)
            runner.start()
            try:
                project = await idp.project()
                r = await idp.api("POST", f"/projects/{project}/webhook/policies", idp.admin,
                                  json=_policy(receiver.url, ["PUSH_ARTIFACT"]))
                policy_id = int(r.headers["Location"].rsplit("/", 1)[1])
                await _push(idp, f"{project}/app", "v1", b"slow")
                for _ in range(200):  # a bound on waiting for the job runner, not a timing assertion
                    jobs = (await idp.api("GET", f"/projects/{project}/webhook/jobs", idp.admin,
                                          params={"policy_id": policy_id})).json()
                    if jobs and jobs[0]["status"] == "Error":
                        break
                    await asyncio.sleep(0.05)
                assert [(j["status"], j["attempts"]) for j in jobs] == [("Error", 1)]
                assert "attempt 1 of 1" in jobs[0]["last_error"] and "Timeout" in jobs[0]["last_error"]
            finally:
                await runner.stop()
    finally:
        receiver.stop()


BAD_CHANGES: list[tuple[dict[str, Any], str]] = [
    ({"targets": [{"type": "http", "address": "ci.example.com/hook"}]}, "targets[0].address"),
    ({"targets": [{"type": "http", "address": "http://169.254.169.254/latest/meta-data"}]}, "targets[0].address"),
    ({"targets": [{"type": "http", "address": "http://127.0.0.2:9/hook"}]}, "targets[0].address"),
    ({"targets": [{"type": "http", "address": "http://[::ffff:169.254.169.254]/"}]}, "targets[0].address"),
    ({"event_types": ["PUSH_ARTIFACT", "PUSH_IMAGE"]}, "event_types[1]"),
    ({"targets": [{"type": "http", "address": "http://127.0.0.1:9/", "payload_format": "XML"}]},
     "targets[0].payload_format"),
    ({"targets": [{"type": "slack", "address": "http://127.0.0.1:9/"}]}, "targets[0].type"),
    ({"targets": []}, "targets"),
]


async def test_bad_policies_are_400_naming_the_field_and_nothing_is_saved(idp: Idp) -> None:
    project = await idp.project()
    path = f"/projects/{project}/webhook/policies"
    for change, field in BAD_CHANGES:
        r = await idp.api("POST", path, idp.admin, json=_policy("http://127.0.0.1:9/hook", ["PUSH_ARTIFACT"]) | change)
        assert r.status_code == 400, (change, r.text)
        assert r.json()["errors"][0]["message"].startswith(f"{field}: "), r.text
    assert (await idp.api("GET", path, idp.admin)).json() == []
    # An update with the same bad fields leaves the stored policy as it was.
    ok = await idp.api("POST", path, idp.admin, json=_policy("http://127.0.0.1:9/hook", ["PUSH_ARTIFACT"]))
    policy_id = ok.headers["Location"].rsplit("/", 1)[1]
    for change, field in BAD_CHANGES:
        r = await idp.api("PUT", f"{path}/{policy_id}", idp.admin, json=change)
        assert r.status_code == 400 and r.json()["errors"][0]["message"].startswith(f"{field}: "), r.text
    stored = (await idp.api("GET", f"{path}/{policy_id}", idp.admin)).json()
    assert stored["targets"][0]["address"] == "http://127.0.0.1:9/hook"
    assert stored["event_types"] == ["PUSH_ARTIFACT"]


async def test_project_admins_change_policies_maintainers_read_developers_neither(idp: Idp) -> None:
    project = await idp.project()
    _, admin = await idp.user_in(project, 1)
    _, maintainer = await idp.user_in(project, 4)
    _, developer = await idp.user_in(project, 2)
    path = f"/projects/{project}/webhook/policies"
    assert (await idp.api("POST", path, admin, json=_policy("http://127.0.0.1:9/", ["PUSH_ARTIFACT"]))).status_code == 201
    assert (await idp.api("GET", path, maintainer)).status_code == 200
    r = await idp.api("POST", path, maintainer, json=_policy("http://127.0.0.1:9/", ["PUSH_ARTIFACT"]) | {"name": "m"})
    assert r.status_code == 403 and "projectAdmin" in r.json()["errors"][0]["message"]
    assert (await idp.api("GET", path, developer)).status_code == 403
    duplicate = await idp.api("POST", path, admin, json=_policy("http://127.0.0.1:9/", ["PUSH_ARTIFACT"]))
    assert duplicate.status_code == 409

async def _finished(idp: Idp, job_id: int) -> str:
    for _ in range(600):  # a bound, not a timing assertion: the runner polls every 50 ms
        job = await idp.services.jobs.get(job_id)
        assert job is not None
        if job.state in ("succeeded", "failed"):
            return job.state
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


async def test_old_finished_rows_are_pruned_and_everything_else_is_kept(idp: Idp, receiver: Receiver) -> None:
    project = await idp.project()
    r = await idp.api("POST", f"/projects/{project}/webhook/policies", idp.admin, json={
        "name": "ci", "description": "", "enabled": True, "event_types": ["PUSH_ARTIFACT"],
        "targets": [{"type": "http", "address": receiver.url, "skip_cert_verify": False}]})
    assert r.status_code == 201, r.text
    policy_id = int(r.headers["Location"].rsplit("/", 1)[1])
    idp.http.headers.update(idp.admin)
    try:
        await push_image(idp.http, f"{project}/app", "v1", [b"old"])
        await push_image(idp.http, f"{project}/app", "v2", [b"new"])
    finally:
        del idp.http.headers["Authorization"]
    db, queue = idp.services.db, idp.services.jobs
    delivered: list[int] = []
    for _ in range(600):  # a bound, not a timing assertion: the receiver answers before the row says Success
        async with db.read() as conn:
            delivered = sorted(row.id for row in await conn.execute(
                select(webhook_deliveries.c.id).where(webhook_deliveries.c.policy_id == policy_id,
                                                      webhook_deliveries.c.status == "Success")))
        if len(delivered) == 2:
            break
        await asyncio.sleep(0.05)
    assert len(delivered) == 2 and len(receiver.snapshot()) == 2
    old_delivery, new_delivery = delivered

    kind = f"prune-test-{policy_id}"
    old_done, old_failed, old_queued, new_done = [await queue.enqueue(kind) for _ in range(4)]
    long_ago = datetime.now(UTC) - timedelta(days=40)
    async with db.write() as conn:
        await conn.execute(update(jobs).where(jobs.c.id.in_([old_done, new_done])).values(
            state="succeeded", finished_at=datetime.now(UTC)))
        await conn.execute(update(jobs).where(jobs.c.id == old_failed).values(state="failed"))
        # Old and finished: done and failed; old but never run (a far-future run_after keeps it queued).
        await conn.execute(update(jobs).where(jobs.c.id.in_([old_done, old_failed])).values(finished_at=long_ago,
                                                                                          created_at=long_ago))
        await conn.execute(update(jobs).where(jobs.c.id == old_queued).values(
            created_at=long_ago, run_after=datetime.now(UTC) + timedelta(days=1)))
        await conn.execute(insert(gc_executions).values(job_id=old_done, manifests=0, blobs=0, bytes_freed=0, log=""))
        await conn.execute(update(webhook_deliveries).where(webhook_deliveries.c.id == old_delivery)
                           .values(updated_at=long_ago))
        # Ended long ago by its timestamp but still waiting for a retry: not finished, kept.
        await conn.execute(update(webhook_deliveries).where(webhook_deliveries.c.id == new_delivery)
                           .values(updated_at=long_ago, status="Scheduled"))

    prune = await queue.enqueue(HISTORY_PRUNE, {"days": 30})
    assert await _finished(idp, prune) == "succeeded"

    async with db.read() as conn:
        kept_jobs = {row.id for row in await conn.execute(select(jobs.c.id).where(jobs.c.kind == kind))}
        kept_deliveries = {row.id for row in await conn.execute(
            select(webhook_deliveries.c.id).where(webhook_deliveries.c.policy_id == policy_id))}
        executions = (await conn.execute(select(gc_executions.c.job_id).where(gc_executions.c.job_id == old_done))).all()
    assert kept_jobs == {old_queued, new_done}
    assert kept_deliveries == {new_delivery}
    assert executions == []  # went with its job
