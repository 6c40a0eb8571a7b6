"""Token-mode ``moorage serve`` processes and a small admin API client for the identity e2e tests.

:func:`start_token_moorage` is :func:`tests.e2e.servers.start_moorage`'s twin for ``auth.mode:
token``: the shared starter waits for ``GET /v2/`` to answer 200, which a registry that
requires login never does, so readiness here is a 401 carrying the Bearer challenge.
"""

from __future__ import annotations

import base64
import shlex
import subprocess
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.servers import READY_TIMEOUT, RegistryProcess, ServerStartError, free_port, moorage_command

SECRET_KEY = "e2e-secret-key-shared-by-every-node"
ADMIN_PASSWORD = "Adm1n-e2e-password"
PASSWORD = "Us3r-e2e-password"
TOKEN_ENV = {
    "MOORAGE_AUTH__MODE": "token",
    "MOORAGE_SECRET_KEY": SECRET_KEY,
    "MOORAGE_ADMIN_PASSWORD": ADMIN_PASSWORD,
    "MOORAGE_LOG__ACCESS_LOG": "true",
}


def uid(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def start_token_moorage(
    workdir: Path, *, label: str, database_url: str | None = None, port: int | None = None,
    extra_env: Mapping[str, str] | None = None, ready_timeout: float = READY_TIMEOUT,
) -> RegistryProcess:
    """``moorage serve`` with ``auth.mode: token``; ready when ``GET /v2/`` challenges for a Bearer token."""
    port = port or free_port()
    host = f"127.0.0.1:{port}"
    data_dir = workdir / f"{label}-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {"MOORAGE_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", "MOORAGE_HTTP__WORKERS": "2", **TOKEN_ENV}
    if database_url is not None:
        env["MOORAGE_DATABASE_URL"] = database_url
    env.update(extra_env or {})
    argv = [*moorage_command(), "serve", "--listen", host]
    log_path = workdir / f"{label}-{port}.log"
    with log_path.open("ab") as log:
        log.write(f"$ {shlex.join(argv)}\n".encode())
        log.flush()
        import os

        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir,
                                   env={**os.environ, **env}, start_new_session=True)
    reg = RegistryProcess("moorage", host, data_dir, log_path, process, label)
    deadline = time.monotonic() + ready_timeout
    last = "no answer yet"
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServerStartError(f"{label} exited with {process.returncode}; log:\n{reg.log_since_mark()}")
            try:
                r = client.get(f"{reg.url}/v2/")
                if r.status_code == 401 and r.headers.get("www-authenticate", "").startswith("Bearer realm="):
                    return reg
                last = f"HTTP {r.status_code}: {r.text[:200]}"
            except httpx.TransportError as exc:
                last = repr(exc)
            time.sleep(0.1)
    reg.stop()
    raise ServerStartError(f"{label} never challenged GET /v2/ (last: {last}); log:\n{reg.log_since_mark()}")


def basic(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


class AdminApi:
    """The REST API as ``admin``: what an operator's script does to set up projects, users and robots."""

    def __init__(self, reg: RegistryProcess) -> None:
        self.reg = reg
        self.http = httpx.Client(base_url=f"{reg.url}/api/v2.0", headers=basic("admin", ADMIN_PASSWORD), timeout=30)

    def close(self) -> None:
        self.http.close()

    def _ok(self, r: httpx.Response, status: int = 201) -> httpx.Response:
        assert r.status_code == status, (r.status_code, r.text)
        return r

    def project(self, public: bool = False) -> str:
        name = uid("proj")
        self._ok(self.http.post("/projects", json={"project_name": name, "metadata": {"public": str(public).lower()}}))
        return name

    def user(self, project: str | None = None, role_id: int | None = None) -> str:
        name = uid("user")
        self._ok(self.http.post("/users", json={"username": name, "password": PASSWORD}))
        if project is not None and role_id is not None:
            self._ok(self.http.post(f"/projects/{project}/members",
                                    json={"role_id": role_id, "member_user": {"username": name}}))
        return name

    def robot(self, project: str, actions: list[str]) -> tuple[int, str, str]:
        body: dict[str, Any] = {"name": uid("bot"), "level": "project", "duration": -1, "permissions": [
            {"kind": "project", "namespace": project,
             "access": [{"resource": "repository", "action": a} for a in actions]}]}
        out = self._ok(self.http.post("/robots", json=body)).json()
        return int(out["id"]), str(out["name"]), str(out["secret"])

    def disable_robot(self, robot_id: int) -> None:
        self._ok(self.http.put(f"/robots/{robot_id}", json={"disable": True}), 200)
