"""What an artifact is made of, for the UI's artifact page (Harbor's ``additions`` and ``accessories`` paths).

* ``GET …/artifacts/{reference}/additions/layers`` (a Moorage addition): the layers of an image
  manifest with media type, digest and size, in order; an index has none (its children are the
  artifact's ``references``).
* ``GET …/artifacts/{reference}/additions/platforms`` (a Moorage addition): the manifests an
  index lists, with digest, media type, size and ``platform`` (``os``, ``architecture``,
  ``variant``); empty for a single image.
* ``GET …/artifacts/{reference}/additions/build_history`` (Harbor's): the ``history`` of the
  image configuration (``created``, ``created_by``, ``empty_layer``, ``comment``).
* ``GET …/artifacts/{reference}/accessories`` (Harbor's shape): the artifacts whose ``subject``
  is this one (OCI referrers: signatures, SBOMs, attestations), ``type`` being their
  ``artifactType``.

Each needs pull on the repository (the same check as the artifact itself).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from moorage.api.rest.artifacts import _access
from moorage.api.rest.common import ApiError, Caller, CallerDep, Page, PageDep, paginate
from moorage.api.rest.deps import BlobsDep, ManifestsDep
from moorage.errors import RegistryError
from moorage.registry.digests import parse_digest
from moorage.registry.interfaces import Blobs, Manifests
from moorage.registry.manifest_store import StoredManifest, parse_reference

router = APIRouter(tags=["artifact"])

#: An image configuration larger than this is not read for its history (real ones are a few KiB).
CONFIG_MAX = 4 * 1024 * 1024
_BASE = "/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}"


class Layer(BaseModel):
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] | None = None


class Platform(BaseModel):
    digest: str
    media_type: str
    size: int
    os: str | None = None
    architecture: str | None = None
    variant: str | None = None


class BuildHistoryEntry(BaseModel):
    created: str | None = None
    created_by: str | None = None
    empty_layer: bool = False
    comment: str | None = None


class Accessory(BaseModel):
    """Harbor's ``Accessory``; ``type`` is the referrer's ``artifactType`` (or its media type)."""

    id: int = 0
    artifact_id: int = 0
    subject_artifact_id: int = 0
    subject_artifact_digest: str
    subject_artifact_repo: str
    size: int
    digest: str
    type: str
    media_type: str
    creation_time: datetime | None = None
    annotations: dict[str, str] | None = None


async def _manifest(who: Caller, manifests: Manifests, project_name: str, repository_name: str,
                    reference: str) -> tuple[str, StoredManifest]:
    _, full = await _access(who, project_name, repository_name, "pull")
    try:
        return full, await manifests.get(full, parse_reference(reference))
    except RegistryError as exc:
        raise ApiError(404 if exc.status == 404 else 400, exc.message) from None


def _document(manifest: StoredManifest) -> dict[str, Any]:
    try:
        document = json.loads(manifest.payload)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def layers_of(manifest: StoredManifest) -> list[Layer]:
    """The layers of an image manifest in order (shared with :mod:`moorage.api.rest.browse`)."""
    document = _document(manifest)
    out = []
    for item in document.get("layers") or []:
        if isinstance(item, dict) and isinstance(item.get("digest"), str):
            annotations = item.get("annotations")
            out.append(Layer(media_type=str(item.get("mediaType", "")), digest=item["digest"],
                             size=int(item.get("size") or 0),
                             annotations=annotations if isinstance(annotations, dict) else None))
    return out


@router.get(_BASE + "/additions/layers", response_model=list[Layer])
async def layers(project_name: str, repository_name: str, reference: str, who: CallerDep,
                 manifests: ManifestsDep) -> list[Layer]:
    """The image's layers in order (empty for an index or an artifact without layers)."""
    _, manifest = await _manifest(who, manifests, project_name, repository_name, reference)
    return layers_of(manifest)


