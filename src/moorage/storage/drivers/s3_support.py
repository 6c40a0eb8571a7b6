"""Settings, client construction and error translation of the ``s3`` driver.

Kept apart from :mod:`moorage.storage.drivers.s3` so the driver module stays about bytes and
paths. Everything botocore-specific that is not a request lives here.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import botocore.exceptions  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field, field_validator

from moorage.net.tls import TrustStore
from moorage.storage.driver import (
    InvalidOffsetError,
    PathNotFoundError,
    StorageError,
    StorageUnavailableError,
)

__all__ = ["MIN_PART_SIZE", "S3Settings", "add_content_md5", "botocore_config", "translate_error"]

#: S3's minimum size of every multipart part but the last (AWS, RGW and MinIO agree).
MIN_PART_SIZE = 5 * 1024 * 1024
#: The largest object a single CopyObject may copy; above it, a multipart copy is required.
MAX_SINGLE_COPY = 5 * 1024 * 1024 * 1024

_NOT_FOUND = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}
_CREDENTIALS = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "403",
    "InvalidToken",
    "ExpiredToken",
    "AuthorizationHeaderMalformed",
}


class S3Settings(BaseModel):
    """``storage.s3``: CNCF Distribution's keys, so a working ``config.yml`` section carries over.

    ``cabundle`` (a PEM file of CAs to trust) and ``insecureskipverify`` (an alias of
    ``skipverify``, the name the Swift section uses) are Moorage additions for self-signed TLS.
    """

    model_config = ConfigDict(extra="forbid")

    accesskey: str | None = None
    secretkey: str | None = None
    region: str = "us-east-1"
    regionendpoint: str | None = None
    bucket: str
    encrypt: bool = False
    keyid: str | None = None
    secure: bool = True
    skipverify: bool = False
    insecureskipverify: bool = False
    v4auth: bool = True
    chunksize: int = Field(default=MIN_PART_SIZE, ge=MIN_PART_SIZE)
    rootdirectory: str = ""
    storageclass: str = "STANDARD"
    forcepathstyle: bool | None = None
    multipartcopythresholdsize: int = Field(default=MAX_SINGLE_COPY, ge=MIN_PART_SIZE, le=MAX_SINGLE_COPY)
    multipartcopychunksize: int = Field(default=32 * 1024 * 1024, ge=MIN_PART_SIZE)
    multipartcopymaxconcurrency: int = Field(default=4, ge=1)
    cabundle: str | None = None
    #: Accepted so Distribution configs load; Moorage logs through structlog and sets no ACLs.
    loglevel: str | None = None
    objectacl: str | None = None
    useragent: str | None = None

    @field_validator("storageclass")
    @classmethod
    def _known_class(cls, value: str) -> str:
        # Distribution's "NONE" means: send no storage class header at all (MinIO, some RGWs).
        return value.upper()

    def endpoint_url(self) -> str | None:
        """``regionendpoint`` with a scheme: Distribution allows a bare host, ``secure`` picks it."""
        if not self.regionendpoint:
            return None
        if "://" in self.regionendpoint:
            return self.regionendpoint.rstrip("/")
        return f"{'https' if self.secure else 'http'}://{self.regionendpoint.rstrip('/')}"

    def verify(self, trust: TrustStore) -> bool | str:
        """What botocore's ``verify`` gets: off, a CA file from the shared trust (plus ``cabundle``), or
        botocore's own store when nothing custom is configured (:meth:`TrustStore.ca_file`)."""
        return trust.ca_file(self.cabundle, skip_verify=self.skipverify or self.insecureskipverify)


