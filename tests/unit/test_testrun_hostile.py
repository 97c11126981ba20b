"""What a hostile test suite does to `heedls check --tests` (analyzers/testrun.py, proc.Limits), as a
user's CI meets it: a test that allocates without bound, one that kills its parent or its process
group, a daemon that double-forks, calls setsid() and clears its environment. heedls survives each,
says what happened, and exits 1; nothing the tests started outlives it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from heedls.analyzers import testrun
from heedls.analyzers.testrun import failures_to_diagnostics, run_tests

from tests.support.processes import alive, dead

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux process control (/proc, prctl)")


def _project(root: Path, tests: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'hostile'\n")
    (root / "test_hostile.py").write_text(textwrap.dedent(tests))
    return root


def _check(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`heedls check . --tests` in `root`, as a CI step runs it."""
    return subprocess.run([sys.executable, "-m", "heedls", "check", ".", "--tests", *args],
                          cwd=root, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "NO_COLOR": "1"})


UNBOUNDED = """
    def test_small():
        assert sum(range(10)) == 45


    def test_unbounded():
        b = bytearray(1)
        while True:
            b += bytes(1 << 24)
"""


def test_a_test_that_allocates_without_bound_is_stopped_at_the_memory_limit_and_named(tmp_path: Path) -> None:
    """Before, nothing capped it: it grew (~0.5 GB/s here) until the machine's OOM killer acted."""
    root = _project(tmp_path / "ws", UNBOUNDED)
    run = run_tests(root, None, timeout_s=60, memory_limit_gb=0.25)
    assert run.outcome == "error"
    assert run.running_test == "test_hostile.py::test_unbounded"
    assert run.incomplete is not None and run.incomplete.startswith("the memory limit of 0.25 GiB was exceeded")
    [diagnostic] = [d for d in failures_to_diagnostics(run, root) if d.code == "run-error"]
    assert diagnostic.path == str(root / "test_hostile.py") and diagnostic.range.start.line == 5  # def test_unbounded
    assert "memory limit of 0.25 GiB" in diagnostic.message


def test_the_memory_limit_is_set_from_the_command_line_and_its_breach_is_exit_1_without_a_traceback(
        tmp_path: Path) -> None:
    root = _project(tmp_path / "ws", UNBOUNDED)
    done = _check(root, "--memory-limit", "0.25")
    assert done.returncode == 1, done.stderr
    assert "test_hostile.py::test_unbounded" in done.stdout and "memory limit of 0.25 GiB" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_the_memory_limit_is_a_setting_of_the_project(tmp_path: Path) -> None:
    """`[tool.heedls.tests] memoryLimitGb` (or memory_limit_gb), as every other tests setting: the
    server's runs on save and `heedls check --tests` read it; --memory-limit overrides it."""
    root = _project(tmp_path / "ws", UNBOUNDED)
    (root / "pyproject.toml").write_text("[project]\nname = 'hostile'\n[tool.heedls.tests]\nmemoryLimitGb = 0.25\n")
    done = _check(root)
    assert done.returncode == 1 and "memory limit of 0.25 GiB" in done.stdout, done.stdout + done.stderr
    from heedls.server.config import HeedlsConfig, merge

    config, warnings = merge(HeedlsConfig(), {"tests": {"memory_limit_gb": 2}}, "test")
    assert config.tests.memory_limit_gb == 2.0 and not warnings
    assert HeedlsConfig().tests.memory_limit_gb == testrun.default_memory_limit_gb()


def test_the_memory_limit_counts_memory_held_not_address_space_reserved(tmp_path: Path) -> None:
    """300 threads reserve 2.4 GB of stacks and hold little: under an address-space limit
    (RLIMIT_AS) of 0.25 GiB they could not start, a failure the user's own run never has."""
    root = _project(tmp_path / "ws", """
        import threading


        def test_threads():
            ready = threading.Barrier(301)
            threads = [threading.Thread(target=ready.wait) for _ in range(300)]
            for thread in threads:
                thread.start()
            ready.wait()
            for thread in threads:
                thread.join()
    """)
    run = run_tests(root, None, timeout_s=60, memory_limit_gb=0.25)
    assert (run.outcome, run.passed, run.incomplete) == ("passed", 1, None)


def test_the_default_memory_limit_is_8_gib_or_half_the_machine() -> None:
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    assert testrun.default_memory_limit_gb() == min(8.0, physical / 2)


@pytest.mark.parametrize("kill", ["os.kill(os.getppid(), signal.SIGKILL)", "os.killpg(0, signal.SIGKILL)"])
def test_a_test_that_kills_its_parent_or_its_group_leaves_heedls_alive_to_report_the_run_killed(
        tmp_path: Path, kill: str) -> None:
    """Before, killing its parent killed `heedls check` itself (pytest was its child): exit 137,
    nothing printed, the CI step dead. (Its own process group was already out of reach.)"""
    root = _project(tmp_path / "ws", f"""
        import os
        import signal


        def test_kills():
            {kill}
    """)
    done = _check(root)
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "the test run did not complete" in done.stdout and "SIGKILL" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_a_daemon_that_leaves_the_session_and_clears_its_environment_does_not_outlive_the_run(
        tmp_path: Path) -> None:
    """A double fork, setsid() and an empty environment: out of reach of the group kill and of the
    run token. Before, it outlived `heedls check` (a `sleep 600` per run)."""
    root = _project(tmp_path / "ws", """
        import os


        def test_daemon():
            pid = os.fork()
            if pid == 0:
                os.setsid()
                if os.fork() == 0:
                    with open("daemon.pid", "w") as f:
                        f.write(str(os.getpid()))
                    os.execve("/bin/sleep", ["sleep", "120"], {})
                os._exit(0)
            os.waitpid(pid, 0)
            while not os.path.exists("daemon.pid") or not open("daemon.pid").read():
                pass
    """)
    pid = 0
    try:
        run = run_tests(root, None, timeout_s=60)
        assert (run.outcome, run.passed) == ("passed", 1)
        pid = int((root / "daemon.pid").read_text())
        assert dead(pid, 3.0)
    finally:
        if pid and alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_the_time_limit_of_a_supervised_run_still_names_the_test_it_cut(tmp_path: Path) -> None:
    root = _project(tmp_path / "ws", """
        import time


        def test_hangs():
            time.sleep(60)
    """)
    run = run_tests(root, None, timeout_s=6)
    assert run.outcome == "timeout" and run.running_test == "test_hostile.py::test_hangs"
    assert run.seconds < 30
