"""Set-up shared by the proxy tests: an endpoint and a proxy project through the REST API, OCI reads."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx

from tests.integration.test_identity_helpers import Idp, uid
from tests.proxy.upstream import OCI_MANIFEST

__all__ = ["ACCEPT", "access_count", "make_proxy", "sha256"]

ACCEPT = {"Accept": OCI_MANIFEST}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def make_proxy(idp: Idp, url: str, *, public: bool = True, credential: dict[str, str] | None = None,
                     endpoint_type: str = "docker-registry") -> tuple[str, int]:
    """A new endpoint for ``url`` and a proxy project bound to it: (project name, endpoint id)."""
    body: dict[str, object] = {"name": uid("ep"), "type": endpoint_type, "url": url}
    if credential:
        body["credential"] = {"type": "basic", **credential}
    r = await idp.api("POST", "/registries", idp.admin, json=body)
    assert r.status_code == 201, r.text
    registry_id = int(r.headers["location"].rsplit("/", 1)[1])
    project = uid("hub")
    r = await idp.api("POST", "/projects", idp.admin, json={"project_name": project, "public": public,
                                                             "registry_id": registry_id})
    assert r.status_code == 201, r.text
    return project, registry_id


def access_count(log_path: Path, method: str, path: str) -> int:
    """How many requests ``METHOD path`` Distribution's access log holds (one line per request)."""
    needle = f'"{method} {path} HTTP/1.1"'
    return sum(1 for line in log_path.read_text(errors="replace").splitlines() if needle in line)


async def get(http: httpx.AsyncClient, path: str, **kwargs: object) -> httpx.Response:
    return await http.get(path, **kwargs)  # type: ignore[arg-type]
