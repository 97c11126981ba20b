"""Specifications of how a test run that did not complete normally is read (analyzers/testrun.py):
pytest's exit code, a process that died, a session that never finished, results that contradict
the exit code; and of counting each test once when pytest-xdist's workers and controller all write
the report. The plugin's JSON-lines report and pytest's exit are crafted here (`parse_report`);
one real run with pytest-xdist where it is installed.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from heedls.analyzers import testrun
from heedls.analyzers.model import Diagnostic
from heedls.analyzers.proc import ProcResult

USAGE = textwrap.dedent("""\
    ERROR: usage: python -m pytest [options] [file_or_dir] [file_or_dir] [...]
    python -m pytest: error: unrecognized arguments: {option}
      inifile: {inifile}
      rootdir: {rootdir}
""")
# pytest-asyncio's warning, printed on stderr by every run in some environments
PLUGIN_WARNING = textwrap.dedent("""\
    /venv/lib/python3.11/site-packages/pytest_asyncio/plugin.py:306: PytestDeprecationWarning: The configuration option "asyncio_default_fixture_loop_scope" is unset.
    The event loop scope for asynchronous fixtures will default to the fixture scope. Set it explicitly.

      warnings.warn(PytestDeprecationWarning(_DEFAULT_FIXTURE_LOOP_SCOPE_UNSET))
