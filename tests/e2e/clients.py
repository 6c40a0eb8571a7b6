"""Real registry clients, configured to talk plain HTTP to loopback registries as root.

* ``skopeo`` gets ``--src-tls-verify=false`` / ``--dest-tls-verify=false`` and a private
  accept-anything ``policy.json``, so neither the host's TLS nor its signature policy matters.
* ``podman`` and ``buildah`` (root, no systemd, no Docker) get an isolated world: their own
  ``registries.conf`` (loopback registries marked insecure, no search registries, so nothing can
  ever reach the internet), their own ``containers.conf`` (``cgroupfs`` + ``file`` events: there
  is no systemd or journald to talk to), storage in ``--root``/``--runroot`` temp dirs, and the
  ``overlay`` storage driver when the kernel lets us mount it, ``vfs`` otherwise
  (see :func:`storage_driver`).
* ``oras`` is the Python SDK (``oras.provider.Registry(insecure=True)``).

Every command raises :class:`ClientError` with its full output when it fails, so a failing test
shows exactly what the client said.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.images import sha256_file

__all__ = [
    "ClientError",
    "ContainersTools",
    "Skopeo",
    "oras_registry",
    "run",
    "storage_driver",
]

COMMAND_TIMEOUT = 300


class ClientError(AssertionError):
    """A client command exited non-zero; ``str()`` holds the command line and all its output."""

    def __init__(self, argv: Sequence[str], result: subprocess.CompletedProcess[str]) -> None:
        self.argv = list(argv)
        self.result = result
        super().__init__(
            f"`{shlex.join(argv)}` exited {result.returncode}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = COMMAND_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run a client, capturing its output; raise :class:`ClientError` on failure when ``check``."""
    result = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise ClientError(argv, result)
    return result


def _write_policy(path: Path) -> Path:
    # Signature policy is not what these tests are about; the host's may be absent or strict.
    path.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    return path


@dataclass
class Skopeo:
    """``skopeo`` with TLS verification off for ``docker://`` and a private policy file."""

    workdir: Path

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.policy = _write_policy(self.workdir / "policy.json")

    def _base(self) -> list[str]:
        return ["skopeo", "--policy", str(self.policy)]

    def copy(self, src: str, dest: str, *extra: str) -> subprocess.CompletedProcess[str]:
        """``skopeo copy`` (extra flags such as ``--all``, ``--format v2s2`` go before the refs)."""
        tls = [f"--src-tls-verify={'false'}", f"--dest-tls-verify={'false'}"]
        return run([*self._base(), "copy", *tls, *extra, src, dest])

    def delete(self, ref: str) -> subprocess.CompletedProcess[str]:
        """``skopeo delete docker://…``: deletes the manifest the reference resolves to."""
        return run([*self._base(), "delete", "--tls-verify=false", ref])

    def inspect_raw(self, ref: str) -> dict[str, Any]:
        """The manifest (or index) as the registry serves it."""
        doc: dict[str, Any] = json.loads(
            run([*self._base(), "inspect", "--tls-verify=false", "--raw", ref]).stdout
        )
        return doc


@functools.cache
def storage_driver() -> str:
    """``overlay`` when an overlay mount works in this kernel/container, else ``vfs``.

    Probed once per process by really mounting a working container with buildah: `podman info`
    happily reports overlay on machines where the first mount then fails (overlay-on-overlay
    inside containers, no ``CAP_SYS_ADMIN``). vfs always works, it just copies every layer.
    ``MOORAGE_TEST_STORAGE_DRIVER`` forces a choice.
    """
    forced = os.environ.get("MOORAGE_TEST_STORAGE_DRIVER")
    if forced:
        return forced
    with tempfile.TemporaryDirectory(prefix="moorage-overlay-probe-") as tmp:
        tools = ContainersTools(Path(tmp), registries=(), driver="overlay")
        try:
            container = tools.buildah("from", "scratch").stdout.strip()
            tools.buildah("mount", container)
            tools.buildah("umount", container)
            tools.buildah("rm", container)
        except (ClientError, subprocess.TimeoutExpired):
            driver = "vfs"
        else:
            driver = "overlay"
        finally:
            tools.cleanup()
    return driver


