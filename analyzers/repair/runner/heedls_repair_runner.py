# mypy: ignore-errors
# (runs in the workspace interpreter, any Python 3.8+; kept dependency- and annotation-light)
"""heedls repair runner: a persistent fork-server that runs a workspace's tests for repair candidates.

Runs in the *workspace's* interpreter, which may have neither heedls nor coverage installed, so this
file is self-contained (stdlib only; pytest when available). It lives alone in its folder so that
starting it as a script puts nothing else on sys.path.

Protocol: one JSON request per line on stdin, one JSON response per line on the original stdout
(fd 1 is redirected to stderr so tests that print cannot corrupt the channel).

Request: {"id", "module": relpath, "source": str|null, "tests": [relpath], "order": [nodeid],
          "exitfirst": bool, "trace": bool, "timeout": s, "test_limit": s, "fast": bool,
          "stale_check": bool}
Response: {"id", "status": "ok"|"timeout"|"crash", "rc", "tests": [{"nodeid","outcome","seconds",
          "lines"?: [int], "failure"?: {...}}], "collected", "errors", "seconds",
          "stale"?: [{"function", "line", "from"}]}

Why a fork-server: importing pytest costs ~100-150 ms and a fresh `python -m pytest` ~300+ ms;
a forked child of a warm parent runs a tiny test file in tens of ms, and every run starts from the
same clean state (the module under test is imported afresh in each child). The child gets its own
process group so a candidate that forks or hangs is killed as a whole.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import sys
import threading
import time
import traceback

PROTO_FD = os.dup(1)
REQ_FD = os.dup(0)  # pytest's capture may replace fd 0; requests keep coming on this copy
os.dup2(2, 1)  # anything printed by tests or pytest goes to stderr, never into the protocol
sys.stdout = sys.stderr
# `python -m pytest` puts the cwd first on sys.path; starting this script put its own folder there.
sys.path[0] = os.getcwd()
ROOT = os.getcwd()

try:  # warm the expensive imports once in the parent; children inherit them
    import pytest

    HAVE_PYTEST = True
except Exception:  # pragma: no cover - workspaces without pytest use the direct runner  # noqa: BLE001
    HAVE_PYTEST = False

MAX_REPR = 160
MAX_LOCALS = 16


def _safe_repr(value: object) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not break the runner  # noqa: BLE001
        text = f"<repr failed: {type(exc).__name__}>"
    return text if len(text) <= MAX_REPR else text[: MAX_REPR - 3] + "..."


def _in_workspace(filename: str) -> bool:
    return filename.startswith(ROOT + os.sep) and f"{os.sep}site-packages{os.sep}" not in filename


def _describe_failure(exc_type: type, exc: BaseException, tb: object) -> dict:
    """Frames in workspace code with the values of their locals at the moment of failure."""
    frames = []
    while tb is not None:
        frame = tb.tb_frame  # type: ignore[attr-defined]
        fname = frame.f_code.co_filename
        if _in_workspace(fname):
            frames.append((fname, tb.tb_lineno, frame))  # type: ignore[attr-defined]
        tb = tb.tb_next  # type: ignore[attr-defined]
    if len(frames) > 12:  # deep recursion: keep where it entered and where it blew up
        frames = frames[:4] + frames[-8:]
    out = []
    for fname, lineno, frame in frames:
        local_vars = {}
        for name, value in list(frame.f_locals.items())[:MAX_LOCALS]:
            if name.startswith(("@", "__")):
                continue
            local_vars[name] = _safe_repr(value)
        out.append(
            {
                "path": os.path.relpath(fname, ROOT),
                "line": lineno,
                "function": frame.f_code.co_name,
                "locals": local_vars,
            }
        )
    message = ""
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001, S110
        pass
    return {"type": exc_type.__name__, "message": message[:2000], "frames": out}


# --------------------------------------------------------------------------------------------
# per-test time limit: a watchdog thread injects TimeoutError into the main thread. The tests'
# own SIGALRM fixtures keep working (we do not touch signals), and pure-Python infinite loops stop.
class Watchdog:
    """Cuts a test that runs past its limit by raising TimeoutError in the main thread, but only
    while that thread is inside a test's own code (`enter` … `leave`: the test's setup, call and
    teardown). Raised anywhere else (pytest's reporting between tests, the failure's description),
    the exception ended the whole session and the tests after it were never reported: a run
    that looked complete ("ok") with a slow test missing, which made a repair search fail."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.deadline = None  # type: float | None
        self.generation = 0
        self.fired = False
        self.active = False
        self.main_id = threading.main_thread().ident
        thread = threading.Thread(target=self._loop, daemon=True)
        thread.start()

    def arm(self, seconds: float) -> None:
        with self.lock:
            self.generation += 1
            self.deadline = time.monotonic() + seconds if seconds > 0 else None
            self.fired = False

    def enter(self) -> None:
        with self.lock:
            self.active = True

    def leave(self) -> None:
        with self.lock:
            self.active = False
            fired = self.fired
        if fired:
            self._absorb()

    def disarm(self) -> bool:
        with self.lock:
            self.generation += 1
            self.deadline = None
            self.active = False
            fired = self.fired
            self.fired = False
        if fired:
            self._absorb()
        return fired

    @staticmethod
    def _absorb() -> None:
        # let an exception injected a moment before be delivered here, harmlessly
        # (clearing it through the C API deadlocks under a trace function on 3.11)
        for _ in range(3):
            try:
                for _ in range(2000):
                    pass
            except TimeoutError:
                pass

    def _loop(self) -> None:
        while True:
            time.sleep(0.02)
            with self.lock:
                if self.active and self.deadline is not None and time.monotonic() > self.deadline:
                    self.fired = True
                    # re-inject every tick: a test may swallow the first one with `except Exception`
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(
                        ctypes.c_ulong(self.main_id), ctypes.py_object(TimeoutError)
                    )
                    self.deadline = time.monotonic() + 0.05


