"""``/api/v2.0/registries`` in Harbor's shapes against real upstreams: CRUD, secrets sealed, ping causes."""

from __future__ import annotations

import socket

import pytest
from sqlalchemy import select

from moorage.db.proxy_tables import registries
from tests.e2e.servers import RegistryProcess
from tests.integration.test_identity_helpers import Idp, uid
from tests.proxy.conftest import UPSTREAM_PASSWORD, UPSTREAM_USER


def message(response: object) -> str:
    body = response.json()  # type: ignore[attr-defined]
    return str(body["errors"][0]["message"])


def endpoint_body(url: str, **extra: object) -> dict[str, object]:
    return {"name": uid("ep"), "type": "docker-registry", "url": url, **extra}


async def test_endpoint_crud_keeps_the_secret_sealed(idp: Idp, auth_upstream: RegistryProcess) -> None:
    body = endpoint_body(auth_upstream.url, credential={"type": "basic", "access_key": UPSTREAM_USER,
                                                        "access_secret": UPSTREAM_PASSWORD})
    r = await idp.api("POST", "/registries", idp.admin, json=body)
    assert r.status_code == 201, r.text
    location = r.headers["location"]
    registry_id = int(location.rsplit("/", 1)[1])
    got = (await idp.api("GET", f"/registries/{registry_id}", idp.admin)).json()
    assert got["credential"] == {"type": "basic", "access_key": UPSTREAM_USER, "access_secret": "*****"}
    assert got["url"] == auth_upstream.url and got["type"] == "docker-registry"
    async with idp.services.db.read() as conn:
        stored = (await conn.execute(select(registries.c.access_secret).where(registries.c.id == registry_id))).scalar()
    assert stored and UPSTREAM_PASSWORD not in stored  # sealed with auth.secret_key, not the plain secret
    listed = await idp.api("GET", "/registries", idp.admin, params={"name": body["name"]})
    assert [item["id"] for item in listed.json()] == [registry_id]
    # the stored secret is used by a ping by id, and kept by a PUT that does not send one
    assert (await idp.api("POST", "/registries/ping", idp.admin, json={"id": registry_id})).status_code == 200
    r = await idp.api("PUT", f"/registries/{registry_id}", idp.admin, json={"description": "hub"})
    assert r.status_code == 200, r.text
    assert (await idp.api("POST", "/registries/ping", idp.admin, json={"id": registry_id})).status_code == 200
    assert (await idp.api("POST", "/registries", idp.admin, json=body)).status_code == 409
    assert (await idp.api("DELETE", f"/registries/{registry_id}", idp.admin)).status_code == 200
    assert (await idp.api("GET", f"/registries/{registry_id}", idp.admin)).status_code == 404


async def test_only_administrators_manage_endpoints(idp: Idp, open_upstream: RegistryProcess) -> None:
    _, user = await idp.user()
    r = await idp.api("POST", "/registries", user, json=endpoint_body(open_upstream.url))
    assert r.status_code == 403 and "system administrator" in message(r)
    assert (await idp.api("GET", "/registries")).status_code == 401


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"url": "registry.example:5000"}, "url", "needs a scheme"),
    ({"url": "ftp://registry.example"}, "url", "needs a scheme"),
    ({"url": "https://registry.example/some/path"}, "url", "without a path"),
    ({"type": "quay"}, "type", "not a known endpoint type"),
    ({"credential": {"type": "oauth", "access_key": "a", "access_secret": "b"}}, "credential.type", "not supported"),
])
async def test_bad_endpoints_are_refused_naming_the_field(
    idp: Idp, change: dict[str, object], field: str, words: str
) -> None:
    body = {**endpoint_body("https://registry.example"), **change}
    r = await idp.api("POST", "/registries", idp.admin, json=body)
    assert r.status_code == 400
    assert message(r).startswith(f"{field}: ") and words in message(r) and "nothing was saved" in message(r)
    assert (await idp.api("GET", "/registries", idp.admin, params={"name": body["name"]})).json() == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_ping_says_what_is_wrong(idp: Idp, auth_upstream: RegistryProcess, open_upstream: RegistryProcess) -> None:
    async def ping(**body: object) -> tuple[int, str]:
        r = await idp.api("POST", "/registries/ping", idp.admin, json={"type": "docker-registry", **body})
        return r.status_code, message(r) if r.status_code != 200 else ""

    assert await ping(url=open_upstream.url) == (200, "")
    assert await ping(url=auth_upstream.url, access_key=UPSTREAM_USER, access_secret=UPSTREAM_PASSWORD) == (200, "")
    status, text = await ping(url=auth_upstream.url, access_key=UPSTREAM_USER, access_secret="wrong")
    assert status == 400 and text.startswith("ping failed (unauthorized)") and auth_upstream.url in text
    status, text = await ping(url=f"http://127.0.0.1:{_closed_port()}")
    assert status == 400 and text.startswith("ping failed (unreachable)")
    # TLS spoken to a plain-HTTP server
    status, text = await ping(url=f"https://{open_upstream.host}")
    assert status == 400 and text.startswith("ping failed (tls)")
    # something that answers HTTP but is no registry: the REST API's own root
    status, text = await ping(url=open_upstream.url, type="harbor")
    assert status == 400 and text.startswith("ping failed (not_registry)") and "not a Harbor" in text
    status, text = await ping(url="registry.example")
    assert status == 400 and text.startswith("url: ")
