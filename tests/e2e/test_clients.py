"""Real clients against a real registry process: what an operator's users will actually run.

Every test pushes material it generated itself (random layers, so nothing can be satisfied by a
cache or by the internet), pulls it back through the registry and re-hashes what came back.
Tests taking ``any_registry`` also run against Debian's ``docker-registry``: a failure there
means the test is wrong, a failure only on Moorage means the server is.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import httpx
import oras.oci  # type: ignore[import-untyped]
import pytest

from tests.e2e.clients import ContainersTools, Skopeo, oras_registry
from tests.e2e.images import (
    MT_OCI_INDEX,
    MT_OCI_MANIFEST,
    OciLayout,
    sha256_file,
    verify_dir,
    verify_layout,
)
from tests.e2e.servers import RegistryProcess

MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
MT_HELM_CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
MT_OCI_EMPTY = "application/vnd.oci.empty.v1+json"
ACCEPT_ALL = f"{MT_OCI_MANIFEST}, {MT_OCI_INDEX}, {MT_DOCKER_MANIFEST}, {MT_DOCKER_LIST}"
MIB = 1024 * 1024
MULTI_LAYER = (MIB, 2 * MIB, MIB // 2, 3 * MIB)
"""Four layers, 6.5 MiB: several blobs per push, each larger than one client buffer."""


# -- small HTTP helpers (the spec's wire format, checked directly) ---------------------------
def http(reg: RegistryProcess) -> httpx.Client:
    """A plain httpx client for the registry's base URL."""
    return httpx.Client(base_url=reg.url, timeout=30)


def head_manifest(reg: RegistryProcess, repo: str, reference: str) -> httpx.Response:
    """``HEAD /v2/<repo>/manifests/<reference>`` accepting every manifest type."""
    with http(reg) as c:
        return c.head(f"/v2/{repo}/manifests/{reference}", headers={"Accept": ACCEPT_ALL})


def get_manifest(reg: RegistryProcess, repo: str, reference: str) -> httpx.Response:
    """``GET /v2/<repo>/manifests/<reference>`` accepting every manifest type."""
    with http(reg) as c:
        return c.get(f"/v2/{repo}/manifests/{reference}", headers={"Accept": ACCEPT_ALL})


def assert_manifest_unknown(response: httpx.Response) -> None:
    """The spec's answer for a manifest that is not there: 404 and a MANIFEST_UNKNOWN error."""
    assert response.status_code == 404, (response.status_code, response.text)
    codes = [e.get("code") for e in response.json()["errors"]]
    assert "MANIFEST_UNKNOWN" in codes, response.text


def tags_of(reg: RegistryProcess, repo: str) -> list[str]:
    """``GET /v2/<repo>/tags/list`` → the tags (empty when the repository has none left)."""
    with http(reg) as c:
        r = c.get(f"/v2/{repo}/tags/list")
    if r.status_code == 404:
        return []
    r.raise_for_status()
    return sorted(r.json().get("tags") or [])


def blob_stored_under_data_dir(reg: RegistryProcess, digest: str) -> bool:
    """Whether the blob is at Distribution's content-addressed key somewhere in the data dir.

    DESIGN.md keeps ``blobs/sha256/<2 hex>/<hex>/data``, the layout operators know; this also
    proves the server wrote into the data dir it was given.
    """
    hex_ = digest.split(":", 1)[1]
    return any(reg.data_dir.rglob(f"blobs/sha256/{hex_[:2]}/{hex_}/data"))


