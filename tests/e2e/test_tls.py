"""HTTPS end to end: a CA and a server certificate from ``moorage certs``, ``moorage serve --tls-cert
--tls-key``, and skopeo and podman verifying it, never with ``--tls-verify=false``.

The clients get the CA the way docs/deploy.md tells operators to: a ``certs.d``-style directory
named ``<host>:<port>`` holding ``ca.crt`` (``/etc/containers/certs.d/<host>:<port>/`` on a real
host; here passed with ``--cert-dir`` so the test never writes to ``/etc``). The same commands
without the CA must fail on the certificate, which proves verification was on.
"""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.clients import ClientError, ContainersTools, Skopeo, run
from tests.e2e.conftest import require_tool
from tests.e2e.images import OciLayout
from tests.e2e.servers import RegistryProcess, free_port, moorage_command, start_moorage

KIB = 1024


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """The CA and a server certificate for 127.0.0.1 and localhost, made by the CLI; and the port."""
    out = tmp_path_factory.mktemp("certs")
    moorage = moorage_command()
    subprocess.run([*moorage, "certs", "make-ca", "--out", str(out)], check=True, capture_output=True)
    subprocess.run([*moorage, "certs", "make-server", "--out", str(out), "--host", "localhost",
                    "--host", "127.0.0.1"], check=True, capture_output=True)
    assert (out / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (out / "server.key").stat().st_mode & 0o777 == 0o600
    return out, free_port()


@pytest.fixture(scope="module")
def tls_registry(e2e_workdir: Path, certs: tuple[Path, int]) -> Iterator[RegistryProcess]:
    out, port = certs
    server = start_moorage(e2e_workdir, label="moorage-tls", port=port,
                           tls=(out / "server.crt", out / "server.key", out / "ca.crt"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cert_dir(tmp_path: Path, certs: tuple[Path, int], tls_registry: RegistryProcess) -> Path:
    """``certs.d/<host>:<port>/ca.crt``, as on a host that trusts the registry."""
    directory = tmp_path / "certs.d" / tls_registry.host
    directory.mkdir(parents=True)
    (directory / "ca.crt").write_bytes((certs[0] / "ca.crt").read_bytes())
    return directory


def test_https_answers_with_the_generated_chain_and_refuses_plain_http(
    tls_registry: RegistryProcess, certs: tuple[Path, int]
) -> None:
    context = ssl.create_default_context(cafile=certs[0] / "ca.crt")
    for host in (tls_registry.host, f"localhost:{certs[1]}"):  # both SANs verify
        response = httpx.get(f"https://{host}/v2/", verify=context)
        assert response.status_code == 200
        assert response.http_version == "HTTP/1.1"  # uvicorn speaks no HTTP/2 (docs/deploy.md)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"https://{tls_registry.host}/v2/", verify=ssl.create_default_context())
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{tls_registry.host}/v2/")


def test_skopeo_pushes_and_pulls_over_https_with_the_ca(
    tls_registry: RegistryProcess, cert_dir: Path, skopeo: Skopeo, layout: OciLayout, tmp_path: Path
) -> None:
    image = layout.add_image("v1", (64 * KIB, 16 * KIB))
    base = ["skopeo", "--policy", str(skopeo.policy)]
    target = f"docker://{tls_registry.host}/tls/app:v1"
    refused = run([*base, "copy", image.ref, target], check=False)
    assert refused.returncode != 0
    assert "x509" in refused.stderr or "certificate" in refused.stderr, refused.stderr

    run([*base, "copy", "--dest-cert-dir", str(cert_dir), image.ref, target])
    digest = run([*base, "inspect", "--cert-dir", str(cert_dir), "--format", "{{.Digest}}", target]).stdout.strip()
    assert digest == f"sha256:{image.manifest.digest.removeprefix('sha256:')}"
    back = OciLayout(tmp_path / "back")
    run([*base, "copy", "--src-cert-dir", str(cert_dir), target, f"oci:{back.root}:v1"])
    assert back.tags()["v1"]["digest"] == image.manifest.digest


def test_podman_pushes_and_pulls_over_https_with_the_ca(
    tls_registry: RegistryProcess, cert_dir: Path, layout: OciLayout, tmp_path: Path
) -> None:
    require_tool("podman")
    image = layout.add_image("v1", (128 * KIB,))
    # No registry is marked insecure: plain HTTP and unverified TLS are both off.
    tools = ContainersTools(tmp_path / "containers", [])
    try:
        loaded = tools.podman("pull", "-q", image.ref).stdout.strip()
        name = f"{tls_registry.host}/tls/podman:v1"
        tools.podman("tag", loaded, name)
        with pytest.raises(ClientError, match="x509|certificate"):
            tools.podman("push", name)
        tools.podman("push", "--cert-dir", str(cert_dir), name)
        tools.podman("rmi", "--all", "--force")
        tools.podman("pull", "-q", "--cert-dir", str(cert_dir), name)
        tools.assert_files_match(name, image.files)
    finally:
        tools.cleanup()
