"""Start and stop real registry processes on loopback ports: ``moorage serve`` and the reference.

The reference is Debian's ``docker-registry`` (CNCF Distribution 2.8): the same client tests run
against it first, which proves a failing test is the server's fault and not the test's. Both
kinds are plain HTTP on ``127.0.0.1:<free port>`` with a private data directory, and their
stdout/stderr go to a log file that the e2e conftest attaches to a failing test's report.

Used by ``tests/e2e/conftest.py`` and by ``benchmarks/push_pull.py``; nothing here imports pytest.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

__all__ = [
    "RegistryProcess",
    "ServerStartError",
    "free_port",
    "moorage_command",
    "start_moorage",
    "start_reference",
    "start_together",
    "throwaway_postgres_database",
]

READY_TIMEOUT = float(os.environ.get("MOORAGE_TEST_READY_TIMEOUT", "90"))
"""Seconds a server may take to answer ``GET /v2/`` (the first start runs the migrations)."""


class ServerStartError(RuntimeError):
    """A registry process exited or never answered ``GET /v2/`` with 200; the message holds its log."""


@dataclass
class RegistryProcess:
    """A running registry: where it listens, where its bytes and log are, and how to stop it."""

    kind: str
    """``moorage`` or ``reference``; tests use it to skip features Distribution 2.8 lacks."""
    host: str
    """``127.0.0.1:<port>``: what goes into ``docker://`` references."""
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    label: str = ""
    """Human name for reports, e.g. ``moorage-postgres``."""
    ca_file: Path | None = None
    """The CA that signed the server's certificate when it serves HTTPS (``start_moorage(tls=…)``)."""
    _log_mark: int = field(default=0, repr=False)

    @property
    def url(self) -> str:
        """Base URL, without the ``/v2`` suffix."""
        return f"{'https' if self.ca_file else 'http'}://{self.host}"

    @property
    def is_reference(self) -> bool:
        """True for Debian's ``docker-registry``."""
        return self.kind == "reference"

    def mark_log(self) -> None:
        """Remember the log's current end, so :meth:`log_since_mark` shows one test's share."""
        self._log_mark = self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since_mark(self, max_chars: int = 20_000) -> str:
        """The log written since :meth:`mark_log` (its last ``max_chars`` characters)."""
        if not self.log_path.exists():
            return "(no log file)"
        with self.log_path.open("rb") as f:
            f.seek(self._log_mark)
            text = f.read().decode(errors="replace")
        return text[-max_chars:]

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM the process group, then SIGKILL after ``timeout`` seconds.

        The whole group, because an ASGI server with workers forks children that would keep
        the port (and, on PostgreSQL, the database) busy.
        """
        if self.process.poll() is None:
            _signal_group(self.process, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.process, signal.SIGKILL)
                self.process.wait(timeout)
        else:
            self.process.wait()


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def moorage_command() -> list[str]:
    """The ``moorage`` console script of the running interpreter's environment.

    Next to ``sys.executable`` first, so the tests exercise the package installed in the venv
    they run from rather than whatever ``moorage`` is first on ``PATH``.
    """
    beside = Path(sys.executable).with_name("moorage")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("moorage")
    if found is None:
        raise ServerStartError("no `moorage` console script: run `pip install -e .` in the venv first")
    return [found]


def _wait_ready(reg: RegistryProcess, timeout: float, ready: tuple[int, ...] = (200,)) -> None:
    """Poll ``GET /v2/`` until it answers one of ``ready``; fail early, with the log, if the process dies."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    verify = ssl.create_default_context(cafile=reg.ca_file) if reg.ca_file else True
    with httpx.Client(timeout=2, verify=verify) as client:
        while time.monotonic() < deadline:
            if reg.process.poll() is not None:
                raise ServerStartError(
                    f"{reg.label} exited with {reg.process.returncode} before answering GET /v2/;"
                    f" log:\n{reg.log_since_mark()}"
                )
            try:
                r = client.get(f"{reg.url}/v2/")
                if r.status_code in ready:
                    return
                last = f"HTTP {r.status_code}: {r.text[:200]}"
            except httpx.TransportError as exc:
                last = repr(exc)
            time.sleep(0.1)
    reg.stop()
    raise ServerStartError(
        f"{reg.label} did not answer GET /v2/ with 200 within {timeout:.0f}s (last: {last}); log:\n"
        f"{reg.log_since_mark()}"
    )


def _spawn(
    kind: str,
    label: str,
    argv: Sequence[str],
    host: str,
    data_dir: Path,
    env: Mapping[str, str],
    cwd: Path,
    ready_timeout: float,
    ca_file: Path | None = None,
    ready: tuple[int, ...] = (200,),
) -> RegistryProcess:
    log_path = data_dir.parent / f"{label}-{host.rsplit(':', 1)[1]}.log"
    with log_path.open("ab") as log:
        log.write(f"$ {shlex.join(argv)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env={**os.environ, **env},
            start_new_session=True,
        )
    reg = RegistryProcess(kind, host, data_dir, log_path, process, label, ca_file=ca_file)
    _wait_ready(reg, ready_timeout, ready)
    return reg