""")
SESSION = {"event": "session", "rootdir": "/ws", "python": "3.11.7", "pytest": "9.2.0"}
TEST_FILE = "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n\n\ndef test_zero():\n    assert add(0, 0) == 0\n"


def _report(tmp_path: Path, events: list[dict[str, Any]]) -> Path:
    path = tmp_path / "report.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return path


def _read(tmp_path: Path, events: list[dict[str, Any]], returncode: int | None, *, stdout: str = "",
          stderr: str = "", targets: list[str] | None = None) -> tuple[testrun.TestRun, list[Diagnostic]]:
    (tmp_path / "test_calc.py").write_text(TEST_FILE, encoding="utf-8")
    result = ProcResult(returncode, stdout, stderr, 1.0, False)
    run = testrun.parse_report(_report(tmp_path, events), result, tmp_path, 60.0, targets or [])
    return run, testrun.failures_to_diagnostics(run, tmp_path)


def _run_errors(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    return [d for d in diagnostics if d.code == "run-error"]


def _test(nodeid: str, outcome: str, when: str = "call") -> list[dict[str, Any]]:
    return [{"event": "test_start", "nodeid": nodeid},
            {"event": "report", "nodeid": nodeid, "when": when, "outcome": outcome}]


FAILURE = {"event": "failure", "nodeid": "test_calc.py::test_add", "when": "call", "path": "",
           "line": 4, "exc_type": "AssertionError", "message": "assert -1 == 3"}


# -- pytest ended before its session started ----------------------------------------------------------

def test_a_usage_error_is_an_error_at_the_addopts_line_with_pytests_own_words(tmp_path: Path) -> None:
    ini = tmp_path / "pytest.ini"
    ini.write_text("[pytest]\naddopts = --bogus\n", encoding="utf-8")
    stderr = USAGE.format(option="--bogus", inifile=ini, rootdir=tmp_path)
    run, diagnostics = _read(tmp_path, [], 4, stderr=stderr)
    assert run.outcome == "error" and run.total == 0
    assert run.incomplete == "pytest exited with code 4: usage error: unrecognized arguments: --bogus"
    [error] = _run_errors(diagnostics)
    assert error.severity == "error" and error.source == "pytest"
    assert error.message == "tests could not be run: pytest exited with code 4: usage error: unrecognized arguments: --bogus"
    assert (error.path, error.range.start.line) == (str(ini), 1)  # 0-based: the addopts line
    assert error.explanation and "--bogus" in error.explanation


def test_a_cache_option_in_addopts_is_said_to_be_unknown_under_heedls(tmp_path: Path) -> None:
    stderr = USAGE.format(option="--lf", inifile=tmp_path / "pytest.ini", rootdir=tmp_path)
    run, _ = _read(tmp_path, [], 4, stderr=stderr)
    assert run.incomplete and "unrecognized arguments: --lf" in run.incomplete
    assert "-p no:cacheprovider" in run.incomplete


def test_a_broken_pyproject_is_an_error_at_the_line_pytest_names(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\n[tool.heedls\n', encoding="utf-8")
    stderr = f"ERROR: {pyproject}: Expected ']' at the end of a table declaration (at line 3, column 13)\n\n"
    run, diagnostics = _read(tmp_path, [], 4, stderr=stderr)
    [error] = _run_errors(diagnostics)
    assert error.message.startswith("tests could not be run: pytest exited with code 4: ERROR: ")
    assert "Expected ']'" in error.message
    assert (error.path, error.range.start.line) == (str(pyproject), 2)


@pytest.mark.parametrize("returncode", [0, 3, 5])
def test_pytest_ending_silently_before_its_session_is_no_pass_whatever_its_code(tmp_path: Path,
                                                                                 returncode: int) -> None:
    """`sys.exit(3)`, `os._exit(0)` or `os._exit(5)` in a conftest.py: no output, no session."""
    run, diagnostics = _read(tmp_path, [], returncode, targets=[str(tmp_path / "test_calc.py")])
    assert run.outcome == "error"
    [error] = _run_errors(diagnostics)
    assert error.message.startswith(f"tests could not be run: pytest exited with code {returncode}: no output")
    assert "sys.exit()" in error.message  # where to look
    assert (error.path, error.range.start.line) == (str(tmp_path / "test_calc.py"), 0)


def test_pytest_killed_by_a_signal_says_which(tmp_path: Path) -> None:
    run, diagnostics = _read(tmp_path, [], -9)
    assert run.incomplete == "pytest was killed by signal SIGKILL: no output"
    assert [d.path for d in _run_errors(diagnostics)] == [str(tmp_path)]  # no target: the workspace


# -- the session started but did not finish -----------------------------------------------------------

def test_a_session_without_its_finish_record_did_not_complete_and_names_the_running_test(tmp_path: Path) -> None:
    """`os._exit(0)` in a test: exit code 0, one test passed, the next one running."""
    events = [SESSION, *_test("test_calc.py::test_zero", "passed"), {"event": "test_start", "nodeid": "test_calc.py::test_add"}]
    run, diagnostics = _read(tmp_path, events, 0)
    assert run.outcome == "error" and run.passed == 1
    assert run.incomplete is not None and run.incomplete.startswith(
        "pytest exited with code 0 while test_calc.py::test_add was running: no output")
    [error] = _run_errors(diagnostics)
    assert error.message.startswith("the test run did not complete: ")
    assert (error.path, error.range.start.line) == (str(tmp_path / "test_calc.py"), 3)  # def test_add


def test_a_segfault_is_named_from_pythons_fatal_error_line(tmp_path: Path) -> None:
    events = [SESSION, {"event": "test_start", "nodeid": "test_calc.py::test_add"}]
    run, _ = _read(tmp_path, events, -11, stderr="Fatal Python error: Segmentation fault\n\nCurrent thread 0x1:\n"
                                                  '  File "/ws/test_calc.py", line 5 in test_add\n')
    assert run.incomplete == ("pytest was killed by signal SIGSEGV while test_calc.py::test_add was running: "
                              "Fatal Python error: Segmentation fault")


# -- the session finished, but its exit code or results say it did not go as a run should -------------

def test_an_interrupted_run_is_reported_and_its_unexplained_failure_too(tmp_path: Path) -> None:
    """`--pdb` in addopts: pdb's hook takes the exception (no failure record), stdin is closed, exit 2."""
    events = [SESSION, *_test("test_calc.py::test_add", "failed"),
              {"event": "finish", "exitstatus": 2, "collected": 2}]
    stdout = "F\n!!!!!!!! _pytest.outcomes.Exit: Quitting debugger !!!!!!!!\n1 failed in 0.1s\n"
    run, diagnostics = _read(tmp_path, events, 2, stdout=stdout, stderr=PLUGIN_WARNING)
    assert run.failed == 1 and run.outcome == "failed"
    assert run.incomplete == "pytest exited with code 2: _pytest.outcomes.Exit: Quitting debugger"
    assert len(_run_errors(diagnostics)) == 1
    [unexplained] = [d for d in diagnostics if d.data.get("kind") == "unexplained_failure"]
    assert unexplained.severity == "error" and unexplained.message.startswith("test_add failed")
    assert (unexplained.path, unexplained.range.start.line) == (str(tmp_path / "test_calc.py"), 3)


def test_exit_code_1_with_no_test_failed_is_reported(tmp_path: Path) -> None:
    events = [SESSION, *_test("test_calc.py::test_zero", "passed"), {"event": "finish", "exitstatus": 0, "collected": 1}]
    stdout = ".\nFAIL Required test coverage of 90% not reached. Total coverage: 50.00%\n"
    run, diagnostics = _read(tmp_path, events, 1, stdout=stdout)
    assert run.outcome == "error"
    assert run.incomplete == ("pytest exited with code 1 though no test failed: "
                              "FAIL Required test coverage of 90% not reached. Total coverage: 50.00%")
    assert _run_errors(diagnostics)[0].message.startswith("the test run did not complete: ")


def test_tests_collected_but_none_run_is_reported(tmp_path: Path) -> None:
    """`--collect-only` in addopts: exit code 0; plugins' warnings are not the reason given."""
    events = [SESSION, {"event": "finish", "exitstatus": 0, "collected": 2}]
    run, diagnostics = _read(tmp_path, events, 0, stdout="test_calc.py::test_add\ntest_calc.py::test_zero\n\n"
                                                          "2 tests collected in 0.01s\n", stderr=PLUGIN_WARNING)
    assert run.incomplete == "pytest exited with code 0 after collecting 2 tests and running none: 2 tests collected in 0.01s"
    assert len(_run_errors(diagnostics)) == 1


