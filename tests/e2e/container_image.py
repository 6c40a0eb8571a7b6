"""Build the project's ``Containerfile`` with buildah and run the image with podman, offline.

No public registry is reachable from the test machines, so the base image cannot be pulled:
``scripts/container-base.sh`` makes a stand-in for ``debian:bookworm-slim`` from Debian's own
packages (mmdebstrap, cached as a tarball) and it is ``podman import``-ed here, then given to the
build as ``BASE_IMAGE``. Builds use ``buildah --isolation chroot --layers`` on a lasting store
under the machine's cache dir (``MOORAGE_TEST_CACHE_DIR``, default ``/var/cache/moorage-test``),
so a warm run rebuilds only the layers whose inputs changed (the source tree, usually); dangling
cache layers older than two days are pruned before each build, which bounds the store.

Containers run with ``podman --runtime runc --network host`` and rlimits no higher than the
test process's own: as root, podman asks for its own (high) defaults, which a runtime without
``CAP_SYS_RESOURCE`` (as in this sandbox) is refused.

Used by ``tests/e2e/test_container_image.py``; nothing here imports pytest.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.clients import ClientError, ContainersTools, run, storage_driver

__all__ = ["CACHE_DIR", "MoorageContainer", "MoorageImage", "PodLike", "build_image", "lasting_tools", "run_once"]

REPO = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("MOORAGE_TEST_CACHE_DIR", "/var/cache/moorage-test"))
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
"""Given to the build's pip (``PIP_CERT``): the machine may reach PyPI through a TLS proxy of its own."""
PRUNE_AFTER = "48h"


def lasting_tools(workdir: Path) -> ContainersTools:
    """podman + buildah on the lasting store (one per storage driver: a store cannot change it)."""
    driver = storage_driver()
    root = CACHE_DIR / f"containers-{driver}"
    # The runroot holds locks and mount state: under /run (emptied at boot, like the mounts),
    # short because podman's sockets live there.
    runroot = Path("/run/moorage-test") / f"containers-{driver}"
    return ContainersTools(workdir, registries=(), driver=driver, storage=(root, runroot))


@dataclass(frozen=True)
class MoorageImage:
    """The image built from this checkout, in ``tools``' store under ``name``."""

    tools: ContainersTools
    name: str
    build_seconds: float

    def inspect(self) -> dict[str, Any]:
        doc: list[dict[str, Any]] = json.loads(self.tools.podman("image", "inspect", self.name).stdout)
        return doc[0]

    @property
    def storage_ref(self) -> str:
        """A ``containers-storage:`` reference skopeo can copy from."""
        t = self.tools
        return f"containers-storage:[{t.driver}@{t.root}+{t.runroot}]{self.name}"

    def remove(self) -> None:
        """Untag this build; its layers stay behind as cache for the next one."""
        self.tools.podman("rmi", "--force", self.name, check=False)


def _base_image(tools: ContainersTools) -> str:
    out = run(["bash", str(REPO / "scripts" / "container-base.sh")], timeout=900).stdout
    tarball = Path(out.strip().splitlines()[-1])
    name = f"localhost/moorage-test-base:{tarball.stem}"
    if tools.podman("image", "exists", name, check=False).returncode != 0:
        tools.podman("import", str(tarball), name)
    return name


def build_image(tools: ContainersTools) -> MoorageImage:
    """``buildah build`` the Containerfile of this checkout on the local base; a unique tag.

    The tag is unique so that two test runs on one machine never run each other's build.
    """
    tools.podman("image", "prune", "--force", "--filter", f"until={PRUNE_AFTER}", check=False)
    base = _base_image(tools)
    name = f"localhost/moorage:test-{uuid.uuid4().hex[:12]}"
    argv = ["build", "--isolation", "chroot", "--layers", "--format", "docker",
            "--build-arg", f"BASE_IMAGE={base}", "--tag", name, "--file", str(REPO / "Containerfile")]
    if HOST_CA_BUNDLE.is_file():
        argv += ["--volume", f"{HOST_CA_BUNDLE}:/etc/ssl/certs/build-ca.crt:ro",
                 "--build-arg", "PIP_CERT=/etc/ssl/certs/build-ca.crt"]
    started = time.monotonic()
    tools.buildah(*argv, str(REPO))
    return MoorageImage(tools, name, time.monotonic() - started)


