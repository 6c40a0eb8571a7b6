"""Driver settings for the project's real object stores, shared by the storage and e2e tests.

Every helper takes the :class:`tests.services.fixtures.Service` the session fixture returned,
so the tests never hard-code ports or credentials.
"""

from __future__ import annotations

import uuid
from typing import Any

import boto3  # type: ignore[import-untyped]  # no stubs shipped; calls are wrapped below
import botocore.exceptions  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]

from moorage.net.tls import TrustStore
from moorage.storage.drivers.s3_support import S3Settings
from moorage.storage.drivers.swift_auth import SwiftSettings
from tests.services.fixtures import Service

__all__ = ["TEMPURL_KEY", "ensure_bucket", "raw_s3_client", "s3_settings", "swift_settings", "unique"]

#: The TempURL key the Swift drivers of the tests set on their account.
TEMPURL_KEY = "moorage-test-tempurl-key"


def unique(prefix: str) -> str:
    """A bucket/container/prefix name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def s3_settings(service: Service, bucket: str, *, tls: bool = False, **extra: Any) -> S3Settings:
    """``storage.s3`` for a service's S3 API (RGW's or Swift's s3api), over HTTPS when ``tls``."""
    values: dict[str, Any] = {
        "accesskey": service["S3_ACCESS_KEY"],
        "secretkey": service["S3_SECRET_KEY"],
        "region": service["S3_REGION"],
        "regionendpoint": service["S3_ENDPOINT_TLS"] if tls else service["S3_ENDPOINT"],
        "bucket": bucket,
    }
    if tls:
        values["cabundle"] = service["S3_CA_BUNDLE"]
    values.update(extra)
    return S3Settings.model_validate(values)


def raw_s3_client(settings: S3Settings) -> Any:
    """A plain boto3 client for the same endpoint, for test set-up and for inspecting the store."""
    return boto3.client(
        "s3",
        endpoint_url=settings.endpoint_url(),
        aws_access_key_id=settings.accesskey,
        aws_secret_access_key=settings.secretkey,
        region_name=settings.region,
        verify=settings.verify(TrustStore()),
        config=Config(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def ensure_bucket(settings: S3Settings) -> None:
    """Create the bucket if it does not exist yet (Distribution's driver does not create it either)."""
    client = raw_s3_client(settings)
    try:
        client.create_bucket(Bucket=settings.bucket)
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in {
            "BucketAlreadyOwnedByYou",
            "BucketAlreadyExists",
        }:
            raise
    finally:
        client.close()


def swift_settings(service: Service, container: str, **extra: Any) -> SwiftSettings:
    """``storage.swift`` for a service's Swift API (v1 auth), with a TempURL key for redirects."""
    values: dict[str, Any] = {
        "authurl": service["SWIFT_AUTH_URL"],
        "username": service["SWIFT_USER"],
        "password": service["SWIFT_KEY"],
        "container": container,
        "secretkey": TEMPURL_KEY,
    }
    values.update(extra)
    return SwiftSettings.model_validate(values)
