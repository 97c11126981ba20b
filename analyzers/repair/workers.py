"""Test-run workers: each owns a temporary copy of the workspace and a persistent runner process.

The user's files are never written: candidates are written into the worker's copy, and the runner
(`runner/heedls_repair_runner.py`, started with the workspace's interpreter) forks one child per
run from a warm parent. The worker process is started in its own session so the whole tree can be
killed at once (cancellation, a hung runner, shutdown).

Containment (see docs/repair.md): cwd is the copy, HOME and TMPDIR point inside it, PYTHONPATH
entries inside the real workspace are dropped, each run has a wall-clock limit and its process
group is SIGKILLed afterwards; a process that left the group (setsid(), a daemon) is found by the
worker's run token in its environment and killed with the worker (proc.RUN_TOKEN_ENV), and the
runner, a child subreaper, kills one that also cleared its environment. The real workspace is
read-only to the runner and its runs (`sandbox_limits`, proc.readonly_view: a user + mount
namespace); where the system allows none, `Snapshot` lets `heedls fix` put back what a run changed.
Remaining risk: writes to absolute paths outside the workspace, and the network.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import select
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from heedls.analyzers import proc as proc_mod
from heedls.analyzers import tempfiles

log = logging.getLogger("heedls.repair")

RUNNER = Path(__file__).resolve().parent / "runner" / "heedls_repair_runner.py"
PROFILER = RUNNER.with_name("heedls_repair_profile.py")
COPY_PREFIX = "heedls-repair-"  # each runner's copy of the workspace, in the temp folder
SKIP_DIRS = {".git", ".hg", ".venv", "venv", "env", "node_modules", "__pycache__", ".mypy_cache",
             ".pytest_cache", ".ruff_cache", ".tox", ".nox", "build", "dist", ".heedls"}
# Files over MAX_FILE_BYTES are copied only while they come to MAX_BIG_BYTES in all: a test may read
# a big data file (skipped, it failed every run), but a workspace's datasets are not copied per run.
MAX_FILE_BYTES = 5 << 20
MAX_BIG_BYTES = 64 << 20
MAX_COPY_FILES = 5000


@dataclass
class TestOutcome:
    __test__ = False  # not a pytest test class
    nodeid: str
    outcome: str  # passed | failed | skipped
    seconds: float = 0.0
    timeout: bool = False
    lines: dict[str, list[int]] = field(default_factory=dict)
    failure: dict[str, Any] | None = None


@dataclass
class RunResult:
    status: str  # ok | timeout | crash
    rc: int | None
    tests: list[TestOutcome]
    collected: int
    errors: list[dict[str, Any]]
    seconds: float
    # functions of the module as the tests collected it that ran after the fast path's swap
    # (asked with `stale_check`): the fast path does not test the candidate's code there
    stale: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> list[TestOutcome]:
        return [t for t in self.tests if t.outcome == "failed"]

    @property
    def passed(self) -> list[TestOutcome]:
        return [t for t in self.tests if t.outcome == "passed"]

    @staticmethod
    def from_json(data: dict[str, Any]) -> RunResult:
        tests = [
            TestOutcome(
                nodeid=t.get("nodeid", ""),
                outcome=t.get("outcome", "failed"),
                seconds=float(t.get("seconds") or 0.0),
                timeout=bool(t.get("timeout")),
                lines=t.get("lines") or {},
                failure=t.get("failure"),
            )
            for t in data.get("tests") or []
        ]
        return RunResult(
            status=str(data.get("status", "crash")),
            rc=data.get("rc"),
            tests=tests,
            collected=int(data.get("collected") or 0),
            errors=list(data.get("errors") or []),
            seconds=float(data.get("seconds") or 0.0),
            stale=[e for e in data.get("stale") or [] if isinstance(e, dict)],
        )


def find_python(root: Path, configured: str = "") -> str:
    """The workspace's interpreter: configured (a venv folder or a path relative to root too; one
    that does not exist is returned as given, for the error), else a .venv/venv/env in root or up
    to three folders above it, else ours (testrun's one rule)."""
    from heedls.analyzers.testrun import find_python as rule

    if configured:
        given = Path(configured).expanduser()
        given = given if given.is_absolute() else root / given
        if not given.exists():  # asked for and missing: the runner's start names it (an error, not a guess)
            return configured
    return rule(root, configured or None, look_up=3)


def skipped_dir(name: str) -> bool:
    """A folder no test run's copy holds (VCS, virtual environments, caches, build output)."""
    return name in SKIP_DIRS or name.endswith(".egg-info")


def workspace_fingerprint(root: Path, leave_out: Path) -> str:
    """What a test run in a copy of `root` reads besides the module under repair: each file
    `copy_workspace` copies, by path, size and modification time (a stat each, no reading)."""
    digest = hashlib.blake2b(digest_size=16)
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not skipped_dir(d))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path == leave_out:
                continue
            try:
                st = path.stat()
            except OSError:
                continue
            digest.update(f"{path.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode(errors="surrogateescape"))
            count += 1
            if count >= MAX_COPY_FILES:
                return digest.hexdigest()
    return digest.hexdigest()


# How many files the copy's walk looks at, at most (a data folder of a million files is not listed).
MAX_WALK_FILES = 100_000
# Copied before any other file: the Python sources and the configuration pytest reads.
_SOURCE_SUFFIXES = (".py", ".pyi", ".toml", ".cfg", ".ini", ".pth")


def _copy_order(name: str) -> int:
    return 0 if name.endswith(_SOURCE_SUFFIXES) else 1


def _copy_files(root: Path, dest: Path) -> None:
    """Copy the source files a test run needs (skipping VCS, venvs, caches and huge files). A
    symbolic link to a file inside the workspace stays a link, to that file's copy (the module
    a test imports may be one: a copy without it fails every test); one to a file outside is
    copied as that file, so that no run reaches into the real workspace or beyond. Past
    MAX_COPY_FILES, what is left out is data, never a Python file or pytest's configuration while
    there is room for them: until 2026-12-03 the first 5000 files walked were copied, and a project
    with a folder of 6000 data files had a copy without its tests (every run: "file or directory
    not found: tests/test_calc.py", the whole budget spent)."""
    found: list[tuple[Path, str]] = []
    folders: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not skipped_dir(d))
        rel = Path(dirpath).relative_to(root)
        folders.append(rel)
        found.extend((rel, name) for name in sorted(filenames))
        if len(found) >= MAX_WALK_FILES:
            log.warning("workspace copy: the walk stopped at %d files", len(found))
            break
    if len(found) > MAX_COPY_FILES:
        found.sort(key=lambda entry: _copy_order(entry[1]))  # stable: the walk's order within each kind
    count = 0
    big = 0
    real_root = root.resolve()
    made: set[Path] = set()
    for rel in folders[:MAX_COPY_FILES]:  # empty ones too (a test may write its output there)
        (dest / rel).mkdir(parents=True, exist_ok=True)
        made.add(rel)
    for rel, name in found:
        src = root / rel / name
        try:
            st = src.stat()  # a broken link raises: skipped
            if not stat.S_ISREG(st.st_mode):
                continue  # a FIFO, a socket, a device: nothing a copy can hold (a FIFO's read would block)
            size = st.st_size
            if size > MAX_FILE_BYTES:
                if big + size > MAX_BIG_BYTES:
                    log.info("workspace copy: %s (%d bytes) left out", src, size)
                    continue
                big += size
            if rel not in made:
                (dest / rel).mkdir(parents=True, exist_ok=True)
                made.add(rel)
            target = src.resolve() if src.is_symlink() else None
            if target is not None and target.is_file() and _inside(target, real_root):
                link = dest / rel / name
                link.symlink_to(os.path.relpath(dest / target.relative_to(real_root), link.parent))
            else:
                copied = dest / rel / name
                shutil.copy2(src, copied)
                # candidates are written into the copy: a read-only checkout stays read-only, its copy not
                copied.chmod(copied.stat().st_mode | stat.S_IWUSR)
        except (OSError, ValueError):
            continue
        count += 1
        if count >= MAX_COPY_FILES:
            log.warning("workspace copy truncated at %d files", count)
            return


