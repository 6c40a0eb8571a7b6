"""Two sites on one PostgreSQL, in process: site ``a`` on Ceph RGW's S3 (through a TCP gate the
tests can close), site ``b`` on the OpenStack Swift SAIO. Each site is a ``Services`` with its
own app; jobs are run by hand (:func:`run_jobs`) so a test decides when copies happen.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
import yaml
from sqlalchemy import delete

from moorage.app import create_app
from moorage.config import Settings, load_settings
from moorage.db.jobs_tables import jobs
from moorage.db.migrate import upgrade
from moorage.services import Services
from tests.services.fixtures import Service
from tests.services.tcpgate import TcpGate
from tests.storage.objectstores import TEMPURL_KEY, ensure_bucket, s3_settings, unique

REDIS_URL = os.environ.get("MOORAGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass
class Site:
    name: str
    services: Services
    client: httpx.AsyncClient


@dataclass
class TwoSites:
    a: Site
    b: Site
    gate: TcpGate


def site_config(
    data_dir: Path, database_url: str, ceph_rgw: Service, swift_saio: Service, gate: TcpGate, bucket: str,
    container: str, *, redis: bool = False,
) -> dict[str, Any]:
    """The shared YAML: one database, site a on S3 behind the gate, site b on Swift."""
    upstream = urlsplit(ceph_rgw["S3_ENDPOINT"])
    config: dict[str, Any] = {
        "data_dir": str(data_dir),
        "database": {"url": database_url},
        "sites": {
            "a": {"storage": {"s3": {
                "accesskey": ceph_rgw["S3_ACCESS_KEY"], "secretkey": ceph_rgw["S3_SECRET_KEY"],
                "region": ceph_rgw["S3_REGION"], "bucket": bucket,
                "regionendpoint": f"{upstream.scheme}://127.0.0.1:{gate.port}",
            }, "redirect": {"disable": True}}},
            "b": {"storage": {"swift": {
                "authurl": swift_saio["SWIFT_AUTH_URL"], "username": swift_saio["SWIFT_USER"],
                "password": swift_saio["SWIFT_KEY"], "container": container, "secretkey": TEMPURL_KEY,
            }, "redirect": {"disable": True}}},
        },
    }
    if redis:
        base = REDIS_URL.rsplit("/", 1)[0]
        config["sites"]["a"]["redis"] = {"url": f"{base}/11", "fence_lease": 0.5}
        config["sites"]["b"]["redis"] = {"url": f"{base}/12", "fence_lease": 0.5}
    return config


def settings_for(tmp_path: Path, config: dict[str, Any], site: str) -> Settings:
    path = tmp_path / f"moorage-{site}.yml"
    path.write_text(yaml.safe_dump(config))
    return load_settings(path, environ={"MOORAGE_SITE": site})


@pytest.fixture(scope="session")
def postgres_database(postgres_admin_url: str) -> Iterator[str]:
    """A throwaway, migrated PostgreSQL database the sites share for this session."""
    name = f"moorage_sites_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{postgres_admin_url.rsplit('/', 1)[0]}/{name}"
    upgrade(url)
    yield url
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def gate(ceph_rgw: Service) -> Iterator[TcpGate]:
    upstream = urlsplit(ceph_rgw["S3_ENDPOINT"])
    opened = TcpGate(upstream.hostname or "127.0.0.1", upstream.port or 80)
    opened.open()
    yield opened
    opened.close()


async def open_sites(tmp_path: Path, config: dict[str, Any], gate: TcpGate) -> TwoSites:
    sites = []
    for name in ("a", "b"):
        settings = settings_for(tmp_path, config, name)
        services = Services.from_settings(settings)
        app = create_app(settings, services)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registry")
        sites.append(Site(name, services, client))
    return TwoSites(sites[0], sites[1], gate)


async def close_sites(two: TwoSites) -> None:
    """Close both sites; their copy jobs go too (the next test's buckets are others, its jobs its own)."""
    async with two.a.services.db.write() as conn:
        await conn.execute(delete(jobs).where(jobs.c.kind.like("site.copy.%")))
    for site in (two.a, two.b):
        await site.client.aclose()
        await site.services.aclose()


@pytest.fixture
async def two_sites(
    tmp_path: Path, postgres_database: str, ceph_rgw: Service, swift_saio: Service, gate: TcpGate
) -> AsyncIterator[TwoSites]:
    bucket = unique("sites-a")
    ensure_bucket(s3_settings(ceph_rgw, bucket))
    config = site_config(tmp_path, postgres_database, ceph_rgw, swift_saio, gate, bucket, unique("sites-b"))
    two = await open_sites(tmp_path, config, gate)
    yield two
    await close_sites(two)


async def run_jobs(services: Services) -> int:
    """Run every due copy to this node's site now, as its job runner would; the number run."""
    assert services.settings.site is not None
    kind = f"site.copy.{services.settings.site}"
    owner = f"test-{uuid.uuid4().hex[:8]}"
    done = 0
    while claimed := await services.jobs.claim(owner, limit=10, kinds=[kind]):
        for job in claimed:
            handler = services.job_handlers.get(kind)
            assert handler is not None
            try:
                await handler(job)
            except Exception as exc:  # noqa: BLE001 - recorded like the runner does
                await services.jobs.fail(owner, job.id, str(exc))
            else:
                await services.jobs.succeed(owner, job.id)
            done += 1
    return done
