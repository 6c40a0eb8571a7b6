"""The CI skip guard of ``tests/conftest.py``: under ``CI=true`` any skip fails the run.

Each test runs a tiny suite through the real :class:`tests.conftest.CiSkipGuard` with
``pytester`` (in-process, so the guard class is the one this suite loaded).
"""

from __future__ import annotations

import pytest

GUARD_CONFTEST = """
from tests.conftest import CiSkipGuard

def pytest_configure(config):
    config.pluginmanager.register(CiSkipGuard(), CiSkipGuard.NAME)
"""

SUITE_WITH_SKIP = """
import pytest

def test_runs():
    assert 1 + 1 == 2

def test_bare_skip():
    pytest.skip("the service is not installed")
"""


def _run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str | None, suite: str
) -> pytest.RunResult:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    pytester.makeconftest(GUARD_CONFTEST)
    # The inner run reads no pyproject of ours: set what pytest-asyncio warns about when unset.
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_tiny=suite)
    return pytester.runpytest_inprocess("-p", "no:cacheprovider")


def test_a_bare_skip_fails_the_run_under_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run(pytester, monkeypatch, "true", SUITE_WITH_SKIP)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*skipped under CI=true*",
            "test_tiny.py::test_bare_skip: Skipped: the service is not installed",
            "1 skipped: nothing may skip under CI*",
        ]
    )


def test_a_skip_passes_on_a_developer_machine(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run(pytester, monkeypatch, None, SUITE_WITH_SKIP)
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.no_fnmatch_line("*skipped under CI=true*")


def test_module_level_skip_and_xfail_fail_under_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        test_module_skip="""
import pytest
pytest.skip("whole module", allow_module_level=True)
""",
    )
    suite = """
import pytest

@pytest.mark.xfail(reason="known bug")
def test_expected_to_fail():
    assert False
"""
    result = _run(pytester, monkeypatch, "1", suite)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*test_module_skip.py*whole module*", "*test_expected_to_fail: xfail: known bug*"]
    )


def test_a_clean_run_under_ci_passes(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _run(pytester, monkeypatch, "true", "def test_runs():\n    assert True\n")
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1)
