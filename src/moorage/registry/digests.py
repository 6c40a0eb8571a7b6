"""Content digests (``sha256:<64 hex>``, ``sha512:<128 hex>``): parsing and validation."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from moorage.errors import RegistryError

__all__ = ["ALGORITHMS", "Digest", "parse_digest"]

#: Algorithm → length of its hex encoding. Only lowercase hex is canonical (OCI image-spec).
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
_DIGEST = re.compile(r"([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())


def parse_digest(value: str, *, code: str = "DIGEST_INVALID") -> Digest:
    """Validate ``value``; raises :class:`RegistryError` with ``code`` saying what is wrong."""
    match = _DIGEST.fullmatch(value or "")
    if not match:
        raise RegistryError(
            code,
            f"invalid digest {value!r}: expected 'sha256:' followed by 64 lowercase hex characters "
            "(or 'sha512:' and 128)",
            {"digest": value},
        )
    algorithm, encoded = match.groups()
    if algorithm not in ALGORITHMS:
        raise RegistryError(
            "UNSUPPORTED" if code == "DIGEST_INVALID" else code,
            f"digest algorithm {algorithm!r} is not supported; use one of {', '.join(ALGORITHMS)}",
            {"digest": value},
            status=400,
        )
    if len(encoded) != ALGORITHMS[algorithm] or not re.fullmatch(r"[0-9a-f]+", encoded):
        raise RegistryError(
            code,
            f"invalid {algorithm} digest {value!r}: expected {ALGORITHMS[algorithm]} lowercase hex characters",
            {"digest": value},
        )
    return Digest(algorithm, encoded)