def test_collection_errors_explain_pytests_exit_code_2(tmp_path: Path) -> None:
    events = [SESSION, {"event": "collect_error", "nodeid": "test_calc.py",
                        "longrepr": "test_calc.py:1: in <module>\n    import nosuch\nE   ModuleNotFoundError: No module named 'nosuch'"},
              {"event": "finish", "exitstatus": 2, "collected": 0}]
    run, diagnostics = _read(tmp_path, events, 2, stdout="!!!!! Interrupted: 1 error during collection !!!!!\n")
    assert run.outcome == "error" and run.incomplete is None
    assert [d.data["kind"] for d in diagnostics] == ["collect_error"]


def test_no_tests_collected_is_no_error_but_no_pass_either(tmp_path: Path) -> None:
    """Exit code 5 (`-k` selecting nothing, a project without tests): the outcome says so."""
    events = [SESSION, {"event": "finish", "exitstatus": 5, "collected": 0}]
    run, diagnostics = _read(tmp_path, events, 5, stdout="2 deselected in 0.01s\n")
    assert run.outcome == "no-tests" and run.incomplete is None
    assert diagnostics == []
    assert run.summary == {"outcome": "no-tests", "collected": 0, "incomplete": None}


def test_a_normal_failing_run_is_reported_as_before(tmp_path: Path) -> None:
    events = [SESSION, *_test("test_calc.py::test_add", "failed"), {**FAILURE, "path": str(tmp_path / "test_calc.py")},
              *_test("test_calc.py::test_zero", "passed"), {"event": "finish", "exitstatus": 1, "collected": 2}]
    run, diagnostics = _read(tmp_path, events, 1, stderr=PLUGIN_WARNING)
    assert (run.outcome, run.passed, run.failed, run.incomplete, run.unexplained) == ("failed", 1, 1, None, [])
    assert [d.message for d in diagnostics] == ["test_add failed: AssertionError: assert -1 == 3"]


# -- pytest-xdist: the controller and each worker write the report ----------------------------------------

def test_with_xdist_each_test_and_collection_error_counts_once(tmp_path: Path) -> None:
    """As written by `-n 2`: a session per process, each test's report by its worker and again by the
    controller, each worker's finish before the controller's reports, a collection error per process."""
    broken = {"event": "collect_error", "nodeid": "test_broken.py", "longrepr": "E   ModuleNotFoundError: No module named 'nosuch'"}
    failure = {**FAILURE, "path": str(tmp_path / "test_calc.py")}
    events = [SESSION, SESSION, SESSION, broken, broken, broken,
              *_test("test_calc.py::test_zero", "passed"), *_test("test_calc.py::test_add", "failed"), failure,
              {"event": "finish", "exitstatus": 1, "collected": 2},
              {"event": "report", "nodeid": "test_calc.py::test_zero", "when": "call", "outcome": "passed"},
              {"event": "finish", "exitstatus": 1, "collected": 2},
              {"event": "report", "nodeid": "test_calc.py::test_add", "when": "call", "outcome": "failed"},
              {"event": "report", "nodeid": "test_broken.py", "when": "collect", "outcome": "failed"},
              {"event": "finish", "exitstatus": 1, "collected": 2}]
    run, diagnostics = _read(tmp_path, events, 1)
    assert (run.passed, run.failed, run.errors, len(run.failures), len(run.collect_errors)) == (1, 1, 0, 1, 1)
    assert run.incomplete is None and run.unexplained == []
    assert len([d for d in diagnostics if d.data.get("kind") == "collect_error"]) == 1


def test_with_xdist_a_crashed_worker_counts_its_test_as_failed_and_shows_it(tmp_path: Path) -> None:
    events = [SESSION, SESSION, SESSION, {"event": "test_start", "nodeid": "test_calc.py::test_add"},
              {"event": "session"},  # the replacement worker
              {"event": "report", "nodeid": "test_calc.py::test_add", "when": "???", "outcome": "failed"},
              {"event": "finish", "exitstatus": 0, "collected": 0},
              {"event": "finish", "exitstatus": 1, "collected": 1}]
    run, diagnostics = _read(tmp_path, events, 1)
    assert (run.failed, run.errors, run.incomplete) == (1, 0, None)
    assert [d.message.split(" (")[0] for d in diagnostics] == ["test_add failed"]


def test_with_xdist_installed_a_real_run_counts_each_test_once(tmp_path: Path) -> None:
    pytest.importorskip("xdist")  # the workspace's interpreter here is this one
    (tmp_path / "calc.py").write_text("def add(a, b):\n    return a - b\n", encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -n 2\n", encoding="utf-8")
    (tmp_path / "test_calc.py").write_text(TEST_FILE, encoding="utf-8")
    run = testrun.run_tests(tmp_path, None, python=sys.executable, timeout_s=120)
    assert (run.passed, run.failed, run.incomplete, len(run.failures)) == (1, 1, None, 1)
