"""What `heedls fix` guarantees the user's project against tests that reach out of the workspace
copy: a test that writes into the project by absolute path (a constant, an environment variable,
a conftest's root) cannot change it, in the search's runs nor in the final fresh-process check (a
read-only view of the project: a user + mount namespace); where no such view can be had, what
changed is put back after the search and its changed content kept beside it. The final check
also survives a test that kills its parent, and kills the daemons its tests leave."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from heedls.analyzers import proc
from heedls.analyzers.repair import workers

from tests.support.processes import alive, dead

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux namespaces and /proc")

CALC = "def add(a, b):\n    return a - b\n"


def _readonly_view_available(tmp_path: Path) -> bool:
    probe = tmp_path / "probe"
    probe.mkdir()
    result = proc.run(["sh", "-c", f"touch {probe}/x"], tmp_path, 10, limits=proc.Limits(readonly=(str(probe),)))
    return result.readonly_error is None


def _project(root: Path, test_body: str) -> Path:
    """calc.py with a bug (`-` for `+`) and a test that passes once it is fixed, doing `test_body` first."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'victim'\n")
    (root / "calc.py").write_text(CALC)
    lines = "".join(f"    {line}\n" for line in test_body.strip().splitlines())
    (root / "test_calc.py").write_text(
        "import os\nimport signal\nfrom pathlib import Path\n\nfrom calc import add\n\n"
        f"REAL = Path({str(root / 'calc.py')!r})\n\n\ndef test_add():\n{lines}    assert add(2, 3) == 5\n")
    return root


def _fix(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "heedls", "fix", "calc.py", "--test", "test_calc.py", "--json",
                           "--budget-seconds", "30", *args],
                          cwd=root, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, **(env or {})})


CLOBBER = """
try:
    REAL.write_text("# overwritten by a test\\n")
except OSError:
    pass
"""


def test_a_test_that_writes_into_the_real_project_by_absolute_path_cannot_change_it(tmp_path: Path) -> None:
    """Before, each of the search's runs and the final check overwrote the user's calc.py (here:
    with the line the test writes; the fix was "found" all the same, the user's code lost)."""
    if not _readonly_view_available(tmp_path):
        pytest.skip("no user namespaces here: the snapshot's check is the defence (test below)")
    root = _project(tmp_path / "ws", CLOBBER)
    done = _fix(root, "--write")
    answer = json.loads(done.stdout)
    assert answer["fixed"] and answer["confirmed"] and answer["written"], done.stderr
    assert (root / "calc.py").read_text() == CALC.replace("a - b", "a + b")  # the fix, and nothing else
    assert sorted(p.name for p in root.iterdir()) == ["calc.py", "pyproject.toml", "test_calc.py"]


def test_the_final_fresh_process_check_sees_the_project_read_only_too(tmp_path: Path) -> None:
    """The write happens only under the final check's hash seeds (the search runs with 0)."""
    if not _readonly_view_available(tmp_path):
        pytest.skip("no user namespaces here")
    root = _project(tmp_path / "ws", 'if os.environ.get("PYTHONHASHSEED") != "0":\n' +
                    "".join(f"    {line}\n" for line in CLOBBER.strip().splitlines()))
    done = _fix(root)
    assert json.loads(done.stdout)["confirmed"] is True, done.stderr
    assert (root / "calc.py").read_text() == CALC


def test_without_a_read_only_view_what_the_tests_changed_is_put_back_and_kept_beside_it(tmp_path: Path) -> None:
    """Where the system gives no user namespaces (here: turned off), the project's files are
    checked against their state before the search: a changed one is restored, its changed content
    kept in a backup beside it (it may have been the user's own edit), nothing written, exit 2."""
    root = _project(tmp_path / "ws", CLOBBER)
    done = _fix(root, "--write", env={proc.READONLY_VIEW_ENV: "0"})
    assert done.returncode == 2, done.stderr
    assert json.loads(done.stdout)["written"] is False
    assert (root / "calc.py").read_text() == CALC
    [backup] = [p for p in root.iterdir() if p.name.startswith("calc.py.heedls-changed-")]
    assert backup.read_text() == "# overwritten by a test\n"
    assert f"restored as it was before the search; its changed content is in {backup}" in done.stderr


