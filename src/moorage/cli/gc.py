"""``moorage gc run``: online garbage collection from the command line, with progress and a summary."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from moorage.config import Settings, parse_duration
from moorage.errors import RegistryError

__all__ = ["add_gc_commands"]

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="YAML configuration file (also MOORAGE_CONFIG).", envvar="MOORAGE_CONFIG"
    ),
]


class _Bars:
    """Rich progress bars fed by the collector's ``progress(what, count, bytes)`` calls."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.manifests: TaskID = progress.add_task("untagged manifests deleted", total=None, freed="")
        self.blobs: TaskID = progress.add_task("blobs deleted", total=None, freed="0 bytes freed")
        self.freed = 0

    def __call__(self, what: str, count: int, size: int) -> None:
        if what == "manifests":
            self.progress.advance(self.manifests, count)
        elif what == "candidates":
            self.progress.update(self.blobs, total=count)
        elif what == "blobs":
            self.freed += size
            self.progress.update(self.blobs, advance=count, freed=f"{self.freed:,} bytes freed")


def add_gc_commands(app: typer.Typer, load_settings: Callable[[Path | None], Settings]) -> None:
    """Add ``moorage gc …`` to ``app``; ``load_settings`` reads (and validates) the configuration."""
    gc_app = typer.Typer(no_args_is_help=True, help="Online garbage collection (docs/gc.md).")
    app.add_typer(gc_app, name="gc")

    @gc_app.command("run")
    def run(
        config: ConfigOption = None,
        dry_run: Annotated[
            bool, typer.Option(help="Print exactly what a real run would delete; delete nothing.")
        ] = False,
        delete_untagged: Annotated[
            bool, typer.Option(help="Also delete untagged manifests no kept tag, index or referrer needs.")
        ] = False,
        sweep_orphans: Annotated[
            bool, typer.Option(help="Also delete bytes under blobs/ that no database row knows (crashes, imports).")
        ] = False,
        grace_period: Annotated[
            str, typer.Option(help="Keep anything younger than this, e.g. 2h (default: gc.grace_period).")
        ] = "",
        enqueue: Annotated[
            bool,
            typer.Option(help="Queue a gc.run job for whichever node claims it, instead of running here."),
        ] = False,
    ) -> None:
        """Delete unreferenced blobs (and, if asked, untagged manifests) while the registry keeps serving."""
        from moorage.gc.collector import GarbageCollector
        from moorage.gc.job import enqueue_gc, options_from, refuse_when_read_only
        from moorage.services import Services

        settings = load_settings(config)
        payload: dict[str, object] = {
            "dry_run": dry_run,
            "delete_untagged": delete_untagged,
            "sweep_orphans": sweep_orphans,
        }
        if grace_period:
            try:
                parse_duration(grace_period)
            except ValueError as exc:
                raise typer.BadParameter(str(exc), param_hint="--grace-period") from None
            payload["grace_period"] = grace_period
        options = options_from(settings.gc, payload)
        err = Console(stderr=True)

        async def go() -> None:
            services = Services.from_settings(settings)
            try:
                try:
                    refuse_when_read_only(services.guard, options.dry_run)
                except RegistryError as exc:
                    err.print(f"[red]refused:[/red] {exc.message}")
                    raise typer.Exit(1) from None
                if enqueue:
                    job = await enqueue_gc(
                        services.jobs,
                        dry_run=dry_run,
                        delete_untagged=delete_untagged,
                        sweep_orphans=sweep_orphans,
                        grace_period=grace_period or None,
                    )
                    typer.echo(f"queued gc.run job {job}; follow it at /api/v2.0/jobs/{job}")
                    return
                if not options.dry_run and services.proxy is not None:  # proxy caches over their limit first
                    for line in await services.proxy.evictions.evict_over_limit():
                        typer.echo(line, err=True)
                columns = (
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("{task.fields[freed]}"),
                    TimeElapsedColumn(),
                )
                with Progress(*columns, console=err, transient=dry_run) as progress:
                    invalidate = services.cache.invalidate if services.cache is not None else None
                    collector = GarbageCollector(
                        services.db,
                        services.gc_storage or services.storage,
                        options,
                        invalidate=invalidate,
                        progress=_Bars(progress),
                    )
                    report = await collector.run()
            finally:
                await services.aclose()
            if report.dry_run:
                for repository, digest in report.manifests:
                    typer.echo(f"manifest {repository}@{digest}")
                for digest, size in report.blobs:
                    typer.echo(f"blob {digest} {size}")
            err.print(report.summary())

        asyncio.run(go())

    @gc_app.command("stop")
    def stop(
        execution: Annotated[
            int | None, typer.Argument(help="The execution (gc.run job) id; default: every queued or running one.")
        ] = None,
        config: ConfigOption = None,
    ) -> None:
        """Stop GC executions: a queued one at once, a running one at its next batch boundary.

        Every batch is its own transaction, so nothing is left half-deleted; the next run finishes
        what a stopped one marked. A run started in a terminal (``moorage gc run``) is not a job:
        stop it with Ctrl-C (the same holds for it).
        """
        from moorage.gc.executions import GC_RUN, GcService
        from moorage.services import Services

        settings = load_settings(config)

        async def go() -> int:
            services = Services.from_settings(settings)
            try:
                gc = GcService(services.db, services.jobs)
                if execution is not None:
                    ids = [execution]
                else:
                    live = [*await services.jobs.list(state="queued", kind=GC_RUN),
                            *await services.jobs.list(state="running", kind=GC_RUN)]
                    ids = sorted(job.id for job in live)
                    if not ids:
                        typer.echo("no GC execution is queued or running")
                        return 0
                missing = 0
                for job_id in ids:
                    state = await gc.stop(job_id)
                    if state is None:
                        typer.echo(f"GC execution {job_id} does not exist; list them with GET /api/v2.0/system/gc",
                                   err=True)
                        missing += 1
                    elif state == "running":
                        typer.echo(f"GC execution {job_id}: stopping at its next batch boundary")
                    else:
                        typer.echo(f"GC execution {job_id}: {state}")
                return 1 if missing else 0
            finally:
                await services.aclose()

        raise typer.Exit(asyncio.run(go()))
