"""Bounded fuzzing of the whole ``/v2`` surface: no answer is a 5xx and nothing logs a traceback.

Hypothesis drives the in-process app on its own SQLite database with requests that mix valid and
hostile parts: repository names, references and digests (control characters, unicode, look-alikes),
manifests (templates over blobs that really are in the repository, with mutated sizes, digests,
media types, duplicate keys, deep nesting, broken JSON), headers (Content-Type, Accept, Range,
Content-Range, Authorization) and query parameters (n, last, digest, mount/from, artifactType).
Every error must be the spec's JSON envelope. Bounded by ``max_examples`` and a per-example
deadline, so it stays well under a minute on CI's two cores.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, MutableMapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moorage.app import create_app
from moorage.db.migrate import upgrade
from moorage.services import Services
from tests.integration.conftest import make_settings
from tests.integration.oci_client import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, descriptor, push_blob

REPOSITORY = "fuzz/app"
CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}).encode()
LAYER = b"fuzz layer bytes" * 64
EMPTY = b"{}"
#: Stands for "the Location of a freshly started upload" among the generated paths.
RESUME_UPLOAD = "<a started upload>"
MEDIA_TYPES = [
    OCI_MANIFEST,
    OCI_INDEX,
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/json",
    "text/plain",
    "",
]


@dataclass
class Fuzzed:
    client: httpx.AsyncClient
    manifest: bytes
    manifest_digest: str
    log: list[MutableMapping[str, Any]]


@pytest.fixture
async def fuzzed(tmp_path: Path) -> AsyncIterator[Fuzzed]:
    url = f"sqlite:///{tmp_path / 'fuzz.db'}"
    upgrade(url)
    app_settings = make_settings(url, tmp_path)
    services = Services.from_settings(app_settings)
    transport = httpx.ASGITransport(app=create_app(app_settings, services))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as client:
            for blob in (CONFIG, LAYER, EMPTY):
                await push_blob(client, REPOSITORY, blob)
            manifest = _image(descriptor(OCI_CONFIG, CONFIG), [descriptor(OCI_LAYER, LAYER)])
            pushed = await client.put(
                f"/v2/{REPOSITORY}/manifests/latest", content=manifest, headers={"Content-Type": OCI_MANIFEST}
            )
            assert pushed.status_code == 201, pushed.text
            with structlog.testing.capture_logs() as log:
                yield Fuzzed(client, manifest, pushed.headers["docker-content-digest"], log)
    finally:
        await services.aclose()


def _image(config: Any, layers: Any, **extra: Any) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers, **extra}).encode()


# --- strategies ------------------------------------------------------------------------------


def _mostly(common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``common`` three times in four: most requests get past validation into the handlers."""
    return st.integers(0, 3).flatmap(lambda pick: rare if pick == 0 else common)


_hostile_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]) | st.sampled_from("/:@.%_-\n\r\t\x00"),
    max_size=40,
)
_hex = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
_known_digests = st.sampled_from([descriptor("", blob)["digest"] for blob in (CONFIG, LAYER, EMPTY)])
_digests = _mostly(
    _known_digests | _hex.map(lambda h: f"sha256:{h}"),
    st.sampled_from(["sha256:", "sha512:" + "a" * 128, "md5:" + "a" * 32, "sha256:ABC"]) | _hostile_text,
)
_valid_tags = st.from_regex(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,20}", fullmatch=True)
_names = _mostly(
    st.sampled_from([REPOSITORY, "fuzz/other"]),
    st.sampled_from(["a/b/c", "A", "a//b", "a/", "-a", "a" * 256, "_catalog"]) | _hostile_text,
)
_references = _mostly(
    _valid_tags,
    _digests | st.sampled_from(["-bad", ".x", "a" * 129, "latest\n", "la test"]) | _hostile_text,
)
_sizes = st.one_of(
    st.sampled_from([len(CONFIG), len(LAYER), 0, 1, -1, 2**63 - 1, 2**63, 2**70]),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
    st.none(),
)
_json_leaf = st.none() | st.booleans() | st.integers() | st.text(max_size=12)
_json = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=15,
)
_pristine = st.sampled_from([descriptor(OCI_CONFIG, CONFIG), descriptor(OCI_LAYER, LAYER), descriptor(OCI_CONFIG, EMPTY)])


