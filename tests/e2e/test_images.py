"""The image helpers must be able to fail: a re-hash that never fails would prove nothing.

No server here; these run in milliseconds and guard the guards the e2e tests rely on.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from tests.e2e.images import LayoutCorrupt, OciLayout, sha256_file, verify_dir, verify_layout


def _flip_one_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_built_image_is_consistent(tmp_path: Path) -> None:
    """Digests, sizes and diff_ids of a generated image agree with its bytes."""
    layout = OciLayout(tmp_path)
    image = layout.add_image("v1", (4096, 70_000))
    reachable = verify_layout(tmp_path)
    assert set(reachable) == {image.manifest.digest, *(b.digest for b in image.blobs)}
    config = layout.read_json(image.config.digest)
    for layer, diff_id, (name, content) in zip(
        image.layers, config["rootfs"]["diff_ids"], image.files.items(), strict=True
    ):
        raw = gzip.decompress(layout.blob_path(layer.digest).read_bytes())
        assert f"sha256:{hashlib.sha256(raw).hexdigest()}" == diff_id
        with tarfile.open(layout.blob_path(layer.digest)) as tar:
            member = tar.extractfile(name)
            assert member is not None
            assert hashlib.sha256(member.read()).hexdigest() == content
    assert layout.tags()["v1"]["digest"] == image.manifest.digest


def test_layers_are_random_so_no_two_images_share_a_blob(tmp_path: Path) -> None:
    """Fresh images never collide: a registry cannot pass a test by already having the blob."""
    layout = OciLayout(tmp_path)
    a, b = layout.add_image("a", (1024,)), layout.add_image("b", (1024,))
    assert not {x.digest for x in a.blobs} & {x.digest for x in b.layers}


def test_verify_layout_detects_a_corrupted_layer(tmp_path: Path) -> None:
    layout = OciLayout(tmp_path)
    image = layout.add_image("v1", (50_000,))
    _flip_one_byte(layout.blob_path(image.layers[0].digest), 25_000)
    with pytest.raises(LayoutCorrupt, match=image.layers[0].digest):
        verify_layout(tmp_path)


def test_verify_layout_detects_a_missing_or_truncated_blob(tmp_path: Path) -> None:
    layout = OciLayout(tmp_path)
    image = layout.add_image("v1", (2048,))
    layout.blob_path(image.config.digest).unlink()
    with pytest.raises(LayoutCorrupt, match="missing"):
        verify_layout(tmp_path)


def test_verify_layout_detects_a_descriptor_size_mismatch(tmp_path: Path) -> None:
    layout = OciLayout(tmp_path)
    image = layout.add_image("v1", (2048,))
    index = json.loads((tmp_path / "index.json").read_text())
    index["manifests"][0]["size"] += 1
    (tmp_path / "index.json").write_text(json.dumps(index))
    with pytest.raises(LayoutCorrupt, match=image.manifest.digest):
        verify_layout(tmp_path)


def test_verify_dir_detects_a_corrupted_blob(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"x" * 100)
    good = sha256_file(blob)
    blob.rename(tmp_path / good[7:])
    assert verify_dir(tmp_path) == {good}
    _flip_one_byte(tmp_path / good[7:], 0)
    with pytest.raises(LayoutCorrupt):
        verify_dir(tmp_path)
