"""OCI distribution error codes, registered once with their HTTP status (Distribution's errcode/register.go).

Domain services raise :class:`RegistryError` with a code from :data:`CODES` and a message that
tells the operator or user what to do; the API layer renders it as the spec's JSON body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["CODES", "ErrorCode", "RegistryError"]


@dataclass(frozen=True, slots=True)
class ErrorCode:
    code: str
    status: int
    description: str


def _codes(*codes: ErrorCode) -> dict[str, ErrorCode]:
    return {code.code: code for code in codes}


CODES: dict[str, ErrorCode] = _codes(
    ErrorCode("BLOB_UNKNOWN", 404, "blob unknown to registry"),
    ErrorCode("BLOB_UPLOAD_INVALID", 400, "blob upload invalid"),
    ErrorCode("BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry"),
    ErrorCode("DIGEST_INVALID", 400, "provided digest did not match uploaded content"),
    ErrorCode("MANIFEST_BLOB_UNKNOWN", 400, "manifest references a manifest or blob unknown to registry"),
    ErrorCode("MANIFEST_INVALID", 400, "manifest invalid"),
    ErrorCode("MANIFEST_UNKNOWN", 404, "manifest unknown to registry"),
    ErrorCode("NAME_INVALID", 400, "invalid repository name"),
    ErrorCode("NAME_UNKNOWN", 404, "repository name not known to registry"),
    ErrorCode("SIZE_INVALID", 400, "provided length did not match content length"),
    ErrorCode("UNAUTHORIZED", 401, "authentication required"),
    ErrorCode("DENIED", 403, "requested access to the resource is denied"),
    ErrorCode("UNSUPPORTED", 405, "the operation is unsupported"),
    ErrorCode("TOOMANYREQUESTS", 429, "too many requests"),
    ErrorCode("RANGE_INVALID", 416, "invalid content range"),
    ErrorCode("MANIFEST_TOO_LARGE", 413, "manifest exceeds the configured size limit"),
    ErrorCode("UNAVAILABLE", 503, "service unavailable"),
    ErrorCode("PAGINATION_NUMBER_INVALID", 400, "invalid number of results requested"),
    # Not an OCI code: Distribution's errcode.ErrorCodeUnknown, for failures nobody anticipated.
    ErrorCode("UNKNOWN", 500, "unknown error"),
)


class RegistryError(Exception):
    """A failure with a spec error code, a message for humans, and optional detail.

    ``status`` overrides the code's default where the spec asks for another one
    (e.g. ``BLOB_UPLOAD_INVALID`` with 416 for an out-of-order chunk).
    """

    def __init__(
        self,
        code: str,
        message: str,
        detail: Any = None,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if code not in CODES:
            raise KeyError(f"unregistered error code {code}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail
        self.status = status if status is not None else CODES[code].status
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The spec's JSON error envelope."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            error["detail"] = self.detail
        return {"errors": [error]}
