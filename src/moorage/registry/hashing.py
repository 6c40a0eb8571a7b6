"""Resumable SHA-256 whose state is 112 bytes that fit in the upload's database row.

Why: a chunked upload's PATCHes may land on different nodes. Distribution keeps resumable
hash states in storage (Go's sha256 can marshal its state); CPython's ``hashlib`` cannot,
and the ``rehash`` package refuses OpenSSL 3. OpenSSL 3's libcrypto still exports the
(deprecated but stable) ``SHA256_Init/Update/Final`` API over the public ``SHA256_CTX``
struct, so we keep that struct's bytes: any node restores it and continues hashing at
hashlib's speed (ctypes releases the GIL during the call), with no re-read of the upload.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
from functools import cache

__all__ = ["ResumableSha256", "state_size"]


class _Sha256Ctx(ctypes.Structure):
    # openssl/sha.h: SHA_LONG h[8], Nl, Nh, data[SHA_LBLOCK]; unsigned int num, md_len;
    _fields_ = [
        ("h", ctypes.c_uint32 * 8),
        ("Nl", ctypes.c_uint32),
        ("Nh", ctypes.c_uint32),
        ("data", ctypes.c_uint32 * 16),
        ("num", ctypes.c_uint),
        ("md_len", ctypes.c_uint),
    ]


@cache
def _libcrypto() -> ctypes.CDLL:
    name = ctypes.util.find_library("crypto")
    if name is None:
        raise RuntimeError("libcrypto (OpenSSL) not found; install libssl3 (Debian: apt-get install libssl3)")
    lib = ctypes.CDLL(name)
    lib.SHA256_Init.argtypes = [ctypes.c_void_p]
    lib.SHA256_Update.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.SHA256_Final.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    # Self-test once: a libcrypto whose struct layout differs must not corrupt digests silently.
    ctx = _Sha256Ctx()
    lib.SHA256_Init(ctypes.byref(ctx))
    lib.SHA256_Update(ctypes.byref(ctx), b"moorage", 7)
    out = ctypes.create_string_buffer(32)
    lib.SHA256_Final(out, ctypes.byref(ctx))
    if out.raw != hashlib.sha256(b"moorage").digest():
        raise RuntimeError(f"{name}: SHA256_CTX layout differs from the one Moorage was built for")
    return lib


def state_size() -> int:
    """Bytes of a saved state."""
    return ctypes.sizeof(_Sha256Ctx)


class ResumableSha256:
    """SHA-256 that can be frozen to bytes (:meth:`state`) and resumed elsewhere (``ResumableSha256(state)``)."""

    __slots__ = ("_ctx", "_lib")

    def __init__(self, state: bytes | None = None) -> None:
        self._lib = _libcrypto()
        if state is None:
            self._ctx = _Sha256Ctx()
            self._lib.SHA256_Init(ctypes.byref(self._ctx))
        else:
            if len(state) != ctypes.sizeof(_Sha256Ctx):
                raise ValueError(f"hash state must be {ctypes.sizeof(_Sha256Ctx)} bytes, got {len(state)}")
            self._ctx = _Sha256Ctx.from_buffer_copy(state)

    def update(self, data: bytes) -> None:
        if data:
            self._lib.SHA256_Update(ctypes.byref(self._ctx), data, len(data))

    def state(self) -> bytes:
        return bytes(self._ctx)

    def hexdigest(self) -> str:
        copy = _Sha256Ctx.from_buffer_copy(bytes(self._ctx))  # Final must not consume our state
        out = ctypes.create_string_buffer(32)
        self._lib.SHA256_Final(out, ctypes.byref(copy))
        return out.raw.hex()
