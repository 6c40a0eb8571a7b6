"""Handing the generated initial ``admin`` password to the operator, without putting it in any log.

Structured logs are shipped, indexed and kept for months by people who must not hold the
registry's admin password, so the password goes to ``<data_dir>/initial-admin-password``
(mode 0600, readable by the registry's own user only) and the log line names that file. When the
file cannot be written (a read-only data directory), it is printed once on the console (the
process's stderr, not the structured log), which is all a first start has.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO

__all__ = ["INITIAL_PASSWORD_FILE", "hand_over_initial_password"]

INITIAL_PASSWORD_FILE = "initial-admin-password"


def _write_private(path: Path, text: str) -> None:
    # O_NOFOLLOW: a symlink planted in the data directory cannot redirect the secret elsewhere.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)  # an older file may have had wider permissions
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def hand_over_initial_password(data_dir: Path | None, password: str, console: TextIO | None = None) -> Path | None:
    """Store ``password`` in a 0600 file under ``data_dir`` and return its path.

    Returns ``None`` after printing it on ``console`` (stderr) when there is no data directory or
    the file cannot be written.
    """
    if data_dir is not None:
        path = Path(data_dir) / INITIAL_PASSWORD_FILE
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_private(path, password + "\n")
            return path
        except OSError:
            pass
    out = console if console is not None else sys.stderr
    out.write(
        "\n*** Moorage created the user 'admin' with the password below. It is shown once: log in and change it\n"
        f"*** (PUT /api/v2.0/users/<id>/password), or set auth.admin_password before the first start.\n{password}\n\n"
    )
    out.flush()
    return None
