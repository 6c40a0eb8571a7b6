"""Harbor's own API client (harborapi) manages webhook policies and reads their jobs unchanged.

The target is a private address (allowed by default, never reached: no event is caused here), so
this checks the shapes and paths a Harbor script relies on, not delivery (tests/integration/
test_webhooks.py and tests/ha/test_webhooks.py do that).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from harborapi import HarborAsyncClient
from harborapi.exceptions import BadRequest, NotFound
from harborapi.models import ProjectReq, WebhookPolicy, WebhookTargetObject

from tests.e2e.identity_helpers import ADMIN_PASSWORD, start_token_moorage, uid
from tests.e2e.servers import RegistryProcess


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    reg = start_token_moorage(tmp_path_factory.mktemp("harbor-hooks"), label="harbor-hooks",
                              extra_env={"MOORAGE_HTTP__WORKERS": "1"})
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture
async def admin(registry: RegistryProcess) -> AsyncIterator[HarborAsyncClient]:
    client = HarborAsyncClient(url=f"{registry.url}/api/v2.0", username="admin", secret=ADMIN_PASSWORD, retry=None,
                               timeout=30)
    yield client
    await client.client.aclose()


async def test_harborapi_creates_lists_updates_and_deletes_webhook_policies(admin: HarborAsyncClient) -> None:
    project = uid("hooks")
    await admin.create_project(ProjectReq(project_name=project))
    target = WebhookTargetObject(type="http", address="http://10.255.255.1/hook", auth_header="Bearer x",
                                 skip_cert_verify=False)
    location = await admin.create_webhook_policy(project, WebhookPolicy(
        name="ci", description="to CI", targets=[target], event_types=["PUSH_ARTIFACT", "DELETE_ARTIFACT"],
        enabled=True))
    policy_id = int(location.rsplit("/", 1)[1])

    [listed] = await admin.get_webhook_policies(project)
    assert (listed.id, listed.name, listed.event_types, listed.enabled) == (
        policy_id, "ci", ["PUSH_ARTIFACT", "DELETE_ARTIFACT"], True)
    assert listed.targets is not None and listed.targets[0].address == "http://10.255.255.1/hook"
    assert listed.creator == "admin"

    listed.enabled = False
    await admin.update_webhook_policy(project, policy_id, listed)
    assert (await admin.get_webhook_policy(project, policy_id)).enabled is False

    supported = await admin.get_webhook_supported_events(project)
    assert [e.root for e in supported.event_type or []][:3] == ["PUSH_ARTIFACT", "PULL_ARTIFACT", "DELETE_ARTIFACT"]
    assert [n.root for n in supported.notify_type or []] == ["http"]
    [trigger] = await admin.get_webhook_policy_last_trigger(project)
    assert trigger.policy_name == "ci" and trigger.last_trigger_time is None
    assert await admin.get_webhook_jobs(project, policy_id, status=["Success", "Error"]) == []

    with pytest.raises(BadRequest, match=r"targets\[0\]\.address"):
        await admin.create_webhook_policy(project, WebhookPolicy(
            name="bad", targets=[WebhookTargetObject(type="http", address="169.254.169.254")],
            event_types=["PUSH_ARTIFACT"]))
    await admin.delete_webhook_policy(project, policy_id)
    with pytest.raises(NotFound):
        await admin.get_webhook_policy(project, policy_id)
