"""What a hostile or unusual project does to a repair: tests that fork and leave children, daemons
that clear their environment, flaky tests, workspaces with more files than a copy holds."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from heedls.analyzers.repair import workers
from heedls.analyzers.repair.engine import RepairRequest, repair
from heedls.analyzers.repair.workers import Worker, copy_workspace

from tests.support.processes import alive, dead

CALC = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n"
TEST_ADD = "from calc import add, mul\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\ndef test_mul():\n    assert mul(2, 3) == 6\n"


def _project(root: Path, extra_tests: str = "", module: str = CALC) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "calc.py").write_text(module)
    (root / "test_calc.py").write_text(TEST_ADD + extra_tests)
    return root


def test_a_child_the_test_forked_and_left_running_does_not_hold_the_run_to_its_time_limit(tmp_path: Path) -> None:
    """The run ends when the test process says it is done, not when its report pipe closes: a
    process the test forked (multiprocessing, os.fork) inherits the pipe and kept every run waiting
    for its whole time limit, to come back a "timeout" (no candidate could ever pass)."""
    root = _project(tmp_path / "ws", "\n\nimport os, time\n\n\ndef test_forks():\n"
                                     "    if os.fork() == 0:\n        time.sleep(30)\n        os._exit(0)\n")
    worker = Worker(root, sys.executable, tests=["test_calc.py"])
    try:
        worker.start()
        fixed = CALC.replace("a - b", "a + b")
        for fast in (False, True):
            started = time.monotonic()
            run = worker.run("calc.py", fixed, ["test_calc.py"], exitfirst=False, timeout_s=8.0, fast=fast)
            assert time.monotonic() - started < 4.0
            assert run.status == "ok" and run.rc == 0
            assert sorted(t.outcome for t in run.tests) == ["passed"] * 3
    finally:
        worker.close()


def test_a_daemon_that_clears_its_environment_is_killed_when_its_run_ends(tmp_path: Path) -> None:
    """A double-forked daemon in a session of its own that also drops its environment escapes the
    group kill and the run token; the runner, a child subreaper, gets it as an orphan and kills it
    when the run ends (before: one `sleep` stayed behind per run, past the end of the repair)."""
    daemon = (
        "\n\nimport os\n\n\ndef test_daemon():\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        os.setsid()\n"
        "        if os.fork() == 0:\n"
        "            open('daemon.pid', 'w').write(str(os.getpid()))\n"
        "            os.execve('/bin/sleep', ['sleep', '120'], {})\n"
        "        os._exit(0)\n"
        "    os.waitpid(pid, 0)\n"
        "    while not os.path.exists('daemon.pid') or not open('daemon.pid').read():\n"
        "        pass\n"
    )
    root = _project(tmp_path / "ws", daemon)
    worker = Worker(root, sys.executable, tests=["test_calc.py"])
    pid = 0
    try:
        worker.start()
        run = worker.run("calc.py", None, ["test_calc.py"], exitfirst=False, timeout_s=8.0)
        assert run.status == "ok"
        pid = int((worker.copy / "daemon.pid").read_text())
        assert dead(pid, 3.0)  # with the worker still running
        assert worker.proc is not None and worker.proc.poll() is None
    finally:
        worker.close()
        if pid and alive(pid):
            import os
            import signal

            os.kill(pid, signal.SIGKILL)


def test_a_failing_test_that_passes_when_run_again_gets_no_fix(tmp_path: Path) -> None:
    """A flaky failing test "passes" with any candidate by chance: a fix would be offered, and even
    confirmed, on code no test runs. The baseline's tests run again on the unchanged code first; a
    failing one that passes is named as flaky and no fix is offered."""
    counter = tmp_path / "runs"
    module = ("def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n\n\n"
              "def sub(a, b):\n    return a - b\n")
    # fails the first time it runs, anywhere (a counter outside every copy), passes from then on
    flaky = (f"\n\nfrom pathlib import Path\n\n\ndef test_sometimes():\n    counter = Path({str(counter)!r})\n"
             "    n = int(counter.read_text()) if counter.exists() else 0\n"
             "    counter.write_text(str(n + 1))\n    assert n > 0\n")
    root = _project(tmp_path / "ws", flaky, module=module)
    result = repair(RepairRequest(module=root / "calc.py", tests=[root / "test_calc.py"], budget_s=20, jobs=1,
                                  python=sys.executable))
    assert not result.fixed, result.patch
    assert result.status == "error"
    assert "test_calc.py::test_sometimes" in result.explanation and "flaky" in result.explanation

    # Run again, the failing tests run in the baseline's order, after the tests before them: one that
    # fails for what an earlier test left (a mutable default argument's bug) is no flaky test, and is fixed.
    ordered = "def add(a, b):\n    return a + b\n\n\ndef collect(x, acc=[]):\n    acc.append(x)\n    return acc\n"
    tests = ("from calc import collect\n\n\ndef test_a():\n    assert collect(1) == [1]\n\n\n"
             "def test_b():\n    assert collect(2) == [2]\n")
    other = tmp_path / "ordered"
    other.mkdir()
    (other / "calc.py").write_text(ordered)
    (other / "test_calc.py").write_text(tests)
    result = repair(RepairRequest(module=other / "calc.py", tests=[other / "test_calc.py"], budget_s=20, jobs=1,
                                  python=sys.executable))
    assert result.fixed, result.explanation


def test_a_workspace_with_more_files_than_a_copy_holds_keeps_its_sources_and_tests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the copy's file limit, data is left out, not the module or its tests: until 2026-12-03
    the first files walked were copied, and a project with a big data folder had a copy without its
    tests ("file or directory not found: tests/test_calc.py" on every run)."""
    monkeypatch.setattr(workers, "MAX_COPY_FILES", 40)
    root = tmp_path / "ws"
    for i in range(10):
        folder = root / f"data{i}"
        folder.mkdir(parents=True)
        for j in range(50):
            (folder / f"{j}.json").write_text("{}")
    (root / "pkg").mkdir()
    (root / "pkg" / "calc.py").write_text(CALC)
    (root / "tests").mkdir()
    (root / "tests" / "test_calc.py").write_text(TEST_ADD.replace("from calc", "from pkg.calc"))
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\npythonpath = ['.']\n")
    dest = tmp_path / "copy"
    dest.mkdir()
    copy_workspace(root, dest)
    assert (dest / "pkg" / "calc.py").read_text() == CALC
    assert (dest / "tests" / "test_calc.py").is_file()
    assert (dest / "pyproject.toml").is_file()
    assert sum(1 for p in dest.rglob("*") if p.is_file()) <= 40


def test_a_fix_whose_fresh_pytest_does_not_exit_is_not_offered_and_the_reason_is_said(tmp_path: Path) -> None:
    """A test that leaves a multiprocessing child running: the search's runs end when the tests are
    done, but a fresh `python -m pytest` waits for the child at exit and runs out of time. No fix
    is offered, and the explanation says the check did not finish (it said "flaky" before)."""
    leaves_child = ("\n\nimport multiprocessing, time\n\n\ndef test_starts_a_child():\n"
                    "    multiprocessing.Process(target=time.sleep, args=(60,)).start()\n")
    root = _project(tmp_path / "ws", leaves_child)
    started = time.monotonic()
    result = repair(RepairRequest(module=root / "calc.py", tests=[root / "test_calc.py"], budget_s=6, jobs=1,
                                  python=sys.executable))
    assert time.monotonic() - started < 6 * 1.3
    assert not result.fixed
    assert "did not finish" in result.explanation and "flaky" not in result.explanation
