"""Run a child process with a wall-clock timeout that kills its whole process group.

Tests and repair candidates run untrusted-ish code that may hang, fork or print megabytes; this is
the one place that knows how to contain that. Output is capped so a chatty test cannot eat memory.
Test runs go further under a supervisor (`Limits`, Linux): out of reach of a test that kills its
parent, orphans killed, a memory limit, and a read-only view of the real workspace.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any


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
    # Supervised runs (`Limits`): the processes' resident memory when the run was stopped at its
    # memory limit (0: it was not), and why the read-only view of `Limits.readonly` could not be
    # set up (None: it was, or none was asked for).
    memory_exceeded: int = 0
    readonly_error: str | None = None


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
    limits: Limits | None = None,
) -> ProcResult:
    """Blocking run in a new session; the whole group is SIGKILLed at the timeout, and when the
    main process ends (grandchildren that outlive it go too, and with `contain_escapes`, children
    that started a session of their own: see RUN_TOKEN_ENV). The run ends when the main process
    does, not when its output pipes close: a test that forks a child keeps pytest's stdout open.
    `output_cap`: bytes kept per stream (a tool whose whole report is needed, such as ruff's JSON,
    asks for more). A trusted tool that starts no daemons (ruff) passes `contain_escapes=False`
    and skips the scan of /proc. `limits`: run under a supervisor (see `Limits`), which also keeps
    the time limit; an `env` of a repair's sandbox (SANDBOX_ROOT_ENV) implies its read-only view."""
    start = time.monotonic()
    # Encoded before the child starts: an editor's lone surrogate (`'\ud800'`, legal in LSP's JSON)
    # must not raise between Popen and the kill below, which left a ruff per keystroke waiting.
    data = stdin.encode("utf-8", "replace") if stdin is not None else None
    token = secrets.token_hex(8) if contain_escapes else None
    child_env = dict(env) if env is not None else None
    if token is not None:
        child_env = {**(child_env if child_env is not None else os.environ), RUN_TOKEN_ENV: token}
    status_r = status_w = -1
    wait_s = timeout_s
    if limits is None and env is not None and env.get(SANDBOX_ROOT_ENV):
        limits = Limits(readonly=(env[SANDBOX_ROOT_ENV],),
                        writable=tuple(p for p in (env.get(SANDBOX_COPY_ENV, ""),) if p))
    if not SUPERVISION:
        limits = None  # prctl, /proc and namespaces are Linux's: elsewhere a plain run, as before
    if limits is not None:
        status_r, status_w = os.pipe()
        argv = _supervised(argv, limits, timeout_s, status_w)
        wait_s = timeout_s + SUPERVISOR_GRACE_S
    try:
        proc = subprocess.Popen(
            list(argv),
            cwd=str(cwd),
            env=child_env,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            pass_fds=(status_w,) if limits is not None else (),
        )
    except BaseException:
        if limits is not None:
            os.close(status_r)
        raise
    finally:
        if limits is not None:
            os.close(status_w)
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
        proc.wait(timeout=wait_s)
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
    returncode = proc.returncode
    memory = 0
    readonly_error = None
    if limits is not None:
        status = _read_status(status_r)
        timed_out = timed_out or bool(status.get("timeout"))
        memory = int(status.get("memory") or 0)
        readonly_error = status.get("readonly_error") or (None if status or not limits.readonly
                                                          else "the supervisor did not report")
        if isinstance(status.get("signal"), int):
            returncode = -status["signal"]  # as if the command were heedls' own child
        elif isinstance(status.get("code"), int):
            returncode = status["code"]
        # no status: the supervisor itself was killed (a test that killed its parent): its signal
    return ProcResult(
        None if timed_out or memory else returncode,
        out.text(),
        err.text(),
        time.monotonic() - start,
        timed_out,
        out.truncated or err.truncated,
        memory,
        readonly_error,
    )


@dataclass(frozen=True)
class Limits:
    """What a supervised run (`run(..., limits=...)`) is held to. The command runs under a small
    supervisor process (`SUPERVISOR`, in heedls' own interpreter) instead of as heedls' child:

    - the command is its child, in a process group of its own: a test that kills its parent or its
      process group (`os.kill(os.getppid(), SIGKILL)`, `os.killpg(0, SIGKILL)`) reaches the
      supervisor or itself, never heedls, which reports the run as killed;
    - the supervisor is a child subreaper (Linux): what the run leaves behind (a daemon that
      double-forked, called setsid() and cleared its environment, out of reach of the run token)
      is re-parented to it, and killed when the command ends;
    - `memory_bytes` (0: none): the resident memory of all the run's processes, measured every few
      ms; past it everything is killed and `ProcResult.memory_exceeded` says so. (An address-space
      limit, RLIMIT_AS, would also fail legitimate tests: each thread reserves its stack);
    - `readonly`: folders the command sees read-only (a user + mount namespace, Linux without
      root), but for `writable` folders inside them; `ProcResult.readonly_error` when it could not;
    - the supervisor dies with the heedls thread that started it, and the command with it."""

    memory_bytes: int = 0
    readonly: tuple[str, ...] = ()
    writable: tuple[str, ...] = ()


