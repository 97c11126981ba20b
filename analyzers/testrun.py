"""Run the workspace's tests with pytest in the workspace's interpreter, and turn failures into
diagnostics that point at the failing assertion *and* at the most likely cause in the code under test.

The run happens in a child process (its own process group, killed whole at the timeout or on
cancellation, see `proc.py`; under a supervisor, `proc.Limits`: a test that kills its parent or its
group cannot reach heedls, daemons the tests leave are killed, and the processes' memory is capped,
`memory_limit_gb`) with heedls' self-contained pytest plugin loaded from
`pytest_plugin/` through PYTHONPATH; the plugin writes a JSON-lines report to a temporary file.

Lines in `TestFailure`, `Frame`, `Suspect` are 1-based, as Python prints them; `Diagnostic` ranges
are 0-based, as in LSP.
"""

from __future__ import annotations

import ast
import asyncio
import atexit
import json
import logging
import os
import re
import signal
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from heedls.analyzers import proc, pyparse, tempfiles
from heedls.analyzers.model import Diagnostic, Range, RelatedLocation
from heedls.analyzers.pytest_plugin import PLUGIN_DIR, PLUGIN_MODULE

log = logging.getLogger("heedls.testrun")

Outcome = Literal["passed", "failed", "error", "timeout", "no-tests", "cancelled"]

# Folders never searched for tests nor treated as the user's code.
SKIP_DIRS = {".git", ".hg", ".venv", "venv", "env", ".tox", ".nox", "node_modules", "__pycache__", "build",
             "dist", ".mypy_cache", ".ruff_cache", ".pytest_cache", "site-packages"}
MAX_TEST_FILES = 5000
STDERR_TAIL = 4000


# -- data ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Frame:
    path: str
    line: int
    function: str
    source: str
    kind: str  # "test" | "code"


@dataclass(frozen=True)
class Assertion:
    op: str
    left: str
    right: str
    left_type: str = ""
    right_type: str = ""
    left_len: int | None = None
    right_len: int | None = None


@dataclass(frozen=True)
class FailingCall:
    """The call from the test into the code under test that produced the failure."""

    expr: str
    function: str
    path: str
    def_line: int
    args: list[str] | None
    input: str | None  # "f(1, [2, 3])" with the argument values, None when they could not be re-evaluated


@dataclass
class CallTrace:
    """The failing call re-executed under tracing by the plugin (the code under test only)."""

    path: str
    hits: dict[str, dict[int, int]]
    sequence: list[tuple[int, list[str]]]  # top frame: (line, variables that line wrote)
    return_line: int | None
    return_value: str | None
    raised: str | None
    raised_line: int | None
    stopped: str | None  # "time" | "events" when the budget ran out (an infinite loop, usually)
    events: int = 0
    callees: list[CallRecord] = field(default_factory=list)  # last call of each other function
    yields: dict[int, int] = field(default_factory=dict)  # a generator: line -> times it suspended there


@dataclass
class CallRecord:
    """One finished call seen while re-tracing: where it returned and its executed lines."""

    path: str
    function: str
    def_line: int
    return_line: int | None
    return_value: str | None
    sequence: list[tuple[int, list[str]]]


@dataclass(frozen=True)
class Suspect:
    path: str
    line: int
    score: float
    reason: str


@dataclass
class TestFailure:
    __test__ = False  # not a pytest test class, despite the name
    test_id: str
    path: str  # the test file
    line: int | None  # the test function's line
    exc_type: str
    message: str
    when: str = "call"
    assertion: Assertion | None = None
    frames: list[Frame] = field(default_factory=list)
    frames_total: int = 0
    test_frame: Frame | None = None
    code_frame: Frame | None = None
    test_locals: dict[str, str] = field(default_factory=dict)
    code_locals: dict[str, str] = field(default_factory=dict)
    # len/type (and first keys of dicts) of the sized locals at the code frame
    code_shapes: dict[str, dict[str, Any]] = field(default_factory=dict)
    missing_name: str | None = None  # AttributeError/NameError: the name that was not found
    similar_names: list[str] = field(default_factory=list)
    call: FailingCall | None = None
    trace: CallTrace | None = None
    stdout_tail: str = ""
    stderr_tail: str = ""
    suspects: list[Suspect] = field(default_factory=list)

    @property
    def recursion_depth(self) -> int:
        return self.frames_total


@dataclass(frozen=True)
class CollectError:
    path: str
    line: int | None
    exc_type: str
    message: str
    nodeid: str = ""
    text: str = ""


@dataclass
class TestRun:
    __test__ = False
    outcome: Outcome
    failures: list[TestFailure] = field(default_factory=list)
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    collected: int | None = None
    seconds: float = 0.0
    stderr_tail: str = ""
    collect_errors: list[CollectError] = field(default_factory=list)
    timeout_s: float = 0.0
    running_test: str | None = None  # the test that was running when the run was killed
    returncode: int | None = None
    targets: list[str] = field(default_factory=list)
    problem: str | None = None  # why no test could run at all, in words for the user
    # Why the run did not complete normally (pytest's exit code, a process that died, a session
    # that never finished), in words: an error diagnostic, or "no tests ran" would read as a pass.
    incomplete: str | None = None
    # (nodeid, when) of the failed tests the plugin has no failure record of (`--pdb` took the
    # exception, a strict XPASS, a crashed xdist worker): counted, so they must be shown too.
    unexplained: list[tuple[str, str]] = field(default_factory=list)
    memory_limit: int = 0  # bytes the test processes could hold together (0: no limit)

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.errors + self.skipped

    @property
    def summary(self) -> dict[str, Any]:
        """What `heedls check` adds to its summary of the run, besides the counts."""
        return {"outcome": self.outcome, "collected": self.collected, "incomplete": self.incomplete}


# -- interpreter and related tests ----------------------------------------------------------------

def find_python(workspace: Path, configured: str | None = None, *, look_up: int = 0) -> str:
    """The configured interpreter (a path relative to the workspace, or a venv folder, taken as
    its interpreter), else the `.venv`/`venv`/`env` of the workspace or of up to `look_up` folders
    above it, else our own. One rule for `heedls check --tests`, the server's runs and the repair."""
    if configured:
        candidate = Path(configured).expanduser()
        if not candidate.is_absolute():
            candidate = workspace / candidate
        if candidate.is_dir():  # a venv folder rather than its interpreter
            candidate = candidate / "bin" / "python"
        if candidate.exists():
            return str(candidate)
        log.warning("configured python %s does not exist; auto-detecting", configured)
    for folder in [workspace, *workspace.parents][: look_up + 1]:
        for name in (".venv", "venv", "env"):
            for rel in ("bin/python", "Scripts/python.exe"):
                candidate = folder / name / rel
                if candidate.exists():
                    return str(candidate)
    return sys.executable


def is_test_file(path: Path) -> bool:
    name = path.name
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def _iter_test_files(workspace: Path) -> Iterable[Path]:
    count = 0
    for root, dirs, files in os.walk(workspace):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(files):
            if is_test_file(Path(name)):
                count += 1
                if count > MAX_TEST_FILES:
                    return
                yield Path(root) / name


