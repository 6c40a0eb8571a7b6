"""Tag retention end to end: skopeo pushes several tags into a token-mode ``moorage serve``
(filesystem storage), a dry run lists exactly what would go, the real run removes it (as jobs of the
server's own runner), ``moorage gc run`` frees the bytes, and what remains pulls and re-hashes."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx

from tests.e2e.clients import Skopeo
from tests.e2e.identity_helpers import ADMIN_PASSWORD, AdminApi, start_token_moorage
from tests.e2e.images import BuiltImage, OciLayout, verify_dir
from tests.e2e.servers import RegistryProcess, moorage_command

KIB = 1024
CREDS = f"admin:{ADMIN_PASSWORD}"


def _digests(image: BuiltImage) -> set[str]:
    return {image.manifest.digest, image.config.digest, *(layer.digest for layer in image.layers)}


def _stored(server: RegistryProcess, digest: str) -> bool:
    hex_ = digest.split(":", 1)[1]
    return any(server.data_dir.rglob(f"blobs/sha256/{hex_[:2]}/{hex_}/data"))


def _finished(api: AdminApi, path: str, timeout: float = 120) -> dict[str, object]:
    """Wait for the server's job runner to end the execution (polls; the answer is not timed)."""
    deadline = time.monotonic() + timeout
    while True:
        execution: dict[str, object] = api.http.get(path).json()
        if execution["status"] not in ("Pending", "Running") or time.monotonic() > deadline:
            return execution
        time.sleep(0.2)


def _task_log(api: AdminApi, execution_path: str) -> str:
    tasks = api.http.get(f"{execution_path}/tasks").json()
    assert len(tasks) == 1, tasks
    return str(api.http.get(f"{execution_path}/tasks/{tasks[0]['id']}").text)


def _verdicts(log: str) -> dict[str, str]:
    return {line.split()[1]: line.split()[0] for line in log.splitlines()[1:]}


def test_skopeo_push_retention_dry_and_real_run_gc_then_pull_what_remains(
    tmp_path: Path, skopeo: Skopeo, layout: OciLayout
) -> None:
    server = start_token_moorage(tmp_path, label="moorage-retention",
                                 extra_env={"MOORAGE_JOBS__POLL_SECONDS": "0.2", "MOORAGE_STORAGE__DELETE__ENABLED": "true"})
    api = AdminApi(server)
    try:
        project = api.project()
        images = {tag: layout.add_image(tag, (48 * KIB + i * KIB, 16 * KIB + i)) for i, tag in
                  enumerate(("t1", "t2", "t3", "t4", "keep"))}
        remote = f"docker://{server.host}/{project}/app"
        for tag, image in images.items():  # pushed in this order: t1 is the oldest
            skopeo.copy(image.ref, f"{remote}:{tag}", "--dest-creds", CREDS)
        project_id = api.http.get(f"/projects/{project}").json()["project_id"]
        policy = {
            "algorithm": "or",
            "rules": [
                {"template": "latestPushedK", "params": {"latestPushedK": 2},
                 "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "t*",
                                    "extras": json.dumps({"untagged": False})}],
                 "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches",
                                                     "pattern": "**"}]}},
                {"template": "always", "params": {},
                 "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "{keep,stable}"}]},
            ],
            "trigger": {"kind": "Schedule", "settings": {"cron": ""}},
            "scope": {"level": "project", "ref": project_id},
        }
        created = api.http.post("/retentions", json=policy)
        assert created.status_code == 201, created.text
        base = created.headers["Location"].removeprefix("/api/v2.0")
        going = {images["t1"].manifest.digest, images["t2"].manifest.digest}

        dry = api.http.post(f"{base}/executions", json={"dry_run": True})
        assert dry.status_code == 201, dry.text
        dry_path = dry.headers["Location"].removeprefix("/api/v2.0")
        assert _finished(api, dry_path)["status"] == "Success"
        verdicts = _verdicts(_task_log(api, dry_path))
        assert {digest for digest, verdict in verdicts.items() if verdict == "REMOVE"} == going
        assert {digest for digest, verdict in verdicts.items() if verdict == "RETAIN"} == {
            images[t].manifest.digest for t in ("t3", "t4", "keep")}
        assert all(_stored(server, d) for d in going)  # a dry run removes nothing

        real = api.http.post(f"{base}/executions", json={"dry_run": False})
        real_path = real.headers["Location"].removeprefix("/api/v2.0")
        assert _finished(api, real_path)["status"] == "Success"
        assert {d for d, v in _verdicts(_task_log(api, real_path)).items() if v == "REMOVED"} == going
        history = api.http.get(f"{base}/executions").json()
        assert [(e["dry_run"], e["status"]) for e in history] == [(False, "Success"), (True, "Success")]

        kept = set().union(*(_digests(images[t]) for t in ("t3", "t4", "keep")))
        garbage = (_digests(images["t1"]) | _digests(images["t2"])) - kept
        assert all(_stored(server, d) for d in garbage)  # the database let go; the bytes wait for GC
        env = {**os.environ, "MOORAGE_DATA_DIR": str(server.data_dir)}
        gc = subprocess.run([*moorage_command(), "gc", "run", "--grace-period", "0s"], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
        assert gc.returncode == 0, gc.stderr
        assert not any(_stored(server, d) for d in garbage)
        assert all(_stored(server, d) for d in kept)

        for tag in ("t3", "t4", "keep"):
            pulled = tmp_path / f"pulled-{tag}"
            skopeo.copy(f"{remote}:{tag}", f"dir:{pulled}", "--src-creds", CREDS)
            assert verify_dir(pulled) == {images[tag].config.digest, *(layer.digest for layer in images[tag].layers)}
        with httpx.Client(base_url=server.url, timeout=30, auth=("admin", ADMIN_PASSWORD)) as http:
            token = http.get("/service/token", params={"service": "moorage",
                                                       "scope": f"repository:{project}/app:pull"}).json()["token"]
            for tag in ("t1", "t2"):
                gone = http.get(f"/v2/{project}/app/manifests/{tag}", headers={"Authorization": f"Bearer {token}"})
                assert gone.status_code == 404
    finally:
        api.close()
        server.stop()
