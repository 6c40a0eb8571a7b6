"""Pure parts of identity: scope parsing, the role table, password policy, Authorization parsing."""

from __future__ import annotations

import base64
import time

import pytest

from moorage.auth.clients import client_address, is_trusted
from moorage.auth.identity import IdentityError
from moorage.auth.passwords import (
    PasswordPolicyError,
    check_password_policy,
    generate_secret,
    hash_secret,
    verify_secret,
    verify_secret_async,
)
from moorage.auth.robots import parse_permissions
from moorage.auth.roles import ROLE_ACTIONS, ROLE_IDS, ROLE_NAMES, minimum_role_for
from moorage.auth.service import parse_authorization
from moorage.auth.tokens import Scope, parse_scope, parse_scopes


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("repository:team/app:pull,push", Scope("repository", "team/app", ("pull", "push"))),
        ("repository:localhost:5000/a/b:pull", Scope("repository", "localhost:5000/a/b", ("pull",))),
        ("repository(plugin):p/x:pull", Scope("repository", "p/x", ("pull",))),
        ("registry:catalog:*", Scope("registry", "catalog", ("*",))),
        ("nonsense", None),
        ("repository::pull", None),
    ],
)
def test_parse_scope(raw: str, expected: Scope | None) -> None:
    assert parse_scope(raw) == expected


def test_one_scope_parameter_may_hold_several_scopes() -> None:
    assert parse_scopes(["repository:a/x:pull,push repository:b/y:pull", " registry:catalog:*  ", "junk"]) == [
        Scope("repository", "a/x", ("pull", "push")),
        Scope("repository", "b/y", ("pull",)),
        Scope("registry", "catalog", ("*",)),
    ]


def test_role_table_is_harbors() -> None:
    assert ROLE_ACTIONS["developer"] == {"pull", "push"}
    assert ROLE_ACTIONS["maintainer"] == ROLE_ACTIONS["projectAdmin"] == {"pull", "push", "delete"}
    assert ROLE_ACTIONS["guest"] == ROLE_ACTIONS["limitedGuest"] == {"pull"}
    assert ROLE_IDS == {"projectAdmin": 1, "developer": 2, "guest": 3, "maintainer": 4, "limitedGuest": 5}
    assert all(ROLE_NAMES[number] == name for name, number in ROLE_IDS.items())
    assert [minimum_role_for(a) for a in ("pull", "push", "delete")] == ["limitedGuest", "developer", "maintainer"]


@pytest.mark.parametrize("weak", ["short1A", "alllowercase1", "ALLUPPERCASE1", "NoDigitsHere", "x" * 129])
def test_password_policy_refuses_weak_passwords(weak: str) -> None:
    with pytest.raises(PasswordPolicyError):
        check_password_policy(weak)


def test_hash_and_verify() -> None:
    secret = generate_secret()
    check_password_policy(secret)
    stored = hash_secret(secret)
    assert stored.startswith("$argon2id$")
    assert verify_secret(stored, secret) and verify_secret(stored, secret)  # second time from the cache
    assert not verify_secret(stored, secret + "x")
    assert not verify_secret(hash_secret("Other-passw0rd"), secret)  # the cache is keyed by the hash too
    assert not verify_secret("not-a-hash", secret)


def test_parse_authorization() -> None:
    encoded = base64.b64encode(b"robot$p+ci:s3cret:with:colons").decode()
    creds = parse_authorization(f"Basic {encoded}")
    assert (creds.scheme, creds.username, creds.secret) == ("basic", "robot$p+ci", "s3cret:with:colons")
    assert parse_authorization("Bearer abc").secret == "abc"
    assert parse_authorization(None).scheme == "none"
    for bad in ("Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode(), "Negotiate x"):
        with pytest.raises(IdentityError):
            parse_authorization(bad)


def test_robot_permissions_parse_harbor_format() -> None:
    parsed = parse_permissions([{"namespace": "p", "access": [
        {"resource": "repository", "action": "pull"}, {"resource": "artifact", "action": "delete"}]}])
    assert parsed == {"p": frozenset({"pull", "delete"})}
    with pytest.raises(IdentityError, match="not supported"):
        parse_permissions([{"namespace": "p", "access": [{"resource": "scan", "action": "create"}]}])
    with pytest.raises(IdentityError, match="namespace"):
        parse_permissions([{"access": []}])


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("127.0.0.1", None, "127.0.0.1"),  # no proxy header: the peer
        ("127.0.0.1", "203.0.113.5", "203.0.113.5"),  # a trusted proxy vouches for its client
        ("127.0.0.1", "10.0.0.9, 203.0.113.5", "203.0.113.5"),  # a forged left-most hop is not believed
        ("127.0.0.1", "203.0.113.5, 10.1.2.3", "203.0.113.5"),  # trusted inner proxies are skipped
        ("192.0.2.1", "203.0.113.5", "192.0.2.1"),  # an untrusted peer's header is ignored
        ("127.0.0.1", "not-an-ip", "not-an-ip"),  # garbage from a trusted proxy is still its client
        ("127.0.0.1", " , ", "127.0.0.1"),
    ],
)
def test_client_address_behind_trusted_proxies(peer: str, forwarded: str | None, expected: str) -> None:
    assert client_address(peer, forwarded, ["127.0.0.1", "10.0.0.0/8"]) == expected


def test_trusted_proxy_entries() -> None:
    assert is_trusted("10.4.5.6", ["10.0.0.0/8"]) and is_trusted("::1", ["::1"]) and is_trusted("x", ["*"])
    assert not is_trusted("11.0.0.1", ["10.0.0.0/8"]) and not is_trusted("", ["127.0.0.1"])
    assert is_trusted("::ffff:10.0.0.5", ["10.0.0.5"])  # a dual-stack listener's view of an IPv4 proxy
    with pytest.raises(ValueError, match="'not-a-network' is not an IP address"):  # no longer skipped silently
        is_trusted("11.0.0.1", ["10.0.0.0/8", "not-a-network"])


async def test_unknown_account_costs_an_argon2_check_and_is_refused() -> None:
    """The refusal of a name that does not exist runs argon2 too (no user-enumeration by timing)."""
    stored = hash_secret("Right-passw0rd")
    await verify_secret_async(None, "warm-up")  # the dummy hash is made once per process
    started = time.perf_counter()
    assert await verify_secret_async(None, "Right-passw0rd") is False
    unknown = time.perf_counter() - started
    started = time.perf_counter()
    assert await verify_secret_async(stored, "Wrong-passw0rd") is False
    wrong = time.perf_counter() - started
    assert unknown > wrong / 4, (unknown, wrong)
    assert await verify_secret_async(stored, "Right-passw0rd") is True
