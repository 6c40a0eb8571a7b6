"""``deploy/systemd/moorage.service``: a valid unit, hardened, and its strictest option survivable.

There is no systemd (PID 1) on the test machines, so the unit cannot be started here. What can be
checked: ``systemd-analyze verify`` accepts it (with ``ExecStart`` pointed at this venv's
``moorage``), ``systemd-analyze security --offline`` rates it 1.9 or better, and ``moorage serve``
works under the one hardening option most likely to break a Python service,
``MemoryDenyWriteExecute=yes``: the kernel's ``PR_SET_MDWE`` (Linux 6.3+) refuses writable+
executable memory the same way, so cffi (argon2, cryptography) or ctypes needing it would fail a
login, a token or a push here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.clients import Skopeo, run
from tests.e2e.conftest import require_tool
from tests.e2e.identity_helpers import ADMIN_PASSWORD, TOKEN_ENV, AdminApi
from tests.e2e.images import OciLayout
from tests.e2e.servers import RegistryProcess, free_port, moorage_command

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "moorage.service"

#: Turn on memory-deny-write-execute for this process (inherited by what it runs), check it, run moorage.
_MDWE_SERVE = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_MDWE, PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 66, 1
if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0 or libc.prctl(PR_GET_MDWE, 0, 0, 0, 0) != 1:
    raise SystemExit(f"PR_SET_MDWE failed (errno {ctypes.get_errno()}): Linux 6.3+ is needed")
from moorage.cli import main
sys.argv = ["moorage", "serve", "--listen", sys.argv[1], "--workers", "1"]
main()
"""


def _unit_for_this_venv(tmp_path: Path) -> Path:
    text = UNIT.read_text()
    lines = [f"ExecStart={' '.join(moorage_command())} serve" if line.startswith("ExecStart=") else line
             for line in text.splitlines()]
    unit = tmp_path / "moorage.service"
    unit.write_text("\n".join(lines) + "\n")
    return unit


def test_unit_verifies_and_is_rated_hardened(tmp_path: Path) -> None:
    require_tool("systemd-analyze")
    unit = _unit_for_this_venv(tmp_path)
    verified = run(["systemd-analyze", "verify", str(unit)], check=False)
    assert verified.returncode == 0 and verified.stdout + verified.stderr == "", verified.stderr
    # --threshold is the exposure level times ten: fail above 1.9 (the unit is rated 1.4).
    security = run(["systemd-analyze", "security", "--offline=yes", "--threshold=19", str(unit)], check=False)
    assert security.returncode == 0, security.stdout[-3000:]
    assert "Overall exposure level for moorage.service: 1." in security.stdout
    text = UNIT.read_text()
    assert "\nExecStart=/opt/moorage/bin/moorage serve\n" in text
    assert "\nEnvironment=MOORAGE_DATA_DIR=/var/lib/moorage\n" in text and "\nStateDirectory=moorage\n" in text


@pytest.fixture
def mdwe_server(tmp_path: Path) -> Iterator[RegistryProcess]:
    port = free_port()
    host = f"127.0.0.1:{port}"
    data_dir = tmp_path / "data"
    log_path = tmp_path / "mdwe.log"
    env = {**os.environ, **TOKEN_ENV, "MOORAGE_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-c", _MDWE_SERVE, host], stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env, cwd=tmp_path, start_new_session=True)
    server = RegistryProcess("moorage", host, data_dir, log_path, process, "moorage-mdwe")
    try:
        deadline = time.monotonic() + 90  # a bound on start-up, not a timing assertion
        while True:
            assert process.poll() is None, f"moorage under MDWE exited: {log_path.read_text()[-4000:]}"
            try:
                if httpx.get(f"{server.url}/v2/", timeout=2).status_code == 401:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()[-4000:]
            time.sleep(0.1)
        yield server
    finally:
        server.stop()


def test_serve_works_with_write_execute_memory_refused(mdwe_server: RegistryProcess, skopeo: Skopeo,
                                                      layout: OciLayout, tmp_path: Path) -> None:
    api = AdminApi(mdwe_server)
    try:
        project = api.project()  # argon2 (the admin's password) and the API under MDWE
        image = layout.add_image("v1", (32 * 1024,))
        target = f"docker://{mdwe_server.host}/{project}/app:v1"
        base = ["skopeo", "--policy", str(skopeo.policy)]
        creds = f"admin:{ADMIN_PASSWORD}"
        run([*base, "copy", "--dest-tls-verify=false", "--dest-creds", creds, image.ref, target])  # tokens: JWT
        back = OciLayout(tmp_path / "back")
        run([*base, "copy", "--src-tls-verify=false", "--src-creds", creds, target, f"oci:{back.root}:v1"])
        assert back.tags()["v1"]["digest"] == image.manifest.digest
    finally:
        api.close()
    assert "Traceback" not in mdwe_server.log_path.read_text()
