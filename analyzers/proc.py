"""Run a child process with a wall-clock timeout that kills its whole process group.

Tests and repair candidates run untrusted-ish code that may hang, fork or print megabytes; this is
the one place that knows how to contain that. Output is capped so a chatty test cannot eat memory.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO


def usable_cpus() -> int:
    """The CPUs this process may run on (a container's or `taskset`'s share, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


OUTPUT_CAP = 1 << 20  # bytes kept per stream; the rest is counted and dropped


@dataclass(frozen=True)
class ProcResult:
    returncode: int | None  # None when killed at the timeout or cancelled
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool
    truncated: bool = False


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists (another user's too: signal 0 is then refused, not failed)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# Every run's environment carries a token of its own under this name. A child that leaves the run's
# process group (`setsid`, `start_new_session=True`, a daemon's double fork) still inherits it, so
# the run's end finds and kills it by the token (`kill_escaped`), where the group kill misses it.
RUN_TOKEN_ENV = "HEEDLS_RUN_TOKEN"
_PROC = Path("/proc")


def _escaped(token: str) -> list[int]:
    """This user's processes whose environment carries the run's `token` (Linux's /proc; nothing
    elsewhere). A few ms for a few hundred processes."""
    needle = f"{RUN_TOKEN_ENV}={token}".encode()
    found = []
    try:
        entries = list(os.scandir(_PROC))
    except OSError:
        return []
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                environ = f.read()
        except OSError:  # gone, or another user's
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def kill_escaped(token: str | None) -> int:
    """SIGKILL the run's processes that left its group; a few rounds, for one that forks while it
    dies. How many were killed."""
    if token is None or not _PROC.is_dir():
        return 0
    killed = 0
    for _ in range(3):
        pids = [pid for pid in _escaped(token) if pid != os.getpid()]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)
    return killed


# The process groups of the runs in progress, with their tokens. Each is a session of its own (so a
# time limit can kill all of it), which also takes it out of reach of a signal to its parent: a
# server told to stop (SIGTERM from an editor, its parent gone) kills them itself, or a hanging test
# runs forever.
_running: dict[int, str | None] = {}
_running_lock = threading.Lock()


def kill_running() -> int:
    """SIGKILL every run still in progress (its group and what left it); how many there were."""
    with _running_lock:
        runs = list(_running.items())
    for pid, token in runs:
        _kill_group(pid)
        kill_escaped(token)
    return len(runs)


# After the main process exits (and its group is killed), how long its output pipes may take to
# close: a child that left the group (a daemon in a session of its own) can hold them open forever.
PIPE_GRACE_S = 2.0


class _Capped:
    """Bytes read from a stream, the first `cap` of them kept (what was read so far survives an
    interrupted read)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.chunks: list[bytes] = []
        self.kept = 0
        self.truncated = False

    def add(self, chunk: bytes) -> None:
        if self.kept < self.cap:
            self.chunks.append(chunk[: self.cap - self.kept])
            self.kept += len(self.chunks[-1])
            if len(chunk) > len(self.chunks[-1]):
                self.truncated = True
        else:
            self.truncated = True

    def drain(self, stream: IO[bytes]) -> None:
        try:
            for chunk in iter(lambda: stream.read1(65536), b""):  # type: ignore[attr-defined]
                self.add(chunk)
        except (OSError, ValueError):  # closed under us after the grace period
            pass

    def text(self) -> str:
        return b"".join(self.chunks).decode("utf-8", "replace")


def run(
    argv: Sequence[str],
    cwd: Path | str,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    output_cap: int = OUTPUT_CAP,
    handle: _Handle | None = None,
    contain_escapes: bool = True,
) -> ProcResult:
    """Blocking run in a new session; the whole group is SIGKILLed at the timeout, and when the
    main process ends (grandchildren that outlive it go too, and with `contain_escapes`, children
    that started a session of their own: see RUN_TOKEN_ENV). The run ends when the main process
    does, not when its output pipes close: a test that forks a child keeps pytest's stdout open.
    `output_cap`: bytes kept per stream (a tool whose whole report is needed, such as ruff's JSON,
    asks for more). A trusted tool that starts no daemons (ruff) passes `contain_escapes=False`
    and skips the scan of /proc."""
    start = time.monotonic()
    # Encoded before the child starts: an editor's lone surrogate (`'\ud800'`, legal in LSP's JSON)
    # must not raise between Popen and the kill below, which left a ruff per keystroke waiting.
    data = stdin.encode("utf-8", "replace") if stdin is not None else None
    token = secrets.token_hex(8) if contain_escapes else None
    child_env = dict(env) if env is not None else None
    if token is not None:
        child_env = {**(child_env if child_env is not None else os.environ), RUN_TOKEN_ENV: token}
    proc = subprocess.Popen(
        list(argv),
        cwd=str(cwd),
        env=child_env,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    with _running_lock:
        _running[proc.pid] = token
    if handle is not None:
        handle.started(proc.pid, token)
    out, err = _Capped(output_cap), _Capped(output_cap)
    threads = [threading.Thread(target=buf.drain, args=(stream,), daemon=True)
               for buf, stream in ((out, proc.stdout), (err, proc.stderr))]
    if stdin is not None:
        threads.append(threading.Thread(target=_feed, args=(proc.stdin, data), daemon=True))
    for thread in threads:
        thread.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        _kill_group(proc.pid)
        proc.wait()
        kill_escaped(token)  # also lets go of the output pipes an escaped daemon held
        with _running_lock:
            _running.pop(proc.pid, None)
    deadline = time.monotonic() + PIPE_GRACE_S
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    for stream, thread in zip((proc.stdout, proc.stderr), threads):
        # A pipe still held by a process out of reach (one that cleared its environment) is left to
        # its reader thread: close() would wait for the thread's read, i.e. for that process to end.
        if stream is not None and not thread.is_alive():
            stream.close()
    return ProcResult(
        None if timed_out else proc.returncode,
        out.text(),
        err.text(),
        time.monotonic() - start,
        timed_out,
        out.truncated or err.truncated,
    )


def _feed(stream: IO[bytes] | None, data: bytes) -> None:
    if stream is None:
        return
    try:
        stream.write(data)
        stream.close()
    except (OSError, ValueError):  # the child exited without reading it all
        pass


async def run_async(
    argv: Sequence[str],
    cwd: Path | str,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
) -> ProcResult:
    """`run` in a worker thread; cancelling the awaiting task kills the process group at once (a
    newer save wins). (asyncio's own Process.wait() waits for the output pipes to close too, so a
    forked child holding them made every run last until the time limit.)"""
    handle = _Handle()
    loop = asyncio.get_running_loop()
    done = loop.run_in_executor(None, lambda: run(argv, cwd, timeout_s, env, handle=handle))
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        handle.cancel()
        await asyncio.gather(done, return_exceptions=True)  # the thread ends once the group is dead
        raise


class _Handle:
    """A run's process group, to kill from another thread; a cancel before the start kills it as
    soon as it exists."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._token: str | None = None
        self._cancelled = False

    def started(self, pid: int, token: str | None = None) -> None:
        with self._lock:
            self._pid, self._token = pid, token
            if self._cancelled:
                _kill_group(pid)
                kill_escaped(token)

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._pid is not None:
                _kill_group(self._pid)
                kill_escaped(self._token)
