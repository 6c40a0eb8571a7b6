"""Importing a tree written by the real reference registry, then pulling it from Moorage.

DESIGN.md promises that an existing Distribution/Harbor storage tree can be taken over in
place: the reference registry writes the tree, ``moorage import-distribution`` records it,
and a real client pulls every image back from Moorage with every blob re-hashed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.e2e.clients import Skopeo
from tests.e2e.images import OciLayout, verify_layout
from tests.e2e.servers import moorage_command, start_moorage, start_reference


def test_distribution_tree_is_imported_in_place(skopeo: Skopeo, layout: OciLayout, tmp_path: Path) -> None:
    single = layout.add_image("single", (300_000, 40_000, 5_000))
    index = layout.add_index("multi", layer_sizes=(20_000, 30_000))

    reference = start_reference(tmp_path, label="old-registry")
    try:
        skopeo.copy(single.ref, f"docker://{reference.host}/team/app:1.0")
        skopeo.copy(f"docker://{reference.host}/team/app:1.0", f"docker://{reference.host}/team/app:stable")
        skopeo.copy(index.ref, f"docker://{reference.host}/team/multi:latest", "--all")
    finally:
        reference.stop()
    tree = reference.data_dir / "docker" / "registry" / "v2"
    assert (tree / "repositories" / "team" / "app").is_dir()
    before = sorted(p.relative_to(tree) for p in (tree / "blobs").rglob("data"))

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MOORAGE_") or k.startswith("MOORAGE_TEST_")},
        "MOORAGE_DATA_DIR": str(tmp_path / "moorage"),
        "MOORAGE_STORAGE__FILESYSTEM__ROOTDIRECTORY": str(tree),
    }
    for _ in range(2):  # the second run must change nothing and report the same
        result = subprocess.run(
            [*moorage_command(), "import-distribution"], env=env, capture_output=True, text=True, timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "2 repositories" in result.stdout and "0 skipped" in result.stdout, result.stdout + result.stderr
        assert "3 tags" in result.stdout and "4 manifests" in result.stdout, result.stdout
    assert sorted(p.relative_to(tree) for p in (tree / "blobs").rglob("data")) == before  # nothing copied

    moorage = start_moorage(
        tmp_path, label="taken-over",
        extra_env={k: env[k] for k in ("MOORAGE_DATA_DIR", "MOORAGE_STORAGE__FILESYSTEM__ROOTDIRECTORY")},
    )
    try:
        for tag in ("1.0", "stable"):
            pulled = tmp_path / f"pulled-{tag}"
            skopeo.copy(f"docker://{moorage.host}/team/app:{tag}", f"oci:{pulled}:{tag}")
            reachable = verify_layout(pulled)
            for blob in single.blobs:
                assert reachable.get(blob.digest) == blob.size, blob
        pulled_all = tmp_path / "pulled-multi"
        skopeo.copy(f"docker://{moorage.host}/team/multi:latest", f"oci:{pulled_all}:latest", "--all")
        reachable = verify_layout(pulled_all)
        for image in index.images:
            for blob in image.blobs:
                assert reachable.get(blob.digest) == blob.size, blob
    finally:
        moorage.stop()