# -- skopeo -----------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["oci", "v2s2"])
def test_skopeo_copy_multilayer_image_round_trips_every_blob(
    any_registry: RegistryProcess, skopeo: Skopeo, layout: OciLayout, tmp_path: Path, fmt: str
) -> None:
    """Push a 4-layer image (OCI, or converted to Docker v2s2), pull it back, re-hash everything."""
    image = layout.add_image("v1", MULTI_LAYER)
    remote = f"docker://{any_registry.host}/e2e/skopeo-{fmt}:v1"
    skopeo.copy(image.ref, remote, *(["--format", "v2s2"] if fmt == "v2s2" else []))

    served = get_manifest(any_registry, f"e2e/skopeo-{fmt}", "v1")
    assert served.status_code == 200, served.text
    manifest = served.json()
    expected_type = MT_DOCKER_MANIFEST if fmt == "v2s2" else MT_OCI_MANIFEST
    assert served.headers["content-type"] == expected_type
    assert manifest["mediaType"] == expected_type
    served_digest = f"sha256:{hashlib.sha256(served.content).hexdigest()}"
    assert served.headers["docker-content-digest"] == served_digest
    if fmt == "oci":
        assert served_digest == image.manifest.digest, "an OCI→OCI copy must keep the manifest bytes"
    else:
        assert {layer["mediaType"] for layer in manifest["layers"]} == {MT_DOCKER_LAYER}
        assert manifest["config"]["mediaType"] == MT_DOCKER_CONFIG
    # Conversion rewrites the manifest, never the blobs: the same layer and config digests.
    assert [layer["digest"] for layer in manifest["layers"]] == [b.digest for b in image.layers]
    assert manifest["config"]["digest"] == image.config.digest
    for blob in image.blobs:
        assert blob_stored_under_data_dir(any_registry, blob.digest), blob

    # Back to a dir: (the exact manifest bytes served) and to a fresh OCI layout.
    pulled_dir = tmp_path / "pulled-dir"
    skopeo.copy(remote, f"dir:{pulled_dir}")
    assert verify_dir(pulled_dir) == {b.digest for b in image.blobs}
    assert (pulled_dir / "manifest.json").read_bytes() == served.content
    pulled_oci = tmp_path / "pulled-oci"
    skopeo.copy(remote, f"oci:{pulled_oci}:v1")
    reachable = verify_layout(pulled_oci)
    # v2s2 → OCI layout converts the config to OCI's (new digest); layers are never rewritten.
    for blob in image.blobs if fmt == "oci" else image.layers:
        assert reachable.get(blob.digest) == blob.size, blob


def test_skopeo_copy_all_multi_arch_index(
    any_registry: RegistryProcess, skopeo: Skopeo, layout: OciLayout, tmp_path: Path
) -> None:
    """``skopeo copy --all`` of a 2-platform OCI index: index, both images, per-platform pulls."""
    index = layout.add_index("multi", platforms=(("linux", "amd64"), ("linux", "arm64")))
    remote = f"docker://{any_registry.host}/e2e/multiarch:1.0"
    skopeo.copy(index.ref, remote, "--all")

    served = get_manifest(any_registry, "e2e/multiarch", "1.0")
    assert served.status_code == 200, served.text
    assert served.headers["content-type"] == MT_OCI_INDEX
    assert served.headers["docker-content-digest"] == index.index.digest
    doc = served.json()
    assert [(m["digest"], m["platform"]["architecture"]) for m in doc["manifests"]] == [
        (img.manifest.digest, arch) for img, arch in zip(index.images, ("amd64", "arm64"), strict=True)
    ]
    for img in index.images:  # each child manifest is addressable by digest in the repository
        child = head_manifest(any_registry, "e2e/multiarch", img.manifest.digest)
        assert child.status_code == 200
        assert child.headers["docker-content-digest"] == img.manifest.digest

    pulled = tmp_path / "pulled"
    skopeo.copy(remote, f"oci:{pulled}:1.0", "--all")
    reachable = verify_layout(pulled)
    for img in index.images:
        for blob in (img.manifest, *img.blobs):
            assert reachable.get(blob.digest) == blob.size, blob

    # A client picking one platform gets that platform's manifest and nothing else.
    arm = tmp_path / "arm64"
    skopeo.copy(remote, f"dir:{arm}", "--override-arch", "arm64", "--override-os", "linux")
    assert verify_dir(arm) == {b.digest for b in index.images[1].blobs}


