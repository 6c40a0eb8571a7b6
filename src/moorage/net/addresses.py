"""Which addresses an outbound request chosen by a *user* (a webhook URL) may reach.

A webhook target is typed in by a project admin, not by the operator, so without a rule it
would let any project admin make the registry's nodes send requests to their own loopback
services, to the cloud's instance-metadata endpoint (credentials!) or to link-local devices.

The rule: a list of denied networks and a list of allowed networks; for an address the *most
specific* matching entry decides, and an allow wins a tie (so allowing a denied
network exactly as it is listed opens it). Nothing listed: allowed (public and
private addresses alike, because webhooks to an internal CI server are the common case).
So ``allow 127.0.0.1/32`` opens one loopback address inside the denied ``127.0.0.0/8``, while
``allow 0.0.0.0/0`` can never open ``169.254.169.254/32``: the deny is more specific.
IPv4-mapped IPv6 addresses (``::ffff:127.0.0.1``) are judged as the IPv4 address they carry.

Names are resolved and *every* address checked; the request then goes to an address that was
checked (see :func:`resolve_checked`), so a name that resolves differently a moment later
(DNS rebinding) cannot slip past.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["DEFAULT_DENIED", "AddressPolicy", "ForbiddenAddress", "Network", "resolve_checked"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Refused unless a more specific allow entry names them (docs/deploy.md "Webhooks").
DEFAULT_DENIED: tuple[str, ...] = (
    "127.0.0.0/8",          # loopback: the node's own services (Redis, PostgreSQL, admin ports)
    "::1/128",
    "0.0.0.0/8",            # "this host" (0.0.0.0 connects to loopback on Linux)
    "::/128",
    "169.254.0.0/16",       # link-local
    "fe80::/10",
    "169.254.169.254/32",   # instance metadata (AWS, GCP, Azure, OpenStack): listed on its own so that
    "fd00:ec2::254/128",    # allowing link-local does not open it; AWS IPv6 metadata
    "100.100.100.200/32",   # Alibaba Cloud metadata
    "224.0.0.0/4",          # multicast
    "ff00::/8",
    "255.255.255.255/32",
)


class ForbiddenAddress(ValueError):
    """The target may not be reached; the message names the address and the setting that decides."""


def _plain(address: Address) -> Address:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Denied and allowed networks; build with :meth:`parse` (which names a bad entry)."""

    denied: tuple[Network, ...]
    allowed: tuple[Network, ...]
    setting: str = "webhooks"

    @classmethod
    def parse(cls, denied: Sequence[str], allowed: Sequence[str], setting: str = "webhooks") -> AddressPolicy:
        """``ValueError`` naming ``<setting>.deny_networks[i]`` / ``allow_networks[i]`` for a bad network."""
        def networks(values: Sequence[str], key: str) -> tuple[Network, ...]:
            parsed: list[Network] = []
            for index, value in enumerate(values):
                try:
                    parsed.append(ipaddress.ip_network(value.strip(), strict=False))
                except ValueError:
                    raise ValueError(f"{setting}.{key}[{index}]: {value!r} is not an address or CIDR network "
                                     "(e.g. 10.0.0.0/8, 127.0.0.1/32, fd00::/8)") from None
            return tuple(parsed)

        return cls(networks(denied, "deny_networks"), networks(allowed, "allow_networks"), setting)

    def check(self, address: Address) -> None:
        """:class:`ForbiddenAddress` unless ``address`` may be reached."""
        plain = _plain(address)
        deny = max((n.prefixlen for n in self.denied if plain.version == n.version and plain in n), default=-1)
        if deny < 0:
            return
        allow = max((n.prefixlen for n in self.allowed if plain.version == n.version and plain in n), default=-1)
        if allow >= deny:
            return
        raise ForbiddenAddress(
            f"{plain} is in a network {self.setting}.deny_networks refuses (loopback, link-local, cloud metadata and "
            f"multicast by default); use another target, or have the operator list it in {self.setting}.allow_networks"
        )


async def resolve_checked(host: str, port: int, policy: AddressPolicy) -> list[str]:
    """Every address ``host`` resolves to, each checked by ``policy``; :class:`ForbiddenAddress` if any is
    refused (a name with one bad address is refused whole), ``OSError`` when it does not resolve."""
    try:
        literal: Address | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        policy.check(literal)
        return [str(_plain(literal))]
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))
    for address in addresses:
        try:
            policy.check(ipaddress.ip_address(address))
        except ForbiddenAddress as exc:
            raise ForbiddenAddress(f"{host} resolves to {exc}") from None
    return addresses
