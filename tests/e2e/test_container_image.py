"""The container image: built from the ``Containerfile`` with buildah, run with podman, used with skopeo.

The image is built once per module from this checkout (see :mod:`tests.e2e.container_image` for
the offline base and the build cache), then run the way the documentation says to run it, and a
push and a pull go through the running container. Its size (as stored, and as pushed) and the
start-up time to the first answered ``GET /v2/`` are printed at the end of the session.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.clients import Skopeo
from tests.e2e.conftest import require_tool
from tests.e2e.container_image import (
    MoorageContainer,
    MoorageImage,
    PodLike,
    build_image,
    lasting_tools,
    run_once,
)
from tests.e2e.images import OciLayout, verify_layout
from tests.e2e.servers import free_port

MIB = 1024 * 1024
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture(scope="module")
def moorage_image(tmp_path_factory: pytest.TempPathFactory, figures: list[str]) -> Iterator[MoorageImage]:
    for tool in ("buildah", "podman", "runc", "mmdebstrap", "skopeo"):
        require_tool(tool)
    tools = lasting_tools(tmp_path_factory.mktemp("image-build"))
    image = build_image(tools)
    size = image.inspect()["Size"]
    figures.append(f"container image: {size / 1e6:.1f} MB as stored (target < 200 MB), "
                   f"built in {image.build_seconds:.1f} s")
    try:
        yield image
    finally:
        image.remove()
        tools.cleanup()


@pytest.fixture(scope="module")
def container(
    moorage_image: MoorageImage, figures: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MoorageContainer]:
    """The image run as the chart runs a pod: ``moorage db upgrade`` first, then ``serve --no-migrate``.

    One per module (a start takes seconds); the last test of the module stops it.
    """
    volume = f"moorage-test-{uuid.uuid4().hex[:12]}"
    # One worker where the default is one per core: proof that the mounted file was read.
    config = tmp_path_factory.mktemp("container-config") / "moorage.yml"
    config.write_text("http:\n  workers: 1\nlog:\n  access_log: true\n")
    pod = PodLike(volume, config)
    moorage_image.tools.podman("volume", "create", volume)
    try:
        migrated = run_once(moorage_image, pod, "db", "upgrade")
        running = MoorageContainer.start(moorage_image, free_port(), pod, "--no-migrate")
        figures.append(f"container start-up: `moorage db upgrade` {migrated:.1f} s, then `moorage serve` answered "
                       f"GET /v2/ {running.ready_seconds:.1f} s after `podman run`")
        try:
            yield running
        finally:
            running.remove()
    finally:
        moorage_image.tools.podman("volume", "rm", "--force", volume, check=False)


def test_image_runs_moorage_serve_as_non_root_with_a_healthcheck(moorage_image: MoorageImage) -> None:
    """What the Containerfile promises an operator: entry point, user, port, data volume, healthcheck."""
    inspected = moorage_image.inspect()
    config = inspected["Config"]
    assert config["Entrypoint"] == ["moorage", "serve"]
    assert config["User"] == "10001:10001"
    assert "5000/tcp" in config["ExposedPorts"]
    assert "/var/lib/moorage" in config["Volumes"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["MOORAGE_LISTEN"] == "0.0.0.0:5000"
    assert env["MOORAGE_DATA_DIR"] == "/var/lib/moorage"
    # Kept because the build uses --format docker (the OCI image config has no healthcheck field).
    assert inspected["Healthcheck"]["Test"] == ["CMD", "moorage", "ping"]


def test_container_answers_healthcheck_and_stores_data_as_its_user(container: MoorageContainer) -> None:
    assert container.healthcheck() == 0, container.logs()
    assert container.state()["Health"]["Status"] == "healthy"
    assert container.exec("id", "-u").strip() == "10001"
    # The embedded default (SQLite + filesystem) lands in the volume, owned by the image's user,
    # while the root file system is read-only (the chart's readOnlyRootFilesystem).
    owner = container.exec("stat", "-c", "%u", "/var/lib/moorage/moorage.db").strip()
    assert owner == "10001"
    assert container.podman("exec", container.id, "touch", "/opt/moorage/x", check=False).returncode != 0
    with httpx.Client(base_url=f"http://{container.host}", timeout=10) as client:
        assert client.get("/api/v2.0/ping").text == "Pong"
    # The config file named by MOORAGE_CONFIG was read: one worker, requests in the access log.
    logs = container.logs()
    assert logs.count("Started server process") == 1, logs
    assert "GET /api/v2.0/ping" in logs, logs


def test_skopeo_pushes_and_pulls_through_the_container(
    container: MoorageContainer, moorage_image: MoorageImage, skopeo: Skopeo, layout: OciLayout,
    tmp_path: Path, figures: list[str],
) -> None:
    """A generated image round-trips; then the Moorage image itself is pushed into its own container."""
    image = layout.add_image("v1", (2 * MIB, MIB // 2))
    remote = f"docker://{container.host}/e2e/container:v1"
    skopeo.copy(image.ref, remote)
    pulled = tmp_path / "pulled"
    skopeo.copy(remote, f"oci:{pulled}:v1")
    assert set(verify_layout(pulled)) == {image.manifest.digest, *(b.digest for b in image.blobs)}

    # Self-hosting: the image is its own biggest test payload, and its pushed (compressed) size
    # is the figure a registry shows for it.
    self_remote = f"docker://{container.host}/moorage/moorage:test"
    skopeo.copy(moorage_image.storage_ref, self_remote)
    with httpx.Client(base_url=f"http://{container.host}", timeout=30) as client:
        response = client.get("/v2/moorage/moorage/manifests/test", headers={"Accept": MT_DOCKER_MANIFEST})
    assert response.status_code == 200, response.text
    manifest = response.json()
    pushed = manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"])
    figures.append(f"container image: {pushed / 1e6:.1f} MB as pushed (compressed layers + config)")
    back = tmp_path / "self"
    skopeo.copy(self_remote, f"oci:{back}:test")
    blobs = verify_layout(back)
    assert {layer["digest"] for layer in manifest["layers"]} <= set(blobs)


def test_container_stops_cleanly_on_sigterm(container: MoorageContainer) -> None:
    """Last in this module: it stops the module's container."""
    # PID 1 is `moorage serve` itself (exec-form entry point): SIGTERM is a clean shutdown.
    assert container.stop() == 0, container.logs()
    assert container.healthcheck() != 0, "a stopped container must not report healthy"
