"""Project quotas (issue 11): Harbor's ``/quotas`` API, usage counted once per project, refusals that leave nothing.

Token mode on SQLite and PostgreSQL. The usage the API reports is compared with a count made
here straight from the links (each blob linked into a repository of the project, once), after
pushes, cross-repository pushes, deletes and garbage collection.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from moorage.gc.collector import GarbageCollector, GcOptions
from moorage.registry.gc_fence import link_active
from moorage.registry.repositories import ensure_repository
from tests.integration.oci_client import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    descriptor,
    digest_of,
    error_code,
)
from tests.integration.test_identity_helpers import Idp, make_idp, uid

DEFAULT_STORAGE = 7 * 1024 * 1024


@pytest.fixture
async def idp(database_url: str, tmp_path: Path) -> AsyncIterator[Idp]:
    async for value in make_idp(database_url, tmp_path, MOORAGE_QUOTAS__STORAGE_PER_PROJECT=DEFAULT_STORAGE):
        yield value


def _message(r: httpx.Response) -> str:
    return str(r.json()["errors"][0]["message"])


async def _project(idp: Idp, **body: Any) -> tuple[str, int]:
    name = uid("quota")
    r = await idp.api("POST", "/projects", idp.admin, json={"project_name": name, **body})
    assert r.status_code == 201, r.text
    return name, int(r.headers["Location"].rsplit("/", 1)[1])


async def _quota(idp: Idp, quota_id: int) -> dict[str, Any]:
    r = await idp.api("GET", f"/quotas/{quota_id}", idp.admin)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def _set(idp: Idp, quota_id: int, **hard: int) -> None:
    r = await idp.api("PUT", f"/quotas/{quota_id}", idp.admin, json={"hard": hard})
    assert r.status_code == 200, r.text


async def _counted(idp: Idp, project_id: int) -> int:
    """The project's usage counted from the links, independently of the quota tables."""
    async with idp.services.db.read() as conn:
        used = (
            await conn.execute(
                text(
                    "SELECT COALESCE(SUM(b.size), 0) FROM blobs b WHERE b.id IN (SELECT rb.blob_id FROM "
                    "repository_blobs rb JOIN repositories r ON r.id = rb.repository_id WHERE r.project_id = :p)"
                ),
                {"p": project_id},
            )
        ).scalar_one()
    return int(used)


async def _exact(idp: Idp, project_id: int) -> int:
    """The reported usage, checked against :func:`_counted`."""
    used = int((await _quota(idp, project_id))["used"]["storage"])
    assert used == await _counted(idp, project_id)
    return used


async def _blob(idp: Idp, name: str, data: bytes) -> httpx.Response:
    return await idp.http.post(f"/v2/{name}/blobs/uploads/", params={"digest": digest_of(data)}, content=data,
                               headers=idp.admin)


async def _chunked(idp: Idp, name: str, data: bytes) -> httpx.Response:
    r = await idp.http.post(f"/v2/{name}/blobs/uploads/", headers=idp.admin)
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    r = await idp.http.patch(location, content=data, headers={**idp.admin, "Content-Type": "application/octet-stream"})
    assert r.status_code == 202, r.text
    return await idp.http.put(r.headers["Location"], params={"digest": digest_of(data)}, headers=idp.admin)


def _manifest(config: bytes, layers: list[bytes]) -> bytes:
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER, layer) for layer in layers],
    }).encode()


async def _image(idp: Idp, name: str, tag: str, config: bytes, layers: list[bytes]) -> httpx.Response:
    for blob in (config, *layers):
        r = await _blob(idp, name, blob)
        assert r.status_code == 201, r.text
    return await idp.http.put(f"/v2/{name}/manifests/{tag}", content=_manifest(config, layers),
                              headers={**idp.admin, "Content-Type": OCI_MANIFEST})


async def _rows_of(idp: Idp, digest: str) -> tuple[int, int]:
    """(blob rows, links) for ``digest``: what a refused push must not leave behind."""
    async with idp.services.db.read() as conn:
        blobs = (await conn.execute(text("SELECT count(*) FROM blobs WHERE digest = :d"), {"d": digest})).scalar_one()
        links = (
            await conn.execute(
                text("SELECT count(*) FROM repository_blobs rb JOIN blobs b ON b.id = rb.blob_id WHERE b.digest = :d"),
                {"d": digest},
            )
        ).scalar_one()
    return int(blobs), int(links)