class ContainersTools:
    """podman and buildah sharing one private storage and configuration under ``workdir``.

    ``registries`` are the ``host:port`` values to mark insecure (plain HTTP) in the private
    ``registries.conf``; it has no search registries, so a short name can never resolve to
    Docker Hub. Both tools run as root with ``cgroupfs`` and file events because this machine
    (like CI) has no systemd.
    """

    def __init__(
        self,
        workdir: Path,
        registries: Sequence[str],
        driver: str | None = None,
        *,
        storage: tuple[Path, Path] | None = None,
    ) -> None:
        """``storage`` = (root, runroot) keeps images in a lasting store (a build cache) that
        :meth:`cleanup` leaves in place; by default both are private and removed by it."""
        self.workdir = workdir
        self.driver = driver or storage_driver()
        self.lasting_storage = storage is not None
        if storage is not None:
            self.root, self.runroot = storage
            self.runroot.mkdir(parents=True, exist_ok=True)
        else:
            self.root = workdir / "storage"
            # podman refuses a runroot longer than 50 characters (its sockets live there and
            # sun_path is 108 bytes), and pytest's tmp paths are longer: a short dir of our own.
            self.runroot = Path(tempfile.mkdtemp(prefix="moorage-run-", dir="/tmp"))
        self.tmpdir = workdir / "tmp"
        for d in (self.root, self.tmpdir):
            d.mkdir(parents=True, exist_ok=True)
        registries_conf = workdir / "registries.conf"
        registries_conf.write_text(
            "unqualified-search-registries = []\n"
            + "".join(f'\n[[registry]]\nlocation = "{host}"\ninsecure = true\n' for host in registries)
        )
        containers_conf = workdir / "containers.conf"
        containers_conf.write_text(
            '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
            f'events_logfile_path = "{workdir / "events.log"}"\n'
            f'image_copy_tmp_dir = "{self.tmpdir}"\n'
        )
        self.env = {
            "CONTAINERS_REGISTRIES_CONF": str(registries_conf),
            "CONTAINERS_CONF": str(containers_conf),
            "TMPDIR": str(self.tmpdir),
        }

    def _storage_flags(self) -> list[str]:
        return ["--root", str(self.root), "--runroot", str(self.runroot), "--storage-driver", self.driver]

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``podman`` with the private storage, cgroupfs, file events and libpod tmpdir."""
        argv = [
            "podman",
            *self._storage_flags(),
            "--cgroup-manager=cgroupfs",
            "--events-backend=file",
            "--tmpdir",
            str(self.runroot / "libpod"),
            *args,
        ]
        return run(argv, env=self.env, check=check)

    def buildah(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``buildah`` with the private storage (and the private policy for push/pull)."""
        argv = ["buildah", *self._storage_flags(), *args]
        return run(argv, env={**self.env, "BUILDAH_ISOLATION": "chroot"}, check=check)

    def assert_files_match(self, name: str, files: Mapping[str, str]) -> None:
        """Mount the pulled image ``name``: every file of every layer must hash like the original.

        ``files`` maps a path inside the image to the hex SHA-256 of its content.
        """
        mountpoint = Path(self.podman("image", "mount", name).stdout.strip())
        try:
            for file_name, content_hash in files.items():
                assert sha256_file(mountpoint / file_name) == f"sha256:{content_hash}", file_name
        finally:
            self.podman("image", "unmount", name)

    def cleanup(self) -> None:
        """Unmount whatever the tools left mounted and remove the private storage.

        ``podman system reset`` would also do it but insists on a confirmation prompt and on the
        host's default paths on some versions; unmounting everything then deleting is enough.
        """
        if self.lasting_storage:
            shutil.rmtree(self.workdir, ignore_errors=True)
            return
        self.buildah("umount", "--all", check=False)
        self.podman("unmount", "--all", "--force", check=False)
        if self.driver == "overlay":
            # overlay leaves a mount on its own home directory.
            run(["umount", "-l", str(self.root / "overlay")], check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)
        shutil.rmtree(self.runroot, ignore_errors=True)


def oras_registry(host: str) -> Any:
    """An ORAS SDK client for a plain-HTTP registry at ``host`` (``127.0.0.1:port``)."""
    import oras.provider  # type: ignore[import-untyped]

    return oras.provider.Registry(hostname=host, insecure=True)