@st.composite
def _mutated_descriptors(draw: st.DrawFn) -> Any:
    blob = draw(st.sampled_from([CONFIG, LAYER, EMPTY, b"never pushed"]))
    value: dict[str, Any] = descriptor(draw(st.sampled_from([OCI_LAYER, OCI_CONFIG, OCI_MANIFEST, "", "x/y"])), blob)
    if draw(st.booleans()):
        value["size"] = draw(_sizes)
    if draw(st.integers(0, 5)) == 0:
        value["digest"] = draw(_digests)
    if draw(st.integers(0, 5)) == 0:
        value["urls"] = draw(_json)
    if draw(st.integers(0, 5)) == 0:
        value["annotations"] = draw(_json)
    return value if draw(st.integers(0, 9)) else draw(_json)


_descriptors = _mostly(_pristine, _mutated_descriptors())
_media_types = _mostly(st.just(OCI_MANIFEST), st.sampled_from(MEDIA_TYPES))


@st.composite
def _images(draw: st.DrawFn) -> bytes:
    extra: dict[str, Any] = {}
    if draw(st.booleans()):
        extra["subject"] = draw(_mostly(st.just(descriptor(OCI_MANIFEST, b"a subject")), _descriptors))
    if draw(st.booleans()):
        extra["artifactType"] = draw(_mostly(st.text(max_size=20), _json))
    if draw(st.booleans()):
        extra["annotations"] = draw(st.dictionaries(st.text(max_size=8), _mostly(st.text(max_size=8), _json), max_size=3))
    payload = _image(draw(_descriptors), draw(st.lists(_descriptors, max_size=3)), **extra)
    return payload.replace(b'"mediaType": "' + OCI_MANIFEST.encode(), b'"mediaType": "' + draw(_media_types).encode(), 1)


@st.composite
def _broken(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.binary(max_size=200))
    if kind == 1:
        return json.dumps(draw(_json)).encode()
    if kind == 2:
        depth = draw(st.integers(1, 5000))
        return b"[" * depth + b"]" * draw(st.integers(0, depth))
    if kind == 3:
        children = draw(st.lists(_descriptors, max_size=3))
        return json.dumps({"schemaVersion": 2, "mediaType": draw(_media_types), "manifests": children}).encode()
    payload = draw(_images())
    if kind == 4:  # a key twice
        return payload.replace(b'"size": ', b'"size": 1, "size": ', 1)
    return payload[: draw(st.integers(0, len(payload)))]  # cut anywhere


_manifests = _mostly(_images(), _broken())
_header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)


@st.composite
def _pushes(draw: st.DrawFn) -> tuple[str, str, dict[str, str], dict[str, str], bytes]:
    """A push that mostly succeeds, so stored manifests (and their referrers) get read back."""
    path = f"/v2/{REPOSITORY}/manifests/{draw(_valid_tags)}"
    return "PUT", path, {"Content-Type": OCI_MANIFEST}, {}, draw(_images())