async def _uploads(idp: Idp, name: str) -> int:
    async with idp.services.db.read() as conn:
        return int((await conn.execute(text(
            "SELECT count(*) FROM uploads u JOIN repositories r ON r.id = u.repository_id WHERE r.name = :n"),
            {"n": name})).scalar_one())


async def test_quotas_in_harbors_shape_with_defaults_storage_limit_and_who_may_read_and_change(idp: Idp) -> None:
    project, pid = await _project(idp)
    limited, lid = await _project(idp, storage_limit=1000)
    _, unlimited_id = await _project(idp, storage_limit=-1)
    quota = await _quota(idp, pid)
    assert quota["id"] == pid and quota["ref"] == {"id": pid, "name": project, "owner_name": "admin"}
    assert quota["hard"] == {"storage": DEFAULT_STORAGE, "count": -1}  # quotas.storage_per_project
    assert quota["used"] == {"storage": 0, "count": 0}
    assert {"creation_time", "update_time"} <= set(quota)
    assert (await _quota(idp, lid))["hard"]["storage"] == 1000
    assert (await _quota(idp, unlimited_id))["hard"]["storage"] == -1

    r = await idp.api("GET", "/quotas", idp.admin, params={"reference": "project", "reference_id": lid})
    assert r.status_code == 200 and [q["ref"]["name"] for q in r.json()] == [limited], r.text
    r = await idp.api("GET", "/quotas", idp.admin, params={"sort": "-hard.storage", "page_size": 100})
    assert r.status_code == 200 and int(r.headers["X-Total-Count"]) >= 3
    limits = [q["hard"]["storage"] for q in r.json()]
    assert limits == sorted(limits, reverse=True)

    member, member_auth = await idp.user_in(limited, 1)  # projectAdmin of 'limited', nothing else
    _, outsider_auth = await idp.user()
    r = await idp.api("GET", f"/quotas/{lid}", member_auth)
    assert r.status_code == 200 and r.json()["hard"]["storage"] == 1000
    r = await idp.api("GET", "/quotas", member_auth, params={"page_size": 100})
    assert r.status_code == 200 and [q["id"] for q in r.json()] == [lid]
    r = await idp.api("PUT", f"/quotas/{lid}", member_auth, json={"hard": {"storage": -1}})
    assert r.status_code == 403 and "system administrator" in _message(r), r.text
    r = await idp.api("GET", f"/quotas/{pid}", outsider_auth)
    assert r.status_code == 404 and project in _message(r)  # private: not told it exists
    assert (await idp.api("GET", "/quotas")).status_code == 401
    # the project summary shows the quota to those who may read it
    r = await idp.api("GET", f"/projects/{limited}/summary", member_auth)
    assert r.status_code == 200 and r.json()["quota"] == {"hard": {"storage": 1000, "count": -1},
                                                          "used": {"storage": 0, "count": 0}}, r.text
    public, _ = await _project(idp, public=True)
    r = await idp.api("GET", f"/projects/{public}/summary", outsider_auth)
    assert r.status_code == 200 and r.json()["quota"] is None, r.text
    assert (await idp.api("GET", "/quotas/2147483647", idp.admin)).status_code == 404

    await _set(idp, lid, storage=5000, count=3)
    assert (await _quota(idp, lid))["hard"] == {"storage": 5000, "count": 3}
    await _set(idp, lid, count=-1)  # only what is given changes
    assert (await _quota(idp, lid))["hard"] == {"storage": 5000, "count": -1}
    logs = (await idp.api("GET", "/audit-logs", idp.admin, params={"resource": f"quota {lid}"})).json()
    assert [e["detail"] for e in logs if e["project"] == limited][-1] == "storage 1000, count -1 -> storage 5000, count 3"
    assert member


@pytest.mark.parametrize(
    ("hard", "field"),
    [
        ({"storage": -2}, "hard.storage"),
        ({"storage": 1.5}, "hard.storage"),
        ({"storage": 10.0}, "hard.storage"),
        ({"storage": "10G"}, "hard.storage"),
        ({"storage": True}, "hard.storage"),
        ({"storage": None}, "hard.storage"),
        ({"count": -5}, "hard.count"),
        ({"storage": 100, "count": "x"}, "hard.count"),
        ({"storage": 2**63}, "hard.storage"),
        ({"storage": 100, "bandwidth": 1}, "hard.bandwidth"),
        ({}, "hard"),
        (None, "hard"),
    ],
)
async def test_a_bad_limit_is_400_naming_the_field_and_nothing_is_saved(
    idp: Idp, hard: dict[str, Any] | None, field: str
) -> None:
    _, pid = await _project(idp, storage_limit=1234)
    before = await _quota(idp, pid)
    r = await idp.api("PUT", f"/quotas/{pid}", idp.admin, json={} if hard is None else {"hard": hard})
    assert r.status_code == 400 and _message(r).startswith(field), r.text
    assert await _quota(idp, pid) == before


