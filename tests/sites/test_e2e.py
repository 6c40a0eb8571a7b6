"""Two sites with two ``moorage serve`` nodes each, every site behind the project's nginx config:
skopeo pushes at site a (Ceph RGW S3) and pulls at site b (OpenStack Swift SAIO) at once, before
any copy ran; every blob is re-hashed; then the copies land at b, once per blob."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.e2e.clients import Skopeo
from tests.e2e.images import OciLayout, verify_dir
from tests.e2e.servers import throwaway_postgres_database
from tests.ha.conftest import require
from tests.services.fixtures import Service
from tests.sites.processes import SiteCluster, start_sites, write_sites_config
from tests.storage.objectstores import ensure_bucket, s3_settings, unique

LAYERS = (3 * 1024 * 1024, 512 * 1024)


@pytest.fixture(scope="module")
def sites(
    tmp_path_factory: pytest.TempPathFactory, postgres_admin_url: str, ceph_rgw: Service, swift_saio: Service
) -> Iterator[tuple[SiteCluster, str, str]]:
    require("nginx", "nginx")
    require("skopeo", "skopeo")
    workdir = tmp_path_factory.mktemp("sites-e2e")
    bucket = unique("sites-e2e-a")
    ensure_bucket(s3_settings(ceph_rgw, bucket))
    with throwaway_postgres_database(postgres_admin_url, prefix="moorage_sites") as url:
        # Site b redirects clients to site a's presigned URL for what it lacks (site a streams).
        # Jobs poll every 15 s here, so the pull at b right after the push finds the bytes at a only.
        config = write_sites_config(workdir / "moorage.yml", url, ceph_rgw.env, swift_saio.env, bucket,
                                    unique("sites-e2e-b"), fallback="redirect", poll_seconds=15)
        cluster = start_sites(workdir, url, config)
        try:
            yield cluster, url, ceph_rgw["S3_ENDPOINT"]
        finally:
            cluster.stop()


def _sites_of(database_url: str, digests: set[str]) -> dict[str, set[str]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT b.digest, s.site FROM blob_sites s JOIN blobs b ON b.id = s.blob_id WHERE b.digest = ANY(%s)",
            (list(digests),),
        ).fetchall()
    found: dict[str, set[str]] = {d: set() for d in digests}
    for digest, site in rows:
        found[digest].add(site)
    return found


def test_push_at_a_pull_at_b_at_once_through_each_sites_nginx(
    sites: tuple[SiteCluster, str, str], tmp_path: Path
) -> None:
    cluster, database_url, rgw_endpoint = sites
    skopeo = Skopeo(tmp_path / "skopeo")
    image = OciLayout(tmp_path / "layout").add_image("v1", LAYERS)
    repo = f"sites/{uuid.uuid4().hex[:8]}"
    at_a, at_b = cluster.proxies["a"].host, cluster.proxies["b"].host
    skopeo.copy(image.ref, f"docker://{at_a}/{repo}:v1")
    layer = image.layers[0].digest
    before = _sites_of(database_url, {layer})[layer]
    with httpx.Client(timeout=30) as http:
        answer = http.get(f"{cluster.proxies['b'].http_url}/v2/{repo}/blobs/{layer}")
    if "b" not in before:  # not copied yet (jobs poll every 15 s): b sends the client to a's storage
        assert answer.status_code == 307 and answer.headers["location"].startswith(rgw_endpoint), answer.headers
    pulled = tmp_path / "pulled-b"
    skopeo.copy(f"docker://{at_b}/{repo}:v1", f"dir:{pulled}")
    blobs = {b.digest for b in image.blobs}
    assert verify_dir(pulled) == blobs  # every blob re-hashed

    # The copy jobs bring every blob (and the manifest) to b; then b serves them from Swift.
    wanted = blobs | {image.manifest.digest}
    deadline = time.monotonic() + 120
    while (found := _sites_of(database_url, wanted)) and any(s != {"a", "b"} for s in found.values()):
        assert time.monotonic() < deadline, f"not copied to b in 120 s: {found}"
        time.sleep(0.2)
    with psycopg.connect(database_url) as conn:
        keys = conn.execute("SELECT dedup_key, state FROM jobs WHERE kind LIKE 'site.copy.%'").fetchall()
    per_blob = [k for k, _ in keys]
    assert len(per_blob) == len(set(per_blob)) and all(state == "succeeded" for _, state in keys), keys
    again = tmp_path / "pulled-b-again"
    skopeo.copy(f"docker://{at_b}/{repo}:v1", f"dir:{again}")
    assert verify_dir(again) == blobs
