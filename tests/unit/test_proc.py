"""Child processes (proc.py): output, time limits and process groups, sync and async alike."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest
from heedls.analyzers import proc

# The main process prints and exits at once; a child it forked keeps stdout open for 30 s.
FORKS = """
import os, sys, time
print("parent done", flush=True)
if os.fork() == 0:
    time.sleep(30)
    os._exit(0)
"""


def _both(argv: list[str], cwd: Path, timeout_s: float, **kw: object) -> list[proc.ProcResult]:
    return [proc.run(argv, cwd, timeout_s, **kw),  # type: ignore[arg-type]
            asyncio.run(proc.run_async(argv, cwd, timeout_s))]


def test_output_and_exit_status_come_back(tmp_path: Path) -> None:
    for result in _both([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"],
                        tmp_path, 30):
        assert (result.returncode, result.stdout, result.stderr, result.timed_out) == (3, "out\n", "err\n", False)


def test_a_run_ends_when_its_process_does_not_when_a_forked_child_lets_go_of_its_output(tmp_path: Path) -> None:
    """A test that forks: the child inherits pytest's stdout; the run waited for it until the limit."""
    for result in _both([sys.executable, "-c", FORKS], tmp_path, 20):
        assert not result.timed_out and result.returncode == 0 and result.stdout == "parent done\n"
        assert result.seconds < 10  # the child (30 s) was not waited for ...
    time.sleep(0.2)
    assert not [p for p in _sleepers()]  # ... and is gone with the group


def _sleepers() -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"parent done" in (entry / "cmdline").read_bytes():
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


def test_the_time_limit_kills_the_whole_group(tmp_path: Path) -> None:
    for result in _both([sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"], tmp_path, 1):
        assert result.timed_out and result.returncode is None and result.stdout == "started\n"
        assert result.seconds < 1 + proc.PIPE_GRACE_S + 2


def test_input_is_given_and_output_is_capped(tmp_path: Path) -> None:
    result = proc.run([sys.executable, "-c", "import sys; data = sys.stdin.read(); print(data * 3)"], tmp_path, 30,
                      stdin="x" * 1_000_000, output_cap=100)
    assert result.returncode == 0 and result.stdout == "x" * 100 and result.truncated


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX")
def test_cancelling_an_async_run_kills_its_group(tmp_path: Path) -> None:
    async def cancelled() -> None:
        task = asyncio.ensure_future(proc.run_async([sys.executable, "-c", FORKS + "time.sleep(60)"], tmp_path, 60))
        await asyncio.sleep(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancelled())
    time.sleep(0.2)
    assert not _sleepers()


def test_a_lone_surrogate_in_the_input_is_given_as_a_replacement_not_a_process_left_waiting(tmp_path: Path) -> None:
    """An editor may send `'\\ud800'` (legal in LSP's JSON); encoding it raised after the child had
    started and before the kill, which left one ruff per keystroke blocked on its input."""
    marker = tmp_path / "pids"
    script = f"import os, sys; open({str(marker)!r}, 'a').write(f'{{os.getpid()}}\\n'); print(sys.stdin.read())"
    result = proc.run([sys.executable, "-c", script], tmp_path, 30, stdin="x = '\ud800'\n")
    assert result.returncode == 0 and result.stdout == "x = '?'\n\n"
    (pid,) = [int(p) for p in marker.read_text().split()]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# A test that starts a daemon: a child in a session of its own (out of the run's process group),
# which writes its pid and sleeps. `start_new_session` is what `setsid` and a daemon's double fork do.
DAEMON = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import os, time; open(%r, 'w').write(str(os.getpid())); time.sleep(120)"],
                         start_new_session=True, stdout=sys.stdout, stderr=sys.stderr)
deadline = time.time() + 10
while time.time() < deadline:
    try:
        if open(%r).read():
            break
    except OSError:
        pass
    time.sleep(0.02)
print("daemon started", flush=True)
"""


def _daemon_pid(marker: Path) -> int:
    return int(marker.read_text())


def _gone(pid: int) -> bool:
    """Dead or a zombie (reaped by init in its own time)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return status.rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="Linux's /proc")