@pytest.mark.parametrize(("limit", "field"), [(-2, "storage_limit"), (1.5, "storage_limit"), ("10", "storage_limit"),
                                              (True, "storage_limit")])
async def test_a_bad_storage_limit_refuses_the_project(idp: Idp, limit: Any, field: str) -> None:
    name = uid("quota")
    r = await idp.api("POST", "/projects", idp.admin, json={"project_name": name, "storage_limit": limit})
    assert r.status_code == 400 and field in _message(r), r.text
    assert (await idp.api("GET", f"/projects/{name}", idp.admin)).status_code == 404


async def test_usage_counts_each_blob_once_per_project_through_pushes_deletes_and_gc(idp: Idp) -> None:
    project, pid = await _project(idp, storage_limit=-1)
    other, oid = await _project(idp, storage_limit=-1)
    config, layers = b'{"os":"linux","q":1}', [os.urandom(3000), os.urandom(5000)]
    manifest = _manifest(config, layers)
    assert (await _image(idp, f"{project}/a", "v1", config, layers)).status_code == 201
    once = len(config) + sum(map(len, layers)) + len(manifest)
    assert await _exact(idp, pid) == once
    # the same content in a second repository of the project, pushed and mounted: counted once
    assert (await _image(idp, f"{project}/b", "v1", config, layers)).status_code == 201
    r = await idp.http.post(f"/v2/{project}/c/blobs/uploads/", params={"mount": digest_of(layers[0]),
                                                                      "from": f"{project}/a"}, headers=idp.admin)
    assert r.status_code == 201, r.text
    assert await _exact(idp, pid) == once
    assert (await _quota(idp, pid))["used"]["count"] == 2
    # another project pays for its own copy
    assert (await _image(idp, f"{other}/a", "v1", config, layers)).status_code == 201
    assert await _exact(idp, oid) == once

    # deletes: a repository whose blobs another one links frees nothing; the last link frees them
    assert (await idp.api("DELETE", f"/projects/{project}/repositories/a", idp.admin)).status_code == 200
    assert await _exact(idp, pid) == once
    assert (await idp.http.delete(f"/v2/{project}/c/blobs/{digest_of(layers[0])}", headers=idp.admin)).status_code == 202
    assert await _exact(idp, pid) == once  # still linked in b
    assert (await idp.api("DELETE", f"/projects/{project}/repositories/b", idp.admin)).status_code == 200
    assert await _exact(idp, pid) == 0
    assert await _exact(idp, oid) == once

    # GC: an untagged image's blobs count until GC removes them
    r = await idp.http.delete(f"/v2/{other}/a/manifests/{digest_of(manifest)}", headers=idp.admin)
    assert r.status_code == 202, r.text
    assert await _exact(idp, oid) == once
    await GarbageCollector(idp.services.db, idp.services.storage, GcOptions(grace=timedelta(0))).run()
    assert await _exact(idp, oid) == 0
    assert (await _quota(idp, oid))["used"]["count"] == 0