SUPERVISION = sys.platform.startswith("linux")  # `Limits` are kept on Linux only

# A repair's test-run environment (repair/workers.py's `sandbox_env`) names the real workspace and
# the copy the run works in: any `run` with that environment sees the one read-only, the other
# writable, whether or not its caller asked (the behaviour profile of the fixes, say).
SANDBOX_ROOT_ENV = "HEEDLS_SANDBOX_ROOT"
SANDBOX_COPY_ENV = "HEEDLS_SANDBOX_COPY"

# Set to "0", test runs get no read-only view (`Limits.readonly`), as where the system allows none.
READONLY_VIEW_ENV = "HEEDLS_READONLY_VIEW"

# A supervised run's time limit is kept by the supervisor (it kills the whole tree, daemons too);
# heedls' own timer is the backstop this much later.
SUPERVISOR_GRACE_S = 5.0

SUPERVISOR = r"""
import ctypes, json, os, signal, sys, time
cfg = json.loads(sys.argv[1])
argv = sys.argv[2:]
libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
sfd = cfg["status_fd"]
os.set_inheritable(sfd, False)
status = {}
PDEATHSIG, SUBREAPER = 1, 36
execs = cfg.get("exec")  # only the read-only view, then the command in this process
if not execs:
    libc.prctl(PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # heedls gone (its thread that started us): so are we
    if os.getppid() != cfg["parent"]:
        os._exit(125)
    libc.prctl(SUBREAPER, 1, 0, 0, 0)
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))

def err(what):
    return "%s: %s" % (what, os.strerror(ctypes.get_errno()))

def readonly(ro, rw):
    uid, gid = os.getuid(), os.getgid()
    if os.geteuid() != 0 or libc.unshare(0x20000) != 0:  # root: CLONE_NEWNS alone (owners stay as they are)
        if libc.unshare(0x10000000 | 0x20000) != 0:  # CLONE_NEWUSER | CLONE_NEWNS
            return err("unshare")
        for name, text in (("setgroups", "deny"), ("uid_map", "%d %d 1" % (uid, uid)), ("gid_map", "%d %d 1" % (gid, gid))):
            try:
                with open("/proc/self/" + name, "w") as f:
                    f.write(text)
            except OSError as e:
                if name != "setgroups":
                    return "%s: %s" % (name, e)
    if libc.mount(b"none", b"/", None, 16384 | (1 << 18), None) != 0:  # MS_REC | MS_PRIVATE
        return err("mount --make-rprivate /")
    def remount(path, flags):
        keep = 0
        f = os.statvfs(path).f_flag
        for st, ms in ((2, 2), (4, 4), (8, 8), (1024, 1024), (2048, 2048), (4096, 1 << 21)):
            if f & st:  # nosuid, nodev, noexec, noatime, nodiratime, relatime: locked in a user namespace
                keep |= ms
        p = path.encode()
        if libc.mount(p, p, None, 4096 | 16384, None) != 0:  # MS_BIND | MS_REC
            return err("bind " + path)
        if libc.mount(None, p, None, 32 | 4096 | flags | keep, None) != 0:  # MS_REMOUNT | MS_BIND
            return err("remount " + path)
        return None
    for path in ro:
        e = remount(path, 1)  # MS_RDONLY
        if e:
            return e
    for path in rw:
        e = remount(path, 0)
        if e:
            return e
    return None

if cfg.get("readonly_off"):
    status["readonly_error"] = "turned off (HEEDLS_READONLY_VIEW=0)"
elif cfg.get("readonly"):
    try:
        e = readonly(cfg["readonly"], cfg.get("writable") or [])
    except Exception as exc:
        e = repr(exc)
    if e:
        status["readonly_error"] = e
    if not execs:
        libc.prctl(PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # a new user namespace's credentials cleared it
        if os.getppid() != cfg["parent"]:
            os._exit(125)

def say():
    try:
        os.write(sfd, json.dumps(status).encode())
    except OSError:
        pass

if execs:
    status["exec"] = True
    say()
    os.close(sfd)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        os.execvp(argv[0], argv)
    except BaseException as exc:
        os.write(2, ("heedls: could not run %s: %s\n" % (argv[0], exc)).encode())
    os._exit(127)

me = os.getpid()
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})  # waited for below: sigtimedwait
child = os.fork()
if child == 0:
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, set())  # the command's own mask: nothing blocked
        os.setpgid(0, 0)
        libc.prctl(PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != me:
            os._exit(125)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.execvp(argv[0], argv)
    except BaseException as exc:
        os.write(2, ("heedls: could not run %s: %s\n" % (argv[0], exc)).encode())
    os._exit(127)

page = os.sysconf("SC_PAGE_SIZE")
mem = int(cfg.get("memory") or 0)
timeout = float(cfg.get("timeout") or 0)
deadline = time.monotonic() + timeout if timeout > 0 else None
code = []

def descendants():
    found, todo = [], [me]
    while todo:
        pid = todo.pop()
        try:
            tasks = os.listdir("/proc/%d/task" % pid)
        except OSError:
            continue
        for tid in tasks:
            try:
                with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                    kids = [int(k) for k in f.read().split()]
            except (OSError, ValueError):
                continue
            found.extend(kids)
            todo.extend(kids)
    return found

def rss(pids):
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/statm" % pid) as f:
                total += int(f.read().split()[1]) * page
        except (OSError, ValueError, IndexError):
            pass
    return total

def reap():
    while True:
        try:
            pid, st = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid == child:
            code.append(st)

def kill_all():
    killed = 0
    for _ in range(100):
        pids = descendants()
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
        time.sleep(0.002)
        reap()
    reap()
    return killed

pause = 0.01
while not code:
    reap()
    if code:
        break
    if stop:
        status["stopped"] = True
        break
    if mem:
        t0 = time.monotonic()
        used = rss(descendants())
        if used > mem:
            status["memory"] = used
            break
        pause = min(0.2, max(0.05, 4 * (time.monotonic() - t0)))  # a tree of thousands: fewer scans
    if deadline is not None and time.monotonic() > deadline:
        status["timeout"] = True
        break
    signal.sigtimedwait([signal.SIGCHLD], pause)  # at once when a child ends
try:
    os.killpg(child, signal.SIGKILL)
except OSError:
    pass
status["left_behind"] = kill_all()
if not code:
    try:
        code.append(os.waitpid(child, 0)[1])
    except ChildProcessError:
        code.append(0)
st = code[0]
if os.WIFSIGNALED(st):
    status["signal"] = os.WTERMSIG(st)
    rc = 128 + os.WTERMSIG(st)
else:
    status["code"] = rc = os.WEXITSTATUS(st)
say()
os._exit(rc)
"""


