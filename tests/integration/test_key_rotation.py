"""Key rotation on two in-process nodes (SQLite and PostgreSQL): the other node signs with the new
key from its next token, and a retired key verifies until its window ends, then never again.
(The same with two ``moorage serve`` processes and the CLI: tests/ha/test_key_rotation.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from sqlalchemy import update

from moorage.auth.service import IdentityService
from moorage.auth.tokens import Account, TokenError
from moorage.db.identity_tables import signing_keys
from moorage.db.session import Database
from tests.integration.conftest import make_settings
from tests.integration.test_identity_helpers import TOKEN_ENV

ACCOUNT = Account("user", "admin", "rotation-uid", 0)


async def test_retired_keys_verify_until_their_window_ends(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path, **TOKEN_ENV)
    a, b = (IdentityService(Database(database_url), settings.auth) for _ in range(2))
    try:
        await a.start()
        await b.start()
        await b.keys.signing_key()  # b has loaded the set before the rotation
        first = await a.keys.rotate()
        token, _, _ = await b.tokens.issue_access(ACCOUNT, [])
        assert jwt.get_unverified_header(token)["kid"] == first  # b switched without waiting for its reload
        second = await a.keys.rotate()
        assert (await b.tokens.verify(token))["sub"] == "admin"  # retired, still verifying
        states = {k.kid: k.state for k in await a.keys.describe()}
        assert states[second] == "signing" and states[first] == "verifying"

        # the window (max(token_expiry, 30 days) after retirement) is over: refused everywhere
        async with a.db.write() as conn:
            await conn.execute(update(signing_keys).where(signing_keys.c.kid == first)
                               .values(retired_at=datetime.now(UTC) - timedelta(days=31)))
        fresh = IdentityService(Database(database_url), settings.auth)
        try:
            with pytest.raises(TokenError, match="retired long ago"):
                await fresh.tokens.verify(token)
            assert {k.kid: k.state for k in await fresh.keys.describe()}[first] == "expired"
        finally:
            await fresh.db.dispose()
    finally:
        await a.db.dispose()
        await b.db.dispose()