# --------------------------------------------------------------------------------------------
# line coverage of workspace code (not the test files) per test: sys.monitoring on 3.12+,
# sys.settrace before. Only lines are recorded; that is all spectrum-based localisation needs.
class Tracer:
    def __init__(self, targets: set[str]) -> None:
        self.targets = targets
        self.lines: set[tuple[str, int]] = set()
        self.use_monitoring = sys.version_info >= (3, 12) and hasattr(sys, "monitoring")
        self.tool = None

    def start(self) -> None:
        self.lines = set()
        if self.use_monitoring:
            mon = sys.monitoring  # type: ignore[attr-defined]
            for tool in (3, 4, 5):
                try:
                    mon.use_tool_id(tool, "heedls-repair")
                    self.tool = tool
                    break
                except ValueError:
                    continue
            if self.tool is None:
                self.use_monitoring = False
            else:
                lines = self.lines
                targets = self.targets
                disable = mon.DISABLE

                def on_line(code, line):  # type: ignore[no-untyped-def]
                    if code.co_filename in targets:
                        lines.add((code.co_filename, line))
                        return None
                    return disable

                mon.register_callback(self.tool, mon.events.LINE, on_line)
                mon.set_events(self.tool, mon.events.LINE)
                mon.restart_events()
                return
        targets = self.targets
        lines = self.lines

        def local(frame, event, arg):  # type: ignore[no-untyped-def]
            if event == "line":
                lines.add((frame.f_code.co_filename, frame.f_lineno))
            return local

        def global_(frame, event, arg):  # type: ignore[no-untyped-def]
            if frame.f_code.co_filename in targets:
                lines.add((frame.f_code.co_filename, frame.f_lineno))
                return local
            return None

        threading.settrace(global_)
        sys.settrace(global_)

    def describe_failure(self, exc_type: type, exc: BaseException, tb: object) -> dict:
        """`_describe_failure` untraced: the reprs of the failing frames' locals run the module's
        `__repr__`s, which only failing tests would then have "executed" (they topped the
        localisation of every cachetools bug)."""
        if self.use_monitoring and self.tool is not None:
            mon = sys.monitoring  # type: ignore[attr-defined]
            mon.set_events(self.tool, 0)
            try:
                return _describe_failure(exc_type, exc, tb)
            finally:
                mon.set_events(self.tool, mon.events.LINE)
        saved = sys.gettrace()
        sys.settrace(None)
        try:
            return _describe_failure(exc_type, exc, tb)
        finally:
            sys.settrace(saved)

    def stop(self) -> set[tuple[str, int]]:
        if self.use_monitoring and self.tool is not None:
            mon = sys.monitoring  # type: ignore[attr-defined]
            mon.set_events(self.tool, 0)
            mon.register_callback(self.tool, mon.events.LINE, None)
            mon.free_tool_id(self.tool)
            self.tool = None
        else:
            sys.settrace(None)
            threading.settrace(None)  # type: ignore[arg-type]
        return self.lines


