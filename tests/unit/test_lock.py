"""The lock files pin every dependency pyproject.toml declares, inside its bounds, alike in both.

``scripts/test.sh`` and ``scripts/install-and-serve.sh`` install the locks and then the project
with ``--no-deps``: a dependency added to pyproject.toml but not to the locks would be missing
at run time. This fails first, naming the fix (``bash scripts/lock.sh``).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)
FIX = "run `bash scripts/lock.sh` and commit requirements.lock and requirements-test.lock"


def _pins(name: str) -> dict[str, str]:
    text = (ROOT / name).read_text()
    return {canonicalize_name(m.group(1)): m.group(2) for m in _PIN.finditer(text)}


def _declared(*extras: str) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        found += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return found


def _missing_or_outside(pins: dict[str, str], declared: list[Requirement]) -> list[str]:
    problems = []
    for requirement in declared:
        pinned = pins.get(canonicalize_name(requirement.name))
        if pinned is None:
            problems.append(f"{requirement} is not pinned")
        elif not requirement.specifier.contains(pinned, prereleases=True):
            problems.append(f"{requirement} but the lock pins {pinned}")
    return problems


def test_requirements_lock_pins_every_runtime_dependency() -> None:
    assert _missing_or_outside(_pins("requirements.lock"), _declared()) == [], FIX


def test_requirements_test_lock_pins_every_runtime_and_test_dependency() -> None:
    assert _missing_or_outside(_pins("requirements-test.lock"), _declared("test")) == [], FIX


def test_both_locks_pin_shared_packages_alike() -> None:
    runtime, test = _pins("requirements.lock"), _pins("requirements-test.lock")
    assert len(runtime) > 30  # the parser found the pins (the runtime set has ~65 packages)
    assert {name: version for name, version in runtime.items() if test.get(name) != version} == {}, FIX
