"""Resumable SHA-256 whose state is 112 bytes that fit in the upload's database row.

Why: a chunked upload's PATCHes may land on different nodes. Distribution keeps resumable
hash states in storage (Go's sha256 can marshal its state); CPython's ``hashlib`` cannot,
and the ``rehash`` package refuses OpenSSL 3. OpenSSL 3's libcrypto still exports the
(deprecated but stable) ``SHA256_Init/Update/Final`` API over the public ``SHA256_CTX``
struct, so we keep that struct's bytes: any node restores it and continues hashing at
hashlib's speed (ctypes releases the GIL during the call), with no re-read of the upload.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import hashlib
from functools import cache
from typing import Protocol

__all__ = ["OFFLOAD_BYTES", "Hasher", "ResumableSha256", "feed", "state_size"]

#: Chunks at least this long are hashed in a worker thread, shorter ones on the event loop.
#: Measured on the project's 2-core machine (SHA-NI, loaded): SHA-256 ran at ~1.7 GB/s, so
#: 64 KiB took 38 us inline against 92 us through ``asyncio.to_thread`` (the hop alone costs
#: ~60-80 us), 128 KiB 75 us against 137 us; from 256 KiB (145 us, and 2.5x that on a CPU
#: without SHA extensions) the loop would stall for longer than a hop costs, and 1 MiB (0.6 ms
#: inline; 2.6 ms at 400 MB/s) or 4 MiB (5 ms) must not run on the loop. Request bodies arrive
#: in chunks of at most 64-256 KiB, so uploads mostly hash inline; storage reads (re-verifying
#: published bytes, ``sha512``) come in larger chunks and go to a thread. Both ``hashlib`` (for
#: more than 2 KiB) and the ctypes call below release the GIL, so the thread really runs beside
#: the loop.
OFFLOAD_BYTES = 256 * 1024


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


class Hasher(Protocol):
    """What :func:`feed` needs: ``hashlib`` objects and :class:`ResumableSha256` both qualify."""

    def update(self, data: bytes, /) -> None: ...


async def feed(hasher: Hasher, data: bytes) -> None:
    """``hasher.update(data)``, in a worker thread when ``data`` is :data:`OFFLOAD_BYTES` or longer.

    Callers await each call before the next, so updates of one hasher never overlap.
    """
    if len(data) >= OFFLOAD_BYTES:
        await asyncio.to_thread(hasher.update, data)
    else:
        hasher.update(data)


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