def copy_workspace(root: Path, dest: Path) -> None:
    """Copy the workspace for test runs (`_copy_files`), with its root as pytest's rootdir."""
    _copy_files(root, dest)
    if not has_pytest_config(dest):
        # pytest looks for its configuration up from the tests, past the copy's root into the temp
        # folder's parents: a pyproject.toml there became the rootdir (node ids through the temp
        # folder) and its addopts applied. This empty one ends the search at the copy's root; the
        # project's own configuration, at its root or below, is found first as it is for the user.
        (dest / "pytest.ini").write_text(PYTEST_INI_MARKER, encoding="utf-8")


PYTEST_INI_MARKER = "# heedls: the workspace copy's rootdir (the project has no pytest configuration here)\n[pytest]\n"


def has_pytest_config(folder: Path) -> bool:
    """Does `folder` hold a file pytest takes as its configuration (and so its rootdir)? One it
    cannot read counts: pytest then stops with the error, as in the user's own run."""
    if (folder / "pytest.ini").is_file() or (folder / ".pytest.ini").is_file():
        return True
    sections = {"tox.ini": "[pytest]", "setup.cfg": "[tool:pytest]"}
    for name, section in sections.items():
        try:
            if any(line.strip() == section for line in (folder / name).read_text(errors="replace").splitlines()):
                return True
        except OSError:
            continue
    try:
        data = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))
    except OSError:
        return False
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return True
    tool = data.get("tool")
    return isinstance(tool, dict) and "pytest" in tool  # [tool.pytest.ini_options], pytest 9's [tool.pytest]