def _module_names(workspace: Path, path: Path) -> set[str]:
    """Dotted names the file can be imported as (from the workspace root and from `src/`)."""
    names = {path.stem}
    for base in (workspace, workspace / "src"):
        try:
            rel = path.relative_to(base).with_suffix("")
        except ValueError:
            continue
        parts = list(rel.parts)
        if parts and parts[-1] == "__init__":
            parts = parts[:-1]
        for i in range(len(parts)):
            names.add(".".join(parts[i:]))
    names.discard("")
    return names


def _imports(tree: ast.AST, test_file: Path, workspace: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative import: resolve against the test file's package path
                base = test_file.parent
                for _ in range(node.level - 1):
                    base = base.parent
                try:
                    prefix = ".".join(base.relative_to(workspace).parts)
                except ValueError:
                    prefix = ""
                module = ".".join(p for p in (prefix, module) if p)
            found.add(module)
            found.update(f"{module}.{alias.name}" if module else alias.name for alias in node.names)
    return found


def related_tests(workspace: Path, changed_file: Path) -> list[str]:
    """Test files related to `changed_file`: itself if it is a test, else the test files importing
    it, else the nearest `test_<name>.py`/`<name>_test.py`. `[]` means "run the whole suite"."""
    workspace = workspace.resolve()
    changed = changed_file.resolve()
    if is_test_file(changed):
        return [str(changed)]
    if changed.suffix != ".py":
        return []
    names = _module_names(workspace, changed)
    stem = changed.stem if changed.stem != "__init__" else changed.parent.name
    importers: list[str] = []
    same_name: list[Path] = []
    for test_file in _iter_test_files(workspace):
        if test_file.name in (f"test_{stem}.py", f"{stem}_test.py"):
            same_name.append(test_file)
        try:
            text = test_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if stem not in text:
            continue  # cheap pre-filter before parsing
        try:
            tree = pyparse.parse(text)
        except (SyntaxError, ValueError):
            continue
        if _imports(tree, test_file, workspace) & names:
            importers.append(str(test_file))
    if importers:
        return importers
    if same_name:
        # nearest = the one sharing the longest path prefix with the changed file
        def distance(p: Path) -> int:
            common = os.path.commonpath([p, changed])
            return len(p.relative_to(common).parts) + len(changed.relative_to(common).parts)

        return [str(min(same_name, key=distance))]
    return []


# -- running ------------------------------------------------------------------------------------------

def _command(python: str, targets: Sequence[str] | None) -> list[str]:
    # -p no:cacheprovider: a heedls run must not change --lf/--ff state or write into the workspace.
    return [python, "-m", "pytest", "-p", PLUGIN_MODULE, "-p", "no:cacheprovider", "-q", "--no-header",
            "-rN", "--color=no", *(targets or [])]


def _environ(workspace: Path, report: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PLUGIN_DIR), env.get("PYTHONPATH", "")) if p)
    env["HEEDLS_REPORT"] = str(report)
    env["HEEDLS_WORKSPACE"] = str(workspace.resolve())
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PYTEST_ADDOPTS", None)  # the user's -x/--pdb/-n would change what we can report
    env.setdefault("PYTHONIOENCODING", "utf-8")
    return env


# Report files of the runs in progress. A server stopped by SIGTERM leaves through its atexit hooks
# and os._exit, past the runs' `finally`: this hook removes what they would have (one stayed behind
# in the temp folder per run cut short).
_REPORTS: set[Path] = set()
REPORT_PREFIX = "heedls-pytest-"


@atexit.register
def _remove_reports() -> None:
    for report in list(_REPORTS):
        report.unlink(missing_ok=True)


def _report_path() -> Path:
    tempfiles.sweep_stale(REPORT_PREFIX)  # those of a server killed outright (no hook runs then)
    fd, name = tempfile.mkstemp(prefix=REPORT_PREFIX, suffix=".jsonl")
    os.close(fd)
    _REPORTS.add(Path(name))
    return Path(name)


def _remove_report(report: Path) -> None:
    report.unlink(missing_ok=True)
    _REPORTS.discard(report)


# The memory the test processes may hold together (resident, in GiB), unless configured: 8 GiB, or
# half of the machine's memory when that is less. A test that allocates without bound is stopped
# there and named, where it grew until the machine's OOM killer picked a process (maybe not it).
DEFAULT_MEMORY_LIMIT_GB = 8.0


def default_memory_limit_gb() -> float:
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return DEFAULT_MEMORY_LIMIT_GB
    return min(DEFAULT_MEMORY_LIMIT_GB, physical / 2 / (1 << 30)) if physical > 0 else DEFAULT_MEMORY_LIMIT_GB


def _limits(memory_limit_gb: float | None) -> proc.Limits:
    """The run's supervision (proc.Limits): out of reach of a test that kills its parent or its
    process group, daemons it leaves killed at the end, and `memory_limit_gb` (None: the default,
    0: none)."""
    gb = default_memory_limit_gb() if memory_limit_gb is None else memory_limit_gb
    return proc.Limits(memory_bytes=int(max(gb, 0.0) * (1 << 30)))


def run_tests(
    workspace: Path,
    targets: Sequence[str] | None,
    *,
    python: str | None = None,
    timeout_s: float = 60.0,
    memory_limit_gb: float | None = None,
) -> TestRun:
    """Run pytest on `targets` (None/[] = the whole suite) and parse the plugin's report."""
    workspace = workspace.resolve()
    report = _report_path()
    limits = _limits(memory_limit_gb)
    try:
        result = proc.run(_command(find_python(workspace, python), targets), workspace, timeout_s,
                          env=_environ(workspace, report), limits=limits)
        return parse_report(report, result, workspace, timeout_s, list(targets or []), limits.memory_bytes)
    finally:
        _remove_report(report)


async def run_tests_async(
    workspace: Path,
    targets: Sequence[str] | None,
    *,
    python: str | None = None,
    timeout_s: float = 60.0,
    memory_limit_gb: float | None = None,
) -> TestRun:
    """As `run_tests`; cancelling the awaiting task kills the whole process group and re-raises."""
    workspace = workspace.resolve()
    report = _report_path()
    limits = _limits(memory_limit_gb)
    try:
        result = await proc.run_async(_command(find_python(workspace, python), targets), workspace,
                                      timeout_s, env=_environ(workspace, report), limits=limits)
        return await asyncio.to_thread(parse_report, report, result, workspace, timeout_s,
                                       list(targets or []), limits.memory_bytes)
    finally:
        _remove_report(report)


# -- report parsing -------------------------------------------------------------------------------------

def _read_events(report: Path) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    try:
        text = report.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return events
    for raw in text.splitlines():
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            continue  # the last line of a killed run may be cut short
        if isinstance(value, dict):
            events.append(value)
    return events


def _frame(data: dict[str, Any] | None) -> Frame | None:
    if not data:
        return None
    return Frame(str(data.get("path", "")), int(data.get("line") or 0), str(data.get("function", "")),
                 str(data.get("source", "")), str(data.get("kind", "code")))