# --------------------------------------------------------------------------------------------
class Plugin:
    """pytest plugin used inside the forked child: ordering, per-test limits, coverage, results."""

    def __init__(self, req: dict, emit) -> None:  # type: ignore[no-untyped-def]
        self.req = req
        self.emit = emit
        self.order = {nodeid: i for i, nodeid in enumerate(req.get("order") or [])}
        self.trace = bool(req.get("trace"))
        self.limit = float(req.get("test_limit") or 0)
        self.watchdog = Watchdog() if self.limit > 0 else None
        tests = {os.path.abspath(t) for t in req.get("tests") or []}
        self.targets = self._targets(tests)
        self.tracer = Tracer(self.targets) if self.trace else None
        self.current: dict = {}
        self.timeouts = 0
        # `only`: run just these tests (a re-run of the ones the watchdog cut); `stop_on_timeout`:
        # end the run at the first test cut again (it hangs: the rest would cost a limit each)
        self.only = set(req.get("only") or [])
        self.stop_on_timeout = bool(req.get("stop_on_timeout"))
        self.session = None

    @staticmethod
    def _targets(tests: set[str]) -> set[str]:
        targets = set()
        for dirpath, dirnames, filenames in os.walk(ROOT):
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in ("__pycache__", "node_modules")]
            for name in filenames:
                if name.endswith(".py"):
                    path = os.path.join(dirpath, name)
                    if path not in tests and not name.startswith("test_") and name != "conftest.py":
                        targets.add(path)
        return targets

    def pytest_collection_modifyitems(self, session, config, items):  # type: ignore[no-untyped-def]
        self.session = session
        if self.only:
            kept = [item for item in items if item.nodeid in self.only]
            dropped = [item for item in items if item.nodeid not in self.only]
            if dropped:
                config.hook.pytest_deselected(items=dropped)
            items[:] = kept
        if self.order:
            big = len(self.order)
            keyed = sorted(enumerate(items), key=lambda p: (self.order.get(p[1].nodeid, big), p[0]))
            items[:] = [item for _, item in keyed]
        self.emit({"event": "collected", "count": len(items)})

    def pytest_runtest_setup(self, item):  # type: ignore[no-untyped-def]
        self.current = {"nodeid": item.nodeid, "outcome": "passed", "start": time.perf_counter()}
        self.emit({"event": "start", "nodeid": item.nodeid})  # names the test if the process ends in it
        if self.watchdog is not None:
            # after the first runaway test, give the rest less rope: they are most likely the same bug
            self.watchdog.arm(self.limit if self.timeouts == 0 else max(0.2, self.limit / 4))
        if self.tracer is not None:
            self.tracer.start()
        yield from self._in_test()

    def pytest_runtest_call(self, item):  # type: ignore[no-untyped-def]
        yield from self._in_test()

    def pytest_runtest_teardown(self, item, nextitem):  # type: ignore[no-untyped-def]
        yield from self._in_test()

    def _in_test(self):  # type: ignore[no-untyped-def]
        """Around each phase of a test (a hook wrapper): the only code the watchdog may interrupt."""
        if self.watchdog is not None:
            self.watchdog.enter()
        try:
            yield
        finally:
            if self.watchdog is not None:
                self.watchdog.leave()

    if HAVE_PYTEST:
        pytest_runtest_setup = pytest.hookimpl(hookwrapper=True)(pytest_runtest_setup)
        pytest_runtest_call = pytest.hookimpl(hookwrapper=True)(pytest_runtest_call)
        pytest_runtest_teardown = pytest.hookimpl(hookwrapper=True)(pytest_runtest_teardown)

    def pytest_runtest_makereport(self, item, call):  # type: ignore[no-untyped-def]
        if call.excinfo is not None and call.when in ("setup", "call") and "failure" not in self.current:
            exc = call.excinfo
            if not exc.errisinstance(pytest.skip.Exception):
                describe = self.tracer.describe_failure if self.tracer is not None else _describe_failure
                self.current["failure"] = describe(exc.type, exc.value, exc.tb)

    def pytest_runtest_logreport(self, report):  # type: ignore[no-untyped-def]
        if report.failed:
            self.current["outcome"] = "failed"
        elif report.skipped and self.current.get("outcome") == "passed":
            self.current["outcome"] = "skipped"
        if report.when == "teardown" or (report.when == "setup" and not report.passed):
            pass

    def pytest_runtest_logfinish(self, nodeid, location):  # type: ignore[no-untyped-def]
        fired = False
        if self.watchdog is not None:
            fired = self.watchdog.disarm()
        lines: set = set()
        if self.tracer is not None:
            lines = self.tracer.stop()
        cur = self.current
        cur["reported"] = True
        result = {
            "event": "test",
            "nodeid": nodeid,
            "outcome": cur.get("outcome", "failed"),
            "seconds": time.perf_counter() - cur.get("start", time.perf_counter()),
        }
        if fired:
            self.timeouts += 1
            result["outcome"] = "failed"
            result["timeout"] = True
            if self.stop_on_timeout and self.session is not None:
                self.session.shouldstop = "a test ran past its limit again"
        if "failure" in cur:
            result["failure"] = cur["failure"]
        if self.tracer is not None:
            by_file: dict[str, list[int]] = {}
            for fname, line in lines:
                by_file.setdefault(os.path.relpath(fname, ROOT), []).append(line)
            result["lines"] = by_file
        self.emit(result)

    def pytest_keyboard_interrupt(self, excinfo):  # type: ignore[no-untyped-def]
        # A KeyboardInterrupt or pytest.exit() in a test ends the session before the test is
        # reported: that test failed (else the run looks like a suite that passed).
        cur = self.current
        if cur.get("nodeid") and not cur.get("reported"):
            cur["outcome"] = "failed"
            describe = self.tracer.describe_failure if self.tracer is not None else _describe_failure
            cur.setdefault("failure", describe(excinfo.type, excinfo.value, excinfo.tb))
            self.pytest_runtest_logfinish(cur["nodeid"], None)

    if HAVE_PYTEST:  # before the terminal reporter formats the traceback (slow: the watchdog could fire)
        pytest_keyboard_interrupt = pytest.hookimpl(tryfirst=True)(pytest_keyboard_interrupt)

    def pytest_collectreport(self, report):  # type: ignore[no-untyped-def]
        if report.failed:
            self.emit({"event": "collect_error", "nodeid": report.nodeid, "message": str(report.longrepr)[-3000:]})


