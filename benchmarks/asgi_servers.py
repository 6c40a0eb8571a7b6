"""The ASGI servers the benchmarks can run Moorage under (``--server``), as commands for ``start_moorage``.

* ``moorage`` — ``moorage serve``: uvicorn (httptools + uvloop) with Moorage's protocol that
  offers ``http.response.zerocopysend`` (blobs go out with ``sendfile``); what operators run.
* ``uvicorn`` — stock uvicorn (httptools + uvloop), no zero-copy extension: blobs are streamed.
* ``granian`` — granian's ASGI interface (Rust, ``http.response.pathsend`` for whole files).
* ``hypercorn`` — hypercorn with uvloop.

granian and hypercorn are not Moorage dependencies: ``pip install granian hypercorn`` into the
venv to measure them. Every command migrates the database first (``moorage serve`` does it
itself) and runs without access logs, like ``moorage serve``'s default. ``{listen}``, ``{host}``
and ``{port}`` are filled in by :func:`tests.e2e.servers.start_moorage`.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

__all__ = ["SERVERS", "server_command"]

SERVERS = ("moorage", "uvicorn", "granian", "hypercorn")


def server_command(server: str, workers: int) -> list[str]:
    """The argv that starts Moorage under ``server`` with ``workers`` processes."""
    bin_dir = Path(sys.executable).parent
    if server == "moorage":
        return [str(bin_dir / "moorage"), "serve", "--listen", "{listen}", "--workers", str(workers)]
    factory = "moorage.app:app_from_environment"
    if server == "uvicorn":
        run = (f"{bin_dir / 'uvicorn'} --factory {factory} --host {{host}} --port {{port}} --workers {workers}"
               " --loop uvloop --http httptools --no-access-log --no-server-header --no-proxy-headers")
    elif server == "granian":
        run = (f"{bin_dir / 'granian'} --interface asgi --factory --host {{host}} --port {{port}}"
               f" --workers {workers} --loop uvloop --no-ws --log-level warning {factory}")
    elif server == "hypercorn":
        run = (f"{bin_dir / 'hypercorn'} -b {{host}}:{{port}} -w {workers} -k uvloop"
               f" --log-level warning '{factory}()'")
    else:
        raise ValueError(f"unknown server {server!r}; known: {', '.join(SERVERS)}")
    return ["sh", "-c", f"{shlex.quote(str(bin_dir / 'moorage'))} db upgrade && exec {run}"]