def _failure(event: dict[str, Any]) -> TestFailure:
    frames = [f for f in (_frame(d) for d in event.get("frames") or []) if f is not None]
    ti, ci = event.get("test_frame"), event.get("code_frame")
    cmp = event.get("compare")
    call = event.get("call")
    trace = event.get("trace")
    failure = TestFailure(
        test_id=str(event.get("nodeid", "")),
        path=str(event.get("path", "")),
        line=event.get("line"),
        exc_type=str(event.get("exc_type", "")),
        message=str(event.get("message", "")),
        when=str(event.get("when", "call")),
        assertion=Assertion(
            str(cmp.get("op", "")), str(cmp.get("left", "")), str(cmp.get("right", "")),
            str(cmp.get("left_type", "")), str(cmp.get("right_type", "")),
            cmp.get("left_len"), cmp.get("right_len"),
        ) if isinstance(cmp, dict) else None,
        frames=frames,
        frames_total=int(event.get("frames_total") or len(frames)),
        test_frame=frames[ti] if isinstance(ti, int) and ti < len(frames) else None,
        code_frame=frames[ci] if isinstance(ci, int) and ci < len(frames) else None,
        test_locals=dict(event.get("test_locals") or {}),
        code_locals=dict(event.get("code_locals") or {}),
        code_shapes=dict(event.get("code_shapes") or {}),
        missing_name=event.get("missing_name"),
        similar_names=list(event.get("similar_names") or []),
        call=FailingCall(
            str(call.get("expr", "")), str(call.get("function", "")), str(call.get("path", "")),
            int(call.get("def_line") or 0), call.get("args"), call.get("input"),
        ) if isinstance(call, dict) else None,
        trace=CallTrace(
            str(trace.get("path", "")),
            {p: {int(k): int(v) for k, v in h.items()} for p, h in (trace.get("hits") or {}).items()},
            [(int(line), list(w)) for line, w in trace.get("sequence") or []],
            trace.get("return_line"), trace.get("return_value"), trace.get("raised"),
            trace.get("raised_line"), trace.get("stopped"), int(trace.get("events") or 0),
            [CallRecord(str(c.get("path", "")), str(c.get("function", "")), int(c.get("def_line") or 0),
                        c.get("return_line"), c.get("return_value"),
                        [(int(line), list(w)) for line, w in c.get("sequence") or []])
             for c in trace.get("callees") or [] if isinstance(c, dict)],
            {int(k): int(v) for k, v in (trace.get("yields") or {}).items()},
        ) if isinstance(trace, dict) else None,
        stdout_tail=str(event.get("stdout_tail", "")),
        stderr_tail=str(event.get("stderr_tail", "")),
    )
    failure.suspects = localise(failure)
    return failure


_LOC_TB = re.compile(r"^(?P<path>[^\s:][^:\n]*\.py):(?P<line>\d+): in ", re.MULTILINE)
_LOC_FILE = re.compile(r'File "(?P<path>[^"]+\.py)", line (?P<line>\d+)')
_E_LINE = re.compile(r"^E\s+(?P<msg>.+)$", re.MULTILINE)
_CONFTEST = re.compile(r"(?:ImportError|Error) while loading conftest '(?P<path>[^']+)'")


def _collect_error(text: str, workspace: Path, nodeid: str = "") -> CollectError:
    """Where a collection error happened: the deepest location in the workspace in pytest's text."""
    locations: list[tuple[str, int]] = []
    for match in list(_LOC_TB.finditer(text)) + list(_LOC_FILE.finditer(text)):
        path = Path(match["path"])
        if not path.is_absolute():
            path = workspace / path
        try:
            path.resolve().relative_to(workspace)
        except ValueError:
            continue
        if any(part in SKIP_DIRS for part in path.parts):
            continue
        locations.append((str(path.resolve()), int(match["line"])))
    messages = [m["msg"].strip() for m in _E_LINE.finditer(text)]
    message = next((m for m in reversed(messages) if re.match(r"^[A-Za-z_.]*(Error|Exception|Exit)\b", m)),
                   messages[-1] if messages else text.strip().splitlines()[-1] if text.strip() else "")
    exc_type = message.split(":", 1)[0].strip() if ":" in message else "CollectionError"
    exc_type = exc_type.rsplit(".", 1)[-1]
    where: str
    line: int | None
    if locations:
        where, line = locations[-1]
    else:
        conftest = _CONFTEST.search(text)
        node_path = nodeid.split("::", 1)[0]
        where = conftest["path"] if conftest else str(workspace / node_path) if node_path else ""
        line = None
    return CollectError(where, line, exc_type if exc_type.isidentifier() else "CollectionError",
                        message[:2000], nodeid, text[-4000:])


_NO_PYTEST = re.compile(r"No module named '?pytest'?\s*$", re.MULTILINE)
_USAGE = re.compile(r"^[^\n]*: error: (?P<msg>.+)$", re.MULTILINE)  # argparse, under pytest's "ERROR: usage:"
_ERROR_LINE = re.compile(r"^ERROR: (?P<msg>.+)$", re.MULTILINE)  # pytest's own fatal errors (a bad config)
_BANNER = re.compile(r"^!{3,} (?P<msg>.+?) !{3,}$", re.MULTILINE)  # "!!! KeyboardInterrupt !!!", an Exit
_FATAL = re.compile(r"^(?P<msg>Fatal Python error: .+)$", re.MULTILINE)  # a segfault, with faulthandler
_EXC_LINE = re.compile(r"^(?:E\s+)?(?P<msg>[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\b.*)$", re.MULTILINE)
_NOISE = re.compile(r"Warning\b|warnings\.warn\(|^\s*$")
# A warning as Python prints it: "file:line: SomeWarning: message" (maybe several lines), then its
# source line indented by two spaces. A plugin's warning is no reason for a run's end.
_WARNING = re.compile(r"^[^\n]*:\d+: \w*Warning: [^\n]*\n(?:(?!  )[^\n]*\n){0,20}?  [^\n]*$\n?", re.MULTILINE)
_INIFILE = re.compile(r"^\s*inifile: (?P<path>.+)$", re.MULTILINE)
_CONFIG_AT = re.compile(r"^ERROR: (?P<path>/[^\n:]+\.(?:toml|ini|cfg)): .*?\bline (?P<line>\d+)", re.MULTILINE)
# Options of pytest's cache plugin, which heedls turns off (-p no:cacheprovider): unknown in addopts.
_CACHE_OPTIONS = ("--lf", "--last-failed", "--ff", "--failed-first", "--nf", "--new-first", "--sw", "--stepwise",
                  "--sw-skip", "--stepwise-skip", "--lfnf", "--last-failed-no-failures", "--cache-clear",
                  "--cache-show")


def _meaningful_lines(text: str, count: int) -> list[str]:
    return [line for line in _WARNING.sub("", text).splitlines() if not _NOISE.search(line)][-count:]