def test_skopeo_delete_manifest_then_it_is_gone(
    any_registry: RegistryProcess, skopeo: Skopeo, layout: OciLayout
) -> None:
    """``skopeo delete`` removes the manifest: by digest and by its tag, GET answers MANIFEST_UNKNOWN."""
    image = layout.add_image("v1", (64 * 1024,))
    keep = layout.add_image("keep", (64 * 1024,))
    remote = f"docker://{any_registry.host}/e2e/delete-manifest"
    skopeo.copy(image.ref, f"{remote}:v1")
    skopeo.copy(keep.ref, f"{remote}:keep")
    assert head_manifest(any_registry, "e2e/delete-manifest", image.manifest.digest).status_code == 200

    skopeo.delete(f"{remote}:v1")

    assert_manifest_unknown(get_manifest(any_registry, "e2e/delete-manifest", image.manifest.digest))
    assert_manifest_unknown(get_manifest(any_registry, "e2e/delete-manifest", "v1"))
    assert head_manifest(any_registry, "e2e/delete-manifest", image.manifest.digest).status_code == 404
    assert tags_of(any_registry, "e2e/delete-manifest") == ["keep"]
    # The other image of the repository is untouched.
    assert get_manifest(any_registry, "e2e/delete-manifest", "keep").headers["docker-content-digest"] == (
        keep.manifest.digest
    )


def test_delete_tag_keeps_the_manifest_and_other_tags(
    registry: RegistryProcess, skopeo: Skopeo, layout: OciLayout
) -> None:
    """``DELETE /v2/<name>/manifests/<tag>`` (OCI 1.1) removes only that tag.

    Moorage only: Distribution 2.8 refuses to delete by tag (400 DIGEST_INVALID).
    """
    image = layout.add_image("v1", (64 * 1024,))
    remote = f"docker://{registry.host}/e2e/delete-tag"
    skopeo.copy(image.ref, f"{remote}:old")
    skopeo.copy(image.ref, f"{remote}:current")

    with http(registry) as c:
        deleted = c.delete("/v2/e2e/delete-tag/manifests/old")
    assert deleted.status_code == 202, deleted.text

    assert_manifest_unknown(get_manifest(registry, "e2e/delete-tag", "old"))
    assert tags_of(registry, "e2e/delete-tag") == ["current"]
    by_digest = get_manifest(registry, "e2e/delete-tag", image.manifest.digest)
    assert by_digest.status_code == 200
    assert hashlib.sha256(by_digest.content).hexdigest() == image.manifest.digest[7:]
    assert get_manifest(registry, "e2e/delete-tag", "current").status_code == 200