def start_moorage(
    workdir: Path,
    *,
    database_url: str | None = None,
    label: str = "moorage",
    command: Sequence[str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    ready_timeout: float = READY_TIMEOUT,
    port: int | None = None,
    tls: tuple[Path, Path, Path] | None = None,
) -> RegistryProcess:
    """Run ``moorage serve --listen 127.0.0.1:<port>`` on a fresh data dir under ``workdir``.

    ``tls`` is ``(certificate, key, CA)``: the server gets ``--tls-cert``/``--tls-key`` and is
    polled over HTTPS trusting only that CA.

    With no ``database_url`` it runs on the embedded default (SQLite + filesystem inside
    ``MOORAGE_DATA_DIR``); otherwise ``MOORAGE_DATABASE_URL`` points at that database.
    ``command`` replaces ``moorage serve`` (its ``{listen}``, ``{host}``, ``{port}`` and
    ``{data_dir}`` are filled in) so the benchmark can compare ASGI servers.
    Raises :class:`ServerStartError` (with the log) when it does not become ready.
    """
    port = port or free_port()
    host = f"127.0.0.1:{port}"
    data_dir = workdir / f"{label}-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    if command is None:
        argv = [*moorage_command(), "serve", "--listen", host]
        if tls is not None:
            argv += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    else:
        fill = {"listen": host, "host": "127.0.0.1", "port": str(port), "data_dir": str(data_dir)}
        argv = [part.format(**fill) for part in command]
    env = {"MOORAGE_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    if database_url is not None:
        env["MOORAGE_DATABASE_URL"] = database_url
    env.update(extra_env or {})
    # cwd is the work dir, so a server that ignored MOORAGE_DATA_DIR would litter a temp dir,
    # not the repository, and the data-dir assertions in the tests would notice.
    return _spawn("moorage", label, argv, host, data_dir, env, workdir, ready_timeout,
                  ca_file=tls[2] if tls is not None else None)


def start_reference(
    workdir: Path,
    *,
    label: str = "reference",
    ready_timeout: float = 30,
    port: int | None = None,
    storage_yaml: str | None = None,
    htpasswd: Path | None = None,
) -> RegistryProcess:
    """Run Debian's ``docker-registry`` with deletes enabled, on filesystem storage by default.

    ``storage_yaml`` replaces the driver section (indented under ``storage:``), e.g. an ``s3:``
    block so the benchmark can run the reference on the same bucket as Moorage. ``htpasswd``: a
    bcrypt htpasswd file; every request then needs Basic auth (``GET /v2/`` answers 401 when ready).
    """
    binary = shutil.which("docker-registry")
    if binary is None:
        raise ServerStartError("`docker-registry` is not installed (apt-get install docker-registry)")
    port = port or free_port()
    host = f"127.0.0.1:{port}"
    data_dir = workdir / f"{label}-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    config = workdir / f"{label}-config.yml"
    driver = storage_yaml or f"  filesystem:\n    rootdirectory: {data_dir}\n"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: info\n  accesslog:\n    disabled: false\n"
        f"storage:\n{driver}"
        "  delete:\n    enabled: true\n"
        "  cache:\n    blobdescriptor: inmemory\n"
        f"http:\n  addr: {host}\n"
        + (f"auth:\n  htpasswd:\n    realm: upstream\n    path: {htpasswd}\n" if htpasswd else "")
    )
    # Debian's unit runs it as `docker-registry serve <config>`; OTEL-free 2.8 needs nothing else.
    # Its aws-sdk-go panics on AWS_CA_BUNDLE with a custom transport ("LoadCustomCABundleError:
    # HTTPClient's transport unsupported type"); an empty value is ignored by the SDK.
    return _spawn(
        "reference", label, [binary, "serve", str(config)], host, data_dir, {"AWS_CA_BUNDLE": ""}, workdir,
        ready_timeout, ready=(401,) if htpasswd else (200,),
    )


def start_together(starts: Sequence[Callable[[], RegistryProcess]]) -> list[RegistryProcess]:
    """Start several registries at the same moment (e.g. to race their migrations).

    If any fails to start, the ones that did are stopped and the first error is raised.
    """
    with ThreadPoolExecutor(len(starts)) as pool:
        futures = [pool.submit(start) for start in starts]
        started: list[RegistryProcess] = []
        errors: list[BaseException] = []
        for future in futures:
            try:
                started.append(future.result())
            except Exception as exc:  # noqa: BLE001 - collected, the others stopped, then re-raised
                errors.append(exc)
    if errors:
        for node in started:
            node.stop()
        raise errors[0]
    return started


@contextmanager
def throwaway_postgres_database(admin_url: str, prefix: str = "moorage_e2e") -> Iterator[str]:
    """Create an empty database on the server of ``admin_url`` and drop it afterwards.

    Yields the new database's URL (same user, host and port). ``DROP … WITH (FORCE)``
    (PostgreSQL 13+) because a server that was killed may leave connections behind.
    """
    import psycopg
    from psycopg import sql

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
