"""Start and stop the services the HA tests need: Redis (single, Cluster, Sentinel) and nginx.

Every process is started by us on ``127.0.0.1`` free ports, in the foreground of its own
session (``start_new_session``), with its config, data and log under a temp dir; ``stop()``
signals exactly that process. Nothing here imports pytest (the benchmark uses it too).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.servers import free_port

__all__ = [
    "ManagedProcess",
    "NginxProxy",
    "RedisCluster",
    "RedisSentinel",
    "ServiceError",
    "ensure_debian_package",
    "redis_command",
    "start_nginx",
    "start_redis",
    "start_redis_cluster",
    "start_redis_sentinel",
    "write_self_signed_certificate",
]


class ServiceError(RuntimeError):
    """A service did not start; the message holds its log."""


def ensure_debian_package(binary: str, package: str) -> bool:
    """``True`` when ``binary`` is on PATH, installing ``package`` with apt-get as root if needed."""
    if shutil.which(binary):
        return True
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return False
    subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True, timeout=300)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", package],
        check=False,
        capture_output=True,
        timeout=600,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    return shutil.which(binary) is not None


@dataclass
class ManagedProcess:
    """One process we started, its log, and how to pause, resume or stop it."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-8000:] if self.log_path.exists() else ""

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets and data but answers nothing (a hung server)."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 10) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGCONT)
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)


def _spawn(name: str, argv: Sequence[str], workdir: Path) -> ManagedProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=workdir, start_new_session=True,
        )
    return ManagedProcess(name, process, log_path)


def redis_command(port: int, *args: str, timeout: float = 2.0) -> str:
    """Send one inline command with a raw socket and return the first reply line (no client needed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall((" ".join(args) + "\r\n").encode())
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        return data.decode(errors="replace").strip()


def _wait(predicate_name: str, check: object, proc: ManagedProcess, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise ServiceError(f"{proc.name} exited with {proc.process.returncode}; log:\n{proc.log()}")
        try:
            if check():  # type: ignore[operator]
                return
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.05)
    proc.stop()
    raise ServiceError(f"{proc.name}: {predicate_name} not reached in {timeout}s ({last}); log:\n{proc.log()}")


def start_redis(workdir: Path, *extra: str, port: int | None = None, name: str = "redis") -> tuple[ManagedProcess, int]:
    """A throwaway ``redis-server`` without persistence (a cache) on a free loopback port."""
    port = port or free_port()
    argv = [
        "redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
        "--dir", str(workdir), "--daemonize", "no", *extra,
    ]
    proc = _spawn(f"{name}-{port}", argv, workdir)
    _wait("PING", lambda: redis_command(port, "PING") == "+PONG", proc)
    return proc, port


@dataclass
class RedisCluster:
    masters: list[tuple[ManagedProcess, int]]

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{port}" for _, port in self.masters]

    def stop(self) -> None:
        for proc, _ in self.masters:
            proc.stop()


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def cluster_port() -> int:
    """A free port P with P + 10000 free too (Cluster's bus port), below 55536 as Redis requires."""
    import random

    for _ in range(200):
        port = random.randint(20000, 45000)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise ServiceError("no free port pair for a Redis Cluster node")


def start_redis_cluster(workdir: Path, masters: int = 3) -> RedisCluster:
    """``masters`` cluster-enabled servers joined with ``redis-cli --cluster create`` (no replicas)."""
    nodes: list[tuple[ManagedProcess, int]] = []
    try:
        for index in range(masters):
            port = cluster_port()
            node_dir = workdir / f"cluster-{index}"
            node_dir.mkdir(parents=True, exist_ok=True)
            nodes.append(
                start_redis(node_dir, "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                            "--cluster-node-timeout", "2000", port=port, name="redis-cluster")
            )
        create = subprocess.run(
            ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for _, p in nodes],
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=60, check=False,
        )
        if create.returncode != 0:
            raise ServiceError(f"redis-cli --cluster create failed:\n{create.stdout}\n{create.stderr}")
        for proc, port in nodes:
            _wait("cluster_state:ok", lambda p=port: "cluster_state:ok" in _info(p, "CLUSTER", "INFO"), proc)
    except BaseException:
        for proc, _ in nodes:
            proc.stop()
        raise
    return RedisCluster(nodes)


def _info(port: int, *command: str) -> str:
    result = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *command],
        capture_output=True, text=True, timeout=5, check=False,
    )
    return result.stdout


@dataclass
class RedisSentinel:
    master: tuple[ManagedProcess, int]
    sentinels: list[tuple[ManagedProcess, int]] = field(default_factory=list)
    name: str = "mymaster"

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{port}" for _, port in self.sentinels]

    def stop(self) -> None:
        for proc, _ in self.sentinels:
            proc.stop()
        self.master[0].stop()


