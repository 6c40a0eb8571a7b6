"""Shared set-up for the identity tests (no tests here): a token-mode app on the parametrized database.

Every test module that needs it imports :func:`idp`; users, projects and robots are created
through the REST API as ``admin`` (so set-up exercises the API too), with unique names so
tests share the session's database without interfering.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from moorage.app import create_app
from moorage.config import Settings
from moorage.services import Services
from tests.integration.conftest import make_settings

SECRET_KEY = "integration-secret-key-0123456789"
ADMIN_PASSWORD = "Admin-Passw0rd"
PASSWORD = "Passw0rd-user"
TOKEN_ENV = {"MOORAGE_AUTH__MODE": "token", "MOORAGE_SECRET_KEY": SECRET_KEY, "MOORAGE_ADMIN_PASSWORD": ADMIN_PASSWORD}


def uid(prefix: str = "p") -> str:
    """A name valid as a project, user or robot name that no other test uses."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def basic(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Idp:
    """A token-mode registry in-process, with helpers that set up users, projects and robots."""

    settings: Settings
    services: Services
    http: httpx.AsyncClient

    @property
    def admin(self) -> dict[str, str]:
        return basic("admin", ADMIN_PASSWORD)

    async def api(self, method: str, path: str, auth: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        return await self.http.request(method, f"/api/v2.0{path}", headers=auth or {}, **kwargs)

    async def user(self, prefix: str = "u") -> tuple[str, dict[str, str]]:
        name = uid(prefix)
        r = await self.api("POST", "/users", self.admin, json={"username": name, "password": PASSWORD})
        assert r.status_code == 201, r.text
        return name, basic(name, PASSWORD)

    async def project(self, public: bool = False) -> str:
        name = uid("proj")
        r = await self.api("POST", "/projects", self.admin, json={"project_name": name, "public": public})
        assert r.status_code == 201, r.text
        return name

    async def member(self, project: str, username: str, role_id: int) -> None:
        r = await self.api("POST", f"/projects/{project}/members", self.admin,
                           json={"role_id": role_id, "member_user": {"username": username}})
        assert r.status_code == 201, r.text

    async def user_in(self, project: str, role_id: int) -> tuple[str, dict[str, str]]:
        name, auth = await self.user()
        await self.member(project, name, role_id)
        return name, auth

    async def robot(self, project: str, actions: list[str], level: str = "project",
                    duration: int = -1) -> tuple[int, str, str]:
        body = {"name": uid("bot"), "level": level, "duration": duration, "permissions": [
            {"kind": "project", "namespace": project,
             "access": [{"resource": "repository", "action": a} for a in actions]}]}
        r = await self.api("POST", "/robots", self.admin, json=body)
        assert r.status_code == 201, r.text
        out = r.json()
        return int(out["id"]), str(out["name"]), str(out["secret"])

    async def token(self, auth: dict[str, str] | None, *scopes: str, **params: str) -> dict[str, Any]:
        service = params.pop("service", "moorage")
        r = await self.http.get("/service/token", params=[("service", service), *(("scope", s) for s in scopes),
                                                         *params.items()], headers=auth or {})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


async def make_idp(database_url: str, data_dir: Path, **extra: object) -> AsyncIterator[Idp]:
    settings = make_settings(database_url, data_dir, **{**TOKEN_ENV, **extra})
    services = Services.from_settings(settings)
    assert services.identity is not None
    await services.identity.start()
    app = create_app(settings, services)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registry.test") as http:
        yield Idp(settings, services, http)
    await services.aclose()

