"""The ``s3`` driver: AWS S3, Ceph RGW and MinIO through boto3, unchanged on all three.

Client: boto3 (botocore) in worker threads. Measured against aiobotocore and the alternatives
in ``docs/storage.md``; botocore's synchronous client in a thread pool is as fast here and
has none of aiobotocore's pinning to exact botocore versions.

Resumable multipart writes
--------------------------
S3 refuses multipart parts below 5 MiB (all but the last), while registry clients send
chunks of any size, to any node. :meth:`S3Driver.append` therefore keeps no state in memory:

* full parts (``chunksize`` bytes, ≥ 5 MiB) are uploaded with UploadPart and recorded in the
  returned state (part number, ETag, size);
* the remainder (< ``chunksize``) is stored as a small object ``<path>.tail.<random>``,
  whose name and length are in the state. A fresh name per write means an attempt whose state
  was never persisted cannot overwrite the tail an older, persisted state still points at;
  orphaned tails are removed at commit and by :meth:`delete`;
* a retried append from an older state simply re-uploads part numbers above that state's
  parts; CompleteMultipartUpload lists only the parts of the committed state, so S3 drops
  the rest.

:meth:`S3Driver.commit` uploads the tail as the last part and completes the upload, or, for
totals below one part, stores the tail's bytes as the object. Nothing reads the ETag of the
CompleteMultipartUpload answer: Ceph RGW Pacific returns ``<ETag></ETag>`` there.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import re
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
import boto3  # type: ignore[import-untyped]  # no stubs shipped; calls are wrapped below
import botocore.exceptions  # type: ignore[import-untyped]

from moorage.net.tls import TrustStore
from moorage.storage.driver import (
    CheckResult,
    FileInfo,
    InvalidOffsetError,
    PathNotFoundError,
    StorageError,
    UnsupportedMethodError,
    WriteState,
)
from moorage.storage.drivers.s3_support import (
    MIN_PART_SIZE,
    S3Settings,
    add_content_md5,
    botocore_config,
    translate_error,
)

__all__ = ["S3Driver"]

T = TypeVar("T")

_READ_CHUNK = 1 << 20
#: DeleteObjects requests (of up to 1000 keys each) in flight at once in :meth:`S3Driver.delete_many`.
_PARALLEL_BATCHES = 4
_TAIL = ".tail."
_TAIL_RE = re.compile(r"\.tail\.[0-9a-f]{32}$")


class S3Driver:
    """Stores ``path`` at ``s3://<bucket>/<rootdirectory>/<path>``."""

    name = "s3"
    Settings = S3Settings

    def __init__(self, settings: S3Settings, *, list_page_size: int = 1000, trust: TrustStore | None = None) -> None:
        """``list_page_size`` is S3's ``MaxKeys``; tests lower it to force pagination. ``trust`` is the
        deployment's outbound CA trust; ``cabundle`` is added to it, ``skipverify`` turns checking off."""
        self.settings = settings
        self.bucket = settings.bucket
        self.root = settings.rootdirectory.strip("/")
        self.part_size = settings.chunksize
        self.list_page_size = list_page_size
        session = boto3.session.Session()
        self.client: Any = session.client(
            "s3",
            endpoint_url=settings.endpoint_url(),
            aws_access_key_id=settings.accesskey or None,
            aws_secret_access_key=settings.secretkey or None,
            region_name=settings.region,
            verify=settings.verify(trust or TrustStore()),
            config=botocore_config(settings),
        )
        self.client.meta.events.register("before-sign.s3.DeleteObjects", add_content_md5)
        self._static_keys = bool(settings.accesskey and settings.secretkey)
        #: Server-side encryption and storage class: sent on every request that creates an object
        #: (PutObject, CreateMultipartUpload, CopyObject), blob tails included.
        self._extra: dict[str, str] = {}
        if settings.storageclass != "NONE":
            self._extra["StorageClass"] = settings.storageclass
        if settings.encrypt:
            self._extra["ServerSideEncryption"] = "aws:kms" if settings.keyid else "AES256"
            if settings.keyid:
                self._extra["SSEKMSKeyId"] = settings.keyid

    @classmethod
    def from_config(cls, settings: S3Settings, data_dir: Path, trust: TrustStore) -> S3Driver:
        return cls(settings, trust=trust)

    async def aclose(self) -> None:
        """Close the connection pool."""
        self.client.close()

    # -- helpers -------------------------------------------------------------------------------
    def _key(self, path: str) -> str:
        return f"{self.root}/{path}" if self.root else path

    def _path(self, key: str) -> str:
        return key[len(self.root) + 1 :] if self.root else key

    async def _call(self, path: str, action: str, fn: Callable[..., T], /, **kwargs: Any) -> T:
        """Run one botocore call in a worker thread; translate every error it raises."""
        try:
            return await anyio.to_thread.run_sync(functools.partial(fn, **kwargs))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise translate_error(exc, self.settings, path, action) from None

    async def _head(self, path: str) -> dict[str, Any] | None:
        """HeadObject, or ``None`` when there is no object (never a bare 404 exception)."""
        try:
            result: dict[str, Any] = await self._call(
                path, "HEAD", self.client.head_object, Bucket=self.bucket, Key=self._key(path)
            )
        except PathNotFoundError:
            return None
        return result

    async def _list_keys(self, key_prefix: str, path: str) -> AsyncIterator[dict[str, Any]]:
        """Every ``Contents`` entry under ``key_prefix``, across pages.

        Pagination follows ``IsTruncated`` and ``NextContinuationToken`` only; ``KeyCount`` is
        optional and absent on older RGWs (the garbage-collector crash report), so it is never
        read. A truncated page without a token continues after the last key seen.
        """
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": key_prefix, "MaxKeys": self.list_page_size}
        while True:
            page: dict[str, Any] = await self._call(path, "LIST", self.client.list_objects_v2, **kwargs)
            contents = page.get("Contents") or []
            for entry in contents:
                yield entry
            if not page.get("IsTruncated"):
                return
            kwargs.pop("StartAfter", None)
            kwargs.pop("ContinuationToken", None)
            token = page.get("NextContinuationToken")
            if token:
                kwargs["ContinuationToken"] = token
            elif contents:
                kwargs["StartAfter"] = contents[-1]["Key"]
            else:
                raise StorageError(
                    f"S3 listing of {path!r} is truncated but names no continuation",
                    path=path,
                    driver=self.name,
                )

    # -- reads -----------------------------------------------------------------------------------
    async def stat(self, path: str) -> FileInfo:
        head = await self._head(path)
        if head is not None:
            return FileInfo(path, int(head["ContentLength"]), head.get("LastModified"))
        async for _ in self._list_keys(self._key(path) + "/", path):
            return FileInfo(path, 0, None, is_dir=True)
        raise PathNotFoundError(f"no object at {path!r}", path=path, driver=self.name)

    async def read(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(path)}
        if length == 0 or offset > 0:
            # A range starting at the end answers 416 on S3; decide from the size instead.
            head = await self._head(path)
            if head is None:
                raise PathNotFoundError(f"no object at {path!r}", path=path, driver=self.name)
            size = int(head["ContentLength"])
            if offset > size:
                raise InvalidOffsetError(f"offset {offset} beyond size {size}", path=path, driver=self.name)
            if offset == size or length == 0:
                return
            kwargs["IfMatch"] = head["ETag"]  # the object must not change between HEAD and GET
        if offset > 0 or length is not None:
            end = "" if length is None else str(offset + length - 1)
            kwargs["Range"] = f"bytes={offset}-{end}"
        response: dict[str, Any] = await self._call(path, "GET", self.client.get_object, **kwargs)
        body = response["Body"]
        try:
            while True:
                try:
                    chunk = await anyio.to_thread.run_sync(body.read, _READ_CHUNK)
                except (botocore.exceptions.BotoCoreError, OSError) as exc:
                    raise StorageError(
                        f"S3 read of {path!r} broke off: {exc}", path=path, driver=self.name
                    ) from None
                if not chunk:
                    return
                yield chunk
        finally:
            body.close()

    async def url_for(self, path: str, method: str, expires_in: int) -> str | None:
        """Presign for exactly ``method``: a HEAD sent to a GET-signed URL is 403 on RGW."""
        operation = {"GET": "get_object", "HEAD": "head_object"}.get(method)
        if operation is None:
            raise UnsupportedMethodError(
                f"cannot presign {method} for {path!r}: only GET and HEAD", path=path, driver=self.name
            )
        presign = functools.partial(
            self.client.generate_presigned_url,
            operation,
            Params={"Bucket": self.bucket, "Key": self._key(path)},
            ExpiresIn=expires_in,
        )
        try:
            # With configured keys, signing is pure computation: inline it is about half the cost
            # of a thread hop (docs/storage.md). Without them, botocore's credential chain may
            # refresh instance, container or SSO credentials over the network first.
            url: str = presign() if self._static_keys else await anyio.to_thread.run_sync(presign)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise translate_error(exc, self.settings, path, "presign") from None
        return url

    async def list(self, prefix: str) -> AsyncIterator[FileInfo]:
        key_prefix = self._key(prefix.rstrip("/")) + "/" if prefix else (self.root + "/" if self.root else "")
        async for entry in self._list_keys(key_prefix, prefix):
            key = str(entry["Key"])
            if _TAIL_RE.search(key):
                continue  # an unfinished write's buffer, not an object
            yield FileInfo(self._path(key), int(entry.get("Size", 0)), entry.get("LastModified"))

    # -- writes ----------------------------------------------------------------------------------
    async def put(self, path: str, data: bytes) -> None:
        await self._call(
            path,
            "PUT",
            self.client.put_object,
            Bucket=self.bucket,
            Key=self._key(path),
            Body=data,
            **self._extra,
        )

    async def _read_small(self, key: str, path: str) -> bytes:
        response: dict[str, Any] = await self._call(
            path, "GET", self.client.get_object, Bucket=self.bucket, Key=key
        )
        body = response["Body"]
        try:
            data: bytes = await anyio.to_thread.run_sync(body.read)
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            raise StorageError(f"S3 read of {key!r} broke off: {exc}", path=path, driver=self.name) from None
        finally:
            body.close()
        return data

    async def append(self, path: str, state: WriteState | None, chunks: AsyncIterable[bytes]) -> WriteState:
        key = self._key(path)
        state = dict(state or {"size": 0, "upload_id": None, "parts": [], "tail": None, "tail_size": 0})
        parts: builtins.list[builtins.list[Any]] = [list(part) for part in state.get("parts", [])]
        upload_id: str | None = state.get("upload_id")
        old_tail: str | None = state.get("tail")
        tail_size = int(state.get("tail_size", 0))
        buffer = bytearray()
        if old_tail and tail_size:
            buffer += (await self._read_small(old_tail, path))[:tail_size]
            if len(buffer) != tail_size:
                raise InvalidOffsetError(
                    f"write state says {tail_size} buffered bytes but {len(buffer)} are stored",
                    path=path,
                    driver=self.name,
                )
        received = 0
        pending: asyncio.Task[builtins.list[Any]] | None = None
        try:
            async for chunk in chunks:
                buffer += chunk
                received += len(chunk)
                while len(buffer) >= self.part_size:
                    if upload_id is None:
                        created: dict[str, Any] = await self._call(
                            path,
                            "CreateMultipartUpload",
                            self.client.create_multipart_upload,
                            Bucket=self.bucket,
                            Key=key,
                            **self._extra,
                        )
                        upload_id = str(created["UploadId"])
                    body = bytes(buffer[: self.part_size])
                    del buffer[: self.part_size]
                    if pending is not None:
                        parts.append(await pending)
                    # One part in flight while the next one arrives from the client.
                    pending = asyncio.ensure_future(self._upload_part(path, upload_id, len(parts) + 1, body))
            if pending is not None:
                parts.append(await pending)
                pending = None
        finally:
            if pending is not None:
                pending.cancel()
        tail = old_tail
        if received:
            tail = None
            if buffer:
                tail = f"{key}{_TAIL}{uuid.uuid4().hex}"
                await self._call(
                    path,
                    "PUT",
                    self.client.put_object,
                    Bucket=self.bucket,
                    Key=tail,
                    Body=bytes(buffer),
                    **self._extra,  # a tail holds blob bytes at rest: encrypted like the blob
                )
        return {
            "size": int(state.get("size", 0)) + received,
            "upload_id": upload_id,
            "parts": parts,
            "tail": tail,
            "tail_size": len(buffer),
        }

    async def _upload_part(self, path: str, upload_id: str, number: int, body: bytes) -> builtins.list[Any]:
        answer: dict[str, Any] = await self._call(
            path,
            "UploadPart",
            self.client.upload_part,
            Bucket=self.bucket,
            Key=self._key(path),
            UploadId=upload_id,
            PartNumber=number,
            Body=body,
        )
        return [number, str(answer["ETag"]), len(body)]

    async def commit(self, path: str, state: WriteState) -> None:
        try:
            await self._commit(path, state)
        except PathNotFoundError:
            # The tail or the multipart upload is gone: committed before (the answer was lost)
            # when the object is there with the state's size; a retried commit changes nothing.
            head = await self._head(path)
            if head is None or int(head["ContentLength"]) != int(state.get("size", -1)):
                raise

    async def _commit(self, path: str, state: WriteState) -> None:
        key = self._key(path)
        parts = [list(part) for part in state.get("parts", [])]
        upload_id: str | None = state.get("upload_id")
        tail: str | None = state.get("tail")
        tail_size = int(state.get("tail_size", 0))
        data = (await self._read_small(tail, path))[:tail_size] if tail and tail_size else b""
        if upload_id is None:
            await self.put(path, data)
        else:
            if data:
                parts.append(await self._upload_part(path, upload_id, len(parts) + 1, data))
            # The answer's ETag is not read: RGW Pacific sends it empty (<ETag></ETag>).
            await self._call(
                path,
                "CompleteMultipartUpload",
                self.client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag} for n, etag, _ in parts]},
            )
        await self._delete_keys([entry["Key"] async for entry in self._list_keys(key + _TAIL, path)], path)

    async def move(self, source: str, destination: str) -> None:
        head = await self._head(source)
        if head is None:
            raise PathNotFoundError(f"no object at {source!r}", path=source, driver=self.name)
        size = int(head["ContentLength"])
        copy_source = {"Bucket": self.bucket, "Key": self._key(source)}
        existing = await self._head(destination)
        if existing is not None and int(existing["ContentLength"]) == size:
            pass  # published before, or right now by another node: keep it, drop this upload
        elif size <= self.settings.multipartcopythresholdsize:
            await self._call(
                source,
                "CopyObject",
                self.client.copy_object,
                Bucket=self.bucket,
                Key=self._key(destination),
                CopySource=copy_source,
                **self._extra,
            )
        else:
            await self._multipart_copy(source, destination, size, copy_source)
        await self._call(
            source, "DELETE", self.client.delete_object, Bucket=self.bucket, Key=self._key(source)
        )

    async def _multipart_copy(
        self, source: str, destination: str, size: int, copy_source: dict[str, str]
    ) -> None:
        """UploadPartCopy in ``multipartcopychunksize`` pieces (CopyObject stops at 5 GiB)."""
        key = self._key(destination)
        piece = max(self.settings.multipartcopychunksize, -(-size // 10_000), MIN_PART_SIZE)
        created: dict[str, Any] = await self._call(
            destination,
            "CreateMultipartUpload",
            self.client.create_multipart_upload,
            Bucket=self.bucket,
            Key=key,
            **self._extra,
        )
        upload_id = str(created["UploadId"])
        limiter = anyio.Semaphore(self.settings.multipartcopymaxconcurrency)

        async def copy_part(number: int, start: int) -> dict[str, Any]:
            async with limiter:
                answer: dict[str, Any] = await self._call(
                    destination,
                    "UploadPartCopy",
                    self.client.upload_part_copy,
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource=copy_source,
                    CopySourceRange=f"bytes={start}-{min(start + piece, size) - 1}",
                )
            return {"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]}

        try:
            parts = await asyncio.gather(
                *(copy_part(i + 1, start) for i, start in enumerate(range(0, size, piece)))
            )
            await self._call(
                destination,
                "CompleteMultipartUpload",
                self.client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": list(parts)},
            )
        except BaseException:
            await self._abort(destination, key, upload_id)
            raise

    # -- deletes ---------------------------------------------------------------------------------
    async def _abort(self, path: str, key: str, upload_id: str) -> None:
        try:
            await self._call(
                path,
                "AbortMultipartUpload",
                self.client.abort_multipart_upload,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
            )
        except PathNotFoundError:
            pass  # already completed or aborted

    async def _delete_keys(self, keys: builtins.list[str], path: str) -> None:
        """DeleteObjects in batches of 1000 (its limit), with the Content-MD5 Swift demands."""
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            answer: dict[str, Any] = await self._call(
                path,
                "DeleteObjects",
                self.client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
            )
            errors = [e for e in answer.get("Errors") or [] if e.get("Code") != "NoSuchKey"]
            if errors:
                first = errors[0]
                raise StorageError(
                    f"S3 refused to delete {len(errors)} key(s) under {path!r}, e.g. {first.get('Key')}: "
                    f"{first.get('Code')} {first.get('Message')}",
                    path=path,
                    driver=self.name,
                )

    async def delete_many(self, paths: Sequence[str]) -> None:
        """DeleteObjects, 1000 keys a request, a few requests at once; NoSuchKey is no failure."""
        keys = [self._key(path) for path in paths]
        batches = [keys[start : start + 1000] for start in range(0, len(keys), 1000)]
        limiter = anyio.Semaphore(_PARALLEL_BATCHES)

        async def one(batch: builtins.list[str]) -> None:
            async with limiter:
                await self._delete_keys(batch, self._path(batch[0]))

        outcomes = await asyncio.gather(*(one(batch) for batch in batches), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _uploads_under(self, key: str, path: str) -> builtins.list[tuple[str, str]]:
        """Unfinished multipart uploads at ``key`` or below it: (key, upload id)."""
        found: builtins.list[tuple[str, str]] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": key}
        while True:
            page: dict[str, Any] = await self._call(
                path, "ListMultipartUploads", self.client.list_multipart_uploads, **kwargs
            )
            for upload in page.get("Uploads") or []:
                upload_key = str(upload["Key"])
                if upload_key == key or upload_key.startswith(key + "/"):
                    found.append((upload_key, str(upload["UploadId"])))
            if not page.get("IsTruncated") or not page.get("NextKeyMarker"):
                return found
            kwargs["KeyMarker"] = page["NextKeyMarker"]
            kwargs["UploadIdMarker"] = page.get("NextUploadIdMarker", "")

    async def delete(self, path: str) -> None:
        key = self._key(path)
        keys = [key] if await self._head(path) is not None else []
        keys += [str(e["Key"]) async for e in self._list_keys(key + "/", path)]
        keys += [str(e["Key"]) async for e in self._list_keys(key + _TAIL, path)]
        uploads = await self._uploads_under(key, path)
        if not keys and not uploads:
            raise PathNotFoundError(f"no object at {path!r}", path=path, driver=self.name)
        for upload_key, upload_id in uploads:
            await self._abort(path, upload_key, upload_id)
        await self._delete_keys(keys, path)

    # -- moorage check -----------------------------------------------------------------------------
    async def self_check(self) -> builtins.list[CheckResult]:
        """``moorage check``: the bucket answers, and which optional listing fields it sends."""
        try:
            page: dict[str, Any] = await self._call(
                "", "LIST", self.client.list_objects_v2, Bucket=self.bucket, MaxKeys=1, Prefix=self.root
            )
        except StorageError as exc:
            return [
                CheckResult(
                    "s3 listing fields", False, str(exc)[:400], "check storage.s3 endpoint, keys and bucket"
                )
            ]
        missing = [field for field in ("KeyCount", "IsTruncated") if field not in page]
        detail = (
            "all present" if not missing else f"absent: {', '.join(missing)} (the driver does not need them)"
        )
        return [CheckResult("s3 listing fields", True, detail)]
