"""``moorage keys rotate`` while two ``moorage serve`` nodes run on one PostgreSQL database.

Tokens signed by the previous key (access and refresh tokens) keep working on both nodes after
the rotation; new tokens from either node are signed with the new key at once, and each node
accepts the tokens the other signed. ``moorage keys list`` shows the retired key verifying.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from functools import partial

import httpx
import jwt
import pytest

from tests.e2e.identity_helpers import PASSWORD, TOKEN_ENV, AdminApi, basic, start_token_moorage
from tests.e2e.servers import RegistryProcess, moorage_command, start_together, throwaway_postgres_database

DEVELOPER_ROLE = 2


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory, postgres_admin_url: str) -> Iterator[tuple[list[RegistryProcess], dict[str, str]]]:
    workdir = tmp_path_factory.mktemp("ha-keys")
    shared = workdir / "shared"
    shared.mkdir()
    with throwaway_postgres_database(postgres_admin_url, prefix="moorage_ha_keys") as url:
        env = {"MOORAGE_DATA_DIR": str(shared), "MOORAGE_HTTP__WORKERS": "1"}
        nodes = start_together(
            [partial(start_token_moorage, workdir, label=f"knode{i}", database_url=url, extra_env=env)
             for i in range(2)]
        )
        try:
            yield nodes, {**TOKEN_ENV, **env, "MOORAGE_DATABASE_URL": url}
        finally:
            for node in nodes:
                node.stop()


def _cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([*moorage_command(), "keys", *args], capture_output=True, text=True, timeout=120,
                            env={**os.environ, **env}, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def test_tokens_of_the_previous_key_work_on_every_node_after_a_rotation(
    two_nodes: tuple[list[RegistryProcess], dict[str, str]],
) -> None:
    nodes, env = two_nodes
    api = AdminApi(nodes[0])
    try:
        project = api.project()
        user = api.user(project, DEVELOPER_ROLE)
    finally:
        api.close()
    repository = f"{project}/rot-{uuid.uuid4().hex[:6]}"
    scope = f"repository:{repository}:pull,push"
    with httpx.Client(timeout=30) as http:
        def token(node: RegistryProcess, offline: bool = False) -> dict[str, str]:
            params = {"service": "moorage", "scope": scope, **({"offline_token": "true"} if offline else {})}
            r = http.get(f"{node.url}/service/token", params=params, headers=basic(user, PASSWORD))
            assert r.status_code == 200, r.text
            body: dict[str, str] = r.json()
            return body

        def usable(node: RegistryProcess, access: str) -> int:
            r = http.post(f"{node.url}/v2/{repository}/blobs/uploads/", headers={"Authorization": f"Bearer {access}"})
            return r.status_code

        before = [token(node, offline=True) for node in nodes]
        old_kid = _kid(before[0]["token"])
        assert {_kid(t["token"]) for t in before} == {old_kid}

        out = _cli(env, "rotate")
        new_kid = out.split()[3].rstrip(";")
        assert new_kid != old_kid

        for issued in before:  # signed by the retired key, used on both nodes
            for node in nodes:
                assert usable(node, issued["token"]) == 202
        after = [token(node) for node in nodes]
        assert [_kid(t["token"]) for t in after] == [new_kid, new_kid]  # both nodes switched at once
        assert usable(nodes[1], after[0]["token"]) == 202 and usable(nodes[0], after[1]["token"]) == 202
        for i, node in enumerate(nodes):  # refresh tokens of the old key still refresh, on the other node too
            r = http.post(f"{nodes[1 - i].url}/service/token", data={
                "grant_type": "refresh_token", "refresh_token": before[i]["refresh_token"], "service": "moorage",
                "scope": scope})
            assert r.status_code == 200 and _kid(r.json()["access_token"]) == new_kid, r.text

    listing = _cli(env, "list")
    lines = {line.split()[0]: line.split()[1] for line in listing.splitlines()[1:]}
    assert lines[new_kid] == "signing" and lines[old_kid] == "verifying"