@st.composite
def _requests(draw: st.DrawFn) -> tuple[str, str, dict[str, str], dict[str, str], bytes]:
    name = quote(draw(_names), safe="/:@")
    reference = quote(draw(_references), safe=":@")
    digest = quote(draw(_digests), safe=":")
    manifest = f"/v2/{name}/manifests/{reference}"
    others = [
        "/v2/",
        "/v2",
        "/v2/_catalog",
        f"/v2/{name}/tags/list",
        f"/v2/{name}/blobs/{digest}",
        f"/v2/{name}/blobs/uploads/",
        f"/v2/{name}/blobs/uploads/{reference}",
        RESUME_UPLOAD,
        f"/v2/{name}/referrers/{digest}",
        f"/v2/{name}",
        f"/v2/{name}/{reference}/{digest}",
    ]
    path = draw(st.integers(0, 1).flatmap(lambda pick: st.just(manifest) if pick else st.sampled_from(others)))
    methods = ["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"]
    method = draw(_mostly(st.sampled_from(["PUT", "GET"]), st.sampled_from(methods)))
    headers: dict[str, str] = {}
    if draw(st.integers(0, 3)):
        headers["Content-Type"] = draw(_mostly(st.just(OCI_MANIFEST), st.sampled_from(MEDIA_TYPES) | _header_text))
    if draw(st.integers(0, 3)) == 0:
        headers["Accept"] = draw(st.sampled_from([*MEDIA_TYPES, "*/*"]) | _header_text)
    if draw(st.integers(0, 3)) == 0:
        headers["Range"] = draw(st.sampled_from(["bytes=0-0", "bytes=-5", "bytes=5-", "bytes=1_0-2_0"]) | _header_text)
    if draw(st.integers(0, 3)) == 0:
        headers["Content-Range"] = draw(st.sampled_from(["0-0", "0-99999999999999999999", "5-1"]) | _header_text)
    if draw(st.integers(0, 5)) == 0:
        headers["Authorization"] = draw(st.sampled_from(["Basic !!", "Bearer x.y.z", "Basic YTpi"]) | _header_text)
    query = draw(
        st.dictionaries(
            st.sampled_from(["n", "last", "digest", "mount", "from", "artifactType"]),
            st.sampled_from(["1", "0", "²", "1_0", "-1", "99999999999999999999999", REPOSITORY, "a\x00", "a/b"])
            | _digests,
            max_size=3,
        )
    )
    body = draw(_manifests) if method in ("PUT", "PATCH", "POST") else b""
    return method, path, headers, query, body


# --- the test ----------------------------------------------------------------------------------


@settings(
    max_examples=400,
    deadline=timedelta(seconds=10),  # only a hang fails; the machine may be slow, the app is not
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(call=_mostly(_requests(), _pushes()), follow_up=st.booleans())
async def test_no_request_to_v2_is_a_server_error(
    fuzzed: Fuzzed,
    caplog: pytest.LogCaptureFixture,
    call: tuple[str, str, dict[str, str], dict[str, str], bytes],
    follow_up: bool,
) -> None:
    method, path, headers, query, body = call
    if path == RESUME_UPLOAD:  # a real upload session, so chunks and digests reach the upload code
        started = await fuzzed.client.post(f"/v2/{REPOSITORY}/blobs/uploads/")
        assert started.status_code == 202, started.text
        path = started.headers["location"].removeprefix("http://registry.test")
    response = await fuzzed.client.request(method, path, headers=headers, params=query, content=body)
    assert response.status_code < 500, (method, path, headers, query, body[:300], response.text)
    if response.status_code >= 400 and method != "HEAD":
        assert response.headers["content-type"] == "application/json", response.text
        errors = response.json()["errors"]
        assert errors and all(error["code"] and error["message"] for error in errors), response.text
    if follow_up:  # whatever the request did, the image pushed at the start still pulls whole
        latest = await fuzzed.client.get(f"/v2/{REPOSITORY}/manifests/{fuzzed.manifest_digest}")
        assert latest.status_code == 200 and latest.content == fuzzed.manifest
    if response.status_code == 201 and "/manifests/" in path:  # read back what was stored
        pulled = await fuzzed.client.get(path, headers={"Accept": "*/*"})
        assert pulled.status_code == 200 and pulled.content == body, pulled.text
        subject = json.loads(body).get("subject")
        if subject is not None:
            listed = await fuzzed.client.get(f"/v2/{REPOSITORY}/referrers/{subject['digest']}")
            assert listed.status_code == 200, listed.text
            mine = [m for m in listed.json()["manifests"] if m["digest"] == response.headers["docker-content-digest"]]
            assert len(mine) == 1 and mine[0]["artifactType"], listed.text
            filtered = await fuzzed.client.get(
                f"/v2/{REPOSITORY}/referrers/{subject['digest']}", params={"artifactType": mine[0]["artifactType"]}
            )
            assert mine[0] in filtered.json()["manifests"], filtered.text
    failures = [entry for entry in fuzzed.log if entry["log_level"] in ("error", "critical", "exception")]
    assert failures == [], failures
    # uvicorn, Starlette and SQLAlchemy log through the standard library: nothing there either.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] == []

