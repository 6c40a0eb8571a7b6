"""The address of the client behind a request, through the proxies ``http.trusted_proxies`` names.

Login throttling is keyed by (name, client address) and the audit log records the address.
Behind nginx every request arrives from nginx itself: taking the peer's address would let one
guesser lock a user out for everyone, and would log the proxy instead of the client. A trusted
proxy's ``X-Forwarded-For`` is read right to left, skipping trusted hops, so the first address
no trusted proxy vouches for is the client (a client cannot forge the entries to its right).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.requests import Request

__all__ = ["client_address", "client_of", "is_trusted"]


def is_trusted(address: str, trusted: Sequence[str]) -> bool:
    """Whether ``address`` is one of, or inside one of, the ``trusted`` addresses/networks (``*``: any)."""
    if "*" in trusted:
        return True
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    for entry in trusted:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def client_address(peer: str, forwarded_for: str | None, trusted: Sequence[str]) -> str:
    """The client's address: ``peer``, or the right-most untrusted hop of a trusted peer's ``X-Forwarded-For``."""
    if not forwarded_for or not is_trusted(peer, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


def client_of(request: Request, trusted: Sequence[str]) -> str:
    """:func:`client_address` of a Starlette request."""
    peer = request.client.host if request.client else ""
    return client_address(peer, request.headers.get("x-forwarded-for"), trusted)
