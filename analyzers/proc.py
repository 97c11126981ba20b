"""Run a child process with a wall-clock timeout that kills its whole process group.

Tests and repair candidates run untrusted-ish code that may hang, fork or print megabytes; this is
the one place that knows how to contain that. Output is capped so a chatty test cannot eat memory.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

OUTPUT_CAP = 1 << 20  # bytes kept per stream; the rest is counted and dropped


@dataclass(frozen=True)
class ProcResult:
    returncode: int | None  # None when killed at the timeout or cancelled
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool
    truncated: bool = False


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run(
    argv: Sequence[str],
    cwd: Path | str,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    output_cap: int = OUTPUT_CAP,
) -> ProcResult:
    """Blocking run in a new session; the whole group is SIGKILLed at the timeout. `output_cap`:
    bytes kept per stream (a tool whose whole report is needed, such as ruff's JSON, asks for more)."""
    start = time.monotonic()
    proc = subprocess.Popen(
        list(argv),
        cwd=str(cwd),
        env=dict(env) if env is not None else None,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    timed_out = False
    try:
        out, err = proc.communicate(stdin.encode() if stdin is not None else None, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc.pid)
        out, err = proc.communicate()
    finally:
        # Grandchildren that outlive the child (a test that forks and sleeps) go too.
        _kill_group(proc.pid)
    truncated = len(out) > output_cap or len(err) > output_cap
    return ProcResult(
        None if timed_out else proc.returncode,
        out[:output_cap].decode("utf-8", "replace"),
        err[:output_cap].decode("utf-8", "replace"),
        time.monotonic() - start,
        timed_out,
        truncated,
    )


async def _read_capped(stream: asyncio.StreamReader | None) -> tuple[bytes, bool]:
    if stream is None:
        return b"", False
    chunks: list[bytes] = []
    kept = 0
    truncated = False
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            break
        if kept < OUTPUT_CAP:
            chunks.append(chunk[: OUTPUT_CAP - kept])
            kept += len(chunks[-1])
        else:
            truncated = True
    return b"".join(chunks), truncated


async def run_async(
    argv: Sequence[str],
    cwd: Path | str,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
) -> ProcResult:
    """Async run; cancelling the awaiting task kills the process group (a newer save wins)."""
    start = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=str(cwd),
        env=dict(env) if env is not None else None,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    readers = asyncio.gather(_read_capped(proc.stdout), _read_capped(proc.stderr))
    timed_out = False
    try:
        (out, t1), (err, t2) = await asyncio.wait_for(asyncio.shield(readers), timeout_s)
        await proc.wait()
    except asyncio.TimeoutError:
        timed_out = True
        _kill_group(proc.pid)
        (out, t1), (err, t2) = await readers
        await proc.wait()
    except asyncio.CancelledError:
        _kill_group(proc.pid)
        readers.cancel()
        await asyncio.gather(readers, return_exceptions=True)
        raise
    finally:
        _kill_group(proc.pid)
    return ProcResult(
        None if timed_out else proc.returncode,
        out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"),
        time.monotonic() - start,
        timed_out,
        t1 or t2,
    )