def _last_words(stderr: str, stdout: str) -> str:
    """What pytest's output says went wrong, in one line ("" when it printed nothing useful)."""
    text = stderr + "\n" + stdout
    for pattern, prefix in ((_USAGE, "usage error: "), (_ERROR_LINE, "ERROR: "), (_BANNER, ""), (_FATAL, ""),
                            (_EXC_LINE, "")):
        found = list(pattern.finditer(text))
        if found:
            words = prefix + found[-1]["msg"].strip()
            if pattern is _USAGE and any(re.search(rf"(?<![\w-]){re.escape(o)}\b", words) for o in _CACHE_OPTIONS):
                words += " (heedls runs pytest without its cache plugin, -p no:cacheprovider: remove --lf and the like from addopts)"
            return words
    # pytest's own report is on stdout; stderr is mostly the warnings of plugins
    lines = _meaningful_lines(stdout, 1) or _meaningful_lines(stderr, 1)
    return lines[0].strip() if lines else ""


def _exit_words(code: int | None) -> str:
    if code is None:
        return "pytest ended without an exit code"
    if code < 0:
        try:
            return f"pytest was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"pytest was killed by signal {-code}"
    return f"pytest exited with code {code}"


def _incomplete(code: int | None, result: proc.ProcResult, *, during: str = "") -> str:
    """`run.incomplete`: how pytest ended, and the last meaningful words of its output."""
    words = _last_words(result.stderr or "", result.stdout or "")
    if not words:
        # sys.exit() in a conftest.py, os._exit() anywhere: pytest ends without a word; say where to look
        words = "no output" if code is not None and code < 0 else \
            "no output (did a conftest.py, a plugin or a test call sys.exit() or os._exit()?)"
    return f"{_exit_words(code)}{during}: {words}"[:1000]


def _gib(size: int) -> str:
    return f"{size / (1 << 30):.3g} GiB"


def parse_report(report: Path, result: proc.ProcResult, workspace: Path, timeout_s: float,
                 targets: list[str], memory_limit: int = 0) -> TestRun:
    events = _read_events(report)
    run = TestRun(outcome="passed", seconds=result.seconds, timeout_s=timeout_s,
                  returncode=result.returncode, targets=targets, memory_limit=memory_limit)
    tail_source = (result.stderr or "") + ("\n" + result.stdout if result.stdout else "")
    run.stderr_tail = tail_source[-STDERR_TAIL:]
    running: str | None = None
    exitstatus: int | None = None
    # With pytest-xdist the plugin runs in the controller and in every worker: a test's report is
    # written by its worker and again by the controller (and a collection error by each). Each
    # (nodeid, phase) counts once; the last report wins (a rerun plugin's final outcome).
    outcomes: dict[tuple[str, str], str] = {}
    recorded: set[tuple[str, str]] = set()
    collect_seen: set[tuple[str, str]] = set()
    for event in events:
        kind = event.get("event")
        if kind == "test_start":
            running = str(event.get("nodeid"))
        elif kind == "report":
            when, outcome = str(event.get("when")), str(event.get("outcome"))
            outcomes[(str(event.get("nodeid", "")), when)] = outcome
            if when == "call" or (outcome == "failed" and when == "setup"):
                running = None
        elif kind == "failure":
            key = (str(event.get("nodeid", "")), str(event.get("when", "call")))
            if key in recorded:
                continue
            try:
                run.failures.append(_failure(event))
                recorded.add(key)  # an unreadable one leaves its test unexplained: shown all the same
            except Exception:  # a malformed record must not hide the others
                log.exception("unreadable failure record")
        elif kind == "collect_error":
            longrepr = str(event.get("longrepr", ""))
            key = (str(event.get("nodeid", "")), longrepr)
            if key not in collect_seen:
                collect_seen.add(key)
                run.collect_errors.append(_collect_error(longrepr, workspace, key[0]))
        elif kind == "finish":
            exitstatus = int(event.get("exitstatus", 0))
            run.collected = event.get("collected")
    for (nodeid, when), outcome in outcomes.items():
        if when == "collect":
            continue  # xdist's controller relays collection errors as reports: counted as collect_errors
        if when not in ("setup", "teardown"):  # "call", or xdist's "???" for a test whose worker crashed
            if outcome == "passed":
                run.passed += 1
            elif outcome == "failed":
                run.failed += 1
            else:
                run.skipped += 1
        elif outcome == "failed":
            run.errors += 1
        elif outcome == "skipped":
            run.skipped += 1
    run.unexplained = [key for key, outcome in outcomes.items()
                       if outcome == "failed" and key[1] != "collect" and key not in recorded]
    if result.timed_out:
        run.outcome = "timeout"
        run.running_test = running
        return run
    if result.memory_exceeded:
        # stopped by heedls: no pass, whatever ran before; the test that was running is named
        where = (f"{running} was running" if running else
                 "pytest was writing its report, after the tests (a failing test's captured output is held "
                 "whole and shown there)" if outcomes else "the tests were being collected")
        run.incomplete = (f"the memory limit of {_gib(memory_limit or result.memory_exceeded)} was exceeded "
                          f"({result.memory_exceeded / (1 << 30):.2f} GiB resident) while {where}: the test run was stopped "
                          "(tests.memory_limit_gb, `heedls check --memory-limit`)")
        run.running_test = running
        run.outcome = "failed" if run.failed or run.errors or run.failures else "error"
        return run
    session_started = any(e.get("event") == "session" for e in events)
    # The process's own exit status is the authority (a plugin may change it after our hook).
    code = result.returncode if result.returncode is not None else exitstatus
    if not session_started:
        # pytest ended before our plugin was configured: a conftest that fails to import or exits,
        # a usage error, a broken configuration, or no pytest in that interpreter at all.
        text = (result.stderr or "") + "\n" + (result.stdout or "")
        if _NO_PYTEST.search(text):
            run.problem = ("pytest is not installed in the interpreter that runs the tests (the workspace's "
                           ".venv, or tests.python): install it there (pip install pytest)")
        elif _CONFTEST.search(text) or "Traceback" in text or re.search(r"^E\s", text, re.MULTILINE):
            run.collect_errors.append(_collect_error(text, workspace))
        else:
            run.incomplete = _incomplete(code, result)
        run.outcome = "error"
        return run
    if events[-1].get("event") != "finish":
        # The session never finished (under xdist the controller's finish is the last record): the
        # process died or was killed (os._exit, a signal, a segfault), or only asked for help.
        during = f" while {running} was running" if running else " before the test session finished"
        run.incomplete = _incomplete(code, result, during=during)
        run.running_test = running
    elif run.collect_errors:
        pass  # pytest's exit code 2 ("Interrupted: 1 error during collection") is explained by them
    elif code not in (0, 1, 5):
        run.incomplete = _incomplete(code, result)
    elif code == 1 and not (run.failed or run.errors or run.failures):
        run.incomplete = _incomplete(code, result, during=" though no test failed")
    elif code == 0 and run.total == 0 and run.collected:
        # pytest says "no tests collected" with exit code 5; 0 with none run is --collect-only or the like
        run.incomplete = _incomplete(code, result, during=f" after collecting {run.collected} tests and running none")
    if run.failed or run.errors or run.failures:
        run.outcome = "failed"
    elif run.incomplete or run.collect_errors or code in (2, 3, 4):
        run.outcome = "error"
    elif code == 5 or run.total == 0:
        run.outcome = "no-tests"
    else:
        run.outcome = "passed"
    return run