class InProcess:
    """With plugins on (the project's addopts need them), the tests must still run in this process:
    xdist's `-n` would hand them to workers this runner cannot trace or time, and pytest-cov's
    `--cov` traces every line (slower runs; on 3.11 the localisation's tracer replaces its own, and
    its `--cov-fail-under` then fails every run). The options stay recognised; only their effect goes."""

    def pytest_load_initial_conftests(self, early_config, parser, args):  # type: ignore[no-untyped-def]
        # before pytest-cov's own hook starts coverage (a wrapper runs ahead of every tryfirst)
        if hasattr(early_config.known_args_namespace, "no_cov"):
            early_config.known_args_namespace.no_cov = True
        yield

    def pytest_configure(self, config):  # type: ignore[no-untyped-def]
        if config.pluginmanager.hasplugin("xdist"):  # xdist's own configure (trylast) reads these
            config.option.numprocesses = 0
            config.option.dist = "no"
            config.option.tx = []

    if HAVE_PYTEST:
        pytest_load_initial_conftests = pytest.hookimpl(hookwrapper=True)(pytest_load_initial_conftests)
        pytest_configure = pytest.hookimpl(tryfirst=True)(pytest_configure)


class _StderrTail:
    """sys.stderr, keeping the last few KB written: pytest says why it could not start there."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.tail = ""

    def write(self, text: str) -> int:
        self.tail = (self.tail + text)[-6000:]
        return self.inner.write(text)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)


def _child_pytest(req: dict, emit) -> int:  # type: ignore[no-untyped-def]
    # a fast-path parent already imported the tests and the module: import them afresh here
    for name in [n for n, m in list(sys.modules.items()) if getattr(m, "__file__", None) and _in_workspace(os.path.abspath(m.__file__))]:
        sys.modules.pop(name, None)
    args = [
        "-q",
        "--tb=no",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        "-o",
        "console_output_style=classic",
        "-W",
        "ignore::DeprecationWarning",
    ]
    if req.get("exitfirst"):
        args.append("-x")
    args += list(req.get("tests") or [])
    stderr = sys.stderr = _StderrTail(sys.stderr)
    try:
        rc = int(pytest.main(args, plugins=[Plugin(req, emit), InProcess()]))
    finally:
        sys.stderr = stderr.inner
    if rc in (3, 4):  # internal or usage error (an unknown option, an unreadable config): pytest's own words
        emit({"event": "collect_error", "nodeid": "", "startup": True, "message": stderr.tail[-3000:]})
    return rc


SESSION = None  # the collected pytest session of the fast path (set inside pytest_runtestloop)


STALE_MARK = " (heedls: candidate)"  # the candidate's code objects' filename in a stale check


def _swap_module(path: str, source: str, filename: str = ""):  # type: ignore[no-untyped-def]
    """Execute `source` as a fresh copy of the module at `path` and point every reference held
    by workspace modules (the test module's `from m import f`, `import m`, and the attributes of
    their classes: unittest's `Cache = cachetools.Cache`) at the new objects. `filename`: what
    the new code objects are compiled as (default `path`)."""
    import types as _types

    old = None
    for mod in list(sys.modules.values()):
        if getattr(mod, "__file__", None) and os.path.abspath(mod.__file__) == path:
            old = mod
            break
    if old is None:
        raise LookupError("module under test was not imported by the tests")
    new = _types.ModuleType(old.__name__)
    for attr in ("__file__", "__spec__", "__loader__", "__package__", "__path__"):
        if hasattr(old, attr):
            setattr(new, attr, getattr(old, attr))
    sys.modules[old.__name__] = new
    exec(compile(source, filename or path, "exec"), new.__dict__)  # noqa: S102
    old_ids = {id(v): k for k, v in vars(old).items() if not k.startswith("__")}

    def replacement(key, value):  # type: ignore[no-untyped-def]
        if value is old:
            return new
        name = old_ids.get(id(value))
        if name is not None and name in new.__dict__ and (key == name or _has_identity(value)):
            return new.__dict__[name]
        return None

    for mod in list(sys.modules.values()):
        fname = getattr(mod, "__file__", None)
        if mod is new or not fname or not _in_workspace(os.path.abspath(fname)):
            continue
        space = vars(mod)
        for key, value in list(space.items()):
            swap = replacement(key, value)
            if swap is not None:
                space[key] = swap
            elif isinstance(value, type) and value.__module__ == mod.__name__ and mod is not old:
                # a class of a test module or helper that derives from the module's classes
                # (`class TTLTestCache(TTLCache)`) or keeps its objects as attributes
                bases = tuple(replacement(b.__name__, b) or b for b in value.__bases__)
                if bases != value.__bases__:
                    try:
                        value.__bases__ = bases
                    except TypeError:  # another layout: the stale check tells
                        pass
                for attr, held in list(vars(value).items()):
                    if attr.startswith("__"):
                        continue
                    swap = replacement(attr, held)
                    if swap is not None:
                        try:
                            setattr(value, attr, swap)
                        except (AttributeError, TypeError):  # a metaclass that refuses: the stale check tells
                            pass
    parent_name, _, child = old.__name__.rpartition(".")
    if parent_name and parent_name in sys.modules:
        setattr(sys.modules[parent_name], child, new)
    # Objects of the old module that collection stored as test parameters
    # (`parametrize("sort", [bubble_sort])`): the test must get the candidate's.
    swapped = {id(value): new.__dict__[name] for name, value in vars(old).items()
               if not name.startswith("__") and name in new.__dict__ and _has_identity(value)}
    swapped[id(old)] = new
    for item in SESSION.items if SESSION is not None else ():
        params = getattr(getattr(item, "callspec", None), "params", None)
        if params:
            for key, value in list(params.items()):
                if id(value) in swapped:
                    params[key] = swapped[id(value)]
    return new


def _has_identity(value: object) -> bool:
    """A function, class, module or callable object: one that is the module's own wherever it is
    found. A number or string may be interned and shared by chance (the tests' `n = 3` and the
    module's `LIMIT = 3` are one object), so those are swapped only under their own name."""
    return callable(value) or isinstance(value, type(sys))


def _child_fast(req: dict, emit) -> int:  # type: ignore[no-untyped-def]
    """Run the already-collected items with the candidate module swapped in (no re-collection)."""
    session = SESSION
    plugin = Plugin(req, emit)
    path = os.path.join(ROOT, req["module"])
    stale_check = bool(req.get("stale_check"))
    try:
        _swap_module(path, req["source"], path + STALE_MARK if stale_check else "")
    except BaseException as exc:  # the candidate fails at import: every test fails  # noqa: BLE001
        emit({"event": "collect_error", "nodeid": req["module"], "message": f"{type(exc).__name__}: {exc}"[:3000]})
        return 2
    if stale_check:
        _watch_stale(path, emit)
    session.config.pluginmanager.register(plugin, "heedls-repair-fast")
    items = list(session.items)
    plugin.pytest_collection_modifyitems(session, session.config, items)
    failed = False
    for i, item in enumerate(items):
        nextitem = items[i + 1] if i + 1 < len(items) else None
        try:
            item.ihook.pytest_runtest_protocol(item=item, nextitem=nextitem)
        except (KeyboardInterrupt, pytest.exit.Exception):  # the session ends here, as pytest.main's would
            plugin.pytest_keyboard_interrupt(pytest.ExceptionInfo.from_current())
            return 2
        if plugin.current.get("outcome") == "failed":
            failed = True
            if req.get("exitfirst"):
                break
        if session.shouldstop:
            break
    return 1 if failed else 0


def _watch_stale(path: str, emit) -> None:  # type: ignore[no-untyped-def]
    """Report every function of the module as collected (code compiled from `path`) that runs
    after the swap: the candidate's code carries another filename, so such a call is a test
    reaching the old module through a reference the swap could not redirect (an instance made at
    import, a subclass, a registry, a closure). The fast path would then test the old code, not
    the candidate: the engine re-collects for every run instead."""
    seen = set()

    def calls(frame, event, arg):  # type: ignore[no-untyped-def]
        # a global trace function sees Python calls only and traces nothing inside them: the
        # cheapest hook 3.8-3.11 offer (a profile function also sees every C call and return)
        code = frame.f_code
        if code.co_filename == path and code not in seen:
            seen.add(code)
            caller = frame.f_back
            while caller is not None and caller.f_code.co_filename == path:
                caller = caller.f_back
            where = f"{os.path.relpath(caller.f_code.co_filename, ROOT)}:{caller.f_lineno}" if caller is not None else ""
            emit({"event": "stale", "function": getattr(code, "co_qualname", code.co_name),
                  "line": code.co_firstlineno, "from": where})
        return None

    threading.settrace(calls)
    sys.settrace(calls)


class ServerPlugin:
    """Keeps the collected session alive and serves requests from inside pytest_runtestloop."""

    def pytest_runtestloop(self, session):  # type: ignore[no-untyped-def]
        global SESSION
        if session.testsfailed:  # collection errors: no fast path
            return None
        SESSION = session
        serve(fast=True)
        return True


def _child_direct(req: dict, emit) -> int:  # type: ignore[no-untyped-def]
    """No pytest in the workspace: import each test file and call its argument-free test_* functions."""
    import importlib.util
    import inspect

    rc = 0
    tests = req.get("tests") or []
    nodes = []
    for rel in tests:
        name = os.path.splitext(os.path.basename(rel))[0]
        try:
            spec = importlib.util.spec_from_file_location(name, os.path.abspath(rel))
            module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            sys.modules[name] = module
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        except BaseException as exc:  # noqa: BLE001
            emit({"event": "collect_error", "nodeid": rel, "message": f"{type(exc).__name__}: {exc}"})
            return 2
        for fname, fn in vars(module).items():
            if fname.startswith("test") and inspect.isfunction(fn) and not inspect.signature(fn).parameters:
                nodes.append((f"{rel}::{fname}", fn))
    only = set(req.get("only") or [])
    if only:
        nodes = [node for node in nodes if node[0] in only]
    order = {n: i for i, n in enumerate(req.get("order") or [])}
    nodes.sort(key=lambda p: order.get(p[0], len(order)))
    emit({"event": "collected", "count": len(nodes)})
    watchdog = Watchdog() if float(req.get("test_limit") or 0) > 0 else None
    tracer = Tracer(Plugin._targets({os.path.abspath(t) for t in tests})) if req.get("trace") else None
    for nodeid, fn in nodes:
        start = time.perf_counter()
        emit({"event": "start", "nodeid": nodeid})
        result: dict = {"event": "test", "nodeid": nodeid, "outcome": "passed"}
        if watchdog is not None:
            watchdog.arm(float(req["test_limit"]))
        if tracer is not None:
            tracer.start()
        try:
            if watchdog is not None:
                watchdog.enter()
            try:
                fn()
            finally:
                if watchdog is not None:
                    watchdog.leave()
        except BaseException as exc:  # noqa: BLE001
            result["outcome"] = "failed"
            result["failure"] = (tracer.describe_failure if tracer is not None else _describe_failure)(
                type(exc), exc, exc.__traceback__)
        lines = tracer.stop() if tracer is not None else set()
        if watchdog is not None and watchdog.disarm():
            result["timeout"] = True
            result["outcome"] = "failed"
        result["seconds"] = time.perf_counter() - start
        if tracer is not None:
            by_file: dict[str, list[int]] = {}
            for f, line in lines:
                by_file.setdefault(os.path.relpath(f, ROOT), []).append(line)
            result["lines"] = by_file
        emit(result)
        if result["outcome"] == "failed":
            rc = 1
            if req.get("exitfirst") or (result.get("timeout") and req.get("stop_on_timeout")):
                break
    return rc


def _limit_resources() -> None:
    try:
        import resource

        # memory bombs: 2 GiB of address space is plenty for unit tests of small modules
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
        # fork bombs: effective for non-root users only (root ignores RLIMIT_NPROC); the group kill
        # after every run is the backstop
        _soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
        if os.getuid() != 0:
            want = 256 if hard == resource.RLIM_INFINITY else min(hard, 256)
            resource.setrlimit(resource.RLIMIT_NPROC, (want, hard))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except Exception:  # noqa: BLE001, S110
        pass


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def handle(req: dict) -> dict:
    start = time.perf_counter()
    module = req.get("module")
    source = req.get("source")
    if module and source is not None:
        with open(os.path.join(ROOT, module), "w", encoding="utf-8") as handle_:
            handle_.write(source)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            import gc

            gc.disable()  # short-lived child: collection would only copy pages
            os.setpgid(0, 0)
            os.close(read_fd)
            _limit_resources()
            out = os.fdopen(write_fd, "w", buffering=1)

            def emit(obj: dict) -> None:
                out.write(json.dumps(obj) + "\n")
                out.flush()

            if req.get("fast") and SESSION is not None and req.get("source") is not None:
                rc = _child_fast(req, emit)
            elif HAVE_PYTEST:
                rc = _child_pytest(req, emit)
            else:
                rc = _child_direct(req, emit)
            emit({"event": "done", "rc": rc})
            out.flush()
        except BaseException:  # noqa: BLE001
            try:
                os.write(write_fd, (json.dumps({"event": "error", "message": traceback.format_exc()[-2000:]}) + "\n").encode())
            except Exception:  # noqa: BLE001, S110
                pass
        os._exit(0)
    os.close(write_fd)
    try:
        os.setpgid(pid, pid)  # also from the parent, to win the race with an early fork in the child
    except OSError:
        pass
    deadline = time.monotonic() + float(req.get("timeout") or 30)
    buf = b""
    status = "crash"
    events = []
    last_start = start  # when the last test began, as this end of the pipe heard it
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                status = "timeout"
                break
            ready, _, _ = select.select([pipe], [], [], min(left, 0.5))
            if not ready:
                continue
            chunk = pipe.read(65536)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                events.append(event)
                if event.get("event") == "start":
                    last_start = time.perf_counter()
                if event.get("event") == "done":
                    status = "ok"
            if status == "ok":
                # The run is over at "done", not at the pipe's end: a process the test forked
                # (multiprocessing, os.fork) holds the pipe's write end open, and every run then
                # waited out its whole time limit and came back a "timeout" (no fix could pass).
                break
    _kill_group(pid)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    _kill_orphans()
    response: dict = {"id": req.get("id"), "status": status, "rc": None, "tests": [], "collected": 0, "errors": []}
    started: dict | None = None  # the last test begun and not yet reported
    for event in events:
        kind = event.pop("event", None)
        if kind == "start":
            started = event
        elif kind == "test":
            response["tests"].append(event)
            started = None
        elif kind == "collected":
            response["collected"] = event["count"]
        elif kind == "collect_error":
            response["errors"].append(event)
        elif kind == "done":
            response["rc"] = event["rc"]
        elif kind == "error":
            response["errors"].append(event)
        elif kind == "stale":
            response.setdefault("stale", []).append(event)
    if status != "ok" and started is not None:
        response["tests"].append(_ended_in(started, status, last_start))
    response["seconds"] = time.perf_counter() - start
    return response


def _ended_in(started: dict, status: str, since: float) -> dict:
    """The test the run ended in (os._exit(), a signal, memory, or the run's deadline in code the
    per-test watchdog cannot interrupt): it failed, and is named, rather than left unreported."""
    why = ("the run's time ran out in it, in code the per-test watchdog cannot interrupt" if status == "timeout"
           else "the test process ended in it (os._exit(), a signal, running out of memory)")
    return {"nodeid": started.get("nodeid", ""), "outcome": "failed", "seconds": time.perf_counter() - since,
            "timeout": status == "timeout",
            "failure": {"type": "TestRunEnded", "message": why, "frames": []}}  # the engine's RUN_ENDED


# Processes a test started that left the child's process group (setsid(), a daemon's double fork)
# escape the group kill; heedls finds them by the run token in their environment, which a daemon
# that clears its environment (`execve(..., {})`) no longer carries: one such `sleep 600` stayed
# per run, hundreds in a search. With this process a child subreaper (Linux), every orphan of a
# run is re-parented to it instead of to init, and is killed when the run ends.
PR_SET_CHILD_SUBREAPER = 36
SUBREAPER = False
KEEP_CHILDREN = set()  # children of this process before the first run (a conftest's server): left alone (`serve`)


def _become_subreaper() -> None:
    global SUBREAPER
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        SUBREAPER = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except Exception:  # noqa: BLE001
        SUBREAPER = False


def _children() -> set:
    """This process's children (Linux's /proc/self/task/*/children)."""
    found = set()
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open("/proc/self/task/%s/children" % tid) as f:
                found.update(int(pid) for pid in f.read().split())
        except (OSError, ValueError):
            continue
    return found


def _kill_orphans() -> None:
    """SIGKILL and reap the processes of the run that were re-parented to this one; a few rounds,
    as killing one re-parents its own children here."""
    if not SUBREAPER:
        return
    for _ in range(20):
        orphans = _children() - KEEP_CHILDREN
        for pid in orphans:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        reaped = False
        while True:
            try:
                done, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if done == 0:
                break
            reaped = True
        if not orphans:
            return
        if not reaped:
            time.sleep(0.005)


def serve(fast: bool) -> None:
    import gc

    if SUBREAPER:  # what collection started lives as long as this process, as in the user's session
        KEEP_CHILDREN.update(_children())

    # forked children share the parent's pages copy-on-write: keep the collector from touching
    # (and so copying) every object the parent holds
    gc.collect()
    gc.freeze()
    proto = os.fdopen(os.dup(PROTO_FD), "w", buffering=1)
    proto.write(json.dumps({"ready": True, "pytest": HAVE_PYTEST, "fast": fast, "python": sys.version.split()[0]}) + "\n")
    proto.flush()
    requests = os.fdopen(os.dup(REQ_FD), "r", encoding="utf-8")
    for line in requests:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
        except ValueError:
            continue
        if req.get("op") == "exit":
            break
        try:
            resp = handle(req)
        except Exception:  # noqa: BLE001
            resp = {"id": req.get("id"), "status": "crash", "errors": [{"message": traceback.format_exc()[-2000:]}]}
        proto.write(json.dumps(resp) + "\n")
        proto.flush()
    os._exit(0)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _become_subreaper()
    tests = sys.argv[1:]
    if HAVE_PYTEST and tests:
        # collect once in this (parent) process; requests are then served from inside the session
        args = ["-q", "-s", "--tb=no", "-p", "no:cacheprovider", "-p", "no:randomly", "-W", "ignore::DeprecationWarning", *tests]
        try:
            pytest.main(args, plugins=[ServerPlugin(), InProcess()])
        except BaseException:  # noqa: BLE001, S110
            pass
        # collection failed (e.g. the module does not import): serve without the fast path
        for name in [n for n, m in list(sys.modules.items()) if getattr(m, "__file__", None) and _in_workspace(os.path.abspath(m.__file__))]:
            sys.modules.pop(name, None)
    serve(fast=False)


if __name__ == "__main__":
    main()
