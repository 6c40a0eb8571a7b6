"""The webhook address rule (:mod:`moorage.net.addresses`): the most specific entry wins, allow on a tie."""

from __future__ import annotations

import ipaddress

import pytest

from moorage.config import ConfigError, load_settings
from moorage.net.addresses import DEFAULT_DENIED, AddressPolicy, ForbiddenAddress, resolve_checked


def _allowed(policy: AddressPolicy, address: str) -> bool:
    try:
        policy.check(ipaddress.ip_address(address))
    except ForbiddenAddress:
        return False
    return True


def test_defaults_refuse_loopback_link_local_and_metadata_and_allow_the_rest() -> None:
    policy = AddressPolicy.parse(DEFAULT_DENIED, [])
    for refused in ("127.0.0.1", "::1", "169.254.169.254", "169.254.10.1", "fe80::1", "0.0.0.0", "100.100.100.200",
                    "fd00:ec2::254", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "224.0.0.1"):
        assert not _allowed(policy, refused), refused
    for allowed in ("10.1.2.3", "192.168.1.10", "172.16.0.1", "8.8.8.8", "2001:db8::1"):
        assert _allowed(policy, allowed), allowed


def test_a_more_specific_allow_opens_one_address_but_a_broad_allow_never_opens_metadata() -> None:
    policy = AddressPolicy.parse(DEFAULT_DENIED, ["127.0.0.1/32", "0.0.0.0/0", "169.254.0.0/16"])
    assert _allowed(policy, "127.0.0.1")
    assert not _allowed(policy, "127.0.0.2")  # /8 deny beats /0 allow
    assert _allowed(policy, "169.254.10.1")  # the /16 allow ties the /16 deny: allowed
    assert not _allowed(policy, "169.254.169.254")


def test_strict_allow_lists_work() -> None:
    policy = AddressPolicy.parse(["0.0.0.0/0", "::/0"], ["10.20.0.0/16"])
    assert _allowed(policy, "10.20.1.1")
    assert not _allowed(policy, "10.21.1.1") and not _allowed(policy, "8.8.8.8")
    assert _allowed(AddressPolicy.parse(["10.0.0.0/8"], ["10.0.0.0/8"]), "10.1.1.1")


async def test_names_are_resolved_and_every_address_checked() -> None:
    policy = AddressPolicy.parse(DEFAULT_DENIED, [])
    with pytest.raises(ForbiddenAddress, match="localhost resolves to"):
        await resolve_checked("localhost", 80, policy)
    assert await resolve_checked("10.0.0.5", 80, policy) == ["10.0.0.5"]


def test_bad_networks_stop_start_up_naming_the_entry() -> None:
    with pytest.raises(ConfigError, match=r"webhooks\.allow_networks\[1\]: 'localhost'"):
        load_settings(environ={"MOORAGE_WEBHOOKS__ALLOW_NETWORKS": "[127.0.0.1/32, localhost]"})
