"""Specifications of the test runner, the pytest plugin and failure diagnostics (analyzers/testrun.py).

Real failures come from QuixBugs bug folders (read in place, copied into tmp_path only); the rest
are small workspaces built here: a hanging test, a test that forks and sleeps, a test that prints
megabytes, a conftest that fails to import, a workspace without tests, non-UTF-8 source.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
from heedls.analyzers import testrun
from heedls.analyzers.pytest_plugin import PLUGIN_DIR, PLUGIN_MODULE
from heedls.analyzers.testrun import failures_to_diagnostics, find_python, related_tests, run_tests

from tests.support.processes import dead
from tests.support.shared_data import QUIXBUGS as BENCH

needs_bench = pytest.mark.skipif(not BENCH.is_dir(), reason="QuixBugs bench not available")


def _write(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def _bug(tmp_path: Path, name: str) -> Path:
    work = tmp_path / name
    shutil.copytree(BENCH / name, work)
    return work


# -- interpreter and related tests ------------------------------------------------------------------

def test_find_python_prefers_configured_then_workspace_venv(tmp_path: Path) -> None:
    assert find_python(tmp_path) == sys.executable
    venv_python = tmp_path / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.symlink_to(sys.executable)
    assert find_python(tmp_path) == str(venv_python)
    other = tmp_path / "envs" / "py311" / "bin" / "python"
    other.parent.mkdir(parents=True)
    other.symlink_to(sys.executable)
    assert find_python(tmp_path, "envs/py311/bin/python") == str(other)
    assert find_python(tmp_path, str(tmp_path / "envs" / "py311")) == str(other)  # a venv folder
    assert find_python(tmp_path, "/does/not/exist") == str(venv_python)  # bad setting: auto-detect


def test_a_venv_folder_as_the_configured_python_runs_the_tests_in_check_and_fix_alike(tmp_path: Path) -> None:
    """`tests.python = ".venv"` (a folder, as documented) reached pytest's start as the command
    itself ("could not run …/.venv: Permission denied"): run_tests and the repair's interpreter
    now take it through find_python, and the repair also finds an `env/` folder."""
    from heedls.analyzers.repair.workers import find_python as repair_python

    root = _write(tmp_path / "ws", {"test_ok.py": "def test_ok():\n    assert True\n"})
    wrapper = root / "myenv" / "bin" / "python"
    wrapper.parent.mkdir(parents=True)
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    run = run_tests(root, None, python=str(root / "myenv"), timeout_s=60)
    assert run.outcome == "passed" and run.passed == 1, (run.problem, run.incomplete, run.stderr_tail)
    assert repair_python(root, "myenv") == str(wrapper)  # relative to the project, a folder
    (root / "myenv").rename(root / "env")
    assert repair_python(root / "sub") == str(root / "env" / "bin" / "python")  # env/, from a folder below


def test_related_tests_by_import_then_by_name(tmp_path: Path) -> None:
    ws = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/shapes.py": "def area(): return 1\n",
        "pkg/colors.py": "RED = 1\n",
        "pkg/lonely.py": "X = 1\n",
        "tests/test_a.py": "from pkg import shapes\n",
        "tests/test_b.py": "import pkg.shapes as s\n",
        "tests/test_c.py": "from pkg.colors import RED\n",
        "tests/unit/test_lonely.py": "def test_x(): pass\n",
        "other/deep/er/test_lonely.py": "def test_y(): pass\n",  # farther away
        ".venv/lib/test_shapes.py": "import pkg.shapes\n",
    })
    found = related_tests(ws, ws / "pkg" / "shapes.py")
    assert sorted(Path(p).name for p in found) == ["test_a.py", "test_b.py"]
    assert related_tests(ws, ws / "pkg" / "colors.py") == [str((ws / "tests" / "test_c.py").resolve())]
    # nobody imports it: the nearest test_<name>.py
    assert related_tests(ws, ws / "pkg" / "lonely.py") == [str((ws / "tests" / "unit" / "test_lonely.py").resolve())]
    # a test file is its own related test; an unrelated module means "the whole suite"
    assert related_tests(ws, ws / "tests" / "test_a.py") == [str((ws / "tests" / "test_a.py").resolve())]
    _write(ws, {"pkg/orphan.py": "Y = 2\n"})
    assert related_tests(ws, ws / "pkg" / "orphan.py") == []


def test_plugin_is_a_self_contained_file_shipped_in_the_package() -> None:
    source = (PLUGIN_DIR / f"{PLUGIN_MODULE}.py").read_text(encoding="utf-8")
    imports = {line.split()[1].split(".")[0] for line in source.splitlines()
               if line.startswith(("import ", "from ")) and not line.startswith("from __future__")}
    assert "heedls" not in imports
    assert imports <= {"ast", "copy", "json", "linecache", "os", "re", "reprlib", "signal", "sys", "threading", "time",
                       "pytest", "difflib", "builtins"}
    assert (PLUGIN_DIR / "__init__.py").exists()  # so setuptools ships it as heedls.analyzers.pytest_plugin


# -- real failures ---------------------------------------------------------------------------------------

@needs_bench
def test_quixbugs_wrong_value_becomes_linked_diagnostics_with_the_input(tmp_path: Path) -> None:
    ws = _bug(tmp_path, "bucketsort")
    run = run_tests(ws, ["test_bucketsort.py"], timeout_s=60)
    assert run.outcome == "failed" and run.failed >= 1 and run.failures
    failure = run.failures[0]
    assert failure.exc_type == "AssertionError"
    assert failure.assertion is not None and failure.assertion.op == "=="
    assert failure.call is not None and failure.call.input and failure.call.input.startswith("bucketsort(")
    assert failure.test_frame is not None and failure.test_frame.path.endswith("test_bucketsort.py")
    assert failure.trace is not None and failure.trace.return_line is not None
    assert failure.test_locals  # the values at the failing frame
    diags = failures_to_diagnostics(run, ws)
    module = str((ws / "bucketsort.py").resolve())
    test_diags = [d for d in diags if d.path.endswith("test_bucketsort.py")]
    code_diags = [d for d in diags if d.path == module]
    assert test_diags and code_diags
    assert all(d.source == "pytest" and d.explanation for d in diags)
    # linked both ways
    assert any(r.path == module for r in test_diags[0].related)
    assert any(r.path.endswith("test_bucketsort.py") for r in code_diags[0].related)
    # the explanation names the failing input and the wrong value
    text = code_diags[0].explanation or ""
    assert failure.call.input[:40] in text and failure.assertion.left[:40] in text
    # most likely cause first: the code diagnostics outrank the assertion
    assert max(d.rank for d in code_diags) > max(d.rank for d in test_diags)


@needs_bench
def test_quixbugs_recursion_error_points_into_the_code_under_test(tmp_path: Path) -> None:
    ws = _bug(tmp_path, "gcd")
    run = run_tests(ws, None, timeout_s=60)
    rec = [f for f in run.failures if f.exc_type == "RecursionError"]
    assert rec, [f.exc_type for f in run.failures]
    f = rec[0]
    assert f.code_frame is not None and f.code_frame.path.endswith("gcd.py") and f.code_frame.function == "gcd"
    assert f.frames_total > 100 and len(f.frames) <= 30  # a deep traceback, kept small
    assert f.code_locals and set(f.code_locals) >= {"a", "b"}
    assert f.suspects[0].path.endswith("gcd.py")
    assert "base case" in (failures_to_diagnostics(run, ws)[0].explanation or "")


# -- containment ------------------------------------------------------------------------------------------

def test_a_hanging_test_is_killed_at_the_timeout(tmp_path: Path) -> None:
    ws = _write(tmp_path, {
        "test_fast.py": "def test_ok():\n    assert True\n",
        "test_slow.py": "import time\n\ndef test_hangs():\n    while True:\n        time.sleep(0.05)\n",
    })
    run = run_tests(ws, None, timeout_s=4)
    assert run.outcome == "timeout"
    assert run.running_test == "test_slow.py::test_hangs"
    assert run.passed == 1 and run.seconds < 30
    diags = failures_to_diagnostics(run, ws)
    timeout = [d for d in diags if d.code == "timeout"]
    assert len(timeout) == 1
    assert timeout[0].path == str((ws / "test_slow.py").resolve()) and timeout[0].range.start.line == 2
    assert "killed after 4 s" in timeout[0].message and "killed" in (timeout[0].explanation or "")


def test_a_test_that_forks_and_sleeps_has_its_whole_group_killed(tmp_path: Path) -> None:
    ws = _write(tmp_path, {"test_fork.py": """
        import os, time

        def test_forks():
            pid = os.fork()
            if pid == 0:
                time.sleep(120)
                os._exit(0)
            with open("child.pid", "w") as fh:
                fh.write(str(pid))
            time.sleep(120)
    """})
    run = run_tests(ws, None, timeout_s=4)
    assert run.outcome == "timeout"
    child = int((ws / "child.pid").read_text())
    assert dead(child), "the forked grandchild survived the run"


async def test_cancelling_an_async_run_kills_the_process_group(tmp_path: Path) -> None:
    ws = _write(tmp_path, {"test_wait.py": """
        import os, time

        def test_waits():
            with open("test.pid", "w") as fh:
                fh.write(str(os.getpid()))
            time.sleep(120)
    """})
    task = asyncio.create_task(testrun.run_tests_async(ws, None, timeout_s=60))
    for _ in range(200):
        if (ws / "test.pid").exists() and (ws / "test.pid").read_text():
            break
        await asyncio.sleep(0.05)
    pid = int((ws / "test.pid").read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert dead(pid)


def test_a_test_printing_megabytes_is_bounded(tmp_path: Path) -> None:
    ws = _write(tmp_path, {"test_noisy.py": """
        import sys

        def test_prints_then_passes():
            sys.stdout.write("x" * 8_000_000)

        def test_prints_then_fails():
            print("y" * 3_000_000)
            print("the last line")
            assert 1 == 2
    """})
    run = run_tests(ws, None, timeout_s=60)
    assert run.outcome == "failed" and run.passed == 1 and run.failed == 1
    assert len(run.stderr_tail) <= testrun.STDERR_TAIL
    failure = run.failures[0]
    assert len(failure.stdout_tail) <= 2000 and "the last line" in failure.stdout_tail


def test_a_conftest_that_fails_to_import_is_a_diagnostic_at_the_import(tmp_path: Path) -> None:
    ws = _write(tmp_path, {
        "conftest.py": "import os\nimport heedls_no_such_module_xyz\n",
        "test_x.py": "def test_x():\n    assert True\n",
    })
    run = run_tests(ws, None, timeout_s=60)
    assert run.outcome == "error" and run.passed == 0
    assert len(run.collect_errors) == 1
    err = run.collect_errors[0]
    assert Path(err.path) == (ws / "conftest.py").resolve() and err.line == 2
    assert err.exc_type == "ModuleNotFoundError" and "heedls_no_such_module_xyz" in err.message
    diags = failures_to_diagnostics(run, ws)
    assert len(diags) == 1 and diags[0].range.start.line == 1 and diags[0].code == "ModuleNotFoundError"
    assert "not installed" in (diags[0].explanation or "")


def test_a_test_module_that_fails_to_import_is_a_collection_error(tmp_path: Path) -> None:
    ws = _write(tmp_path, {
        "test_ok.py": "def test_ok():\n    assert True\n",
        "test_broken.py": "\n\nfrom helpers import nothing_here\n",
        "helpers.py": "X = 1\n",
    })
    run = run_tests(ws, None, timeout_s=60)
    assert run.outcome == "error" and run.collect_errors
    err = run.collect_errors[0]
    assert Path(err.path).name == "test_broken.py" and err.line == 3 and err.exc_type == "ImportError"


def test_a_workspace_without_tests(tmp_path: Path) -> None:
    ws = _write(tmp_path, {"mod.py": "X = 1\n"})
    run = run_tests(ws, None, timeout_s=60)
    assert run.outcome == "no-tests" and run.total == 0
    assert failures_to_diagnostics(run, ws) == []


def test_non_utf8_sources(tmp_path: Path) -> None:
    ws = _write(tmp_path, {
        "legacy.py": "# -*- coding: latin-1 -*-\nNAME = 'caf\xe9'\n\ndef greet():\n    return NAME + 1\n".encode("latin-1"),
        "undeclared.py": b"NAME = 'caf\xe9'\n",
        "test_legacy.py": "from legacy import greet\n\ndef test_greet():\n    assert greet() == 'x'\n",
        "test_undeclared.py": "import undeclared\n\ndef test_u():\n    assert undeclared.NAME\n",
    })
    run = run_tests(ws, ["test_legacy.py"], timeout_s=60)
    assert run.outcome == "failed"
    f = run.failures[0]
    assert f.exc_type == "TypeError" and f.code_frame is not None and f.code_frame.line == 5
    assert "caf\xe9" in f.code_locals.get("NAME", "") or "NAME" not in f.code_locals
    diags = failures_to_diagnostics(run, ws)
    assert any(d.path.endswith("legacy.py") and d.range.start.line == 4 for d in diags)
    broken = run_tests(ws, ["test_undeclared.py"], timeout_s=60)
    assert broken.outcome == "error" and broken.collect_errors
    assert broken.collect_errors[0].exc_type == "SyntaxError"
    assert Path(broken.collect_errors[0].path).name == "undeclared.py"


def test_reading_a_report_cut_short_by_a_kill(tmp_path: Path) -> None:
    from heedls.analyzers.proc import ProcResult

    report = tmp_path / "r.jsonl"
    report.write_text('{"event": "session"}\n{"event": "test_start", "nodeid": "t.py::a"}\n'
                      '{"event": "report", "nodeid": "t.py::a", "when": "call", "outcome": "passed"}\n'
                      '{"event": "test_start", "nodeid": "t.py::b"}\n{"event": "fail', encoding="utf-8")
    run = testrun.parse_report(report, ProcResult(None, "", "", 3.0, True), tmp_path, 3.0, [])
    assert run.outcome == "timeout" and run.passed == 1 and run.running_test == "t.py::b"


# -- localisation ----------------------------------------------------------------------------------------

def test_a_wrong_value_is_traced_back_to_the_line_that_computed_it(tmp_path: Path) -> None:
    ws = _write(tmp_path, {
        "stats.py": """
            def average(xs):
                total = 0
                for x in xs:
                    total += x
                count = len(xs) + 1
                return total / count
        """,
        "test_stats.py": "from stats import average\n\ndef test_average():\n    assert average([2, 4]) == 3\n",
    })
    run = run_tests(ws, None, timeout_s=60)
    failure = run.failures[0]
    assert failure.call is not None and failure.call.input == "average([2, 4])"
    assert failure.trace is not None and failure.trace.return_value == "2.0"
    lines = [s.line for s in failure.suspects]
    assert lines[0] == 7  # the line that returned the wrong value
    assert 6 in lines[:3]  # `count = len(xs) + 1` computes an operand of it
    assert "`count`" in next(s.reason for s in failure.suspects if s.line == 6)
    text = failures_to_diagnostics(run, ws)[0].explanation or ""
    assert "`average([2, 4])` returned `2.0`, but the test expected `3`" in text


def test_a_constant_return_points_at_the_condition_that_chose_it(tmp_path: Path) -> None:
    ws = _write(tmp_path, {
        "checks.py": """
            def has_negative(xs):
                for x in xs:
                    if x > 0:
                        return True
                return False
        """,
        "test_checks.py": "from checks import has_negative\n\ndef test_neg():\n    assert has_negative([-1]) == True\n",
    })
    run = run_tests(ws, None, timeout_s=60)
    suspects = run.failures[0].suspects
    assert suspects[0].line == 4 and "never ran" in suspects[0].reason  # `if x > 0:` skipped `return True`
    assert suspects[0].score > next(s.score for s in suspects if s.line == 6)  # above `return False` itself


def test_an_exception_points_at_the_early_exit_that_let_the_input_through(tmp_path: Path) -> None:
    ws = _write(tmp_path, {
        "change.py": """
            def first_coin(coins, total):
                if total == 0:
                    return 0
                if total < 0:
                    return -1
                first, *rest = coins
                return first
        """,
        "test_change.py": "from change import first_coin\n\ndef test_empty():\n    assert first_coin([], 5) == -1\n",
    })
    run = run_tests(ws, None, timeout_s=60)
    failure = run.failures[0]
    assert failure.exc_type == "ValueError" and failure.code_frame is not None and failure.code_frame.line == 7
    lines = [s.line for s in failure.suspects]
    assert lines[0] == 7 and 5 in lines[:3]


def test_a_long_computation_that_returned_a_wrong_value_is_no_loop_that_never_ends(tmp_path: Path) -> None:
    """The failing call's re-run under the trace stops at its budget; the test had failed at its own
    assertion, so the call returned: no line is blamed as an endless loop."""
    ws = _write(tmp_path, {
        "total.py": """
            def total(n):
                s = 0
                for i in range(n):
                    s += i
                return s + 1
        """,
        "test_total.py": "from total import total\n\ndef test_total():\n    assert total(300_000) == 44999850000\n",
    })
    run = run_tests(ws, None, timeout_s=60)
    failure = run.failures[0]
    assert failure.exc_type == "AssertionError" and failure.trace is not None and failure.trace.stopped
    assert not [s for s in failure.suspects if "never ends" in s.reason]


def test_a_generator_is_localised_at_its_yields(tmp_path: Path) -> None:
    ws = _write(tmp_path, {
        "gen.py": """
            def evens(limit):
                n = 0
                while n < limit:
                    yield n + 1
                    n += 2
        """,
        "test_gen.py": "from gen import evens\n\ndef test_evens():\n    assert list(evens(5)) == [0, 2, 4]\n",
    })
    run = run_tests(ws, None, timeout_s=60)
    failure = run.failures[0]
    assert failure.trace is not None and failure.trace.yields
    assert failure.suspects[0].line == 5 and "yielded" in failure.suspects[0].reason


def test_values_of_secret_looking_names_are_masked(tmp_path: Path) -> None:
    """Locals are shown in hovers and sent to an LLM for explanations: never a password or a key."""
    (tmp_path / "auth.py").write_text("def login(user, password):\n    api_key = 'sk-live-123456'\n"
                                      "    tokens = ['a', 'b']\n    raise PermissionError(user)\n")
    (tmp_path / "test_auth.py").write_text("from auth import login\n\n\ndef test_login():\n"
                                           "    password = 'hunter2'\n    assert login('ann', password)\n")
    run = run_tests(tmp_path, None, timeout_s=60)
    [failure] = run.failures
    assert failure.test_locals["password"] == "'***'" and "hunter2" not in json.dumps(failure.test_locals)
    assert failure.code_locals["api_key"] == "'***'" and failure.code_locals["password"] == "'***'"
    assert failure.code_locals["tokens"] == "['a', 'b']"  # lexer tokens are no secret


def test_an_interpreter_without_pytest_is_said_to_be_the_reason(tmp_path: Path) -> None:
    import venv

    venv.create(tmp_path / ".venv", with_pip=False)  # the workspace's own interpreter, no pytest in it
    (tmp_path / "test_m.py").write_text("def test_f():\n    assert 1 == 2\n")
    run = run_tests(tmp_path, None, timeout_s=60)
    assert run.outcome == "error" and run.problem is not None and "pytest is not installed" in run.problem


def test_a_fixture_error_marks_the_fixture_and_the_test_that_could_not_run(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text("import pytest\n\n\n@pytest.fixture\ndef broken():\n"
                                          "    raise RuntimeError('no database')\n")
    (tmp_path / "test_fixture.py").write_text("def test_uses_broken(broken):\n    assert broken\n")
    run = run_tests(tmp_path, None, timeout_s=60)
    found = {(Path(d.path).name, d.range.start.line): d.message for d in failures_to_diagnostics(run, tmp_path)}
    assert found[("conftest.py", 5)] == "test_uses_broken errored in setup (a fixture): RuntimeError: no database"
    assert found[("test_fixture.py", 0)].startswith("test_uses_broken could not run: its setup failed")