def sandbox_env(copy: Path, real_root: Path, autoload_plugins: bool, site: Sequence[str] = ()) -> dict[str, str]:
    """The environment of a test run in `copy`. Folders of the real workspace on the import path
    (PYTHONPATH's, and `site`: those the interpreter's site-packages add, as an editable install's
    `src`, see `site_folders`) are given as their copies, first: else the tests would import the
    user's own files, and no candidate written into the copy could ever pass."""
    env = dict(os.environ)
    home = copy / ".heedls-home"
    tmp = copy / ".heedls-tmp"
    home.mkdir(exist_ok=True)
    tmp.mkdir(exist_ok=True)
    env.update(
        HOME=str(home), TMPDIR=str(tmp), TMP=str(tmp), TEMP=str(tmp),
        PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0", PYTHONUNBUFFERED="1",
        XDG_CACHE_HOME=str(tmp), XDG_CONFIG_HOME=str(home), XDG_DATA_HOME=str(home),
    )
    paths = [str(_in_copy(Path(p), real_root, copy)) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    paths = [*(str(copy / rel) for rel in site), *paths]
    paths = list(dict.fromkeys(paths))
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    else:
        env.pop("PYTHONPATH", None)
    if not autoload_plugins:
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    # any proc.run with this environment sees the real workspace read-only, the copy writable
    env[proc_mod.SANDBOX_ROOT_ENV] = str(real_root.resolve())
    env[proc_mod.SANDBOX_COPY_ENV] = str(copy.resolve())
    for key in list(env):  # the code under test has no business with provider keys
        if key.endswith(("_API_KEY", "_TOKEN")):
            env.pop(key, None)
    return env


def _in_copy(path: Path, real_root: Path, copy: Path) -> Path:
    """`path`, or its copy when it is inside the real workspace."""
    try:
        return copy / path.resolve().relative_to(real_root.resolve())
    except (ValueError, OSError):
        return path


def site_folders(python: str, root: Path) -> list[str]:
    """Folders of the workspace (relative) that `python` puts on its import path by itself: an
    editable install's `.pth` (`src`, or the project's root), not its own virtual environment."""
    try:
        run = subprocess.run([python, "-I", "-c", "import json, sys; print(json.dumps(sys.path))"],  # noqa: S603
                             capture_output=True, text=True, timeout=15, cwd=tempfile.gettempdir(), check=False)
        entries = json.loads(run.stdout) if run.returncode == 0 else []
    except (OSError, subprocess.SubprocessError, ValueError):
        return []
    real = root.resolve()
    found: list[str] = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, str) or not entry:
            continue
        try:
            rel = Path(entry).resolve().relative_to(real)
        except (ValueError, OSError):
            continue
        if not any(skipped_dir(part) for part in rel.parts):
            found.append(rel.as_posix())
    return found


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except (ValueError, OSError):
        return False


# The memory the final fresh-process check's processes may hold together (the search's runs have an
# address-space limit of 2 GiB each, runner/heedls_repair_runner.py): a test that allocates without
# bound there only (its hash seed) is stopped, as it is in the search.
CHECK_MEMORY_BYTES = 4 << 30


def sandbox_limits(real_root: Path, copy: Path, memory_bytes: int = 0) -> proc_mod.Limits:
    """A test run's view of the files: the real workspace read-only, but for the copy (and its
    HOME and TMPDIR) when the temp folder is inside it."""
    writable = (str(copy),) if _inside(copy, real_root) else ()
    return proc_mod.Limits(memory_bytes=memory_bytes, readonly=(str(real_root),), writable=writable)