# -- localisation ----------------------------------------------------------------------------------------

@dataclass
class _Static:
    """Per-line facts of one source file: names read and written, enclosing control statements."""

    uses: dict[int, set[str]] = field(default_factory=dict)
    defs: dict[int, set[str]] = field(default_factory=dict)
    kills: dict[int, set[str]] = field(default_factory=dict)  # plain (re)assignments
    controls: dict[int, list[int]] = field(default_factory=dict)  # innermost first
    loops: dict[int, list[int]] = field(default_factory=dict)  # enclosing loop headers, innermost first
    stmt_of: dict[int, int] = field(default_factory=dict)  # any line -> its statement's first line
    functions: dict[int, tuple[int, int]] = field(default_factory=dict)  # def line -> (start, end)
    returns: dict[int, list[int]] = field(default_factory=dict)  # def line -> return lines
    constant_returns: set[int] = field(default_factory=set)  # `return True`, `return []`, bare `return`
    initialisers: set[int] = field(default_factory=set)  # `x = 0`, `out = []`: assignments reading nothing
    not_data: set[int] = field(default_factory=set)  # def/class/import lines: never a data dependence
    func_of: dict[int, int] = field(default_factory=dict)  # statement line -> enclosing def line
    guard_clauses: set[int] = field(default_factory=set)  # `if ...:` whose body ends in return/raise/...
    yields: set[int] = field(default_factory=set)  # statements containing `yield` / `yield from`


_STATIC_CACHE: dict[tuple[str, float], _Static | None] = {}
_MUTATORS = {"append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse", "add", "update",
             "discard", "setdefault", "popitem", "appendleft", "extendleft", "popleft", "push"}


def _base_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _header_nodes(stmt: ast.stmt) -> list[ast.AST]:
    """The parts of a statement evaluated on its own first line (not its body)."""
    if isinstance(stmt, (ast.If, ast.While)):
        return [stmt.test]
    if isinstance(stmt, (ast.For, ast.AsyncFor)):
        return [stmt.target, stmt.iter]
    if isinstance(stmt, (ast.With, ast.AsyncWith)):
        return list(stmt.items)
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Try)):
        return []
    return [stmt]


def static_facts(path: str) -> _Static | None:
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        return None
    key = (path, mtime)
    if key in _STATIC_CACHE:
        return _STATIC_CACHE[key]
    try:
        tree = pyparse.parse(Path(path).read_bytes())
    except (SyntaxError, ValueError, OSError):
        _STATIC_CACHE[key] = None
        return None
    facts = _Static()

    def visit(body: list[ast.stmt], controls: list[int], loops: list[int], func: int | None) -> None:
        for stmt in body:
            line = stmt.lineno
            end = stmt.end_lineno or line
            header_end = end
            if isinstance(stmt, (ast.If, ast.While, ast.For, ast.AsyncFor, ast.With, ast.AsyncWith, ast.Try,
                                 ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                header_end = max(line, stmt.body[0].lineno - 1) if stmt.body else line
            for ln in range(line, header_end + 1):
                facts.stmt_of.setdefault(ln, line)
            uses: set[str] = set()
            defs: set[str] = set()
            kills: set[str] = set()
            for part in _header_nodes(stmt):
                for node in ast.walk(part):
                    if isinstance(node, ast.Name):
                        (uses if isinstance(node.ctx, ast.Load) else defs).add(node.id)
                        if isinstance(node.ctx, ast.Store):
                            kills.add(node.id)
                    elif isinstance(node, (ast.Subscript, ast.Attribute)) and isinstance(node.ctx, ast.Store):
                        name = _base_name(node)
                        if name:
                            defs.add(name)
                            kills.discard(name)
                    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                            and node.func.attr in _MUTATORS:
                        name = _base_name(node.func.value)
                        if name:
                            defs.add(name)
            if isinstance(stmt, ast.AugAssign):
                name = _base_name(stmt.target)
                if name:
                    uses.add(name)
                    kills.discard(name)
            facts.uses[line] = uses
            facts.defs[line] = defs
            facts.kills[line] = kills
            facts.controls[line] = list(controls)
            facts.loops[line] = list(loops)
            if func is not None:
                facts.func_of[line] = func
            if isinstance(stmt, ast.Return) and func is not None:
                facts.returns.setdefault(func, []).append(line)
                if not uses:
                    facts.constant_returns.add(line)
            if any(isinstance(n, (ast.Yield, ast.YieldFrom)) for part in _header_nodes(stmt) for n in ast.walk(part)):
                facts.yields.add(line)
            if isinstance(stmt, ast.If) and isinstance(stmt.body[-1], (ast.Return, ast.Raise, ast.Continue, ast.Break)):
                facts.guard_clauses.add(line)
            if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and not uses:
                facts.initialisers.add(line)
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)):
                facts.not_data.add(line)
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                facts.functions[line] = (line, end)
                visit(stmt.body, [], [], line)
            elif isinstance(stmt, ast.ClassDef):
                visit(stmt.body, [], [], None)
            elif isinstance(stmt, (ast.For, ast.AsyncFor, ast.While)):
                visit(stmt.body, [line, *controls], [line, *loops], func)
                visit(stmt.orelse, [line, *controls], loops, func)
            elif isinstance(stmt, ast.If):
                visit(stmt.body, [line, *controls], loops, func)
                visit(stmt.orelse, [line, *controls], loops, func)
            elif isinstance(stmt, (ast.With, ast.AsyncWith)):
                visit(stmt.body, controls, loops, func)
            elif isinstance(stmt, ast.Try):
                visit(stmt.body, controls, loops, func)
                for handler in stmt.handlers:
                    visit(handler.body, controls, loops, func)
                visit(stmt.orelse, controls, loops, func)
                visit(stmt.finalbody, controls, loops, func)

    visit(tree.body, [], [], None)
    _STATIC_CACHE[key] = facts
    return facts


