"""The address of the client behind a request, through the proxies ``http.trusted_proxies`` names.

Login throttling is keyed by (name, client address) and the audit log records the address.
Behind nginx every request arrives from nginx itself: taking the peer's address would let one
guesser lock a user out for everyone, and would log the proxy instead of the client. A trusted
proxy's ``X-Forwarded-For`` is read right to left, skipping trusted hops, so the first address
no trusted proxy vouches for is the client (a client cannot forge the entries to its right).

What that cannot prevent: a client whose *own* address is trusted (on the proxy's host, inside a
trusted network, or anyone with ``*``) has its forged ``X-Forwarded-For`` entries believed, and
so chooses the address it is throttled and audited under; so does every client of a trusted
proxy that passes the client's header on instead of appending to it. Trust the proxies' exact
addresses only.

:class:`TrustedProxies` is the one matcher: the configuration validates the entries with it at
load (a bad entry stops start-up, naming it), and the URL builder and :func:`client_of` use it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from starlette.requests import Request

__all__ = ["TrustedProxies", "client_address", "client_of", "is_trusted"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: Addresses whose answer a matcher remembers (peers and forwarded hops repeat on every request).
_MEMO_MAX = 1024


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """Parsed ``http.trusted_proxies``: addresses and networks (CIDR), or ``*`` for every peer."""

    networks: tuple[_Network, ...]
    everyone: bool = False
    # Parsing an address with ipaddress cost about as much as the rest of a /v2 authorization
    # (profile of issue 17); the answer for an address never changes, so it is remembered. The
    # strings may be client-chosen (X-Forwarded-For): the memo is emptied when full.
    _memo: dict[str, bool] = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    @classmethod
    def parse(cls, entries: Sequence[str]) -> TrustedProxies:
        """Parse every entry; ``ValueError`` names the first one that is not an address, a network or ``*``."""
        networks: list[_Network] = []
        everyone = False
        for entry in entries:
            text = str(entry).strip()
            if text == "*":
                everyone = True
                continue
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise ValueError(
                    f"entry {entry!r} is not an IP address, a network in CIDR form or '*'; write e.g. 10.0.0.5, "
                    "10.0.0.0/24 or ::1 (host names are not resolved)"
                ) from None
        return cls(tuple(networks), everyone)

    def __contains__(self, address: object) -> bool:
        if self.everyone:
            return True
        if not isinstance(address, str):
            return False
        known = self._memo.get(address)
        if known is None:
            known = self._match(address)
            if len(self._memo) >= _MEMO_MAX:
                self._memo.clear()
            self._memo[address] = known
        return known

    def _match(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:10.0.0.5 from a dual-stack listener is 10.0.0.5
        return any(ip in network for network in self.networks)

    def client(self, peer: str, forwarded_for: str | None) -> str:
        """``peer``, or the right-most untrusted hop of a trusted peer's ``X-Forwarded-For``."""
        if not forwarded_for or peer not in self:
            return peer
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        for hop in reversed(hops):
            if hop not in self:
                return hop
        return hops[0] if hops else peer


@lru_cache(maxsize=32)
def _parsed(entries: tuple[str, ...]) -> TrustedProxies:
    return TrustedProxies.parse(entries)


def _proxies(trusted: Sequence[str] | TrustedProxies) -> TrustedProxies:
    return trusted if isinstance(trusted, TrustedProxies) else _parsed(tuple(trusted))


def is_trusted(address: str, trusted: Sequence[str] | TrustedProxies) -> bool:
    """Whether ``address`` is one of, or inside one of, the ``trusted`` addresses/networks (``*``: any)."""
    return address in _proxies(trusted)


def client_address(peer: str, forwarded_for: str | None, trusted: Sequence[str] | TrustedProxies) -> str:
    """The client's address: ``peer``, or the right-most untrusted hop of a trusted peer's ``X-Forwarded-For``."""
    return _proxies(trusted).client(peer, forwarded_for)


def client_of(request: Request, trusted: Sequence[str] | TrustedProxies) -> str:
    """:func:`client_address` of a Starlette request."""
    peer = request.client.host if request.client else ""
    return client_address(peer, request.headers.get("x-forwarded-for"), trusted)
