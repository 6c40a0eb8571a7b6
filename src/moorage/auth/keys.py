"""The token-signing key set, shared by every node through the database.

The field report: two HA nodes each generated a key at start, so a token issued by one was
rejected by the other and ``docker login`` failed every other time. Here the first process to
start creates the key (an insert that ignores a conflict on a fixed first ``kid``, then a
re-read), every process loads the same set, signs with the newest active key and verifies with
any key whose ``kid`` the token names. Rotation adds a key and marks the old one retired; a
retired key keeps verifying until every token it signed has expired. Private keys are stored
Fernet-encrypted with a key derived (HKDF-SHA256) from ``auth.secret_key``, so a database dump
alone cannot mint tokens.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select, update

from moorage.db.identity_tables import signing_keys
from moorage.db.session import Database
from moorage.db.times import aware, aware_or_none
from moorage.db.upsert import insert_ignore

__all__ = ["KeyInfo", "KeySet", "SecretBox", "SigningKey"]

ALGORITHM = "ES256"
#: The kid every node tries to insert first: the conflict makes "created once" race-safe.
INITIAL_KID = "moorage-initial"
#: How often a node re-reads the key set (to learn about a rotation done elsewhere).
RELOAD_SECONDS = 30.0


class SecretBox:
    """Fernet encryption under a key derived from ``auth.secret_key`` (same secret on every node)."""

    def __init__(self, secret: str, purpose: bytes = b"signing-keys") -> None:
        """``purpose`` (the HKDF info) gives each use its own key: a sealed refresh token is no signing key,
        and endpoint credentials (``b"registry-credentials"``) are neither; it also names them in errors."""
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"moorage-keys", info=purpose).derive(
            secret.encode()
        )
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))
        self._what = "token-signing keys" if purpose == b"signing-keys" else purpose.decode().replace("-", " ")

    def seal(self, data: bytes) -> str:
        return self._fernet.encrypt(data).decode()

    def open(self, token: str) -> bytes:
        try:
            return self._fernet.decrypt(token.encode())
        except InvalidToken:
            raise RuntimeError(
                f"cannot decrypt the {self._what} in the database: auth.secret_key (MOORAGE_SECRET_KEY) "
                "differs from the one that encrypted them; set the same secret on every node"
            ) from None


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A key as ``moorage keys list`` shows it: ``state`` is ``signing`` (signs new tokens),
    ``verifying`` (retired; accepts the tokens it signed until ``verifies_until``) or ``expired``."""

    kid: str
    algorithm: str
    created_at: datetime
    retired_at: datetime | None
    verifies_until: datetime | None
    state: str


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    private_key: ec.EllipticCurvePrivateKey
    public_key: ec.EllipticCurvePublicKey
    created_at: datetime
    retired_at: datetime | None


def _new_key(box: SecretBox, kid: str, now: datetime) -> dict[str, object]:
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "kid": kid,
        "algorithm": ALGORITHM,
        "private_key": box.seal(pem),
        "public_key": public.decode(),
        "created_at": now,
        "retired_at": None,
    }