def _backward_slice(start: int, sequence: list[tuple[int, list[str]]], facts: _Static,
                    executed: set[int]) -> list[tuple[int, int, bool, str]]:
    """Dynamic backward slice from `start` over a traced line sequence: data dependences from the
    variables each line wrote, control dependences from the enclosing if/loop headers that ran
    (the innermost one at the same depth as the line it guards; their reads join the slice).
    Returns (line, depth, is_control, reason) in order of discovery, nearest first."""
    found: dict[int, tuple[int, bool, str]] = {}
    needed: dict[str, int] = {}

    def include(line: int, depth: int, reason: str, control: bool) -> None:
        first = True
        while line not in found:
            if line != start:
                found[line] = (depth, control, reason)
            for name in facts.uses.get(line, set()):
                needed.setdefault(name, depth + 1)
            controls = [c for c in facts.controls.get(line, []) if c in executed]
            if not controls:
                return
            line, depth, reason, control = controls[0], depth if first else depth + 1, \
                f"decides whether line {line} runs", True
            first = False

    include(start, 0, "start", False)
    idx = max((i for i, (ln, _w) in enumerate(sequence) if facts.stmt_of.get(ln, ln) == start),
              default=len(sequence))
    for ln, written in reversed(sequence[:idx]):
        line = facts.stmt_of.get(ln, ln)
        if line in facts.not_data:
            continue
        writes = set(written) | facts.defs.get(line, set())
        hit = [n for n in writes if n in needed]
        if not hit:
            continue
        depth = min(needed[n] for n in hit)
        for name in facts.kills.get(line, set()) & set(hit):
            del needed[name]
        if line not in found and line != start:
            include(line, depth, "computes " + ", ".join(f"`{n}`" for n in sorted(hit)), False)
        else:
            for name in facts.uses.get(line, set()):
                needed.setdefault(name, depth + 1)
        if len(found) >= 12:
            break
    return [(line, depth, control, reason) for line, (depth, control, reason) in found.items()]


def _score_call(path: str, facts: _Static, sequence: list[tuple[int, list[str]]], executed: set[int],
                start: int, how: str, value: str | None, base: float,
                add: Callable[[str, int | None, float, str], None]) -> None:
    """Suspects from one traced call that ended at `start`: how = "value" (returned a computed
    value), "constant" (`return False`), "implicit" (fell off the end: None) or "raised"."""
    start = facts.stmt_of.get(start, start)
    if how == "value":
        add(path, start, base, f"returned {value}" if value is not None else
            "yielded the results" if start in facts.yields else "returned the wrong value")
    elif how == "raised":
        add(path, start, base * 1.05, "raised the exception")
    elif how == "constant":
        add(path, start, base * 0.5, f"returned the constant {value}")
    else:
        add(path, start, base * 0.4, "is where the function fell off its end (returning None)")
    if how in ("constant", "implicit"):
        # The value came from the path taken: the guards of the returns that did *not* run are suspect.
        func = facts.func_of.get(start)
        for ret in facts.returns.get(func, []) if func is not None else []:
            if ret == start or ret in executed:
                continue
            guards = [c for c in facts.controls.get(ret, []) if c in executed]
            if guards:
                add(path, guards[0], base * 0.92, f"decides whether line {ret} (a `return` that never ran) runs")
    # Statements that would have updated a variable the failing line reads, but never ran: the
    # condition that skipped them is on the failing path (a "missing update").
    func = facts.func_of.get(start)
    if func is not None:
        lo, hi = facts.functions.get(func, (0, 0))
        wanted = facts.uses.get(start, set())
        for ln in sorted(facts.defs):
            if lo < ln <= hi and ln not in executed and facts.func_of.get(ln) == func and facts.defs[ln] & wanted:
                guards = [c for c in facts.controls.get(ln, []) if c in executed]
                if guards:
                    names = ", ".join(f"`{n}`" for n in sorted(facts.defs[ln] & wanted))
                    add(path, guards[0], base * 0.85, f"decides whether line {ln} (which updates {names}) runs — it never did")
    for line, depth, control, reason in _backward_slice(start, sequence, facts, executed):
        score = base * (0.85 ** depth)
        if line in facts.initialisers:
            score *= 0.6  # `x = 0` / `out = []`: rarely the mistake
        add(path, line, score, reason)


def _loop_suspects(path: str, line: int, facts: _Static) -> list[Suspect]:
    """An infinite loop: the statements in the innermost loop that update its condition's variables."""
    loops = facts.loops.get(line, [])
    if not loops and line in facts.uses and any(facts.loops.get(l2) == [] for l2 in (line,)):
        loops = [line] if line in facts.controls else []
    if not loops:
        return []
    header = loops[0]
    cond_vars = facts.uses.get(header, set()) | facts.defs.get(header, set())
    out = [Suspect(path, header, 0.85, "is the loop that never ends")]
    for ln in facts.uses:
        if header in facts.loops.get(ln, []) and facts.defs.get(ln, set()) & cond_vars and ln != header:
            out.append(Suspect(path, ln, 0.95, "updates the loop's condition variables "
                               + ", ".join(f"`{n}`" for n in sorted(facts.defs[ln] & cond_vars))))
    return out


