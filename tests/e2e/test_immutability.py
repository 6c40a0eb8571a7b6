"""Tag immutability with skopeo against token-mode ``moorage serve``: what the user sees on a refusal.

skopeo prints the registry's ``DENIED`` message, so the message must name the rule and what to
do about it; the tag must still point at the first image afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.clients import ClientError, Skopeo, run
from tests.e2e.identity_helpers import ADMIN_PASSWORD, AdminApi, start_token_moorage
from tests.e2e.images import OciLayout
from tests.e2e.servers import RegistryProcess

KIB = 1024
CREDS = f"admin:{ADMIN_PASSWORD}"


@pytest.fixture(scope="module")
def reg(e2e_workdir: Path) -> Iterator[RegistryProcess]:
    server = start_token_moorage(e2e_workdir, label="moorage-immutable")
    try:
        yield server
    finally:
        server.stop()


def _failure(argv: list[str]) -> str:
    with pytest.raises(ClientError) as info:
        run(argv)
    output = info.value.result.stdout + info.value.result.stderr
    print(f"\n--- client output ---\n{output}")  # what the user sees, shown with -s
    return output


def _skopeo(skopeo: Skopeo) -> list[str]:
    return ["skopeo", "--policy", str(skopeo.policy)]


def _digest(skopeo: Skopeo, ref: str) -> str:
    out = run([*_skopeo(skopeo), "inspect", "--tls-verify=false", "--creds", CREDS,
               "--format", "{{.Digest}}", ref])
    return out.stdout.strip()


def test_skopeo_prints_the_rule_when_pushing_over_or_deleting_an_immutable_tag(
    reg: RegistryProcess, layout: OciLayout, skopeo: Skopeo
) -> None:
    api = AdminApi(reg)
    try:
        project = api.project()
        first = layout.add_image("one", (32 * KIB,))
        second = layout.add_image("two", (16 * KIB,))
        target = f"docker://{reg.host}/{project}/app:v1"
        skopeo.copy(first.ref, target, "--dest-creds", CREDS)
        r = api.http.post(f"/projects/{project}/immutabletagrules", json={
            "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "v*"}],
            "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches",
                                                "pattern": "**"}]},
        })
        assert r.status_code == 201, r.text
        rule_id = r.headers["Location"].rsplit("/", 1)[1]
    finally:
        api.close()

    named = f"tag 'v1' of '{project}/app' is immutable by rule {rule_id} (tags matching 'v*')"
    how = f"PUT /api/v2.0/projects/{project}/immutabletagrules/{rule_id}"
    output = _failure([*_skopeo(skopeo), "copy", "--dest-tls-verify=false", "--dest-creds", CREDS, second.ref, target])
    assert named in output and how in output
    assert _digest(skopeo, target) == first.manifest.digest

    skopeo.copy(first.ref, target, "--dest-creds", CREDS)  # the same image again: allowed
    skopeo.copy(second.ref, f"docker://{reg.host}/{project}/app:v2", "--dest-creds", CREDS)  # a new tag: allowed

    output = _failure([*_skopeo(skopeo), "delete", "--tls-verify=false", "--creds", CREDS, target])
    assert named in output and how in output
    assert _digest(skopeo, target) == first.manifest.digest
