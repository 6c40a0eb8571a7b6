"""Blob storage: a driver protocol, its drivers, and wrappers for cross-cutting concerns."""

from moorage.storage.driver import (
    CheckResult,
    FileInfo,
    InvalidOffsetError,
    InvalidPathError,
    LocalFiles,
    PathNotFoundError,
    StorageDriver,
    StorageError,
    StorageUnavailableError,
    UnsupportedMethodError,
    WriteState,
)

__all__ = [
    "CheckResult",
    "FileInfo",
    "InvalidOffsetError",
    "InvalidPathError",
    "LocalFiles",
    "PathNotFoundError",
    "StorageDriver",
    "StorageError",
    "StorageUnavailableError",
    "UnsupportedMethodError",
    "WriteState",
]