def test_a_daemon_a_test_starts_in_a_session_of_its_own_does_not_outlive_the_run(tmp_path: Path) -> None:
    """It left the run's process group, so the group kill missed it, and it kept the output pipes
    (the run waited PIPE_GRACE_S for them). It is found by the run's token in its environment."""
    for i, runner in enumerate((lambda a: proc.run(a, tmp_path, 30), lambda a: asyncio.run(proc.run_async(a, tmp_path, 30)))):
        marker = tmp_path / f"daemon-{i}"
        result = runner([sys.executable, "-c", DAEMON % (str(marker), str(marker))])
        assert result.returncode == 0 and result.stdout == "daemon started\n"
        assert result.seconds < proc.PIPE_GRACE_S  # its pipes were let go of with it
        pid = _daemon_pid(marker)
        time.sleep(0.1)
        assert _gone(pid)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="Linux's /proc")
def test_a_daemon_goes_with_a_run_killed_at_its_time_limit_cancelled_or_stopped_with_the_server(tmp_path: Path) -> None:
    hang = DAEMON + "time.sleep(120)\n"
    marker = tmp_path / "timeout"
    result = proc.run([sys.executable, "-c", hang % (str(marker), str(marker))], tmp_path, 3)
    assert result.timed_out
    time.sleep(0.1)
    assert _gone(_daemon_pid(marker))

    marker = tmp_path / "cancelled"

    async def cancelled() -> None:
        task = await _hanging_run_with_a_daemon(tmp_path, marker)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancelled())
    time.sleep(0.1)
    assert _gone(_daemon_pid(marker))

    marker = tmp_path / "stopped"

    async def stopped() -> int:  # the server's exit (lifecycle, cli): kill_running from another task
        task = await _hanging_run_with_a_daemon(tmp_path, marker)
        killed = proc.kill_running()
        await task
        return killed

    assert asyncio.run(stopped()) == 1
    time.sleep(0.1)
    assert _gone(_daemon_pid(marker))


async def _hanging_run_with_a_daemon(tmp_path: Path, marker: Path) -> asyncio.Future[proc.ProcResult]:
    """An async run that has started its daemon (its pid in `marker`) and then hangs."""
    script = (DAEMON + "time.sleep(120)\n") % (str(marker), str(marker))
    task = asyncio.ensure_future(proc.run_async([sys.executable, "-c", script], tmp_path, 60))
    while not marker.exists() or not marker.read_text():
        await asyncio.sleep(0.05)
    return task


def test_the_run_token_names_only_that_run(tmp_path: Path) -> None:
    """Each run gets a token of its own, so one run's end never kills another's processes."""
    script = f"import os; print(os.environ[{proc.RUN_TOKEN_ENV!r}])"
    first, second = (proc.run([sys.executable, "-c", script], tmp_path, 30).stdout.strip() for _ in range(2))
    assert len(first) == 16 and first != second
    untracked = proc.run([sys.executable, "-c", f"import os; print({proc.RUN_TOKEN_ENV!r} in os.environ)"], tmp_path, 30,
                         contain_escapes=False)
    assert untracked.stdout == "False\n"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="Linux's /proc")
def test_a_daemon_out_of_reach_holds_the_run_no_longer_than_the_pipe_grace(tmp_path: Path) -> None:
    """One that also clears its environment cannot be found; the run still ends after PIPE_GRACE_S
    (closing its output pipe waited for the daemon to exit: a 60 s daemon held the run 60 s)."""
    marker = tmp_path / "hidden"
    script = DAEMON.replace("start_new_session=True,", "start_new_session=True, env={},") % (str(marker), str(marker))
    result = proc.run([sys.executable, "-c", script], tmp_path, 30)
    pid = _daemon_pid(marker)
    try:
        assert result.returncode == 0 and result.stdout == "daemon started\n"
        assert result.seconds < proc.PIPE_GRACE_S + 5
    finally:
        os.kill(pid, 9)
