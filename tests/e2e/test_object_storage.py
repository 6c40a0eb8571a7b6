"""``moorage serve`` on Ceph RGW S3, Ceph RGW Swift and OpenStack Swift, driven by skopeo and curl.

Each backend runs with redirects on (clients fetch blobs from presigned S3 URLs or Swift
TempURLs) and off (``storage.redirect.disable``: the registry streams). A pushed image is
pulled back and every blob re-hashed; ``curl -L -I`` of a blob must end in 200 with the
blob's length, which fails if a HEAD is redirected to a URL signed for GET. ``moorage check``
runs against the same services, including a wrong storage URL and wrong credentials.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.clients import ContainersTools, Skopeo, run
from tests.e2e.images import OciLayout, verify_dir
from tests.e2e.servers import RegistryProcess, free_port, moorage_command, start_moorage
from tests.services.fixtures import Service
from tests.storage.objectstores import TEMPURL_KEY, ensure_bucket, s3_settings, unique

MIB = 1024 * 1024
BACKENDS = [
    pytest.param("ceph-s3", marks=pytest.mark.ceph),
    pytest.param("ceph-swift", marks=pytest.mark.ceph),
    pytest.param("openstack-swift", marks=pytest.mark.swift),
]


def _storage_env(request: pytest.FixtureRequest, backend: str) -> dict[str, str]:
    """``MOORAGE_STORAGE__…`` variables for one backend, in a bucket/container of its own."""
    if backend == "ceph-s3":
        service: Service = request.getfixturevalue("ceph_rgw")
        settings = s3_settings(service, unique("e2e"))
        ensure_bucket(settings)
        return {
            "MOORAGE_STORAGE__S3__REGIONENDPOINT": service["S3_ENDPOINT"],
            "MOORAGE_STORAGE__S3__REGION": service["S3_REGION"],
            "MOORAGE_STORAGE__S3__ACCESSKEY": service["S3_ACCESS_KEY"],
            "MOORAGE_STORAGE__S3__SECRETKEY": service["S3_SECRET_KEY"],
            "MOORAGE_STORAGE__S3__BUCKET": settings.bucket,
        }
    service = request.getfixturevalue("ceph_rgw" if backend == "ceph-swift" else "swift_saio")
    return {
        "MOORAGE_STORAGE__SWIFT__AUTHURL": service["SWIFT_AUTH_URL"],
        "MOORAGE_STORAGE__SWIFT__USERNAME": service["SWIFT_USER"],
        "MOORAGE_STORAGE__SWIFT__PASSWORD": service["SWIFT_KEY"],
        "MOORAGE_STORAGE__SWIFT__CONTAINER": unique("e2e"),
        "MOORAGE_STORAGE__SWIFT__SECRETKEY": TEMPURL_KEY,
        "MOORAGE_STORAGE__SWIFT__CHUNKSIZE": str(5 * MIB),
    }


@pytest.fixture(params=[pytest.param(False, id="redirect"), pytest.param(True, id="no-redirect")])
def disable_redirect(request: pytest.FixtureRequest) -> bool:
    value: bool = request.param
    return value


@pytest.fixture(params=BACKENDS)
def object_registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, disable_redirect: bool
) -> Iterator[RegistryProcess]:
    env = {
        **_storage_env(request, request.param),
        "MOORAGE_STORAGE__REDIRECT__DISABLE": "true" if disable_redirect else "false",
        "MOORAGE_LOG__ACCESS_LOG": "true",
    }
    server = start_moorage(
        tmp_path_factory.mktemp("objstore"), label=f"moorage-{request.param}", extra_env=env
    )
    server.mark_log()
    try:
        yield server
    finally:
        server.stop()


def _last_response(headers: str) -> tuple[int, dict[str, str]]:
    """Status and headers of the final response in ``curl -I -L`` output (after redirects)."""
    blocks = [b for b in headers.replace("\r\n", "\n").split("\n\n") if b.strip().startswith("HTTP/")]
    lines = blocks[-1].strip().split("\n")
    fields = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
    return int(lines[0].split()[1]), {k.strip().lower(): v.strip() for k, v in fields.items()}


def test_push_pull_and_curl_head_of_blobs(
    object_registry: RegistryProcess,
    disable_redirect: bool,
    skopeo: Skopeo,
    layout: OciLayout,
    tmp_path: Path,
) -> None:
    # A layer above the 5 MiB part size (multipart / several segments) and a small one.
    image = layout.add_image("v1", (11 * MIB + 5, 64 * 1024))
    remote = f"docker://{object_registry.host}/e2e/objstore:v1"
    skopeo.copy(image.ref, remote)
    pulled = tmp_path / "pulled"
    skopeo.copy(remote, f"dir:{pulled}")
    assert verify_dir(pulled) == {b.digest for b in image.blobs}
    for blob in image.blobs:
        url = f"{object_registry.url}/v2/e2e/objstore/blobs/{blob.digest}"
        out = run(["curl", "-sS", "-L", "-I", url]).stdout
        status, headers = _last_response(out)
        assert status == 200, out
        assert int(headers["content-length"]) == blob.size, out
        redirected = out.count("HTTP/") > 1
        assert redirected is not disable_redirect, out


def test_podman_push_and_pull(object_registry: RegistryProcess, layout: OciLayout, tmp_path: Path) -> None:
    """podman pushes to and pulls from each backend; every file of every layer hashes like the original."""
    image = layout.add_image("v1", (6 * MIB + 3, 256 * 1024))
    tools = ContainersTools(tmp_path / "containers", [object_registry.host])
    try:
        podman = tools.podman
        loaded = podman("pull", "-q", image.ref).stdout.strip()
        name = f"{object_registry.host}/e2e/podman:v1"
        podman("tag", loaded, name)
        podman("push", name)
        podman("rmi", "--all", "--force")
        podman("pull", "-q", name)
        tools.assert_files_match(name, image.files)
    finally:
        tools.cleanup()


def _check(env: dict[str, str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env, "MOORAGE_DATA_DIR": str(data_dir)}
    subprocess.run(
        [*moorage_command(), "db", "upgrade"], env=full, capture_output=True, check=True, timeout=120
    )
    return subprocess.run(
        [*moorage_command(), "check"], env=full, capture_output=True, text=True, check=False, timeout=120
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_moorage_check_passes_on_the_real_services(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    result = _check(_storage_env(request, backend), tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "presigned HEAD" in output


@pytest.mark.parametrize("backend", BACKENDS[1:])
def test_moorage_check_wrong_storage_url(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    env = _storage_env(request, backend)
    env["MOORAGE_STORAGE__SWIFT__STORAGEURL"] = f"http://127.0.0.1:{free_port()}/v1/AUTH_registry"
    result = _check(env, tmp_path)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output
    assert "storage.swift.storageurl" in output and "unreachable" in output


@pytest.mark.parametrize("backend", BACKENDS)
def test_moorage_check_wrong_credentials(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    env = _storage_env(request, backend)
    for key in ("MOORAGE_STORAGE__S3__SECRETKEY", "MOORAGE_STORAGE__SWIFT__PASSWORD"):
        if key in env:
            env[key] = "wrong-secret"
    result = _check(env, tmp_path)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output
    assert ("secretkey" in output) or ("password" in output), output
