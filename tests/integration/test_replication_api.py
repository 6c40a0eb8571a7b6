"""The replication API and triggers in-process, on SQLite and PostgreSQL.

Bad input is refused naming the field with nothing stored; an event or a due minute seen by
three nodes makes one execution; a stop is honoured; a running policy cannot be deleted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from moorage.jobs.queue import JobQueue
from moorage.replication.executions import PlannedTask, ReplicationExecutions
from moorage.replication.job import ReplicationTrigger
from moorage.replication.policies import ReplicationPolicies
from tests.integration.test_identity_helpers import Idp, make_idp, uid


@pytest.fixture
async def idp(database_url: str, tmp_path: Path) -> AsyncIterator[Idp]:
    async for value in make_idp(database_url, tmp_path):
        yield value


async def endpoint(idp: Idp) -> int:
    # an endpoint need not answer to be saved (ping checks it); replication opens it only when a run starts
    r = await idp.api("POST", "/registries", idp.admin, json={"name": uid("ep"), "type": "docker-registry",
                                                              "url": "http://127.0.0.1:9"})
    assert r.status_code == 201, r.text
    return int(r.headers["location"].rsplit("/", 1)[1])


async def create(idp: Idp, **body: Any) -> Any:
    return await idp.api("POST", "/replication/policies", idp.admin, json={"name": uid("p"), **body})


BAD = [
    ({"filters": [{"type": "tag", "value": "v{1"}]}, "filters[0].value"),
    ({"filters": [{"type": "label", "value": "x"}]}, "filters[0].type"),
    ({"trigger": {"type": "scheduled", "trigger_settings": {"cron": "61 * * * *"}}}, "trigger.trigger_settings.cron"),
    ({"trigger": {"type": "scheduled"}}, "trigger.trigger_settings.cron"),
    ({"trigger": {"type": "sometimes"}}, "trigger.type"),
    ({"dest_namespace": "Bad Namespace"}, "dest_namespace"),
    ({"dest_namespace_replace_count": -2}, "dest_namespace_replace_count"),
    ({"speed": 0}, "speed"),
    ({"concurrency": 0}, "concurrency"),
    ({"dest_registry": None}, "dest_registry"),
    ({"dest_registry": {"id": 999999}}, "dest_registry.id"),
]


async def test_a_bad_policy_is_refused_naming_the_field(idp: Idp) -> None:
    dest = await endpoint(idp)
    for change, field in BAD:
        name = uid("bad")
        body = {"name": name, "dest_registry": {"id": dest}, **change}
        r = await idp.api("POST", "/replication/policies", idp.admin, json=body)
        assert r.status_code == 400, (change, r.text)
        message = r.json()["errors"][0]["message"]
        assert message.startswith(f"{field}:") and "nothing was saved" in message, message
    assert (await idp.api("GET", "/replication/policies", idp.admin, params={"name": "bad"})).json() == []


async def test_policies_round_trip_in_harbor_shapes_and_only_for_admins(idp: Idp) -> None:
    dest = await endpoint(idp)
    r = await create(idp, dest_registry={"id": dest}, dest_namespace="mirror", trigger={
        "type": "scheduled", "trigger_settings": {"cron": "0 0 * * * *"}},
        filters=[{"type": "name", "value": "library/**"}, {"type": "tag", "value": "!*-rc"}], speed=512)
    assert r.status_code == 201, r.text
    location = r.headers["location"].removeprefix("/api/v2.0")
    got = (await idp.api("GET", location, idp.admin)).json()
    assert got["dest_registry"]["id"] == dest and got["src_registry"]["id"] == 0
    assert got["trigger"] == {"type": "scheduled", "trigger_settings": {"cron": "0 0 * * * *"}}
    assert (got["speed"], got["dest_namespace"], got["dest_namespace_replace_count"]) == (512, "mirror", -1)
    assert (await create(idp, name=got["name"], dest_registry={"id": dest})).status_code == 409
    _, user = await idp.user()
    assert (await idp.api("GET", "/replication/policies", user)).status_code == 403
    assert (await idp.api("GET", "/replication/policies")).status_code == 401
    assert (await idp.api("DELETE", location, idp.admin)).status_code == 200
    assert (await idp.api("GET", location, idp.admin)).status_code == 404


async def test_an_event_and_a_due_minute_make_one_execution_whatever_the_nodes(idp: Idp) -> None:
    dest = await endpoint(idp)
    project = await idp.project()
    event_policy = (await create(idp, dest_registry={"id": dest}, trigger={"type": "event_based"},
                                 filters=[{"type": "name", "value": f"{project}/**"}])).headers["location"]
    cron_policy = (await create(idp, dest_registry={"id": dest}, trigger={
        "type": "scheduled", "trigger_settings": {"cron": "* * * * *"}})).headers["location"]
    db = idp.services.db
    nodes = [ReplicationTrigger(ReplicationPolicies(db), JobQueue(db), ReplicationExecutions(db)) for _ in range(3)]
    for node in nodes:  # a push seen (or retried) on three nodes
        await node.on_artifact("push", f"{project}/app", "v1", "sha256:" + "a" * 64)
    await nodes[0].on_artifact("push", f"{project}/other", "v1", "sha256:" + "a" * 64)  # another event
    await nodes[0].on_artifact("pull", f"{project}/app", "v1", "sha256:" + "a" * 64)  # pulls trigger nothing
    event_id = int(event_policy.rsplit("/", 1)[1])
    found = (await idp.api("GET", "/replication/executions", idp.admin, params={"policy_id": event_id})).json()
    assert len(found) == 2 and {e["trigger"] for e in found} == {"event_based"}
    later = datetime.now(UTC) + timedelta(minutes=2)
    for node in nodes:
        await node.tick(later)
    cron_id = int(cron_policy.rsplit("/", 1)[1])
    found = (await idp.api("GET", "/replication/executions", idp.admin, params={"policy_id": cron_id})).json()
    assert [e["trigger"] for e in found] == ["scheduled"]


async def test_a_stopped_execution_stops_its_pending_tasks_and_a_running_policy_stays(idp: Idp) -> None:
    dest = await endpoint(idp)
    policy_id = int((await create(idp, dest_registry={"id": dest})).headers["location"].rsplit("/", 1)[1])
    r = await idp.api("POST", "/replication/executions", idp.admin, json={"policy_id": policy_id})
    assert r.status_code == 201, r.text
    execution_id = int(r.headers["location"].rsplit("/", 1)[1])
    store = ReplicationExecutions(idp.services.db)
    await store.plan(execution_id, [PlannedTask("copy", "artifact", "p/a", "p/a", "v1"),
                                    PlannedTask("copy", "artifact", "p/b", "p/b", "v1")])
    await store.plan(execution_id, [PlannedTask("copy", "artifact", "p/a", "p/a", "v1")])  # planned again: kept
    refused = await idp.api("DELETE", f"/replication/policies/{policy_id}", idp.admin)
    assert refused.status_code == 409 and "stop it first" in refused.text
    assert (await idp.api("PUT", f"/replication/executions/{execution_id}", idp.admin)).status_code == 200
    got = (await idp.api("GET", f"/replication/executions/{execution_id}", idp.admin)).json()
    assert (got["status"], got["total"], got["stopped"]) == ("Stopped", 2, 2)
    again = await idp.api("PUT", f"/replication/executions/{execution_id}", idp.admin)
    assert again.status_code == 412
    assert (await idp.api("POST", "/replication/executions", idp.admin, json={"policy_id": 999999})).status_code == 404
    assert (await idp.api("DELETE", f"/replication/policies/{policy_id}", idp.admin)).status_code == 200