async def test_a_push_over_quota_is_denied_naming_project_usage_and_limit_and_leaves_nothing(idp: Idp) -> None:
    project, pid = await _project(idp, storage_limit=10_000)
    name = f"{project}/app"
    assert (await _blob(idp, name, os.urandom(6000))).status_code == 201
    for push in (_blob, _chunked):
        data = os.urandom(5000)
        r = await push(idp, name, data)
        assert r.status_code == 403 and error_code(r) == "DENIED", r.text
        message = _message(r)
        assert f"project {project!r} uses 5.9 KiB (6000 bytes) of its storage limit of 9.8 KiB (10000 bytes)" in message
        assert "needs 4.9 KiB (5000 bytes) more" in message
        assert f"PUT /api/v2.0/quotas/{pid} with hard.storage set to the new limit in bytes (-1 for unlimited)" in message
        assert r.json()["errors"][0]["detail"] == {"project": project, "quota_id": pid, "resource": "storage",
                                                   "used": 6000, "limit": 10_000, "needed": 5000}
        assert await _rows_of(idp, digest_of(data)) == (0, 0)
        assert await _uploads(idp, name) == 0
    assert await _exact(idp, pid) == 6000

    # the manifest itself is the last straw: its blobs fit, it does not
    config = b'{"os":"linux"}'
    layer = os.urandom(3900)
    await _set(idp, pid, storage=6000 + len(config) + len(layer) + 10)
    r = await _image(idp, name, "v1", config, [layer])
    assert r.status_code == 403 and error_code(r) == "DENIED", r.text
    assert f"project {project!r} uses" in _message(r)
    manifest = digest_of(_manifest(config, [layer]))
    assert await _rows_of(idp, manifest) == (0, 0)
    async with idp.services.db.read() as conn:
        stored = (await conn.execute(text("SELECT count(*) FROM manifests WHERE digest = :d"), {"d": manifest}))
        assert stored.scalar_one() == 0
    assert await _exact(idp, pid) == 6000 + len(config) + len(layer)

    # raising the limit lets the same push through; -1 is unlimited
    await _set(idp, pid, storage=-1)
    r = await idp.http.put(f"/v2/{name}/manifests/v1", content=_manifest(config, [layer]),
                           headers={**idp.admin, "Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text


async def test_the_artifact_count_limit_refuses_a_new_manifest_but_not_a_repush(idp: Idp) -> None:
    project, pid = await _project(idp, storage_limit=-1)
    await _set(idp, pid, count=1)
    name = f"{project}/app"
    assert (await _image(idp, name, "v1", b'{"n":1}', [b"layer one"])).status_code == 201
    assert (await _image(idp, name, "v1", b'{"n":1}', [b"layer one"])).status_code == 201  # the same: fine
    r = await _image(idp, name, "v2", b'{"n":2}', [b"layer two"])
    assert r.status_code == 403 and error_code(r) == "DENIED", r.text
    assert f"project {project!r} holds 1 artifacts, its limit is 1" in _message(r)
    assert f"PUT /api/v2.0/quotas/{pid} with hard.count set to the new limit in artifacts" in _message(r)
    assert (await _quota(idp, pid))["used"]["count"] == 1


async def test_racing_pushes_fill_the_quota_exactly_and_the_refused_leave_nothing(idp: Idp) -> None:
    """Eight blobs of 1,000 bytes at once into room for three: three land, whichever check refuses the rest
    (the pre-check or the one under the quota lock), and none of the refused leaves a row or a link."""
    project, pid = await _project(idp, storage_limit=3000)
    blobs = [os.urandom(1000) for _ in range(8)]

    async def push(i: int, data: bytes) -> httpx.Response:
        name = f"{project}/r{i % 3}"
        return await (_chunked if i % 2 else _blob)(idp, name, data)

    answers = await asyncio.gather(*(push(i, data) for i, data in enumerate(blobs)))
    codes = sorted(r.status_code for r in answers)
    assert codes == [201] * 3 + [403] * 5, [r.text for r in answers]
    for r, data in zip(answers, blobs, strict=True):
        if r.status_code == 403:
            assert error_code(r) == "DENIED" and await _rows_of(idp, digest_of(data)) == (0, 0)
    assert await _exact(idp, pid) == 3000
    for i in range(3):
        assert await _uploads(idp, f"{project}/r{i}") == 0


async def test_a_delete_does_not_drop_a_blob_that_a_push_in_flight_links(idp: Idp) -> None:
    """A push links a blob the project already counts (through repository ``a``) into ``b`` and has not
    committed; meanwhile ``a`` is deleted. The delete must not drop the blob from the usage on a view of
    the links that misses the push: it waits for the push's hold on the blob (PostgreSQL), or for its
    write lock (SQLite), and then sees ``b``'s link."""
    project, pid = await _project(idp, storage_limit=-1)
    data = os.urandom(3000)
    assert (await _blob(idp, f"{project}/a", data)).status_code == 201
    async with idp.services.db.write() as conn:
        repository_b = await ensure_repository(conn, f"{project}/b", project_required=True)
        await link_active(conn, repository_b, digest_of(data))
        deleting = asyncio.create_task(idp.services.repositories.delete(f"{project}/a"))
        await asyncio.sleep(0.5)  # the delete goes as far as it can while the push is open
    await deleting
    assert await _exact(idp, pid) == 3000
