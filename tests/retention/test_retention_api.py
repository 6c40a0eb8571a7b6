"""Harbor's ``/api/v2.0/retentions`` on SQLite and PostgreSQL: policies, dry and real runs as jobs,
execution history, tasks and logs; immutable tags kept with the reason; only the asked project
touched; bad input saves nothing; pull times recorded behind and shown as ``pull_time``."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from moorage.app import create_app
from moorage.jobs import JobRunner
from moorage.jobs.queue import JobStopped
from moorage.registry.digests import Digest
from moorage.registry.immutability import ImmutableRules
from moorage.registry.interfaces import Manifests
from moorage.retention.job import RetentionRunner
from moorage.retention.service import RETENTION_RUN, RetentionService
from moorage.services import Services
from tests.integration.oci_client import OCI_MANIFEST, push_image
from tests.integration.test_identity_helpers import ADMIN_PASSWORD, Idp, basic, make_idp


@pytest.fixture
async def idp(fresh_database_url: str, tmp_path: Path) -> AsyncIterator[Idp]:
    async for made in make_idp(fresh_database_url, tmp_path / "data", MOORAGE_STORAGE__DELETE__ENABLED="true"):
        yield made


async def run_jobs(services: Services) -> None:
    runner = JobRunner(services.jobs, services.job_handlers, owner="test-node")
    while await runner.run_once():
        pass
    await runner.stop(grace=60)


def registry(idp: Idp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(idp.settings, idp.services)),
                             base_url="http://registry.test", headers=basic("admin", ADMIN_PASSWORD))


async def project_id(idp: Idp, name: str) -> int:
    return int((await idp.api("GET", f"/projects/{name}", idp.admin)).json()["project_id"])


def rule(template: str, value: int | None = None, tags: str = "**", untagged: bool = False,
         repo: str = "**", repo_decoration: str = "repoMatches") -> dict[str, Any]:
    return {
        "disabled": False, "action": "retain", "template": template,
        "params": {template: value} if value is not None else {},
        "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": tags,
                           "extras": json.dumps({"untagged": untagged})}],
        "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": repo_decoration, "pattern": repo}]},
    }


def policy_body(pid: int, rules: list[dict[str, Any]], cron: str = "") -> dict[str, Any]:
    return {"algorithm": "or", "rules": rules, "scope": {"level": "project", "ref": pid},
            "trigger": {"kind": "Schedule", "settings": {"cron": cron}}}


async def fill(client: httpx.AsyncClient, project: str) -> dict[str, str]:
    """app: v1..v4 (oldest first), dev (pushed twice: the first dev is left untagged); web: v1, v2."""
    digests: dict[str, str] = {}
    for tag in ("v1", "v2", "v3", "v4", "dev", "dev"):
        key = "untagged" if tag == "dev" and "dev" in digests else tag
        if key == "untagged":
            digests["untagged"] = digests["dev"]
        digests[tag], _ = await push_image(client, f"{project}/app", tag, [os.urandom(700)])
    for tag in ("v1", "v2"):
        digests[f"web:{tag}"], _ = await push_image(client, f"{project}/web", tag, [os.urandom(500)])
    return digests


async def manifest_status(client: httpx.AsyncClient, name: str, digest: str) -> int:
    return (await client.get(f"/v2/{name}/manifests/{digest}", headers={"Accept": OCI_MANIFEST})).status_code


async def test_dry_run_then_real_run_in_the_asked_project_only(idp: Idp) -> None:
    mine, other = await idp.project(), await idp.project()
    async with registry(idp) as client:
        digests = await fill(client, mine)
        theirs = await fill(client, other)
    pid = await project_id(idp, mine)
    rule_made = await idp.api("POST", f"/projects/{mine}/immutabletagrules", idp.admin,
                              json={"tag_selectors": [{"kind": "doublestar", "pattern": "v1"}]})
    assert rule_made.status_code == 201
    # keep the two newest v* and dev, never touch web; v1 is immutable, so it stays too
    body = policy_body(pid, [rule("latestPushedK", 2, "v*", repo="web", repo_decoration="repoExcludes"),
                             rule("always", tags="dev", repo="web", repo_decoration="repoExcludes")])
    created = await idp.api("POST", "/retentions", idp.admin, json=body)
    assert created.status_code == 201, created.text
    policy_id = int(created.headers["Location"].rsplit("/", 1)[1])
    again = await idp.api("POST", "/retentions", idp.admin, json=body)
    assert again.status_code == 409 and f"PUT /api/v2.0/retentions/{policy_id}" in again.text
    read = (await idp.api("GET", f"/retentions/{policy_id}", idp.admin)).json()
    assert read["scope"] == {"level": "project", "ref": pid} and read["rules"][0]["params"] == {"latestPushedK": 2}
    assert (await idp.api("GET", f"/projects/{mine}/retention", idp.admin)).json()["id"] == policy_id
    assert (await idp.api("GET", f"/projects/{mine}", idp.admin)).json()["metadata"] == {
        "public": "false", "retention_id": str(policy_id)}  # where Harbor clients look for it
    assert "retention_id" not in (await idp.api("GET", f"/projects/{other}", idp.admin)).json()["metadata"]

    dry = await idp.api("POST", f"/retentions/{policy_id}/executions", idp.admin, json={"dry_run": True})
    assert dry.status_code == 201, dry.text
    dry_id = int(dry.headers["Location"].rsplit("/", 1)[1])
    await run_jobs(idp.services)
    async with registry(idp) as client:  # a dry run removes nothing
        assert all([await manifest_status(client, f"{mine}/app", digests[t]) == 200 for t in ("v2", "untagged")])
    tasks = (await idp.api("GET", f"/retentions/{policy_id}/executions/{dry_id}/tasks", idp.admin)).json()
    assert [(t["repository"], t["total"], t["retained"], t["status"]) for t in tasks] == [
        (f"{mine}/app", 6, 4, "Success"), (f"{mine}/web", 2, 2, "Success")]
    log = (await idp.api("GET", f"/retentions/{policy_id}/executions/{dry_id}/tasks/{tasks[0]['id']}",
                         idp.admin)).text
    verdicts = {line.split()[1]: line.split()[0] for line in log.splitlines()[1:]}
    assert verdicts == {digests["v1"]: "KEEP", digests["v2"]: "REMOVE", digests["v3"]: "RETAIN",
                        digests["v4"]: "RETAIN", digests["dev"]: "RETAIN", digests["untagged"]: "REMOVE"}
    assert "immutable by rule" in log

    real = await idp.api("POST", f"/retentions/{policy_id}/executions", idp.admin, json={"dry_run": False})
    real_id = int(real.headers["Location"].rsplit("/", 1)[1])
    await run_jobs(idp.services)
    async with registry(idp) as client:
        for tag, expected in (("v1", 200), ("v2", 404), ("v3", 200), ("v4", 200), ("dev", 200), ("untagged", 404),
                              ("web:v1", 200), ("web:v2", 200)):
            name = f"{mine}/web" if tag.startswith("web:") else f"{mine}/app"
            assert await manifest_status(client, name, digests[tag]) == expected, tag
        for tag, digest in theirs.items():  # the other project holds the same tags and rules would remove some
            name = f"{other}/web" if tag.startswith("web:") else f"{other}/app"
            assert await manifest_status(client, name, digest) == 200, tag
    history = await idp.api("GET", f"/retentions/{policy_id}/executions", idp.admin)
    assert history.headers["X-Total-Count"] == "2"
    listed = history.json()
    assert [(e["id"], e["dry_run"], e["status"], e["trigger"]) for e in listed] == [
        (real_id, False, "Success", "MANUAL"), (dry_id, True, "Success", "MANUAL")]
    assert listed[0]["start_time"] <= listed[0]["end_time"]
    tasks = (await idp.api("GET", f"/retentions/{policy_id}/executions/{real_id}/tasks", idp.admin)).json()
    log = (await idp.api("GET", f"/retentions/{policy_id}/executions/{real_id}/tasks/{tasks[0]['id']}",
                         idp.admin)).text
    kept = [line for line in log.splitlines() if line.startswith("KEPT")]
    assert len(kept) == 1 and digests["v1"] in kept[0] and "immutable by rule" in kept[0]
    assert sorted(line.split()[1] for line in log.splitlines() if line.startswith("REMOVED")) == sorted(
        [digests["v2"], digests["untagged"]])
    assert (await idp.services.jobs.get(real_id)) is not None


async def test_bad_input_is_a_400_naming_the_field_and_saves_nothing(idp: Idp) -> None:
    project = await idp.project()
    pid = await project_id(idp, project)
    good = rule("latestPushedK", 3)
    bad = [
        (policy_body(pid, [good], cron="0 61 * * *"), "trigger.settings.cron"),
        (policy_body(pid, [{**good, "template": "keepForever"}]), "rules[0].template"),
        (policy_body(pid, [rule("latestPushedK", 3, tags="v{1,2")]), "rules[0].tag_selectors[0].pattern"),
        (policy_body(pid, [rule("nDaysSinceLastPull", -1)]), "rules[0].params.nDaysSinceLastPull"),
        (policy_body(pid, [rule("latestPushedK", 1, repo="[a-")]), "rules[0].scope_selectors.repository[0].pattern"),
        ({**policy_body(pid, [good]), "scope": {"level": "project"}}, "scope.ref"),
    ]
    for body, field in bad:
        refused = await idp.api("POST", "/retentions", idp.admin, json=body)
        assert refused.status_code == 400, refused.text
        message = refused.json()["errors"][0]["message"]
        assert message.startswith(field) or f"{field}:" in message, message
        assert (await idp.api("GET", f"/projects/{project}/retention", idp.admin)).status_code == 404
    created = await idp.api("POST", "/retentions", idp.admin, json=policy_body(pid, [good], cron="0 0 3 * * *"))
    policy_id = int(created.headers["Location"].rsplit("/", 1)[1])
    saved = (await idp.api("GET", f"/retentions/{policy_id}", idp.admin)).json()
    for body, field in bad[:5]:
        refused = await idp.api("PUT", f"/retentions/{policy_id}", idp.admin, json=body)
        assert refused.status_code == 400 and field in refused.text and "nothing was saved" in refused.text
        assert (await idp.api("GET", f"/retentions/{policy_id}", idp.admin)).json() == saved
    stop = await idp.api("PATCH", f"/retentions/{policy_id}/executions/1", idp.admin, json={"action": "pause"})
    assert stop.status_code == 400 and "action" in stop.text


async def test_who_may_read_change_and_run(idp: Idp) -> None:
    project = await idp.project()
    pid = await project_id(idp, project)
    _, developer = await idp.user_in(project, 2)
    _, maintainer = await idp.user_in(project, 4)
    _, admin_of_project = await idp.user_in(project, 1)
    _, stranger = await idp.user()
    body = policy_body(pid, [rule("always")])
    assert (await idp.api("POST", "/retentions", json=body)).status_code == 401
    for auth in (developer, maintainer):
        refused = await idp.api("POST", "/retentions", auth, json=body)
        assert refused.status_code == 403 and "projectAdmin" in refused.text
    assert (await idp.api("POST", "/retentions", stranger, json=body)).status_code == 404
    created = await idp.api("POST", "/retentions", admin_of_project, json=body)
    assert created.status_code == 201
    path = created.headers["Location"].removeprefix("/api/v2.0")
    assert (await idp.api("GET", path, maintainer)).status_code == 200
    assert (await idp.api("GET", path, developer)).status_code == 403
    assert (await idp.api("POST", f"{path}/executions", maintainer, json={"dry_run": True})).status_code == 403
    assert (await idp.api("POST", f"{path}/executions", admin_of_project, json={"dry_run": True})).status_code == 201
    assert (await idp.api("DELETE", path, maintainer)).status_code == 403
    assert (await idp.api("DELETE", path, admin_of_project)).status_code == 200
    assert (await idp.api("GET", path, admin_of_project)).status_code == 404


async def test_pull_times_are_written_behind_and_drive_latest_pulled(idp: Idp) -> None:
    project = await idp.project()
    pid = await project_id(idp, project)
    async with registry(idp) as client:
        old, _ = await push_image(client, f"{project}/app", "old", [os.urandom(300)])
        new, _ = await push_image(client, f"{project}/app", "new", [os.urandom(300)])
        for _ in range(3):  # pulls of the older image only: by tag and by digest
            assert (await client.get(f"/v2/{project}/app/manifests/old", headers={"Accept": OCI_MANIFEST})).is_success
        assert (await client.get(f"/v2/{project}/app/manifests/{old}", headers={"Accept": OCI_MANIFEST})).is_success
        assert (await client.head(f"/v2/{project}/app/manifests/new", headers={"Accept": OCI_MANIFEST})).is_success
    assert idp.services.pull_times is not None
    await idp.services.pull_times.flush()
    artifacts = (await idp.api("GET", f"/projects/{project}/repositories/app/artifacts", idp.admin)).json()
    times = {a["digest"]: a["pull_time"] for a in artifacts}
    assert times[new] is None  # a HEAD is not a pull
    pulled = datetime.fromisoformat(times[old])
    assert datetime.now(UTC) - timedelta(minutes=5) < pulled <= datetime.now(UTC)
    created = await idp.api("POST", "/retentions", idp.admin, json=policy_body(pid, [rule("latestPulledN", 1)]))
    path = created.headers["Location"].removeprefix("/api/v2.0")
    await idp.api("POST", f"{path}/executions", idp.admin, json={"dry_run": False})
    await run_jobs(idp.services)
    async with registry(idp) as client:
        assert await manifest_status(client, f"{project}/app", old) == 200
        assert await manifest_status(client, f"{project}/app", new) == 404


async def test_a_due_schedule_runs_once_across_nodes_and_a_queued_run_can_be_stopped(idp: Idp) -> None:
    project = await idp.project()
    pid = await project_id(idp, project)
    created = await idp.api("POST", "/retentions", idp.admin,
                            json=policy_body(pid, [rule("always")], cron="*/10 * * * *"))
    policy_id = int(created.headers["Location"].rsplit("/", 1)[1])
    other = Services.from_settings(idp.settings)  # a second node on the same database
    try:
        saved_at = datetime.now(UTC)
        due = saved_at.replace(minute=saved_at.minute - saved_at.minute % 10, second=0, microsecond=0) + timedelta(
            minutes=10)
        one = RetentionService(idp.services.db, idp.services.jobs)
        two = RetentionService(other.db, other.jobs)
        assert await one.tick(due - timedelta(seconds=1)) == []
        ids = await asyncio.gather(*(node.tick(due + timedelta(seconds=5)) for node in (one, two, one, two)))
        assert len({tuple(i) for i in ids}) == 1 and len(ids[0]) == 1
        execution_id = ids[0][0]
        listed = (await idp.api("GET", f"/retentions/{policy_id}/executions", idp.admin)).json()
        assert [(e["id"], e["trigger"], e["status"]) for e in listed] == [(execution_id, "SCHEDULE", "Pending")]
        stop = await idp.api("PATCH", f"/retentions/{policy_id}/executions/{execution_id}", idp.admin,
                             json={"action": "stop"})
        assert stop.status_code == 200, stop.text
        await run_jobs(idp.services)  # nothing left to run
        got = (await idp.api("GET", f"/retentions/{policy_id}/executions/{execution_id}", idp.admin)).json()
        assert got["status"] == "Stopped"
        assert (await idp.services.jobs.list(kind=RETENTION_RUN))[0].state == "stopped"
    finally:
        await other.aclose()


async def test_a_running_execution_stops_between_two_removals(idp: Idp) -> None:
    """The stop arrives after the first removal (a real PATCH, sent by a Manifests wrapper); the run
    removes nothing more, its task and execution say Stopped, and the next run removes the rest."""
    project = await idp.project()
    pid = await project_id(idp, project)
    async with registry(idp) as client:
        old = [(await push_image(client, f"{project}/app", f"v{i}", [os.urandom(200 + i)]))[0] for i in range(4)]
    created = await idp.api("POST", "/retentions", idp.admin, json=policy_body(pid, [rule("latestPushedK", 0)]))
    policy_id = int(created.headers["Location"].rsplit("/", 1)[1])
    started = await idp.api("POST", f"/retentions/{policy_id}/executions", idp.admin, json={"dry_run": False})
    execution_id = int(started.headers["Location"].rsplit("/", 1)[1])
    stops: list[int] = []

    class StopAfterFirstRemoval:
        """Any Manifests wrapper has this shape (the Redis cache is one); this one asks for a stop."""

        def __init__(self, inner: Manifests) -> None:
            self.inner = inner

        async def delete(self, repository: str, reference: Digest | str) -> None:
            await self.inner.delete(repository, reference)
            if not stops:
                stop = await idp.api("PATCH", f"/retentions/{policy_id}/executions/{execution_id}", idp.admin,
                                     json={"action": "stop"})
                stops.append(stop.status_code)

    assert idp.services.retention is not None
    runner = RetentionRunner(idp.services.retention, idp.services.repositories,
                             cast(Manifests, StopAfterFirstRemoval(idp.services.manifests)),
                             ImmutableRules(idp.services.db))
    [job] = await idp.services.jobs.claim("test-node", kinds=[RETENTION_RUN])  # running, as a runner holds it
    found = await idp.services.retention.policy_of(job.id)
    assert found is not None
    with pytest.raises(JobStopped):
        await runner.run(job.id, *found)
    assert await idp.services.jobs.stopped("test-node", job.id)  # what the runner does on JobStopped
    assert stops == [200]
    got = (await idp.api("GET", f"/retentions/{policy_id}/executions/{execution_id}", idp.admin)).json()
    assert got["status"] == "Stopped" and got["end_time"] is not None
    [task] = (await idp.api("GET", f"/retentions/{policy_id}/executions/{execution_id}/tasks", idp.admin)).json()
    assert (task["status"], task["total"], task["retained"]) == ("Stopped", 4, 3)
    async with registry(idp) as client:
        assert sorted([await manifest_status(client, f"{project}/app", d) for d in old]) == [200, 200, 200, 404]
    await idp.api("POST", f"/retentions/{policy_id}/executions", idp.admin, json={"dry_run": False})
    await run_jobs(idp.services)
    async with registry(idp) as client:
        assert [await manifest_status(client, f"{project}/app", d) for d in old] == [404] * 4