def botocore_config(settings: S3Settings) -> Config:
    """The client configuration every deployment needs.

    * ``request_checksum_calculation="when_required"``: boto3 ≥ 1.36 otherwise sends
      ``aws-chunked`` bodies with trailing CRC checksums, which Ceph RGW over HTTPS rejects
      with 411 MissingContentLength (https://github.com/boto/boto3/issues/4398; RGW's
      chunked-upload handling: https://github.com/ceph/ceph/pull/50235).
    * ``response_checksum_validation="when_required"``: the same for GET validation.
    * Path-style addressing for custom endpoints: RGW and MinIO rarely have wildcard DNS.
    """
    forcepath = settings.forcepathstyle
    if forcepath is None:
        forcepath = settings.regionendpoint is not None
    return Config(
        region_name=settings.region,
        signature_version="s3v4" if settings.v4auth else "s3",
        s3={"addressing_style": "path" if forcepath else "auto"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"max_attempts": 4, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
        max_pool_connections=64,
        user_agent_extra=settings.useragent or "moorage",
    )


def add_content_md5(request: Any, **_: Any) -> None:
    """botocore ``before-sign`` hook: give DeleteObjects a ``Content-MD5`` header.

    Since botocore 1.36 a "checksum required" operation gets a CRC32 header instead of
    Content-MD5; OpenStack Swift's s3api still demands Content-MD5 and answers 400
    InvalidRequest without it (botocore 1.36.0 changelog: "no longer automatically compute
    and populate the Content-MD5 header"; the same break on other stores:
    https://github.com/s3fs-fuse/s3fs-fuse/issues/2639). The header is signed with the
    request, so it must be added before signing.
    """
    body = request.body
    if isinstance(body, str):
        body = body.encode()
    if isinstance(body, bytes | bytearray) and "Content-MD5" not in request.headers:
        request.headers["Content-MD5"] = base64.b64encode(
            hashlib.md5(body, usedforsecurity=False).digest()
        ).decode()


def error_code(exc: BaseException) -> str:
    """The S3 error code of a ``ClientError`` (``""`` for anything else)."""
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def translate_error(exc: Exception, settings: S3Settings, path: str, action: str) -> StorageError:
    """Map a botocore exception to the driver's error tree, with what the operator should check."""
    where = settings.endpoint_url() or f"AWS S3 ({settings.region})"
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, botocore.exceptions.ClientError):
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message", "") or code
        if code in _NOT_FOUND:
            return PathNotFoundError(f"no object at {path!r}", path=path, driver="s3")
        if code == "NoSuchBucket":
            return StorageUnavailableError(
                f"bucket {settings.bucket!r} does not exist at {where}; create it or fix storage.s3.bucket",
                path=path,
                driver="s3",
            )
        if code in _CREDENTIALS:
            return StorageUnavailableError(
                f"{where} refused the credentials for {action} on {path!r} ({code}: {message}); check "
                "storage.s3.accesskey/secretkey, the bucket policy, and the clock of this node",
                path=path,
                driver="s3",
            )
        if code in {"InvalidRange", "416"}:
            return InvalidOffsetError(f"range outside of {path!r}", path=path, driver="s3")
        return StorageError(
            f"S3 {action} of {path!r} failed at {where}: {code}: {message}", path=path, driver="s3"
        )
    if isinstance(exc, botocore.exceptions.SSLError):
        return StorageUnavailableError(
            f"TLS to {where} failed: {exc}; set storage.s3.cabundle to the CA file, or skipverify for tests",
            path=path,
            driver="s3",
        )
    if isinstance(
        exc,
        botocore.exceptions.EndpointConnectionError
        | botocore.exceptions.ConnectionClosedError
        | botocore.exceptions.ReadTimeoutError
        | botocore.exceptions.ConnectTimeoutError
        | botocore.exceptions.HTTPClientError,
    ):
        return StorageUnavailableError(
            f"cannot reach the S3 endpoint {where}: {exc}; check storage.s3.regionendpoint and secure",
            path=path,
            driver="s3",
        )
    if isinstance(exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError):
        return StorageUnavailableError(
            f"no S3 credentials: {exc}; set storage.s3.accesskey and secretkey", path=path, driver="s3"
        )
    return StorageError(
        f"S3 {action} of {path!r} failed at {where}: {type(exc).__name__}: {exc}", path=path, driver="s3"
    )
