"""``http.trusted_proxies``: validated at load, one matcher for client addresses and external URLs."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from moorage.api.http import UrlBuilder
from moorage.auth.clients import TrustedProxies, client_of
from moorage.config import ConfigError, HttpSettings, load_settings


def _request(peer: str, headers: dict[str, str]) -> Request:
    scope = {
        "type": "http", "method": "GET", "path": "/v2/", "query_string": b"", "scheme": "http",
        "server": ("registry.test", 80), "client": (peer, 40000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in {"host": "registry.test", **headers}.items()],
    }
    return Request(scope)


def test_bad_entry_stops_start_up_naming_it() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"MOORAGE_HTTP__TRUSTED_PROXIES": "[10.0.0.5, nginx.internal, 10.0.0.0/33]"})
    message = str(caught.value)
    assert message.startswith("http.trusted_proxies: entry 'nginx.internal' is not an IP address")


def test_default_trusts_only_what_the_shipped_nginx_config_needs() -> None:
    """nginx on the node's host reaches the default listener (127.0.0.1:5000, IPv4) from 127.0.0.1."""
    settings = load_settings(environ={})
    assert settings.http.listen.startswith("127.0.0.1:")
    assert settings.http.trusted_proxies == ["127.0.0.1"]


@pytest.mark.parametrize(
    ("peer", "trusted"),
    [("10.0.0.5", True), ("::ffff:10.0.0.5", True), ("10.0.0.6", False), ("::1", False), ("garbage", False)],
)
def test_one_matcher_for_client_address_and_urls(peer: str, trusted: bool) -> None:
    """The client address (throttling, audit) and the external URL believe the same peers."""
    settings = HttpSettings(trusted_proxies=["10.0.0.5"])
    request = _request(peer, {"x-forwarded-for": "203.0.113.7", "x-forwarded-host": "public.example",
                              "x-forwarded-proto": "https"})
    assert (client_of(request, settings.trusted_proxies) == "203.0.113.7") is trusted
    assert (UrlBuilder(settings).base(request) == "https://public.example") is trusted


def test_what_a_client_can_and_cannot_choose() -> None:
    """The documented limit: nginx appends the peer, so an outside client's forgery is not believed;
    a client whose own address is trusted chooses the address it is throttled under."""
    proxies = TrustedProxies.parse(["127.0.0.1", "10.0.0.0/8"])
    # An outside client sends "X-Forwarded-For: 1.2.3.4"; nginx ($proxy_add_x_forwarded_for) appends it.
    assert proxies.client("127.0.0.1", "1.2.3.4, 198.51.100.9") == "198.51.100.9"
    # A client inside a trusted network: its own header is believed (docs/configuration.md says so).
    assert proxies.client("127.0.0.1", "1.2.3.4, 10.9.9.9") == "1.2.3.4"


def test_remembered_answers_are_the_same_and_the_memory_is_bounded() -> None:
    """Issue 17: each address is parsed once per matcher, not on every request; forged
    X-Forwarded-For hops cannot grow the memory beyond its bound or change an answer."""
    proxies = TrustedProxies.parse(["10.0.0.0/24", "::1"])
    cases = {"10.0.0.7": True, "::ffff:10.0.0.7": True, " 10.0.0.7 ": True, "::1": True, "10.0.1.7": False,
             "nginx": False, "": False}
    for _ in range(2):  # the second round is answered from memory
        assert {address: address in proxies for address in cases} == cases
    for n in range(5000):
        assert f"forged-{n}" not in proxies
    assert len(proxies._memo) <= 1024
    assert {address: address in proxies for address in cases} == cases
    assert proxies == TrustedProxies.parse(["10.0.0.0/24", "::1"])  # the memory is no part of equality
    assert hash(proxies) == hash(TrustedProxies.parse(["10.0.0.0/24", "::1"]))