# -- podman and buildah -----------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["oci", "v2s2"])
def test_podman_push_and_pull(
    any_registry: RegistryProcess, containers_tools: ContainersTools, layout: OciLayout, fmt: str
) -> None:
    """podman loads an OCI layout, pushes it (OCI or Docker v2s2), forgets it, pulls it back intact."""
    image = layout.add_image("v1", (MIB, MIB // 4, 2 * MIB))
    podman = containers_tools.podman
    loaded = podman("pull", "-q", image.ref).stdout.strip()
    name = f"{any_registry.host}/e2e/podman-{fmt}:v1"
    podman("tag", loaded, name)
    podman("push", "--format", fmt, name)
    podman("rmi", "--all", "--force")
    assert podman("images", "-q").stdout.strip() == ""

    podman("pull", "-q", name)
    pushed = head_manifest(any_registry, f"e2e/podman-{fmt}", "v1")
    assert pushed.status_code == 200
    assert pushed.headers["content-type"] == (MT_DOCKER_MANIFEST if fmt == "v2s2" else MT_OCI_MANIFEST)
    digest = podman("image", "inspect", "--format", "{{.Digest}}", name).stdout.strip()
    assert digest == pushed.headers["docker-content-digest"]
    labels = json.loads(podman("image", "inspect", "--format", "{{json .Labels}}", name).stdout)
    assert labels == {"org.moorage.test": "v1"}
    # Every file of every layer, as mounted from what was pulled, hashes like the original.
    containers_tools.assert_files_match(name, image.files)


def test_buildah_build_commit_push(
    any_registry: RegistryProcess, containers_tools: ContainersTools, skopeo: Skopeo, tmp_path: Path
) -> None:
    """buildah builds from scratch, commits and pushes; skopeo pulls it back and the file is there."""
    payload = tmp_path / "payload.txt"
    payload.write_bytes(hashlib.sha256(tmp_path.name.encode()).hexdigest().encode() * 1000)
    buildah = containers_tools.buildah
    container = buildah("from", "scratch").stdout.strip()
    buildah("copy", container, str(payload), "/app/payload.txt")
    buildah("config", "--cmd", "/app/payload.txt", "--label", "built-by=buildah", container)
    name = f"{any_registry.host}/e2e/buildah:v1"
    buildah("commit", "--format", "oci", container, name)
    buildah("push", name, f"docker://{name}")

    served = get_manifest(any_registry, "e2e/buildah", "v1")
    assert served.status_code == 200, served.text
    manifest = served.json()
    assert manifest["mediaType"] == MT_OCI_MANIFEST
    pulled = tmp_path / "pulled"
    skopeo.copy(f"docker://{name}", f"dir:{pulled}")
    assert verify_dir(pulled) == {
        manifest["config"]["digest"],
        *(layer["digest"] for layer in manifest["layers"]),
    }
    config = json.loads((pulled / manifest["config"]["digest"][7:]).read_bytes())
    assert config["config"]["Labels"]["built-by"] == "buildah"
    (layer,) = manifest["layers"]
    with tarfile.open(pulled / layer["digest"][7:]) as tar:
        member = tar.extractfile("app/payload.txt")
        assert member is not None
        assert member.read() == payload.read_bytes()


# -- OCI artifacts: oras SDK, referrers, Helm ----------------------------------------------------
def _put_explicit_artifact(
    reg: RegistryProcess, repo: str, subject: dict[str, Any], artifact_type: str
) -> str:
    """Push an artifact manifest with an explicit ``artifactType`` and the empty config (raw HTTP).

    The oras SDK cannot set ``artifactType``; this is the OCI 1.1 "guidance for artifacts" shape.
    """
    empty = b"{}"
    empty_digest = f"sha256:{hashlib.sha256(empty).hexdigest()}"
    doc = {
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": MT_OCI_EMPTY, "digest": empty_digest, "size": 2},
        "layers": [{"mediaType": MT_OCI_EMPTY, "digest": empty_digest, "size": 2}],
        "subject": subject,
        "annotations": {"org.example.kind": "signature"},
    }
    body = json.dumps(doc).encode()
    with http(reg) as c:
        r = c.post(
            f"/v2/{repo}/blobs/uploads/",
            params={"digest": empty_digest},
            content=empty,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 201, r.text
        r = c.put(
            f"/v2/{repo}/manifests/sha256:{hashlib.sha256(body).hexdigest()}",
            content=body,
            headers={"Content-Type": MT_OCI_MANIFEST},
        )
        assert r.status_code == 201, r.text
        assert r.headers.get("oci-subject") == subject["digest"]
    return f"sha256:{hashlib.sha256(body).hexdigest()}"


def test_oras_artifacts_with_subject_are_listed_by_referrers(
    registry: RegistryProcess, skopeo: Skopeo, layout: OciLayout, tmp_path: Path
) -> None:
    """Artifacts pushed with a ``subject`` (oras SDK) are found through the referrers API.

    Moorage only: Distribution 2.8 predates OCI 1.1 (no ``subject``, no referrers API).
    """
    repo = "e2e/artifacts"
    image = layout.add_image("v1", (64 * 1024,))
    skopeo.copy(image.ref, f"docker://{registry.host}/{repo}:v1")
    subject = oras.oci.Subject(MT_OCI_MANIFEST, image.manifest.digest, image.manifest.size)

    sbom = tmp_path / "sbom.spdx.json"
    sbom.write_text(json.dumps({"spdxVersion": "SPDX-2.3", "name": tmp_path.name}))
    config = tmp_path / "config.json"
    config.write_text("{}")
    client = oras_registry(registry.host)
    response = client.push(
        target=f"{registry.host}/{repo}:sbom",
        files=[f"{sbom}:application/spdx+json"],
        manifest_config=f"{config}:application/vnd.example.sbom.v1+json",
        manifest_annotations={"org.example.kind": "sbom"},
        subject=subject,
        disable_path_validation=True,
        quiet=True,
    )
    assert response.status_code == 201, response.text
    assert response.headers.get("OCI-Subject") == image.manifest.digest
    sbom_digest = response.headers["Docker-Content-Digest"]
    signature_digest = _put_explicit_artifact(
        registry, repo, dataclasses.asdict(subject), "application/vnd.example.sig.v1"
    )

    with http(registry) as c:
        listed = c.get(f"/v2/{repo}/referrers/{image.manifest.digest}")
        filtered = c.get(
            f"/v2/{repo}/referrers/{image.manifest.digest}",
            params={"artifactType": "application/vnd.example.sbom.v1+json"},
        )
        none = c.get(f"/v2/{repo}/referrers/sha256:{'0' * 64}")
    assert listed.status_code == 200, listed.text
    assert listed.headers["content-type"].startswith(MT_OCI_INDEX)
    index = listed.json()
    assert index["mediaType"] == MT_OCI_INDEX
    by_digest = {m["digest"]: m for m in index["manifests"]}
    assert set(by_digest) == {sbom_digest, signature_digest}
    # artifactType falls back to the config media type when the manifest has none (spec 1.1).
    assert by_digest[sbom_digest]["artifactType"] == "application/vnd.example.sbom.v1+json"
    assert by_digest[sbom_digest]["annotations"]["org.example.kind"] == "sbom"
    assert by_digest[signature_digest]["artifactType"] == "application/vnd.example.sig.v1"
    assert all(m["mediaType"] == MT_OCI_MANIFEST for m in index["manifests"])

    assert filtered.status_code == 200, filtered.text
    assert [m["digest"] for m in filtered.json()["manifests"]] == [sbom_digest]
    assert "artifactType" in filtered.headers.get("oci-filters-applied", "")

    assert none.status_code == 200, none.text  # a valid digest with no referrers: empty index
    assert none.json()["manifests"] == []

    # And the artifact itself pulls back byte for byte.
    out = tmp_path / "out"
    (pulled,) = client.pull(target=f"{registry.host}/{repo}:sbom", outdir=str(out))
    assert Path(pulled).read_bytes() == sbom.read_bytes()


def _helm_chart(tmp_path: Path, name: str, version: str) -> Path:
    """A minimal Helm v3 chart packaged as ``helm package`` would (``<name>/Chart.yaml`` …)."""
    files = {
        f"{name}/Chart.yaml": f"apiVersion: v2\nname: {name}\nversion: {version}\ntype: application\n",
        f"{name}/values.yaml": "replicaCount: 1\n",
        f"{name}/templates/configmap.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n",
    }
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    chart = tmp_path / f"{name}-{version}.tgz"
    chart.write_bytes(buf.getvalue())
    return chart


def test_helm_chart_as_oci_artifact(any_registry: RegistryProcess, tmp_path: Path) -> None:
    """A Helm chart with Helm's media types, pushed and pulled as Helm 3.8+ does over OCI."""
    chart = _helm_chart(tmp_path, "moorage-demo", "0.1.0")
    config = tmp_path / "chart-config.json"
    config.write_text(json.dumps({"name": "moorage-demo", "version": "0.1.0", "apiVersion": "v2"}))
    client = oras_registry(any_registry.host)
    target = f"{any_registry.host}/e2e/charts/moorage-demo:0.1.0"
    response = client.push(
        target=target,
        files=[f"{chart}:{MT_HELM_CHART}"],
        manifest_config=f"{config}:{MT_HELM_CONFIG}",
        disable_path_validation=True,
        quiet=True,
    )
    assert response.status_code == 201, response.text

    served = get_manifest(any_registry, "e2e/charts/moorage-demo", "0.1.0")
    assert served.status_code == 200, served.text
    manifest = served.json()
    assert manifest["config"]["mediaType"] == MT_HELM_CONFIG
    assert [layer["mediaType"] for layer in manifest["layers"]] == [MT_HELM_CHART]
    assert manifest["layers"][0]["digest"] == sha256_file(chart)

    out = tmp_path / "out"
    (pulled,) = client.pull(target=target, outdir=str(out), allowed_media_type=[MT_OCI_MANIFEST])
    assert sha256_file(Path(pulled)) == sha256_file(chart)
    with http(any_registry) as c:
        cfg = c.get(f"/v2/e2e/charts/moorage-demo/blobs/{manifest['config']['digest']}")
    assert cfg.status_code == 200
    assert cfg.content == config.read_bytes()