def _ulimits() -> list[str]:
    nofile = min(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 65536)
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[0], 8192)
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]


@dataclass(frozen=True)
class PodLike:
    """What the Helm chart gives a pod: a data volume, a config file (``MOORAGE_CONFIG``), a
    read-only root with a writable ``/tmp``; and here the host's network."""

    volume: str
    config: Path

    def flags(self) -> list[str]:
        return ["--network", "host", *_ulimits(), "--read-only", "--tmpfs", "/tmp",
                "--volume", f"{self.volume}:/var/lib/moorage",
                "--volume", f"{self.config}:/etc/moorage/moorage.yml:ro",
                "--env", "MOORAGE_CONFIG=/etc/moorage/moorage.yml"]


def run_once(image: MoorageImage, pod: PodLike, *argv: str) -> float:
    """``podman run --rm`` the image with ``moorage <argv>`` (the chart's init container); seconds taken."""
    started = time.monotonic()
    image.tools.podman("--runtime", "runc", "run", "--rm", *pod.flags(), "--entrypoint", "moorage",
                       image.name, *argv)
    return time.monotonic() - started


@dataclass
class MoorageContainer:
    """A running container of the image, listening on ``host`` (``127.0.0.1:<port>``)."""

    image: MoorageImage
    id: str
    host: str
    ready_seconds: float = 0.0
    """From ``podman run`` to the first ``GET /v2/`` answered 200."""

    @classmethod
    def start(
        cls, image: MoorageImage, port: int, pod: PodLike, *args: str, timeout: float = 180
    ) -> MoorageContainer:
        """``podman run`` it as the Helm chart runs a pod (``pod``); wait for ``/v2/``.

        ``MOORAGE_LISTEN=127.0.0.1:<port>`` and ``args`` after ``moorage serve``. The
        healthcheck's timer is off (``--health-interval disable``: podman schedules it with
        systemd, which these machines lack); :meth:`healthcheck` runs it on demand.
        """
        host = f"127.0.0.1:{port}"
        started = time.monotonic()
        container_id = image.tools.podman(
            "--runtime", "runc", "run", "--detach", *pod.flags(),
            "--health-interval", "disable", "--env", f"MOORAGE_LISTEN={host}", image.name, *args,
        ).stdout.strip().splitlines()[-1]
        container = cls(image, container_id, host)
        deadline = started + timeout
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                if container.state()["Status"] != "running":
                    raise AssertionError(f"the container stopped before answering /v2/:\n{container.logs()}")
                try:
                    if client.get(f"http://{host}/v2/").status_code == 200:
                        container.ready_seconds = time.monotonic() - started
                        return container
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise AssertionError(f"the container did not answer GET /v2/ within {timeout:.0f}s:\n{container.logs()}")

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.image.tools.podman(*args, check=check)

    def state(self) -> dict[str, Any]:
        doc: list[dict[str, Any]] = json.loads(self.podman("container", "inspect", self.id).stdout)
        state: dict[str, Any] = doc[0]["State"]
        return state

    def logs(self) -> str:
        result = self.podman("logs", self.id, check=False)
        return result.stdout + result.stderr

    def healthcheck(self) -> int:
        """Run the image's HEALTHCHECK once; its exit status (0 = healthy)."""
        return self.podman("healthcheck", "run", self.id, check=False).returncode

    def exec(self, *argv: str) -> str:
        return self.podman("exec", self.id, *argv).stdout

    def stop(self, timeout: int = 30) -> int:
        """SIGTERM (podman stop), then the exit code the process ended with."""
        self.podman("stop", "--time", str(timeout), self.id)
        code: int = self.state()["ExitCode"]
        return code

    def remove(self) -> None:
        try:
            self.podman("rm", "--force", self.id)
        except ClientError:
            pass
