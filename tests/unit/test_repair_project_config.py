"""The repair's test runs honour the project's own pytest configuration, and only its own: options
of its plugins in addopts, a config pytest cannot read said in pytest's words, none taken from
the folders above the temporary copies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from heedls.analyzers.repair.engine import RepairRequest, repair

CALC = "def add(a, b):\n    return a - b\n"
TESTS = ("from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n\n\n"
         "def test_zero():\n    assert add(0, 0) == 0\n")


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "calc.py").write_text(CALC)
    (root / "test_calc.py").write_text(TESTS)
    return root


def _repair(ws: Path, budget_s: float = 30) -> object:
    return repair(RepairRequest(module=ws / "calc.py", tests=[ws / "test_calc.py"], budget_s=budget_s, jobs=2))


def test_an_addopts_option_of_an_installed_plugin_does_not_stop_the_repair(ws: Path) -> None:
    """Runs keep plugin autoload off, so pytest-timeout's `--timeout=30` in addopts was an
    unrecognised argument (exit 4) and the repair said "No tests were collected"; plain pytest
    runs such projects. The runners now restart with plugins on, as for async tests."""
    pytest.importorskip("pytest_timeout")
    (ws / "pytest.ini").write_text("[pytest]\naddopts = --timeout=30\n")
    result = _repair(ws)
    assert result.status == "fixed", result.explanation
    assert result.failing_tests == ["test_calc.py::test_add"]
    assert "return a + b" in (result.new_text or "")


@pytest.mark.slow
def test_xdist_in_addopts_does_not_take_the_search_runs_out_of_the_runner(ws: Path) -> None:
    """With plugins on, `-n 2` would run the tests in xdist's workers, where the runner neither
    traces nor times them: the search runs keep them in process (the option is still accepted)."""
    pytest.importorskip("xdist")
    (ws / "pytest.ini").write_text("[pytest]\naddopts = -n 2\n")
    result = _repair(ws, budget_s=45)
    assert result.status == "fixed", result.explanation
    assert result.failing_tests == ["test_calc.py::test_add"]
    assert any(s.line == 2 and s.ochiai > 0 for s in result.suspicious_lines)  # traced: it ran in the runner


def test_an_option_no_installed_plugin_adds_is_said_in_pytests_words(ws: Path) -> None:
    (ws / "pytest.ini").write_text("[pytest]\naddopts = --no-such-plugin-option=3\n")
    start = time.monotonic()
    result = _repair(ws)
    assert result.status == "error" and result.candidates_tried == 0
    assert result.explanation.startswith("pytest could not start: ")
    assert "unrecognized arguments: --no-such-plugin-option=3" in result.explanation
    assert f"inifile: {ws.resolve() / 'pytest.ini'}" in result.explanation  # the project's file, not the copy's
    assert "No tests were collected" not in result.explanation
    assert "install the plugin that adds it" in result.explanation
    assert time.monotonic() - start < 15


def test_a_pyproject_toml_pytest_cannot_read_is_said_in_pytests_words(ws: Path) -> None:
    (ws / "pyproject.toml").write_text("[project\nname = 'x'\n")
    result = _repair(ws)
    assert result.status == "error" and result.candidates_tried == 0
    assert result.explanation.startswith(f"pytest could not start: ERROR: {ws.resolve() / 'pyproject.toml'}: ")
    assert "No tests were collected" not in result.explanation


def test_a_pytest_config_above_the_temp_folder_is_not_the_copys(ws: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A project whose only root marker is `.git` (not copied) has no pytest configuration in its
    copy: pytest went on looking above the copy, and a pyproject.toml above the temp folder became
    its rootdir (node ids through the temp folder) and gave its addopts."""
    (ws / ".git").mkdir()
    outer = tmp_path / "outer"
    (outer / "tmp").mkdir(parents=True)
    (outer / "pyproject.toml").write_text('[tool.pytest.ini_options]\naddopts = "-k not_a_test_of_this_project"\n')
    monkeypatch.setattr(tempfile, "tempdir", str(outer / "tmp"))
    result = _repair(ws)
    assert result.status == "fixed", result.explanation
    assert result.failing_tests == ["test_calc.py::test_add"]
    assert list((outer / "tmp").iterdir()) == []


def test_the_projects_own_config_at_its_root_still_applies(ws: Path) -> None:
    (ws / "pyproject.toml").write_text('[tool.pytest.ini_options]\naddopts = "-k test_zero"\n')
    result = _repair(ws)
    assert result.status == "no-failing-tests", result.explanation  # test_add deselected, as for the user


def test_sigterm_exits_143_after_cleaning_up(ws: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The status a shell and CI expect of a process ended by SIGTERM (128 + 15), not Ctrl+C's 130."""
    scratch = tmp_path_factory.mktemp("scratch")
    (ws / "test_calc.py").write_text(TESTS.replace("def test_add():", "def test_add():\n    import time; time.sleep(1)"))
    child = subprocess.Popen([sys.executable, "-m", "heedls", "fix", "calc.py", "--test", "test_calc.py",
                              "--budget-seconds", "60"], cwd=ws, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=dict(os.environ, TMPDIR=str(scratch), PYTHONDONTWRITEBYTECODE="1"))
    deadline = time.monotonic() + 30
    while not list(scratch.glob("heedls-repair-*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(scratch.glob("heedls-repair-*")), "the search never started"
    child.send_signal(signal.SIGTERM)
    assert child.wait(30) == 143
    assert not list(scratch.glob("heedls-repair-*"))