def test_a_test_that_kills_its_parent_in_the_final_check_does_not_kill_heedls_fix(tmp_path: Path) -> None:
    """Before: `heedls fix` died (exit 137, nothing printed). Now the check fails and says so."""
    root = _project(tmp_path / "ws", 'if os.environ.get("PYTHONHASHSEED") != "0":\n'
                                     "    os.kill(os.getppid(), signal.SIGKILL)")
    done = _fix(root)
    assert done.returncode == 1, (done.returncode, done.stderr)
    answer = json.loads(done.stdout)
    assert answer["fixed"] is False and "fresh-process check" in answer["explanation"]


def test_a_daemon_started_in_the_final_check_does_not_outlive_heedls_fix(tmp_path: Path) -> None:
    """Double fork, setsid(), an empty environment: before, it outlived `heedls fix`."""
    pidfile = tmp_path / "daemon.pid"
    root = _project(tmp_path / "ws", f"""
if os.environ.get("PYTHONHASHSEED") != "0":
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() == 0:
            with open({str(pidfile)!r}, "a") as f:
                f.write(f"{{os.getpid()}}\\n")
            os.execve("/bin/sleep", ["sleep", "120"], {{}})
        os._exit(0)
    os.waitpid(pid, 0)
""")
    pids: list[int] = []
    try:
        done = _fix(root)
        assert json.loads(done.stdout)["confirmed"] is True, done.stderr
        pids = [int(line) for line in pidfile.read_text().split()]
        assert pids and all(dead(pid, 3.0) for pid in pids)
    finally:
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_workers_runs_see_the_real_project_read_only_but_their_copy_writable(tmp_path: Path) -> None:
    if not _readonly_view_available(tmp_path):
        pytest.skip("no user namespaces here")
    root = _project(tmp_path / "ws", "REAL.write_text('x')")
    worker = workers.Worker(root, sys.executable)
    try:
        worker.start()
        assert worker.readonly_error is None
        run = worker.run("calc.py", CALC.replace("a - b", "a + b"), ["test_calc.py"], timeout_s=20.0)
        [test] = run.tests
        assert test.outcome == "failed" and "Read-only file system" in str(test.failure)
        assert (root / "calc.py").read_text() == CALC
        assert (worker.copy / "calc.py").read_text() == CALC.replace("a - b", "a + b")  # the copy: written
    finally:
        worker.close()


def test_a_temp_folder_inside_the_project_stays_writable(tmp_path: Path) -> None:
    """The copy lives in the temp folder: where that is inside the project (TMPDIR=./tmp), the
    copy is re-opened for writing inside the read-only view."""
    if not _readonly_view_available(tmp_path):
        pytest.skip("no user namespaces here")
    root = tmp_path / "ws"
    copy = root / "tmp" / "heedls-repair-1" / "ws"
    copy.mkdir(parents=True)
    limits = workers.sandbox_limits(root, copy.parent)
    result = proc.run(["sh", "-c", f"touch {copy}/ok && ! touch {root}/no 2>/dev/null"], copy, 10, limits=limits)
    assert result.returncode == 0 and result.readonly_error is None
    assert (copy / "ok").exists() and not (root / "no").exists()


def test_any_run_with_a_sandbox_environment_sees_the_real_project_read_only(tmp_path: Path) -> None:
    """The behaviour profile of the fixes, and whatever else runs tests in a copy with
    `sandbox_env`, gets the read-only view without asking for it."""
    if not _readonly_view_available(tmp_path):
        pytest.skip("no user namespaces here")
    root = _project(tmp_path / "ws", "pass")
    copy = tmp_path / "copy"
    copy.mkdir()
    env = workers.sandbox_env(copy, root, autoload_plugins=False)
    result = proc.run(["sh", "-c", f"touch {copy}/ok; echo x > {root}/calc.py"], copy, 10, env=env)
    assert result.returncode != 0 and "Read-only file system" in result.stderr
    assert (root / "calc.py").read_text() == CALC and (copy / "ok").exists()
