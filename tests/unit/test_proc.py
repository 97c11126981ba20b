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