def _supervised(argv: Sequence[str], limits: Limits, timeout_s: float, status_fd: int,
                execs: bool = False) -> list[str]:
    config = {"status_fd": status_fd, "parent": os.getpid(), "timeout": timeout_s, "memory": limits.memory_bytes,
              "readonly": [os.path.realpath(p) for p in limits.readonly],
              "writable": [os.path.realpath(p) for p in limits.writable], "exec": execs,
              "readonly_off": bool(limits.readonly) and os.environ.get(READONLY_VIEW_ENV) == "0"}
    return [sys.executable, "-I", "-S", "-c", SUPERVISOR, json.dumps(config), *argv]


def readonly_view(argv: Sequence[str], limits: Limits) -> tuple[list[str], int, int]:
    """`argv` to start (`Popen(..., pass_fds=(write_fd,))`, then close `write_fd`) for a long-lived
    process that sees `limits.readonly` read-only (Linux user + mount namespace) and is otherwise
    left alone: the command replaces the supervisor, same pid. `readonly_status(read_fd)` then says
    whether the view could be set up (None) or why not."""
    read_fd, write_fd = os.pipe()
    if not SUPERVISION:
        os.write(write_fd, json.dumps({"readonly_error": f"not available on {sys.platform}"}).encode())
        return list(argv), read_fd, write_fd
    return _supervised(argv, limits, 0.0, write_fd, execs=True), read_fd, write_fd


def readonly_status(read_fd: int) -> str | None:
    """Why the read-only view of a `readonly_view` start could not be set up (None: it was); call
    it once the process has started (it has written its word before it ran the command)."""
    status = _read_status(read_fd)
    if not status:
        return "the supervisor did not report"
    error = status.get("readonly_error")
    return str(error) if error else None


def _read_status(fd: int) -> dict[str, Any]:
    os.set_blocking(fd, False)
    data = b""
    try:
        while chunk := os.read(fd, 65536):
            data += chunk
    except OSError:  # nothing written (the supervisor was killed)
        pass
    finally:
        os.close(fd)
    try:
        value = json.loads(data) if data else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


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
    limits: Limits | None = None,
) -> ProcResult:
    """`run` in a worker thread; cancelling the awaiting task kills the process group at once (a
    newer save wins). (asyncio's own Process.wait() waits for the output pipes to close too, so a
    forked child holding them made every run last until the time limit.)"""
    handle = _Handle()
    loop = asyncio.get_running_loop()
    done = loop.run_in_executor(None, lambda: run(argv, cwd, timeout_s, env, handle=handle, limits=limits))
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