def localise(failure: TestFailure) -> list[Suspect]:
    """Rank lines of the code under test by how likely they cause `failure` (highest first)."""
    suspects: dict[tuple[str, int], tuple[Suspect, int]] = {}

    def add(path: str, line: int | None, score: float, reason: str) -> None:
        if not path or not line:
            return
        key = (path, line)
        if key not in suspects:
            suspects[key] = (Suspect(path, line, round(score, 4), reason), len(suspects))
        elif suspects[key][0].score < score:
            suspects[key] = (Suspect(path, line, round(score, 4), reason), suspects[key][1])

    trace = failure.trace
    code = failure.code_frame
    timeout_like = failure.exc_type == "TimeoutError" or "took longer" in failure.message
    # 1. An exception raised inside the code under test: its line, unless it is an alarm interrupting a loop.
    if code is not None:
        facts = static_facts(code.path)
        line = facts.stmt_of.get(code.line, code.line) if facts else code.line
        if failure.exc_type == "RecursionError":
            add(code.path, line, 0.9, "is the recursive call that never reaches a base case")
            if facts:
                for def_line, (start, end) in facts.functions.items():
                    if start <= line <= end:
                        for ret in facts.returns.get(def_line, []):
                            guards = facts.controls.get(ret, [])
                            if guards and start < guards[0] <= end:
                                add(code.path, guards[0], 0.8, "is the base case that should stop the recursion")
        elif timeout_like:
            add(code.path, line, 0.7, "was running when the time limit hit")
            if facts:
                for s in _loop_suspects(code.path, line, facts):
                    add(s.path, s.line, s.score, s.reason)
        else:
            add(code.path, line, 1.0, f"raised {failure.exc_type}")
            if facts:
                for guard in facts.controls.get(line, [])[:1]:
                    add(code.path, guard, 0.55, f"decides whether line {line} (where it failed) runs")
                # The early exits before it (`if not xs: return ...`) are the checks that should have
                # kept this input away from the failing line: nearest first.
                func = facts.func_of.get(line)
                earlier = sorted((g for g in facts.guard_clauses if g < line and facts.func_of.get(g) == func),
                                 reverse=True)
                for k, guard in enumerate(earlier[:2]):
                    add(code.path, guard, 0.6 * 0.9 ** k, "is an early-exit check that let this input through")
    # 2. The re-executed failing call: the returning (or raising) line and its dynamic backward slice,
    #    then the same for the last call of each function it called (helpers, recursive calls).
    if trace is not None and trace.path:
        facts = static_facts(trace.path)
        hits = trace.hits.get(trace.path, {})
        executed = {facts.stmt_of.get(ln, ln) for ln in hits} if facts else set(hits)
        raised_here = bool(trace.raised and trace.raised_line and trace.return_line == trace.raised_line
                           and trace.return_value == "None")
        if trace.stopped and not trace.return_line and facts:
            # The re-run ran out of its trace budget. A loop that never ends, unless the test itself
            # failed at its own assertion: then the call returned (a long computation, more-itertools'
            # `nth_prime(688_381)`) and the re-run tells nothing about where.
            hottest = max(hits, key=lambda ln: hits[ln], default=None)
            returned = failure.exc_type == "AssertionError" and code is None
            if hottest is not None and not returned:
                for s in _loop_suspects(trace.path, facts.stmt_of.get(hottest, hottest), facts):
                    add(s.path, s.line, s.score - 0.02, s.reason)
        elif facts is not None and trace.yields and any(facts.stmt_of.get(y, y) in facts.yields for y in trace.yields):
            # A generator's results are what it yields: each yield that ran is a returning line.
            # All the yields that ran come first (most productive first), then what each depends on.
            counts: dict[int, int] = {}
            for y, n in trace.yields.items():
                y = facts.stmt_of.get(y, y)
                if y in facts.yields:
                    counts[y] = counts.get(y, 0) + n
            ordered = sorted(counts, key=lambda ln: (-counts[ln], ln))
            for y in ordered:
                add(trace.path, y, 0.9, f"yielded results ({counts[y]} times)")
            for y in ordered:
                _score_call(trace.path, facts, trace.sequence, executed, y, "value", None, 0.9, add)
        elif facts is not None and trace.return_line:
            start = facts.stmt_of.get(trace.return_line, trace.return_line)
            if raised_here:
                how = "raised"
            elif start in facts.constant_returns:
                how = "constant"
            elif start in facts.returns.get(facts.func_of.get(start, -1), []):
                how = "value"
            else:
                how = "implicit"
            if not (how == "raised" and code is not None):
                _score_call(trace.path, facts, trace.sequence, executed, start, how, trace.return_value, 0.9, add)
            else:  # the traceback already names the raising line: add what computed its operands
                _score_call(trace.path, facts, trace.sequence, executed, start, how, None, 0.7, add)
        for callee in trace.callees[:6]:
            cfacts = static_facts(callee.path)
            if cfacts is None or not callee.return_line:
                continue
            cexec = {cfacts.stmt_of.get(ln, ln) for ln, _w in callee.sequence}
            start = cfacts.stmt_of.get(callee.return_line, callee.return_line)
            how = ("constant" if start in cfacts.constant_returns else
                   "value" if start in cfacts.returns.get(cfacts.func_of.get(start, -1), []) else "implicit")
            _score_call(callee.path, cfacts, callee.sequence, cexec, start, how, callee.return_value, 0.7, add)
    # 3. Nothing executed could be traced: the called function's return statements, weakly.
    if not suspects and failure.call is not None and failure.call.path:
        facts = static_facts(failure.call.path)
        if facts:
            for ln in facts.returns.get(failure.call.def_line, []):
                add(failure.call.path, ln, 0.3, "is a return statement of the function the test calls")
    return [s for s, _order in sorted(suspects.values(), key=lambda so: (-so[0].score, so[1]))]


_SYNTAX_ERRORS = frozenset({"SyntaxError", "IndentationError", "TabError"})


def rank_lines(failures: Sequence[TestFailure]) -> list[Suspect]:
    """Merge the suspects of several failures (e.g. parametrized cases) into one ranking: the best
    score of a line, plus a small bonus for each further failure that implicates it."""
    best: dict[tuple[str, int], Suspect] = {}
    count: dict[tuple[str, int], int] = {}
    for failure in failures:
        for s in failure.suspects:
            key = (s.path, s.line)
            count[key] = count.get(key, 0) + 1
            if key not in best or best[key].score < s.score:
                best[key] = s
    merged = [Suspect(s.path, s.line, round(s.score + 0.02 * min(count[k] - 1, 5), 4), s.reason)
              for k, s in best.items()]
    return sorted(merged, key=lambda s: (-s.score, s.path, s.line))


# -- diagnostics -----------------------------------------------------------------------------------------

def _line_range(path: str, line: int) -> Range:
    """0-based range covering the non-blank text of 1-based `line`."""
    text = ""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for i, raw in enumerate(fh, 1):
                if i == line:
                    text = raw.rstrip("\r\n")
                    break
    except OSError:
        pass
    start = len(text) - len(text.lstrip())
    return Range.of(max(line - 1, 0), start, max(line - 1, 0), max(len(text), start))


def _test_location(failure: TestFailure) -> tuple[str, int]:
    if failure.test_frame is not None:
        return failure.test_frame.path, failure.test_frame.line
    return failure.path, failure.line or 1


def _short(text: str, limit: int = 160) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _def_line(path: str, test_name: str) -> int:
    name = test_name.split("[", 1)[0]
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for i, raw in enumerate(fh, 1):
                if re.match(rf"\s*(async\s+)?def\s+{re.escape(name)}\b", raw):
                    return i
    except OSError:
        pass
    return 1


