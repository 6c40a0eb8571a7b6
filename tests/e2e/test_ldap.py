"""A directory user with real clients: ``podman login`` with the LDAP password, then podman and skopeo
push and pull, with rights that come only from a directory group mapped to the project.

The directory is Debian's slapd started and seeded by the suite (tests/services/ldap.py); the
registry is ``moorage serve`` in token mode with ``auth.sources: [local, ldap, robot]`` over
StartTLS with the directory's private CA.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.clients import ClientError, ContainersTools, Skopeo
from tests.e2e.conftest import require_tool
from tests.e2e.identity_helpers import AdminApi, start_token_moorage, uid
from tests.e2e.images import OciLayout, verify_layout
from tests.e2e.servers import RegistryProcess
from tests.services.ldap import Directory

KIB = 1024
LDAP_PASSWORD = "Directory-pass1"
DEVELOPER = 2


@pytest.fixture(scope="module")
def ldap_registry(e2e_workdir: Path, slapd: Directory) -> Iterator[RegistryProcess]:
    # One worker: the login that drops a group also drops that process's 2-second rights cache,
    # so the refusal below does not depend on which worker answers (tests/ha covers several nodes).
    env = {**slapd.settings(), "MOORAGE_HTTP__WORKERS": "1"}
    server = start_token_moorage(e2e_workdir, label="moorage-ldap", extra_env=env)
    try:
        yield server
    finally:
        server.stop()


def test_directory_user_pushes_and_pulls_through_a_mapped_group(
    ldap_registry: RegistryProcess, slapd: Directory, tmp_path: Path, layout: OciLayout, skopeo: Skopeo
) -> None:
    require_tool("podman")
    reg = ldap_registry
    user, group = uid("ldapdev"), uid("devs")
    slapd.add_user(user, LDAP_PASSWORD)
    slapd.add_group(group, user)
    api = AdminApi(reg)
    try:
        project = api.project()
        api.http.post(f"/projects/{project}/members", json={
            "role_id": DEVELOPER, "member_group": {"group_type": 1, "ldap_group_dn": slapd.group_dn(group)},
        }).raise_for_status()
    finally:
        api.close()

    tools = ContainersTools(tmp_path / "containers", [reg.host])
    tools.env["REGISTRY_AUTH_FILE"] = str(tmp_path / "auth.json")
    try:
        out = tools.podman("login", "--tls-verify=false", "-u", user, "-p", LDAP_PASSWORD, reg.host)
        assert "Login Succeeded" in out.stdout
        image = layout.add_image("v1", (64 * KIB, 16 * KIB))
        ref = f"{reg.host}/{project}/app:v1"
        loaded = tools.podman("pull", "-q", image.ref).stdout.strip()
        tools.podman("tag", loaded, ref)
        digest_file = tmp_path / "pushed.digest"
        tools.podman("push", "--digestfile", str(digest_file), ref)
        tools.podman("rmi", "--all", "--force")
        tools.podman("pull", "-q", ref)
        pulled = tools.podman("image", "inspect", "--format", "{{.Digest}}", ref).stdout.strip()
        assert pulled == digest_file.read_text().strip()
        tools.assert_files_match(ref, image.files)
    finally:
        tools.cleanup()

    creds = f"{user}:{LDAP_PASSWORD}"
    second = layout.add_image("v2", (32 * KIB,))
    skopeo.copy(second.ref, f"docker://{reg.host}/{project}/app:v2", "--dest-creds", creds)
    skopeo.copy(f"docker://{reg.host}/{project}/app:v2", f"oci:{tmp_path / 'pulled'}:v2", "--src-creds", creds)
    assert OciLayout(tmp_path / "pulled", create=False).tags()["v2"]["digest"] == second.manifest.digest
    assert set(verify_layout(tmp_path / "pulled")) == {second.manifest.digest, *(b.digest for b in second.blobs)}

    # out of the directory group: the next login has no rights in the private project
    slapd.set_membership(group, user, member=False)
    third = layout.add_image("v3", (8 * KIB,))
    with pytest.raises(ClientError) as refused:
        skopeo.copy(third.ref, f"docker://{reg.host}/{project}/app:v3", "--dest-creds", creds)
    output = refused.value.result.stdout + refused.value.result.stderr
    print(f"\n--- client output ---\n{output}")
    assert "does not exist or you are not a member of it" in output