def start_redis_sentinel(workdir: Path, sentinels: int = 1, name: str = "mymaster") -> RedisSentinel:
    """One master and ``sentinels`` ``redis-sentinel`` processes watching it (quorum 1)."""
    master = start_redis(workdir / "sentinel-master", name="redis-master")
    result = RedisSentinel(master, name=name)
    try:
        for index in range(sentinels):
            port = free_port()
            sentinel_dir = workdir / f"sentinel-{index}"
            sentinel_dir.mkdir(parents=True, exist_ok=True)
            config = sentinel_dir / "sentinel.conf"  # Sentinel rewrites its own config: ours, writable
            config.write_text(
                f"bind 127.0.0.1\nport {port}\ndir {sentinel_dir}\n"
                f"sentinel monitor {name} 127.0.0.1 {master[1]} 1\n"
                f"sentinel down-after-milliseconds {name} 2000\n"
            )
            proc = _spawn(f"redis-sentinel-{port}", ["redis-sentinel", str(config)], sentinel_dir)
            result.sentinels.append((proc, port))
            _wait(
                "master known",
                lambda p=port: str(master[1]) in _info(p, "SENTINEL", "get-master-addr-by-name", name),
                proc,
            )
    except BaseException:
        result.stop()
        raise
    return result


def write_self_signed_certificate(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A throwaway self-signed certificate and key for ``host`` (openssl)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "tls.crt", directory / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={host}",
         "-addext", f"subjectAltName=IP:{host},DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


@dataclass
class NginxProxy:
    """nginx in front of the nodes: plain HTTP and TLS on two loopback ports."""

    process: ManagedProcess
    http_port: int
    https_port: int
    config_path: Path

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def stop(self) -> None:
        # SIGQUIT is nginx's graceful stop; the master then ends its own workers.
        if self.process.process.poll() is None:
            self.process.process.send_signal(signal.SIGQUIT)
            try:
                self.process.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.stop()


def render_nginx_config(
    template: str, upstreams: Sequence[str], http_port: int, https_port: int, cert: Path, key: Path, workdir: Path
) -> str:
    """The shipped ``deploy/nginx/moorage.conf`` with the test's ports, nodes and paths filled in."""
    servers = "".join(f"    server {address} max_fails=1 fail_timeout=5s;\n" for address in upstreams)
    server_block = (
        template.replace("    server 10.0.0.11:5000 max_fails=1 fail_timeout=5s;\n", "")
        .replace("    server 10.0.0.12:5000 max_fails=1 fail_timeout=5s;\n", "")
        .replace("    server 10.0.0.13:5000 max_fails=1 fail_timeout=5s;\n", servers)
        .replace("listen 80;", f"listen 127.0.0.1:{http_port};")
        .replace("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;")
        .replace("/etc/nginx/tls/registry.crt", str(cert))
        .replace("/etc/nginx/tls/registry.key", str(key))
    )
    return (
        f"daemon off;\nmaster_process on;\nworker_processes 2;\npid {workdir / 'nginx.pid'};\n"
        f"error_log {workdir / 'error.log'} info;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        f"  access_log {workdir / 'access.log'};\n"
        f"  client_body_temp_path {workdir / 'client_body'};\n  proxy_temp_path {workdir / 'proxy'};\n"
        f"  fastcgi_temp_path {workdir / 'fastcgi'};\n  uwsgi_temp_path {workdir / 'uwsgi'};\n"
        f"  scgi_temp_path {workdir / 'scgi'};\n"
        + server_block
        + "}\n"
    )


def start_nginx(template_path: Path, upstreams: Sequence[str], workdir: Path) -> NginxProxy:
    """Run ``nginx -c <generated config>`` in the foreground on two free ports (HTTP and HTTPS)."""
    workdir.mkdir(parents=True, exist_ok=True)
    cert, key = write_self_signed_certificate(workdir / "tls")
    http_port, https_port = free_port(), free_port()
    config = workdir / "nginx.conf"
    config.write_text(
        render_nginx_config(template_path.read_text(), upstreams, http_port, https_port, cert, key, workdir)
    )
    test = subprocess.run(["nginx", "-t", "-c", str(config), "-e", str(workdir / "error.log")],
                          capture_output=True, text=True, check=False)
    if test.returncode != 0:
        raise ServiceError(f"nginx -t rejected {config}:\n{test.stderr}\n{config.read_text()}")
    proc = _spawn("nginx", ["nginx", "-c", str(config), "-e", str(workdir / "error.log")], workdir)

    def answering() -> bool:
        with socket.create_connection(("127.0.0.1", http_port), timeout=1):
            return True

    _wait("port open", answering, proc)
    return NginxProxy(proc, http_port, https_port, config)
