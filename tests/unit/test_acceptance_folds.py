"""Leave-one-session-out in worker processes: Ctrl-C stops it at once and leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from heedls.server.events import write_jsonl

from tests.unit.test_acceptance_data import make_events


def _group_members(pgid: int) -> list[str]:
    out = subprocess.run(["ps", "-o", "pid=,args=", "-g", str(pgid)], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if line.strip()]


def _interruptible() -> None:
    # A terminal's foreground process takes Ctrl-C. A test run started in the background by a
    # non-interactive shell (`cmd &`) has SIGINT ignored, and ignored signals are inherited.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _eval_with_workers(path: Path, output: int = subprocess.PIPE) -> subprocess.Popen[bytes]:
    """`heedls eval acceptance` with two fold workers, in a process group of its own (as a terminal
    starts a foreground job), taking Ctrl-C as a terminal's foreground process does."""
    return subprocess.Popen(
        [sys.executable, "-m", "heedls", "eval", "acceptance", str(path), "--stage", "suggestion", "--json",
         "--jobs", "2", "--prior", "none"],
        stdout=output, stderr=output, start_new_session=True, preexec_fn=_interruptible)


def test_ctrl_c_stops_the_workers_at_once(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    # 40 sessions of 100: each fold fits for seconds, all of them for minutes
    write_jsonl(make_events(sessions=40, per_session=100, seed=3), path)
    proc = _eval_with_workers(path)
    try:
        # wait until the workers are fitting (the forkserver and its children share the group)
        deadline = time.monotonic() + 60
        while len(_group_members(proc.pid)) < 4 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, "finished before it could be interrupted"
        assert len(_group_members(proc.pid)) >= 4  # the CLI, the forkserver, two workers
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends: the whole foreground group
        # Stopped, not drained: a pool that let its queued folds finish would take ten seconds or more
        # (three queued folds; all forty without cancelling them); stopping takes a fraction of one.
        try:
            proc.communicate(timeout=8)  # the output pipes close when the last process holding them exits
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running 8 s after Ctrl-C: {_group_members(proc.pid)}") from None
        assert proc.returncode != 0  # interrupted, not a result
        deadline = time.monotonic() + 10
        while _group_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _group_members(proc.pid) == []  # no worker (or forkserver) left running
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.slow
def test_ctrl_c_while_the_workers_start_prints_no_traceback(tmp_path: Path) -> None:
    """A Ctrl-C in the first tenth of a second of the worker pool, while the forkserver and the
    workers are still starting, ends the eval as quietly as one later on: no Python start-up failure
    of a worker process, nor an exit-time traceback of the pool's threads, over the user's terminal."""
    path = tmp_path / "events.jsonl"
    write_jsonl(make_events(sessions=40, per_session=30, seed=3), path)  # enough rows for workers
    for delay in (0.0, 0.025, 0.05, 0.075, 0.1):
        proc = _eval_with_workers(path)
        try:
            deadline = time.monotonic() + 60
            while len(_group_members(proc.pid)) < 2 and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)  # the CLI alone, until the forkserver (or the resource tracker) appears
            assert proc.poll() is None, "finished before it could be interrupted"
            time.sleep(delay)
            os.killpg(proc.pid, signal.SIGINT)
            _, err = proc.communicate(timeout=15)
            assert proc.returncode != 0
            assert "Traceback" not in err.decode() and "Fatal Python error" not in err.decode(), (delay, err.decode())
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()


def test_an_eval_killed_outright_leaves_no_worker_behind(tmp_path: Path) -> None:
    """kill -9 (or the OOM killer) gives the CLI no chance to stop its workers: they notice that it
    is gone and exit, instead of waiting for work forever with its output pipes open."""
    path = tmp_path / "events.jsonl"
    write_jsonl(make_events(sessions=40, per_session=100, seed=3), path)
    proc = _eval_with_workers(path, output=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(_group_members(proc.pid)) < 4 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None and len(_group_members(proc.pid)) >= 4, "the workers never started"
        time.sleep(1.0)  # fitting
        os.kill(proc.pid, signal.SIGKILL)  # the CLI alone: its workers get no signal
        proc.wait(timeout=10)
        deadline = time.monotonic() + 15
        while _group_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _group_members(proc.pid) == []  # no worker, forkserver or resource tracker left
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

