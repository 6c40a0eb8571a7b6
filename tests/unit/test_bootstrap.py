"""The generated admin password reaches the operator through a 0600 file, or once on the console."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

from moorage.auth.bootstrap import INITIAL_PASSWORD_FILE, hand_over_initial_password


def test_written_to_a_private_file(tmp_path: Path) -> None:
    stale = tmp_path / INITIAL_PASSWORD_FILE
    stale.write_text("old\n")
    os.chmod(stale, 0o644)  # a file left with wider permissions is narrowed, not trusted
    console = io.StringIO()
    path = hand_over_initial_password(tmp_path, "S3cret-generated", console)
    assert path == stale and path.read_text() == "S3cret-generated\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert console.getvalue() == ""


def test_a_symlink_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("untouched")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / INITIAL_PASSWORD_FILE).symlink_to(target)
    console = io.StringIO()
    assert hand_over_initial_password(tmp_path / "data", "S3cret-generated", console) is None
    assert target.read_text() == "untouched" and "S3cret-generated" in console.getvalue()


def test_printed_once_on_the_console_when_no_file_can_be_written(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    console = io.StringIO()
    assert hand_over_initial_password(not_a_directory, "S3cret-generated", console) is None
    assert console.getvalue().count("S3cret-generated") == 1 and "admin" in console.getvalue()