@router.get(_BASE + "/additions/platforms", response_model=list[Platform])
async def platforms(project_name: str, repository_name: str, reference: str, who: CallerDep,
                    manifests: ManifestsDep) -> list[Platform]:
    """The manifests of an index with their platforms, in the index's order (empty for an image)."""
    _, manifest = await _manifest(who, manifests, project_name, repository_name, reference)
    return platforms_of(manifest)


def platforms_of(manifest: StoredManifest) -> list[Platform]:
    """The platforms of an index's manifests (shared with :mod:`moorage.api.rest.browse`)."""
    out = []
    for item in _document(manifest).get("manifests") or []:
        if not isinstance(item, dict) or not isinstance(item.get("digest"), str):
            continue
        found = item.get("platform")
        platform: dict[str, Any] = found if isinstance(found, dict) else {}
        out.append(Platform(
            digest=item["digest"], media_type=str(item.get("mediaType", "")), size=int(item.get("size") or 0),
            os=_text(platform.get("os")), architecture=_text(platform.get("architecture")),
            variant=_text(platform.get("variant")),
        ))
    return out


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@router.get(_BASE + "/additions/build_history", response_model=list[BuildHistoryEntry])
async def build_history(project_name: str, repository_name: str, reference: str, who: CallerDep,
                        manifests: ManifestsDep, blobs: BlobsDep) -> list[BuildHistoryEntry]:
    """The ``history`` of the image configuration; 404 for an artifact without an image config."""
    full, manifest = await _manifest(who, manifests, project_name, repository_name, reference)
    return await history_of(full, reference, manifest, blobs)


async def history_of(full: str, reference: str, manifest: StoredManifest, blobs: Blobs) -> list[BuildHistoryEntry]:
    """The image configuration's ``history`` (shared with :mod:`moorage.api.rest.browse`)."""
    config = _document(manifest).get("config")
    if not isinstance(config, dict) or not isinstance(config.get("digest"), str):
        raise ApiError(404, f"{reference!r} in {full!r} has no image configuration (an index has none: open a platform)")
    size = int(config.get("size") or 0)
    if size > CONFIG_MAX:
        raise ApiError(404, f"the configuration of {reference!r} is {size} bytes, too large to show its history")
    try:
        digest = parse_digest(config["digest"])
        size = await blobs.size(full, digest)
        stream = await blobs.open(digest, None, size)
        raw = b"".join([chunk async for chunk in stream])
    except RegistryError as exc:
        raise ApiError(404, exc.message) from None
    try:
        history = json.loads(raw).get("history") or []
    except (ValueError, AttributeError):
        history = []
    # The configuration is the pusher's JSON, never validated: keep only fields of the right type.
    return [
        BuildHistoryEntry(created=_text(entry.get("created")), created_by=_text(entry.get("created_by")),
                          empty_layer=entry.get("empty_layer") is True, comment=_text(entry.get("comment")))
        for entry in history if isinstance(entry, dict)
    ] if isinstance(history, list) else []


@router.get(_BASE + "/accessories", response_model=list[Accessory])
async def accessories(request: Request, response: Response, project_name: str, repository_name: str,
                      reference: str, who: CallerDep, page: PageDep, manifests: ManifestsDep) -> list[Accessory]:
    """Artifacts that refer to this one (OCI ``subject``), oldest first."""
    full, manifest = await _manifest(who, manifests, project_name, repository_name, reference)
    return await accessories_of(request, response, page, full, manifest, manifests)


async def accessories_of(request: Request, response: Response, page: Page, full: str, manifest: StoredManifest,
                         manifests: Manifests) -> list[Accessory]:
    """The referrers of ``manifest``, one page (shared with :mod:`moorage.api.rest.browse`)."""
    index = await manifests.referrers(full, parse_digest(manifest.digest), None)
    found = index.get("manifests", [])
    paginate(request, response, page, len(found))
    return [
        Accessory(subject_artifact_digest=manifest.digest, subject_artifact_repo=full, size=int(item["size"]),
                  digest=item["digest"], type=item.get("artifactType") or item["mediaType"],
                  media_type=item["mediaType"], annotations=item.get("annotations"))
        for item in found[page.offset: page.offset + page.page_size]
    ]