def failures_to_diagnostics(run: TestRun, workspace: Path) -> list[Diagnostic]:
    """Diagnostics for a run: at each failing assertion and at the most likely causes in the code
    under test (linked by `related`), collection errors at the import that failed, and a timeout
    at the test that was running when the run was killed. Sorted most likely cause first."""
    from heedls.analyzers import explain as explain_mod

    workspace = workspace.resolve()
    out: list[Diagnostic] = []
    merged: dict[tuple[str, int, str], Diagnostic] = {}

    def put(diag: Diagnostic, key: tuple[str, int, str]) -> None:
        if key in merged:  # parametrized cases failing at the same place: one diagnostic, counted
            existing = merged[key]
            existing.data["count"] = int(existing.data.get("count", 1)) + 1
            existing.rank = max(existing.rank, diag.rank)
            for rel in diag.related:
                if rel not in existing.related and len(existing.related) < 10:
                    existing.related.append(rel)
            return
        merged[key] = diag
        out.append(diag)

    for failure in run.failures:
        test_path, test_line = _test_location(failure)
        test_range = _line_range(test_path, test_line)
        explanation = explain_mod.explain_failure(failure)
        facts = _facts(failure)
        code_suspects = [s for s in failure.suspects if s.path != test_path][:3]
        related_to_code = [RelatedLocation(s.path, _line_range(s.path, s.line), f"likely cause: {s.reason}")
                           for s in code_suspects]
        headline = _headline(failure)
        name = failure.test_id.split("::")[-1]
        verb = "failed" if failure.when == "call" else f"errored in {failure.when} (a fixture)"
        put(Diagnostic(
            path=test_path, range=test_range, severity="error", source="pytest", code=failure.exc_type,
            message=f"{name} {verb}: {headline}", explanation=explanation,
            related=related_to_code, rank=0.5, data={**facts, "role": "assertion"},
        ), (test_path, test_line, failure.exc_type))
        if failure.when != "call" and failure.path and os.path.abspath(failure.path) != os.path.abspath(test_path):
            # the error is in a fixture (conftest.py): the test that could not run is marked too
            line = _def_line(failure.path, name)
            put(Diagnostic(
                path=failure.path, range=_line_range(failure.path, line), severity="error", source="pytest",
                code=failure.exc_type, message=f"{name} could not run: its {failure.when} failed ({headline})",
                explanation=explanation, related=[RelatedLocation(test_path, test_range, "where the fixture failed")],
                rank=0.45, data={**facts, "role": "test"},
            ), (failure.path, line, failure.exc_type))
        for i, suspect in enumerate(code_suspects):
            put(Diagnostic(
                path=suspect.path, range=_line_range(suspect.path, suspect.line),
                severity="error" if i == 0 else "information", source="pytest", code=failure.exc_type,
                message=(f"{headline} (test {failure.test_id.split('::')[-1]})" if i == 0
                         else f"possible cause of {failure.test_id.split('::')[-1]} failing: this line "
                              f"{suspect.reason}"),
                explanation=explanation if i == 0 else (
                    f"**Possible cause #{i + 1}**: `{Path(suspect.path).name}:{suspect.line}` "
                    f"{suspect.reason}.\n\n{explanation}"),
                related=[RelatedLocation(test_path, test_range, f"failing test {failure.test_id}")],
                rank=1.0 + suspect.score,
                data={**facts, "role": "cause", "suspect_reason": suspect.reason, "suspect_rank": i + 1},
            ), (suspect.path, suspect.line, failure.exc_type))
    for err in run.collect_errors:
        path = err.path or str(workspace)
        line = err.line or 1
        out.append(Diagnostic(
            path=path, range=_line_range(path, line), severity="error", source="pytest",
            code=err.exc_type, message=f"tests could not be collected: {_short(err.message)}",
            # A syntax error's own diagnostic (rank 1.0-1.1, exact column) is the cause; this is
            # its consequence, so it follows it in the file. Other collection errors lead.
            explanation=None, rank=0.9 if err.exc_type in _SYNTAX_ERRORS else 2.0,
            data={"kind": "collect_error", "exc_type": err.exc_type, "error_message": err.message,
                  "nodeid": err.nodeid},
        ))
        out[-1].explanation = explain_mod.explain(out[-1])
    if run.outcome == "timeout":
        where, line = str(workspace), 1
        if run.running_test:
            file_part, _, name = run.running_test.partition("::")
            where = str((workspace / file_part).resolve())
            line = _def_line(where, name.split("::")[-1]) if name else 1
        elif run.targets:
            where = run.targets[0]
        what = f"test {run.running_test}" if run.running_test else "the test run"
        out.append(Diagnostic(
            path=where, range=_line_range(where, line), severity="error", source="pytest", code="timeout",
            message=f"{what} was killed after {run.timeout_s:g} s (time limit)", rank=2.0,
            data={"kind": "timeout", "timeout_s": run.timeout_s, "test_id": run.running_test,
                  "passed": run.passed, "failed": run.failed},
        ))
        out[-1].explanation = explain_mod.explain(out[-1])
    for nodeid, when in run.unexplained:
        file_part, _, name = nodeid.partition("::")
        where = str((workspace / file_part).resolve())
        line = _def_line(where, name.split("::")[-1]) if name else 1
        verb = f"errored in {when}" if when in ("setup", "teardown") else "failed"
        out.append(Diagnostic(
            path=where, range=_line_range(where, line), severity="error", source="pytest", code="failed",
            message=f"{name or nodeid} {verb} (pytest gave no details heedls could read: see pytest's own output)",
            rank=0.5, data={"kind": "unexplained_failure", "test_id": nodeid, "when": when},
        ))
    if run.incomplete:
        where, line = _incomplete_location(run, workspace)
        what = "the test run did not complete" if run.total or run.running_test else "tests could not be run"
        tail = "\n".join(_meaningful_lines(run.stderr_tail, 15))
        out.append(Diagnostic(
            path=where, range=_line_range(where, line), severity="error", source="pytest", code="run-error",
            message=f"{what}: {_short(run.incomplete, 400)}", rank=2.0,
            explanation=(f"**The tests did not run to the end**: {run.incomplete}.\n\n"
                         "Nothing is known about the tests that did not run, so this is no pass: run pytest "
                         "in the workspace to see its whole output."
                         + (f"\n\npytest's last output:\n```\n{tail}\n```" if tail else "")),
            data={"kind": "run_error", "returncode": run.returncode, "running_test": run.running_test,
                  "passed": run.passed, "failed": run.failed},
        ))
    for diag in out:
        count = int(diag.data.get("count", 1))
        if count > 1:
            diag.message += f" [{count} failing cases]"
    return sorted(out, key=lambda d: (d.path, -d.rank))  # stable: ties keep the ranking order


def _incomplete_location(run: TestRun, workspace: Path) -> tuple[str, int]:
    """Where an incomplete run is reported: the configuration pytest rejected, else the test
    that was running, else the first target, else the workspace."""
    text = run.stderr_tail
    at = _CONFIG_AT.search(text)
    if at and os.path.isfile(at["path"]):
        return at["path"], int(at["line"])
    inifile = _INIFILE.search(text)
    if inifile:
        path = workspace / inifile["path"].strip()  # absolute stays absolute
        if path.is_file():
            try:
                lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                lines = []
            line = next((i for i, raw in enumerate(lines, 1) if raw.lstrip().startswith("addopts")), 1)
            return str(path), line
    if run.running_test:
        file_part, _, name = run.running_test.partition("::")
        where = str((workspace / file_part).resolve())
        return where, _def_line(where, name.split("::")[-1]) if name else 1
    if run.targets:
        return str(workspace / run.targets[0]), 1
    return str(workspace), 1


def _headline(failure: TestFailure) -> str:
    a, call = failure.assertion, failure.call
    ret = failure.trace.return_value if failure.trace else None
    if failure.exc_type == "AssertionError" and call is not None and call.input and a is not None:
        return f"{call.input} returned {a.left}, expected {a.right}" if a.op == "==" else \
            f"{call.input}: assert {a.left} {a.op} {a.right}"
    if failure.exc_type == "AssertionError" and call is not None and call.input and ret is not None:
        return f"{call.input} returned {ret}; the assertion failed"
    return f"{failure.exc_type}: {_short(failure.message)}" if failure.message else failure.exc_type


def _facts(failure: TestFailure) -> dict[str, Any]:
    """The facts a diagnostic carries in `data` (JSON-safe), the explanation's grounding."""
    return {
        "kind": "test_failure",
        "test_id": failure.test_id,
        "exc_type": failure.exc_type,
        "error_message": failure.message[:2000],
        "input": (failure.call.input or failure.call.expr or None) if failure.call else None,
        "function": failure.call.function if failure.call else None,
        "left": failure.assertion.left if failure.assertion else None,
        "right": failure.assertion.right if failure.assertion else None,
        "op": failure.assertion.op if failure.assertion else None,
        "returned": failure.trace.return_value if failure.trace else None,
        "code_locals": dict(failure.code_locals),
        "test_locals": dict(failure.test_locals),
    }
