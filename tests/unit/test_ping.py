"""``moorage ping`` asks where ``moorage serve`` listens: the address the image's HEALTHCHECK uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from moorage.cli.ping import ping_url
from moorage.config import load_settings


@pytest.mark.parametrize(
    ("listen", "url"),
    [
        ("0.0.0.0:5000", "http://127.0.0.1:5000/api/v2.0/ping"),
        ("[::]:5000", "http://[::1]:5000/api/v2.0/ping"),
        ("127.0.0.1:8080", "http://127.0.0.1:8080/api/v2.0/ping"),
        ("[::1]:5000", "http://[::1]:5000/api/v2.0/ping"),
        ("10.1.2.3:5000", "http://10.1.2.3:5000/api/v2.0/ping"),
        ("registry.internal:5000", "http://registry.internal:5000/api/v2.0/ping"),
    ],
)
def test_ping_url_asks_loopback_for_a_wildcard_listen_address(listen: str, url: str) -> None:
    assert ping_url(load_settings(environ={"MOORAGE_LISTEN": listen})) == url


def test_ping_url_is_https_when_the_server_serves_tls(tmp_path: Path) -> None:
    settings = load_settings(environ={"MOORAGE_LISTEN": "0.0.0.0:5443"})
    settings.http.tls.certificate = str(tmp_path / "tls.crt")
    assert ping_url(settings) == "https://127.0.0.1:5443/api/v2.0/ping"
