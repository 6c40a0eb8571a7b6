"""Session fixtures that start the project's own Ceph RGW and OpenStack Swift (SAIO).

Registered for the whole suite by ``pytest_plugins`` in ``tests/conftest.py``. Each fixture
first asks its script whether the service already runs (``env``); if not, it runs ``up``
(which installs Debian's packages when missing) and, at the end of the session, ``down``,
which stops exactly the pids that ``up`` started. A service that was already running is
left running. Under ``CI=true`` a service that cannot start fails the tests that need it.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import skip_or_fail

__all__ = ["Service", "ceph_rgw", "start_service", "swift_saio"]

HERE = Path(__file__).resolve().parent
#: ``up`` on a fresh machine installs packages (~15 s) and creates the cluster; allow plenty.
START_TIMEOUT = float(os.environ.get("MOORAGE_TEST_SERVICE_TIMEOUT", "600"))


@dataclass
class Service:
    """A running object store: the ``KEY=VALUE`` lines its script printed, and whether we started it."""

    name: str
    env: dict[str, str]
    started_here: bool
    start_seconds: float = 0.0
    log: list[str] = field(default_factory=list)

    def __getitem__(self, key: str) -> str:
        return self.env[key]


def _parse(stdout: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isidentifier():
            env[key] = value
    return env


def start_service(script: str) -> Service:
    """Reuse a running service or start it; raises ``RuntimeError`` with the script's log."""
    path = HERE / script
    probe = subprocess.run([str(path), "env"], capture_output=True, text=True, timeout=60, check=False)
    if probe.returncode == 0:
        return Service(script, _parse(probe.stdout), started_here=False)
    started = time.perf_counter()
    result = subprocess.run(
        [str(path), "up"], capture_output=True, text=True, timeout=START_TIMEOUT, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{path} up failed (exit {result.returncode}):\n{result.stderr[-4000:]}")
    return Service(
        script, _parse(result.stdout), started_here=True, start_seconds=time.perf_counter() - started
    )


def _stop(service: Service) -> None:
    if service.started_here:
        subprocess.run([str(HERE / service.name), "down"], capture_output=True, timeout=120, check=False)


def _fixture(script: str) -> Iterator[Service]:
    try:
        service = start_service(script)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        skip_or_fail(f"cannot start {script}: {exc}")
        raise  # unreachable: skip_or_fail always raises
    try:
        yield service
    finally:
        _stop(service)


@pytest.fixture(scope="session")
def ceph_rgw() -> Iterator[Service]:
    """A single-node Ceph with radosgw: S3 and Swift over HTTP and HTTPS (``tests/services/ceph-rgw.sh``)."""
    yield from _fixture("ceph-rgw.sh")


@pytest.fixture(scope="session")
def swift_saio() -> Iterator[Service]:
    """OpenStack Swift all-in-one with tempauth and s3api (``tests/services/swift-saio.sh``)."""
    yield from _fixture("swift-saio.sh")
