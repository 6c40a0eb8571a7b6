"""The ``moorage`` command line: ``serve``, ``db upgrade``, and operator tools."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from moorage.cli.certs import certs_app
from moorage.cli.gc import add_gc_commands
from moorage.cli.keys import add_keys_commands
from moorage.cli.ping import add_ping_command
from moorage.config import ConfigError, Settings, load_settings
from moorage.errors import RegistryError

__all__ = ["app", "main"]

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Moorage container registry.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema (Alembic migrations).")
app.add_typer(db_app, name="db")
app.add_typer(certs_app, name="certs")
err = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML configuration file (also MOORAGE_CONFIG).", envvar="MOORAGE_CONFIG"),
]


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


@app.command()
def serve(
    config: ConfigOption = None,
    listen: Annotated[str | None, typer.Option(help="HOST:PORT to listen on (http.listen).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (http.workers).")] = None,
    migrate: Annotated[bool, typer.Option(help="Run database migrations first (database.auto_migrate).")] = True,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate (chain) to serve HTTPS (http.tls.certificate).")
                        ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="Its PEM private key (http.tls.key).")] = None,
) -> None:
    """Run the registry. With no configuration: SQLite + filesystem under ./moorage-data/.

    HTTPS with --tls-cert/--tls-key speaks HTTP/1.1 (uvicorn has no HTTP/2); see docs/deploy.md.
    """
    import uvicorn

    from moorage.cli.sendfile import SendfileHttpToolsProtocol

    if listen:
        os.environ["MOORAGE_LISTEN"] = listen
    # Through the environment, like --listen: every worker process re-reads the settings.
    if tls_cert:
        os.environ["MOORAGE_HTTP__TLS__CERTIFICATE"] = str(tls_cert.resolve())
    if tls_key:
        os.environ["MOORAGE_HTTP__TLS__KEY"] = str(tls_key.resolve())
    if workers:
        os.environ["MOORAGE_HTTP__WORKERS"] = str(workers)
    if config:
        os.environ["MOORAGE_CONFIG"] = str(config.resolve())
    settings = _settings(config)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if migrate and settings.database.auto_migrate:
        from moorage.db.migrate import upgrade

        upgrade(settings.database_url)
    if settings.metrics.enabled and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Every worker writes its samples here; /metrics sums them (see moorage.metrics).
        import tempfile

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="moorage-metrics-")
    host, _, port = settings.http.listen.rpartition(":")
    tls = settings.http.tls
    uvicorn.run(
        "moorage.app:app_from_environment",
        factory=True,
        host=host.strip("[]"),
        port=int(port),
        workers=settings.http.worker_count(),
        loop="uvloop",
        http=SendfileHttpToolsProtocol,  # httptools, plus sendfile for blobs (moorage.cli.sendfile)
        log_level=settings.log.level,
        access_log=settings.log.access_log,
        proxy_headers=False,  # X-Forwarded-* are honoured by moorage itself, from http.trusted_proxies only
        server_header=False,
        timeout_graceful_shutdown=30,
        ssl_certfile=tls.certificate,
        ssl_keyfile=tls.key,
    )


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None, revision: str = "heads") -> None:
    """Migrate the database to the newest schema. Safe to run on many nodes at once."""
    from moorage.db.migrate import upgrade

    settings = _settings(config)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url, revision)
    err.print(f"database at {settings.database_url.split('@')[-1]} is up to date")


@db_app.command("downgrade")
def db_downgrade(revision: str, config: ConfigOption = None) -> None:
    """Step the schema back to REVISION (use with a backup; 'base' drops every table)."""
    from moorage.db.migrate import downgrade

    downgrade(_settings(config).database_url, revision)


@db_app.command("current")
def db_current(config: ConfigOption = None) -> None:
    """Print the revisions the database is at, and any pending ones."""
    from moorage.db.migrate import current_heads, pending

    url = _settings(config).database_url
    typer.echo(f"current: {', '.join(sorted(current_heads(url))) or '(empty)'}")
    missing = pending(url)
    typer.echo(f"pending: {', '.join(sorted(missing)) or 'none'}")


@app.command()
def check(config: ConfigOption = None) -> None:
    """Verify the configuration against the live database, Redis and storage; non-zero on any failure."""
    import asyncio

    from moorage.checks import run_checks

    settings = _settings(config)
    results = asyncio.run(run_checks(settings))
    # One unwrapped line per check (greppable in logs), the fix on the line below a failure.
    for result in results:
        typer.echo(f"{'pass' if result.ok else 'FAIL'}  {result.name}: {result.detail}")
        if not result.ok:
            typer.echo(f"      what to do: {result.fix}")
    failed = [r for r in results if not r.ok]
    if failed:
        err.print(f"[red]{len(failed)} of {len(results)} checks failed[/red]")
        raise typer.Exit(1)
    err.print(f"all {len(results)} checks passed")


@app.command("import-distribution")
def import_distribution(config: ConfigOption = None) -> None:
    """Record an existing Distribution/Harbor storage tree in the database, without copying blobs.

    Point the storage root at Distribution's ``docker/registry/v2`` directory (or bucket prefix)
    first; running it again is safe.
    """
    import asyncio

    from moorage.db.migrate import upgrade
    from moorage.registry.importer import DistributionImporter
    from moorage.services import Services

    settings = _settings(config)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)

    async def run() -> str:
        services = Services.from_settings(settings)
        try:
            importer = DistributionImporter(services.db, services.storage, services.manifests, guard=services.guard)
            report = await importer.run()
        finally:
            await services.aclose()
        for line in report.skipped:
            err.print(f"[yellow]skipped[/yellow] {line}")
        return report.summary()

    typer.echo(asyncio.run(run()))


uploads_app = typer.Typer(no_args_is_help=True, help="Upload sessions.")
app.add_typer(uploads_app, name="uploads")


@uploads_app.command("purge")
def uploads_purge(
    config: ConfigOption = None,
    older_than: Annotated[str, typer.Option(help="Age, e.g. 168h (default: maintenance.uploadpurging.age).")] = "",
    dry_run: Annotated[bool, typer.Option(help="Only count what would be purged.")] = False,
) -> None:
    """Delete upload sessions (and their bytes) untouched for longer than the given age."""
    import asyncio

    from moorage.config import parse_duration
    from moorage.services import Services

    settings = _settings(config)
    purging = settings.storage.maintenance.uploadpurging
    age = parse_duration(older_than or purging.age)
    dry_run = dry_run or purging.dryrun

    async def run() -> int:
        services = Services.from_settings(settings)
        try:
            return await services.uploads.purge(age, dry_run=dry_run)
        finally:
            await services.aclose()

    count = asyncio.run(run())
    typer.echo(f"{'would purge' if dry_run else 'purged'} {count} upload session(s) older than {age}")


add_gc_commands(app, _settings)
add_ping_command(app, _settings)
add_keys_commands(app, _settings)


def main() -> None:
    try:
        app()
    except ConfigError as exc:  # raised inside a worker factory, e.g. a bad MOORAGE_ variable
        err.print(f"[red]configuration error:[/red] {exc}")
        sys.exit(2)
    except RegistryError as exc:  # a domain refusal (e.g. read-only maintenance mode): its message says what to do
        err.print(f"[red]refused:[/red] {exc.message}")
        sys.exit(1)
