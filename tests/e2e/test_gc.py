"""Online GC end to end: skopeo pushes, a delete and an untag, ``moorage gc run`` beside the running
server (filesystem storage), then skopeo pulls what remains and every blob is re-hashed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx

from tests.e2e.clients import Skopeo
from tests.e2e.conftest import SERVER_ENV
from tests.e2e.images import BuiltImage, OciLayout, verify_dir
from tests.e2e.servers import RegistryProcess, moorage_command, start_moorage


def _gc(server: RegistryProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MOORAGE_DATA_DIR": str(server.data_dir)}
    result = subprocess.run(
        [*moorage_command(), "gc", "run", "--grace-period", "0s", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


def _stored(server: RegistryProcess, digest: str) -> bool:
    hex_ = digest.split(":", 1)[1]
    return any(server.data_dir.rglob(f"blobs/sha256/{hex_[:2]}/{hex_}/data"))


def _digests(image: BuiltImage) -> set[str]:
    return {image.manifest.digest, image.config.digest, *(layer.digest for layer in image.layers)}


def test_skopeo_push_delete_untag_gc_then_pull_what_remains(
    tmp_path: Path, skopeo: Skopeo, layout: OciLayout
) -> None:
    server = start_moorage(tmp_path, label="moorage-gc", extra_env=SERVER_ENV)
    try:
        keep = layout.add_image("keep", (256 * 1024, 64 * 1024))
        deleted = layout.add_image("deleted", (128 * 1024,))
        untagged = layout.add_image("untagged", (96 * 1024,))
        remote = f"docker://{server.host}/e2e/gc"
        for image in (keep, deleted, untagged):
            skopeo.copy(image.ref, f"{remote}:{image.tag}")
        skopeo.delete(f"{remote}:deleted")  # the manifest goes: its blobs are garbage
        with httpx.Client(base_url=server.url, timeout=30) as http:
            assert http.delete("/v2/e2e/gc/manifests/untagged").status_code == 202  # only the tag goes

        dry = _gc(server, "--dry-run", "--delete-untagged")
        listed = set(dry.stdout.splitlines())
        garbage = _digests(deleted) | _digests(untagged)
        sizes = {
            blob.digest: blob.size
            for image in (deleted, untagged)
            for blob in (image.manifest, image.config, *image.layers)
        }
        assert listed == {f"manifest e2e/gc@{untagged.manifest.digest}"} | {
            f"blob {d} {sizes[d]}" for d in garbage
        }
        assert all(_stored(server, digest) for digest in garbage)  # a dry run deletes nothing

        real = _gc(server, "--delete-untagged")
        assert (
            f"deleted 1 manifest(s) and {len(garbage)} blob(s), {sum(sizes.values()):,} bytes" in real.stderr
        )
        assert not any(_stored(server, digest) for digest in garbage)
        for digest in garbage:  # the blob's own folder goes with its data
            hex_ = digest.split(":", 1)[1]
            assert not any(server.data_dir.rglob(f"blobs/sha256/{hex_[:2]}/{hex_}"))
        assert all(_stored(server, digest) for digest in _digests(keep))

        pulled = tmp_path / "pulled"
        skopeo.copy(f"{remote}:keep", f"dir:{pulled}")
        assert verify_dir(pulled) == {keep.config.digest, *(layer.digest for layer in keep.layers)}
        with httpx.Client(base_url=server.url, timeout=30) as http:
            gone = http.get(f"/v2/e2e/gc/manifests/{untagged.manifest.digest}")
            assert gone.status_code == 404
            assert http.head(f"/v2/e2e/gc/blobs/{deleted.layers[0].digest}").status_code == 404
        assert _gc(server).stderr.strip().endswith("deleted 0 manifest(s) and 0 blob(s), 0 bytes")
    finally:
        server.stop()
