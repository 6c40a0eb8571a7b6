"""``moorage keys list`` / ``moorage keys rotate``: the token-signing key set (docs/sso.md).

Both act on the key set in the shared database, through the identity service every node uses
(:class:`moorage.auth.keys.KeySet`): a rotation adds a key that every node signs with from its
next token on, and retires the previous ones, which keep verifying the tokens they signed until
those expire (``max(auth.token_expiry, 30 days)``: refresh tokens live 30 days). No restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from moorage.auth.keys import KeyInfo
from moorage.config import Settings

__all__ = ["add_keys_commands"]

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML configuration file (also MOORAGE_CONFIG).", envvar="MOORAGE_CONFIG"),
]


def _when(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S}Z"


def _table(keys: list[KeyInfo]) -> str:
    rows = [("KID", "STATE", "CREATED", "RETIRED", "VERIFIES UNTIL")]
    rows += [(k.kid, k.state, _when(k.created_at), _when(k.retired_at), _when(k.verifies_until)) for k in keys]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def add_keys_commands(app: typer.Typer, load_settings: Callable[[Path | None], Settings]) -> None:
    """Add ``moorage keys …`` to ``app``; ``load_settings`` reads (and validates) the configuration."""
    keys_app = typer.Typer(no_args_is_help=True, help="Token-signing keys shared by every node (docs/sso.md).")
    app.add_typer(keys_app, name="keys")

    def _token_settings(config: Path | None) -> Settings:
        settings = load_settings(config)
        if settings.auth.mode != "token":
            typer.echo("auth.mode is none: this registry issues no tokens and has no signing keys; set "
                       "auth.mode: token", err=True)
            raise typer.Exit(2)
        return settings

    async def _run(settings: Settings, rotate: bool) -> tuple[str | None, list[KeyInfo]]:
        from moorage.services import Services

        services = Services.from_settings(settings)
        try:
            identity = services.identity
            if identity is None:  # auth.mode checked above
                raise typer.Exit(2)
            await identity.keys.ensure()
            kid = await identity.keys.rotate() if rotate else None
            return kid, await identity.keys.describe()
        finally:
            await services.aclose()

    @keys_app.command("list")
    def list_keys(config: ConfigOption = None) -> None:
        """Show every key: the one signing, the retired ones still verifying (until when), expired ones."""
        settings = _token_settings(config)
        _, keys = asyncio.run(_run(settings, rotate=False))
        typer.echo(_table(keys))

    @keys_app.command("rotate")
    def rotate(config: ConfigOption = None) -> None:
        """Add a new signing key and retire the others; tokens they signed keep working until they expire."""
        settings = _token_settings(config)
        kid, keys = asyncio.run(_run(settings, rotate=True))
        typer.echo(f"new signing key {kid}; every node signs with it from its next token on, and the retired "
                   "keys verify the tokens they signed until those expire")
        typer.echo(_table(keys))
