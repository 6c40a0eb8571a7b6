"""Tag retention through a real Harbor client: ``harborapi`` (PyPI) against a ``moorage serve`` process.

Every retention call of harborapi 0.26: the metadata, a policy created from harborapi's models
and found again through the project's ``metadata.retention_id``, a dry run, its execution,
tasks and task log, a stop, the delete.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from harborapi import HarborAsyncClient
from harborapi.models import (
    ProjectReq,
    RetentionPolicy,
    RetentionPolicyScope,
    RetentionRule,
    RetentionRuleTrigger,
    RetentionSelector,
)

from tests.e2e.identity_helpers import ADMIN_PASSWORD, start_token_moorage, uid
from tests.e2e.servers import RegistryProcess
from tests.integration.oci_client import push_image


@pytest.fixture(scope="module")
def harbor_like(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    reg = start_token_moorage(tmp_path_factory.mktemp("harborapi-retention"), label="harborapi-retention",
                              extra_env={"MOORAGE_HTTP__WORKERS": "1", "MOORAGE_JOBS__POLL_SECONDS": "0.2"})
    try:
        yield reg
    finally:
        reg.stop()


async def test_harborapi_retention_calls(harbor_like: RegistryProcess) -> None:
    client = HarborAsyncClient(url=f"{harbor_like.url}/api/v2.0", username="admin", secret=ADMIN_PASSWORD,
                               retry=None, timeout=30)
    try:
        metadata = await client.get_retention_metadata()
        assert {t.rule_template for t in metadata.templates or []} >= {"latestPushedK", "nDaysSinceLastPull"}

        project = uid("hr")
        await client.create_project(ProjectReq(project_name=project))
        project_id = (await client.get_project(project)).project_id
        async with httpx.AsyncClient(base_url=harbor_like.url, auth=("admin", ADMIN_PASSWORD), timeout=30) as http:
            for tag in ("v1", "v2"):
                await push_image(http, f"{project}/app", tag, [f"{project}-{tag}".encode()])

        policy = RetentionPolicy(
            algorithm="or",
            rules=[RetentionRule(
                disabled=False, action="retain", template="latestPushedK", params={"latestPushedK": 1},
                tag_selectors=[RetentionSelector(kind="doublestar", decoration="matches", pattern="**",
                                                 extras='{"untagged": true}')],
                scope_selectors={"repository": [RetentionSelector(kind="doublestar", decoration="repoMatches",
                                                                  pattern="**")]},
            )],
            trigger=RetentionRuleTrigger(kind="Schedule", settings={"cron": ""}),
            scope=RetentionPolicyScope(level="project", ref=project_id),
        )
        location = await client.create_retention_policy(policy)
        retention_id = int(location.rsplit("/", 1)[1])
        assert await client.get_project_retention_id(project) == retention_id
        read = await client.get_retention_policy(retention_id)
        assert read.scope is not None and read.scope.ref == project_id
        assert read.rules is not None and read.rules[0].params == {"latestPushedK": 1}

        execution_id = int((await client.start_retention_execution(retention_id, dry_run=True)).rsplit("/", 1)[1])
        for _ in range(600):  # the server's job runner runs it (a condition, not a timing assertion)
            executions = await client.get_retention_executions(retention_id)
            if executions and executions[0].status not in ("Pending", "Running"):
                break
            await asyncio.sleep(0.2)
        assert [(e.id, e.status, e.dry_run) for e in executions] == [(execution_id, "Success", True)]
        # harborapi sends page= and page_size= empty unless given; the shared pagination refuses that (400)
        tasks = await client.get_retention_tasks(retention_id, execution_id, page=1, page_size=10)
        assert [(t.repository, t.total, t.retained) for t in tasks] == [(f"{project}/app", 2, 1)]
        log = await client.get_retention_execution_task_log(retention_id, execution_id, tasks[0].id or 0)
        assert sum(line.startswith("REMOVE ") for line in log.splitlines()) == 1

        await client.stop_retention_execution(retention_id, execution_id)  # ended: nothing changes
        assert (await client.get_retention_executions(retention_id))[0].status == "Success"
        await client.delete_retention_policy(retention_id)
    finally:
        await client.client.aclose()