_unprotected: dict[str, str] = {}  # real workspace -> why a test run saw it writable


def note_unprotected(root: Path, why: str) -> None:
    """A test run saw the real workspace writable (no read-only view here: user namespaces off, a
    container's seccomp filter): warned once per workspace; `heedls fix` then checks its files
    after the search against their state before it (server/cli_fix.py)."""
    key = str(root.resolve())
    if key not in _unprotected:
        _unprotected[key] = why
        log.warning("repair: the test runs see %s writable (read-only view not available: %s); "
                    "a test that writes there by absolute path reaches your files", root, why)


def unprotected(root: Path) -> str | None:
    """Why a test run of this process saw `root` writable; None when every one saw it read-only."""
    return _unprotected.get(str(root.resolve()))


# What `Snapshot` keeps of the real workspace to put back: files up to this size, this much in all.
SNAPSHOT_FILE_BYTES = 1 << 20
SNAPSHOT_TOTAL_BYTES = 64 << 20


@dataclass
class Snapshot:
    """The real workspace's files as they were before a search (size, mtime, and the content of
    those up to SNAPSHOT_FILE_BYTES): where the test runs could not be given a read-only view of
    it, what `heedls fix` checks it against afterwards, and puts back."""

    root: Path
    files: dict[str, tuple[int, int, bytes | None]] = field(default_factory=dict)

    @classmethod
    def take(cls, root: Path) -> Snapshot:
        snap = cls(root.resolve())
        kept = 0
        for dirpath, dirnames, filenames in os.walk(snap.root):
            dirnames[:] = sorted(d for d in dirnames if not skipped_dir(d))
            for name in sorted(filenames):
                path = Path(dirpath) / name
                try:
                    st = path.lstat()
                    if not stat.S_ISREG(st.st_mode):
                        continue  # a link is the file it points to: that one is in the walk if it is ours
                    content = None
                    if st.st_size <= SNAPSHOT_FILE_BYTES and kept + st.st_size <= SNAPSHOT_TOTAL_BYTES:
                        content = path.read_bytes()
                        kept += len(content)
                except OSError:
                    continue
                snap.files[str(path.relative_to(snap.root))] = (st.st_size, st.st_mtime_ns, content)
                if len(snap.files) >= MAX_COPY_FILES:
                    return snap
        return snap

    def changed(self) -> list[str]:
        """The files (relative) that are not as they were: changed or removed."""
        found = []
        for rel, (size, mtime_ns, content) in self.files.items():
            path = self.root / rel
            try:
                st = path.lstat()
                if (st.st_size, st.st_mtime_ns) == (size, mtime_ns):
                    continue
                if content is not None and stat.S_ISREG(st.st_mode) and path.read_bytes() == content:
                    continue  # touched, not changed
            except FileNotFoundError:
                pass
            except OSError:
                continue
            found.append(rel)
        return found

    def restore(self, rel: str) -> tuple[bool, Path | None]:
        """Put `rel` back as it was, its present content first kept in a backup file beside it:
        (restored, the backup). Not restored: a file too big to have been kept."""
        _size, mtime_ns, content = self.files[rel]
        path = self.root / rel
        if content is None:
            return False, None
        backup = None
        try:
            current = path.read_bytes()
        except FileNotFoundError:
            current = None
        if current is not None:
            stamp = time.strftime("%Y%m%dT%H%M%S")
            backup = path.with_name(f"{path.name}.heedls-changed-{stamp}")
            n = 1
            while backup.exists():
                n += 1
                backup = path.with_name(f"{path.name}.heedls-changed-{stamp}-{n}")
            backup.write_bytes(current)
        tmp = path.with_name(f".{path.name}.heedls-restore-{secrets.token_hex(4)}")
        tmp.write_bytes(content)
        if current is not None:
            shutil.copymode(path, tmp)
        os.replace(tmp, path)
        os.utime(path, ns=(mtime_ns, mtime_ns))
        return True, backup


class WorkerError(RuntimeError):
    pass