class KeySet:
    """The database's signing keys, cached in the process and re-read every :data:`RELOAD_SECONDS`."""

    def __init__(self, db: Database, box: SecretBox, max_token_lifetime: int) -> None:
        self.db = db
        self.box = box
        self.max_token_lifetime = max_token_lifetime
        self._keys: dict[str, SigningKey] = {}
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def ensure(self) -> None:
        """Create the initial key unless some node already did, then load the set."""
        async with self.db.write() as conn:
            await insert_ignore(conn, signing_keys, _new_key(self.box, INITIAL_KID, datetime.now(UTC)), ["kid"])
        await self.reload()

    async def reload(self) -> None:
        async with self.db.read() as conn:
            rows = (await conn.execute(select(signing_keys))).mappings().all()
        keys: dict[str, SigningKey] = {}
        for row in rows:
            private = serialization.load_pem_private_key(self.box.open(row["private_key"]), password=None)
            if not isinstance(private, ec.EllipticCurvePrivateKey):
                raise TypeError(
                    f"signing key {row['kid']!r} in the database is not an EC key; delete that row and restart"
                )
            keys[row["kid"]] = SigningKey(
                row["kid"], private, private.public_key(), aware(row["created_at"]), aware_or_none(row["retired_at"])
            )
        self._keys = keys
        self._loaded_at = time.monotonic()

    async def _fresh(self) -> None:
        if not self._keys or time.monotonic() - self._loaded_at > RELOAD_SECONDS:
            async with self._lock:
                if not self._keys or time.monotonic() - self._loaded_at > RELOAD_SECONDS:
                    if not self._keys:
                        await self.ensure()
                    else:
                        await self.reload()

    async def signing_key(self) -> SigningKey:
        """The newest non-retired key (every node picks the same one).

        Which key that is is read from the database at every issue (one indexed read of a tiny
        table; tokens are issued once per client session, not per request), so a rotation done
        anywhere (``moorage keys rotate`` on any host) switches every node's signing at once,
        without waiting for the :data:`RELOAD_SECONDS` re-read.
        """
        await self._fresh()
        newest = await self._newest_active_kid()
        if newest is None:
            await self.rotate()
            newest = await self._newest_active_kid()
        key = self._keys.get(newest or "")
        if key is None or key.retired_at is not None:
            async with self._lock:
                await self.reload()
            key = self._keys.get(newest or "")
        if key is None:  # retired between the two reads: take what the fresh set says
            active = [k for k in self._keys.values() if k.retired_at is None] or list(self._keys.values())
            return max(active, key=lambda k: (k.created_at, k.kid))
        return key

    async def _newest_active_kid(self) -> str | None:
        query = (
            select(signing_keys.c.kid).where(signing_keys.c.retired_at.is_(None))
            .order_by(signing_keys.c.created_at.desc(), signing_keys.c.kid.desc()).limit(1)
        )
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else str(row.kid)

    async def describe(self) -> list[KeyInfo]:
        """Every key in the database, newest first, with what it is good for now (``moorage keys list``)."""
        await self.reload()
        now = datetime.now(UTC)
        newest = await self._newest_active_kid()
        out = []
        for key in sorted(self._keys.values(), key=lambda k: (k.created_at, k.kid), reverse=True):
            until = None if key.retired_at is None else key.retired_at + timedelta(seconds=self.max_token_lifetime)
            if key.kid == newest:
                state = "signing"
            elif until is None or until > now:
                state = "verifying"
            else:
                state = "expired"
            out.append(KeyInfo(key.kid, ALGORITHM, key.created_at, key.retired_at, until, state))
        return out

    async def verification_key(self, kid: str) -> SigningKey | None:
        """The key named ``kid`` while it may still verify; re-reads once for a kid rotated in elsewhere."""
        await self._fresh()
        key = self._keys.get(kid)
        if key is None:
            # One indexed read (as cheap as the subject read every valid token costs), and the
            # decrypting reload only when the kid exists: made-up kids cannot make it expensive.
            async with self.db.read() as conn:
                known = (await conn.execute(select(signing_keys.c.kid).where(signing_keys.c.kid == kid))).first()
            if known is not None:
                async with self._lock:
                    if kid not in self._keys:
                        await self.reload()
                key = self._keys.get(kid)
        if key is None:
            return None
        if key.retired_at is not None:
            limit = key.retired_at + timedelta(seconds=self.max_token_lifetime)
            if datetime.now(UTC) > limit:
                return None
        return key

    async def rotate(self) -> str:
        """Add a new signing key and retire the others (they verify until their tokens expire)."""
        now = datetime.now(UTC)
        kid = f"moorage-{now:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:8]}"
        async with self.db.write() as conn:
            await conn.execute(
                update(signing_keys).where(signing_keys.c.retired_at.is_(None)).values(retired_at=now)
            )
            await conn.execute(signing_keys.insert().values(**_new_key(self.box, kid, now)))
        await self.reload()
        return kid

    def public_jwks(self) -> list[dict[str, str]]:
        """The loaded public keys (for ``/service/token/jwks``-style inspection and tests)."""
        out = []
        for key in self._keys.values():
            pem = key.public_key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            out.append({"kid": key.kid, "alg": ALGORITHM, "pem": pem.decode()})
        return out


