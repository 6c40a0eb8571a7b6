"""``moorage ping``: is the server on this node answering? The container image's HEALTHCHECK.

A container image has no curl, and the address to ask is in the configuration (``http.listen``,
``MOORAGE_LISTEN``) and its scheme depends on ``http.tls``: so the check reads the same settings
``moorage serve`` reads and asks ``/api/v2.0/ping`` where the server listens. A wildcard listen
address (``0.0.0.0``, ``::``) is asked on loopback. Over HTTPS the certificate is not verified:
it names the public host, not loopback, and this only asks whether the process answers.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import httpx
import typer

from moorage.config import Settings

__all__ = ["add_ping_command", "ping_url"]

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="YAML configuration file (also MOORAGE_CONFIG).", envvar="MOORAGE_CONFIG"
    ),
]


def ping_url(settings: Settings) -> str:
    """``http(s)://<loopback or listen host>:<port>/api/v2.0/ping`` for these settings."""
    host, _, port = settings.http.listen.rpartition(":")
    host = host.strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None  # a host name: ask it as written
    if address is not None:
        if address.is_unspecified:
            address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
        host = f"[{address}]" if address.version == 6 else str(address)
    scheme = "https" if settings.http.tls.certificate else "http"
    return f"{scheme}://{host}:{port}/api/v2.0/ping"


def add_ping_command(app: typer.Typer, load: Callable[[Path | None], Settings]) -> None:
    """Register ``moorage ping`` on ``app``; ``load`` reads the settings as the other commands do."""

    @app.command()
    def ping(
        config: ConfigOption = None,
        timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 5.0,
    ) -> None:
        """Ask this node's /api/v2.0/ping; exit 0 when it answers, 1 otherwise (a container healthcheck)."""
        url = ping_url(load(config))
        try:
            response = httpx.get(url, timeout=timeout, verify=False)
        except httpx.HTTPError as exc:
            typer.echo(f"{url}: no answer ({exc!r}); is `moorage serve` running and listening there?", err=True)
            raise typer.Exit(1) from None
        if response.status_code != 200:
            typer.echo(f"{url}: HTTP {response.status_code}; see the server's log", err=True)
            raise typer.Exit(1)
        typer.echo(f"{url}: {response.text.strip()}")