class Worker:
    """One workspace copy + one runner process; `run` is called from one thread at a time."""

    def __init__(
        self, root: Path, python: str, autoload_plugins: bool = False, parent_dir: str | None = None,
        tests: list[str] | None = None, site: Sequence[str] = (),
    ) -> None:
        self.root = root
        # with tests, the runner collects them once and can run candidates without re-collecting
        self.tests = list(tests or [])
        self.fast = False
        self.has_pytest = True
        self.python = python
        self.autoload_plugins = autoload_plugins
        tempfiles.sweep_stale(COPY_PREFIX)  # the copies of a repair killed outright (SIGKILL)
        self.tmp = Path(tempfile.mkdtemp(prefix=COPY_PREFIX, dir=parent_dir))
        self.copy = self.tmp / "ws"
        self.copy.mkdir()
        copy_workspace(root, self.copy)
        self.token = secrets.token_hex(8)
        self.env = {**sandbox_env(self.copy, root, autoload_plugins, site), proc_mod.RUN_TOKEN_ENV: self.token}
        self.proc: subprocess.Popen[bytes] | None = None
        self._buf = b""
        self._lock = threading.Lock()
        self.runs = 0
        self.closed = False
        self.readonly_error: str | None = None
        self.start_s = 0.0  # Popen to the runner's hello: a Python and pytest start in this workspace

    # -- process management ------------------------------------------------------------------
    def start(self, timeout_s: float = 30.0) -> None:
        # The runner sees the real workspace read-only (proc.readonly_view): a test that writes into
        # the project by absolute path (a constant, an environment variable, a conftest's root)
        # fails in the copy's run instead of overwriting the user's files.
        argv, status_r, status_w = proc_mod.readonly_view([self.python, str(RUNNER), *self.tests],
                                                          sandbox_limits(self.root, self.tmp))
        started = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                argv,
                cwd=str(self.copy),
                env=self.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                pass_fds=(status_w,),
            )
        except BaseException:
            os.close(status_r)
            raise
        finally:
            os.close(status_w)
        self._buf = b""
        hello = self._read_line(timeout_s)
        self.start_s = time.monotonic() - started
        self.readonly_error = proc_mod.readonly_status(status_r)
        if self.readonly_error is not None:
            note_unprotected(self.root, self.readonly_error)
        if hello is None or not hello.get("ready"):
            self.kill()
            raise WorkerError("test runner did not start")
        self.fast = bool(hello.get("fast"))
        self.has_pytest = bool(hello.get("pytest"))

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        proc_mod.kill_escaped(self.token)
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass

    def close(self) -> None:
        self.closed = True
        self.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _read_line(self, timeout_s: float) -> dict[str, Any] | None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], min(left, 0.25))
            if self.closed:
                return None
            if not ready:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            value = json.loads(line)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    # -- runs ----------------------------------------------------------------------------------
    def run(
        self,
        module: str,
        source: str | None,
        tests: list[str],
        *,
        order: list[str] | None = None,
        exitfirst: bool = True,
        trace: bool = False,
        timeout_s: float = 10.0,
        test_limit_s: float = 0.0,
        fast: bool = False,
        only: list[str] | None = None,
        stop_on_timeout: bool = False,
        stale_check: bool = False,
    ) -> RunResult:
        """Run the tests in the copy with `source` as the module's text (None = leave as is).
        `only`: just these test ids; `stop_on_timeout`: end the run at the first test cut by
        `test_limit_s`; `stale_check` (fast path): report the functions of the module as collected
        that still run after the swap (`RunResult.stale`)."""
        with self._lock:
            if self.closed:
                raise WorkerError("worker closed")
            if self.proc is None or self.proc.poll() is not None:
                self.kill()
                self.start()
            assert self.proc is not None and self.proc.stdin is not None
            self.runs += 1
            request = {
                "id": self.runs, "module": module, "source": source, "tests": tests,
                "order": order or [], "exitfirst": exitfirst, "trace": trace,
                "timeout": timeout_s, "test_limit": test_limit_s, "fast": fast and self.fast,
                "only": only or [], "stop_on_timeout": stop_on_timeout, "stale_check": stale_check,
            }
            try:
                self.proc.stdin.write((json.dumps(request) + "\n").encode())
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                self.kill()
                return RunResult("crash", None, [], 0, [{"message": "runner died"}], 0.0)
            # the runner kills its child at timeout_s; the margin covers a runner that itself hangs
            response = self._read_line(timeout_s + 3.0)
            if response is None:
                self.kill()
                return RunResult("timeout", None, [], 0, [{"message": "runner unresponsive"}], timeout_s)
            return RunResult.from_json(response)
