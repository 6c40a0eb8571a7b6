"""The ``/v2/`` routes of the OCI Distribution API.

Repository names contain slashes, so routing is one ordered table of anchored regular
expressions rather than path converters; each handler translates HTTP into one domain
call and the result back into HTTP.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

import structlog
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse

from moorage.api.files import FileSliceResponse
from moorage.api.http import UrlBuilder, error_response, new_request_id, unexpected_error
from moorage.auth.access import AccessController, AccessRequest, Principal
from moorage.auth.audit import auth_method
from moorage.auth.clients import client_of
from moorage.errors import RegistryError
from moorage.events import ArtifactEvent, ArtifactEvents, Operation
from moorage.metrics import ROUTE_SCOPE_KEY
from moorage.numbers import parse_decimal
from moorage.proxy import ProxyCache
from moorage.proxy.service import ProxyTarget
from moorage.registry.blobs import parse_range
from moorage.registry.digests import Digest, parse_digest
from moorage.registry.interfaces import Blobs, Manifests
from moorage.registry.manifest_store import lookup_reference, parse_reference
from moorage.registry.names import validate_name
from moorage.registry.pull_times import PullTimes
from moorage.registry.quota import QuotaExceeded
from moorage.registry.uploads import UploadService
from moorage.storage import StorageError

__all__ = ["OciApi"]

log = structlog.get_logger("moorage.oci")

API_VERSION = {"Docker-Distribution-API-Version": "registry/2.0"}
Handler = Callable[[Request, dict[str, str]], Awaitable[Response]]
#: Audit hook: (principal, operation pull|push|delete, repository, reference, client address,
#: resource type artifact|blob, how the caller authenticated: basic|robot|token|anonymous).
EventHook = Callable[[Principal, str, str, str, str, str, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Route:
    pattern: re.Pattern[str]
    methods: dict[str, str]  # HTTP method → handler attribute name
    template: str  # the metrics label: no repository names, so bounded cardinality


def _route(pattern: str, template: str, **methods: str) -> _Route:
    return _Route(re.compile(f"/v2/{pattern}"), methods, f"/v2/{template}")


_NAME = r"(?P<name>[^?#]+?)"
_ROUTES = (
    _route("", "", GET="base", HEAD="base"),
    _route("_catalog", "_catalog", GET="catalog"),
    _route(f"{_NAME}/tags/list", "{name}/tags/list", GET="tags"),
    _route(f"{_NAME}/manifests/(?P<reference>[^/]+)", "{name}/manifests/{reference}", GET="get_manifest",
           HEAD="get_manifest", PUT="put_manifest", DELETE="delete_manifest"),
    _route(f"{_NAME}/blobs/uploads/?", "{name}/blobs/uploads/", POST="start_upload"),
    _route(f"{_NAME}/blobs/uploads/(?P<upload>[^/]+)", "{name}/blobs/uploads/{uuid}", GET="upload_status",
           PATCH="patch_upload", PUT="finish_upload", DELETE="cancel_upload"),
    _route(f"{_NAME}/blobs/(?P<digest>[^/]+)", "{name}/blobs/{digest}", GET="get_blob", HEAD="get_blob",
           DELETE="delete_blob"),
    _route(f"{_NAME}/referrers/(?P<digest>[^/]+)", "{name}/referrers/{digest}", GET="referrers"),
)


def _content_range(header: str | None) -> tuple[int, int] | None:
    """``Content-Range: <start>-<end>`` of a chunk (Docker's form; ``bytes `` prefix and ``/total`` tolerated).

    Positions are ASCII digits only (:func:`parse_decimal`); raises ``RANGE_INVALID`` otherwise.
    """
    if not header:
        return None
    invalid = RegistryError(
        "RANGE_INVALID",
        f"Content-Range {header[:100]!r} is malformed; send '<start>-<end>' (ASCII digits) with end >= start",
    )
    value = header.strip(" \t")
    for prefix in ("bytes ", "bytes="):
        if value.startswith(prefix):
            value = value[len(prefix) :]
            break
    positions, slash, total = value.partition("/")
    first, _, last = positions.partition("-")
    try:
        if slash and total != "*":
            parse_decimal(total)
        start, end = parse_decimal(first), parse_decimal(last)
    except ValueError:
        raise invalid from None
    if end < start:
        raise invalid
    return start, end


def _content_length(request: Request) -> int | None:
    """The declared body length, ASCII digits only (``Content-Length = 1*DIGIT``); ``SIZE_INVALID`` otherwise."""
    value = request.headers.get("content-length")
    if value is None:
        return None
    try:
        return parse_decimal(value.strip(" \t"))
    except ValueError as error:
        raise RegistryError("SIZE_INVALID", f"Content-Length: {error}") from None


def _page_size(request: Request, page_max: int) -> int:
    """``n=`` of a listing, capped at ``page_max``; ``PAGINATION_NUMBER_INVALID`` unless ASCII digits."""
    raw = request.query_params.get("n")
    if raw is None:
        return page_max
    try:
        return min(parse_decimal(raw), page_max)
    except ValueError as error:
        raise RegistryError(
            "PAGINATION_NUMBER_INVALID", f"n must be a non-negative integer in ASCII digits: {error}"
        ) from None


class OciApi:
    """Handlers of the distribution API over the registry's domain services."""

    def __init__(
        self,
        *,
        blobs: Blobs,
        uploads: UploadService,
        manifests: Manifests,
        access: AccessController,
        urls: UrlBuilder,
        page_max: int,
        on_event: EventHook | None = None,
        events: ArtifactEvents | None = None,
        pulls: PullTimes | None = None,
        proxy: ProxyCache | None = None,
    ) -> None:
        self.on_event = on_event
        self.events = events
        #: Records each manifest GET's time behind the response (retention's pull rules, REST pull_time).
        self.pulls = pulls
        #: Pull-through reads of proxy projects and the ``ns=`` mirror mode (``None``: no proxy cache).
        self.proxy = proxy
        self.blobs = blobs
        self.uploads = uploads
        self.manifests = manifests
        self.access = access
        self.urls = urls
        self.page_max = page_max

    async def __call__(self, request: Request) -> Response:
        # The raw path: request.url.path goes through urlsplit, which silently drops "\n", "\r" and
        # "\t", so "/v2/p/app%0A/…" would act on "p/app" instead of being refused as NAME_INVALID.
        path = str(request.scope["path"])
        method = request.method
        params: dict[str, str] = {}
        try:
            for route in _ROUTES:
                match = route.pattern.fullmatch(path)
                if match is None:
                    continue
                request.scope[ROUTE_SCOPE_KEY] = route.template
                handler_name = route.methods.get(method)
                if handler_name is None:
                    raise RegistryError(
                        "UNSUPPORTED",
                        f"{method} is not allowed on {path}; allowed: {', '.join(route.methods)}",
                        headers={"Allow": ", ".join(route.methods)},
                    )
                params = match.groupdict()
                request.state.mirrored = False
                if "name" in params:
                    await self._mirror(request, params)
                    validate_name(params["name"])
                handler: Handler = getattr(self, handler_name)
                return await handler(request, params)
            raise RegistryError(
                "NAME_UNKNOWN" if path.startswith("/v2/") else "UNSUPPORTED",
                f"no registry endpoint at {path}; check the URL (see the OCI distribution spec)",
                status=404,
            )
        except RegistryError as error:
            if isinstance(error, QuotaExceeded) and "name" in params:
                await self._quota_refused(request, params, error)
            return error_response(error, method)
        except StorageError as error:
            log.error("storage_error", path=path, error=str(error), driver=error.driver)
            return error_response(
                RegistryError(
                    "UNAVAILABLE",
                    f"the storage backend failed: {error}; check it with 'moorage check' and the server log",
                ),
                method,
            )
        except ClientDisconnect:
            # The client hung up while sending a body: not a server fault, so one info line and
            # no traceback. A manifest body is read whole before anything is written, so nothing
            # was stored; the response below is never delivered.
            log.info("client_disconnected", method=method, path=path)
            return Response(status_code=400, headers={"Content-Length": "0"})
        except Exception as error:  # every other failure still answers the spec's JSON envelope
            request_id = new_request_id()
            log.error("unhandled_error", request_id=request_id, method=method, path=path, exc_info=error)
            return error_response(unexpected_error(error, request_id), method)

    async def _mirror(self, request: Request, params: dict[str, str]) -> None:
        """Mirror mode: ``library/alpine`` asked of Moorage as a registry mirror is served from the proxy
        project of that upstream (``?ns=<upstream host>``, or ``proxy.default_mirror``)."""
        if self.proxy is None:
            return
        # request.query_params parses the query into a multi-dict: most requests have no query at all.
        namespace = request.query_params.get("ns") if request.scope.get("query_string") else None
        mirrored = await self.proxy.mirrored_name(params["name"], namespace)
        if mirrored is not None:
            params["name"] = mirrored
            request.state.mirrored = True

    async def _proxy_target(self, name: str, *, fresh: bool = False) -> ProxyTarget | None:
        return None if self.proxy is None else await self.proxy.target(name, fresh=fresh)

    async def _refuse_proxy_push(self, name: str) -> None:
        if self.proxy is not None:
            await self.proxy.refuse_push(name)

    def _ctx(self, request: Request) -> AccessRequest:
        """What the access controller sees of ``request``; kept on ``request.state`` (the audit hook's client)."""
        ctx = AccessRequest(
            headers=request.headers,
            external_base=lambda: self.urls.base(request),
            client=client_of(request, self.urls.settings.trusted_proxies),
            method=request.method,
        )
        request.state.access = ctx
        return ctx

    async def _allow(self, request: Request, name: str, *actions: str, mount_from: str | None = None) -> None:
        request.state.principal = await self.access.authorize(
            self._ctx(request), name, frozenset(actions), mount_from=mount_from,
            mirrored=bool(getattr(request.state, "mirrored", False)),
        )

    async def _event(self, request: Request, operation: Operation, name: str, reference: str,
                     resource_type: str = "artifact", digest: str | None = None) -> None:
        """After a pull, push or delete succeeded: the artifact event (webhooks, replication), then the audit hook."""
        if self.events is not None and resource_type == "artifact":
            principal_name = getattr(request.state, "principal", None)
            await self.events.publish(ArtifactEvent(
                operation, name, operator=getattr(principal_name, "name", None) or "anonymous",
                digest=digest or (reference if ":" in reference else None),
                tag=reference if ":" not in reference else None, host=self.urls.host(request),
            ))
        if self.on_event is not None:
            ctx: AccessRequest | None = getattr(request.state, "access", None)
            client = ctx.client if ctx is not None else client_of(request, self.urls.settings.trusted_proxies)
            principal: Principal = request.state.principal
            scheme = (request.headers.get("authorization") or "").strip().partition(" ")[0]
            await self.on_event(principal, operation, name, reference, client, resource_type,
                                auth_method(scheme, principal.kind))

    async def _quota_refused(self, request: Request, params: dict[str, str], error: QuotaExceeded) -> None:
        """A push the quota refused: the ``quota_exceeded`` event (Harbor's ``QUOTA_EXCEED`` webhook)."""
        if self.events is None:
            return
        reference = params.get("reference") or params.get("digest") or ""
        principal = getattr(request.state, "principal", None)
        await self.events.publish(ArtifactEvent(
            "quota_exceeded", params["name"], operator=getattr(principal, "name", None) or "anonymous",
            digest=reference if reference.startswith("sha") and ":" in reference else None,
            tag=reference if reference and ":" not in reference else None, host=self.urls.host(request),
            detail=error.message,
        ))

    # --- base and listings -------------------------------------------------------------

    async def base(self, request: Request, params: dict[str, str]) -> Response:
        await self.access.authenticate(self._ctx(request))
        return Response(b"{}", headers=API_VERSION, media_type="application/json")

    @staticmethod
    def _page(path: str, body: dict[str, object], key: str, items: list[str], limit: int) -> Response:
        """A listing page; one item beyond ``limit`` means there is a next page (``Link``)."""
        headers = dict(API_VERSION)
        if len(items) > limit:
            items = items[:limit]
            if items:  # n=0 asks for an empty page: there is no "last" to continue after
                headers["Link"] = f'<{path}?n={limit}&last={quote(items[-1])}>; rel="next"'
        return Response(json.dumps({**body, key: items}).encode(), headers=headers, media_type="application/json")

    async def catalog(self, request: Request, params: dict[str, str]) -> Response:
        limit = _page_size(request, self.page_max)
        visible = await self.access.catalog_visibility(self._ctx(request))
        names = await self.manifests.catalog(limit + 1, request.query_params.get("last"), visible)
        return self._page("/v2/_catalog", {}, "repositories", names, limit)

    async def tags(self, request: Request, params: dict[str, str]) -> Response:
        name = params["name"]
        await self._allow(request, name, "pull")
        limit = _page_size(request, self.page_max)
        names = await self.manifests.tags(name, limit + 1, request.query_params.get("last"))
        return self._page(f"/v2/{name}/tags/list", {"name": name}, "tags", names, limit)

    # --- manifests ---------------------------------------------------------------------

    async def get_manifest(self, request: Request, params: dict[str, str]) -> Response:
        name = params["name"]
        await self._allow(request, name, "pull")
        reference = lookup_reference(name, params["reference"])
        target = await self._proxy_target(name)
        warning = None
        if target is None:
            try:
                manifest = await self.manifests.get(name, reference)
            except RegistryError as error:
                # A proxy project made seconds ago elsewhere is not in this process's copy yet: ask once more.
                target = await self._proxy_target(name, fresh=True) if error.code == "MANIFEST_UNKNOWN" else None
                if target is None:
                    raise
        if target is not None and self.proxy is not None:
            proxied = await self.proxy.manifest(target, reference)
            manifest, warning = proxied.manifest, proxied.warning
        accept = ",".join(request.headers.getlist("accept"))
        accepted = {part.split(";")[0].strip() for part in accept.split(",") if part.strip()}
        if accepted and manifest.media_type not in accepted and not accepted & {"*/*", "application/*"}:
            raise RegistryError(
                "MANIFEST_UNKNOWN",
                f"manifest {params['reference']} is a {manifest.media_type}, which this client does not "
                f"accept (Accept: {accept}); upgrade the client or request that media type",
                {"mediaType": manifest.media_type},
                status=404,
            )
        headers = {
            **API_VERSION,
            "Docker-Content-Digest": manifest.digest,
            "ETag": f'"{manifest.digest}"',
            "Content-Length": str(manifest.size),
        }
        if warning is not None:  # served from the proxy cache without the upstream's confirmation
            headers["Warning"] = warning
        body = b"" if request.method == "HEAD" else manifest.payload
        if request.method == "GET":
            if self.pulls is not None:
                await self.pulls.record(name, manifest.digest)
            await self._event(request, "pull", name, params["reference"], digest=manifest.digest)
        return Response(body, headers=headers, media_type=manifest.media_type)

    async def put_manifest(self, request: Request, params: dict[str, str]) -> Response:
        name = params["name"]
        await self._allow(request, name, "pull", "push")
        await self._refuse_proxy_push(name)
        reference = parse_reference(params["reference"])
        payload = await self.manifests.read_payload(request.stream(), _content_length(request))
        # "" when absent: over HTTP a missing Content-Type is checked, not inferred (parse_manifest).
        content_type = request.headers.get("content-type", "")
        digest, parsed = await self.manifests.put(name, reference, payload, content_type)
        headers = {
            **API_VERSION,
            "Location": self.urls.location(request, f"/v2/{name}/manifests/{digest}"),
            "Docker-Content-Digest": str(digest),
            "Content-Length": "0",
        }
        if parsed.subject is not None:
            headers["OCI-Subject"] = str(parsed.subject.digest)
        await self._event(request, "push", name, params["reference"], digest=str(digest))
        return Response(status_code=201, headers=headers)

    async def delete_manifest(self, request: Request, params: dict[str, str]) -> Response:
        name = params["name"]
        await self._allow(request, name, "delete")
        await self.manifests.delete(name, lookup_reference(name, params["reference"]))
        await self._event(request, "delete", name, params["reference"])
        return Response(status_code=202, headers={**API_VERSION, "Content-Length": "0"})

    async def referrers(self, request: Request, params: dict[str, str]) -> Response:
        name = params["name"]
        await self._allow(request, name, "pull")
        subject = parse_digest(params["digest"])
        artifact_type = request.query_params.get("artifactType")
        index = await self.manifests.referrers(name, subject, artifact_type)
        headers = dict(API_VERSION)
        if artifact_type:
            headers["OCI-Filters-Applied"] = "artifactType"
        return Response(json.dumps(index).encode(), headers=headers, media_type=index["mediaType"])

    # --- blobs -------------------------------------------------------------------------

    async def get_blob(self, request: Request, params: dict[str, str]) -> Response:
        name = params["name"]
        await self._allow(request, name, "pull")
        digest = parse_digest(params["digest"])
        try:
            size = await self.blobs.size(name, digest)
        except RegistryError as error:
            target = await self._proxy_target(name, fresh=True) if error.code == "BLOB_UNKNOWN" else None
            if target is None:
                raise
            return await self._proxy_blob(request, target, digest)
        headers = {**API_VERSION, "Docker-Content-Digest": str(digest)}
        url = await self.blobs.redirect_url(digest, request.method)
        if url is not None:
            return Response(status_code=307, headers={**headers, "Location": url, "Content-Length": "0"})
        headers.update({"Accept-Ranges": "bytes", "ETag": f'"{digest}"', "Cache-Control": "max-age=31536000"})
        byte_range = parse_range(request.headers.get("range", ""), size)
        status = 200
        if byte_range is not None:
            status = 206
            headers["Content-Range"] = f"bytes {byte_range.start}-{byte_range.end}/{size}"
        length = byte_range.length if byte_range else size
        headers["Content-Length"] = str(length)
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers, media_type="application/octet-stream")
        local = await self.blobs.local_file(digest)
        if local is not None:  # the filesystem driver: the server sends it with sendfile (moorage.api.files)
            return FileSliceResponse(local, byte_range.start if byte_range else 0, length, status_code=status,
                                     headers=headers, media_type="application/octet-stream")
        stream = await self.blobs.open(digest, byte_range, size)
        return StreamingResponse(stream, status_code=status, headers=headers, media_type="application/octet-stream")

    async def _proxy_blob(self, request: Request, target: ProxyTarget, digest: Digest) -> Response:
        """A blob of a proxy project that is not here yet: its size upstream (``HEAD``) or the bytes as
        they are fetched and stored (``GET``; a ``Range`` is ignored, the whole blob is sent with 200)."""
        if self.proxy is None:  # a target exists only with a proxy cache
            raise RuntimeError("proxy target without a proxy cache")
        headers = {**API_VERSION, "Docker-Content-Digest": str(digest), "Accept-Ranges": "none"}
        if request.method == "HEAD":
            try:
                size = await self.proxy.blob_size(target, digest)
            except RegistryError as error:
                if error.status < 500:
                    raise
                # A HEAD answer has no body to explain a 5xx, and a pushing client probes with HEAD before its
                # POST (whose answer says why a proxy project refuses it): "not here" is what is true locally.
                raise RegistryError("BLOB_UNKNOWN", error.message, error.detail, status=404) from None
            headers["Content-Length"] = str(size)
            return Response(status_code=200, headers=headers, media_type="application/octet-stream")
        blob = await self.proxy.fetch_blob(target, digest)
        if blob.size is not None:
            headers["Content-Length"] = str(blob.size)
        return StreamingResponse(blob.chunks, status_code=200, headers=headers, media_type="application/octet-stream")

    async def delete_blob(self, request: Request, params: dict[str, str]) -> Response:
        name = params["name"]
        await self._allow(request, name, "delete")
        await self.blobs.unlink(name, parse_digest(params["digest"]))
        await self._event(request, "delete", name, params["digest"], "blob")
        return Response(status_code=202, headers={**API_VERSION, "Content-Length": "0"})

    # --- uploads -----------------------------------------------------------------------

    def _upload_headers(self, request: Request, name: str, upload_id: str, size: int) -> dict[str, str]:
        return {
            **API_VERSION,
            "Location": self.urls.location(request, f"/v2/{name}/blobs/uploads/{upload_id}"),
            "Range": f"0-{max(size - 1, 0)}",
            "Docker-Upload-UUID": upload_id,
            "Content-Length": "0",
        }

    def _blob_created(self, request: Request, name: str, digest: Digest) -> Response:
        headers = {
            **API_VERSION,
            "Location": self.urls.location(request, f"/v2/{name}/blobs/{digest}"),
            "Docker-Content-Digest": str(digest),
            "Content-Length": "0",
        }
        return Response(status_code=201, headers=headers)

    async def start_upload(self, request: Request, params: dict[str, str]) -> Response:
        name = params["name"]
        query = request.query_params
        mount, source = query.get("mount"), query.get("from")
        if mount and source:
            validate_name(source)
        # A mount's challenge asks for pull on the source too, so a token client can mount.
        await self._allow(request, name, "pull", "push", mount_from=source if mount and source else None)
        await self._refuse_proxy_push(name)
        if mount and source:
            digest = parse_digest(mount)
            try:
                await self._allow(request, source, "pull")
                mounted = await self.blobs.mount(name, source, digest)
            except RegistryError:
                mounted = None  # not readable from there: fall back to a normal upload (202)
            if mounted is not None:
                return self._blob_created(request, name, digest)
        if query.get("digest"):
            digest = parse_digest(query["digest"])
            await self.uploads.monolithic(name, digest, _body(request), _content_length(request))
            return self._blob_created(request, name, digest)
        progress = await self.uploads.start(name)
        return Response(status_code=202, headers=self._upload_headers(request, name, progress.id, 0))

    async def upload_status(self, request: Request, params: dict[str, str]) -> Response:
        upload_id = await self._upload_call(request, params, "pull", "push")
        status = await self.uploads.status(params["name"], upload_id)
        return Response(status_code=204, headers=self._upload_headers(request, params["name"], status.id, status.size))

    async def _upload_call(self, request: Request, params: dict[str, str], *actions: str) -> str:
        await self._allow(request, params["name"], *actions)
        return params["upload"]

    def _declared(self, request: Request) -> tuple[int | None, int | None]:
        content_range = _content_range(request.headers.get("content-range"))
        length = _content_length(request)
        if content_range is None:
            return None, length
        start, end = content_range
        if length is not None and length != end - start + 1:
            raise RegistryError(
                "RANGE_INVALID",
                f"Content-Range {start}-{end} covers {end - start + 1} bytes but Content-Length is {length}",
            )
        return start, end - start + 1

    async def patch_upload(self, request: Request, params: dict[str, str]) -> Response:
        upload_id = await self._upload_call(request, params, "pull", "push")
        start, length = self._declared(request)
        progress = await self.uploads.append(params["name"], upload_id, _body(request), start=start, length=length)
        return Response(status_code=202, headers=self._upload_headers(request, params["name"], upload_id, progress.size))

    async def finish_upload(self, request: Request, params: dict[str, str]) -> Response:
        upload_id = await self._upload_call(request, params, "pull", "push")
        raw = request.query_params.get("digest")
        if not raw:
            raise RegistryError(
                "DIGEST_INVALID", "finishing an upload needs ?digest=<algorithm>:<hex> of the whole blob"
            )
        digest = parse_digest(raw)
        start, length = self._declared(request)
        await self.uploads.complete(params["name"], upload_id, digest, _body(request), start=start, length=length)
        return self._blob_created(request, params["name"], digest)

    async def cancel_upload(self, request: Request, params: dict[str, str]) -> Response:
        upload_id = await self._upload_call(request, params, "pull", "push")
        await self.uploads.cancel(params["name"], upload_id)
        return Response(status_code=204, headers={**API_VERSION, "Content-Length": "0"})


async def _body(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk
