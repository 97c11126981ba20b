"""heedls' pytest plugin: reports test outcomes and, for failures only, the facts heedls explains.

It runs inside the *workspace's* interpreter, where heedls is usually not installed, so this file is
self-contained (stdlib + pytest only) and keeps to syntax Python 3.8 understands. heedls puts its
folder on PYTHONPATH and loads it with ``-p heedls_pytest_plugin``; the report goes, one JSON object
per line, to the file named by ``HEEDLS_REPORT`` (without it the plugin does nothing). Lines are
flushed as they happen so a run killed at its timeout still tells which test was running.

Cost: passing tests pay for two short writes. Failures pay for the traceback walk, safe reprs of
the locals and, unless ``HEEDLS_TRACE=0``, one re-execution of the failing call to the code under
test under ``sys.settrace`` (bounded in time and events) to see which lines produced the wrong
value -- a failing assertion's traceback never enters the code under test.
"""

# This file must never turn a test failure into a pytest internal error, so it catches broadly
# where it inspects user objects (reprs, frames, re-executed calls) and keeps the report file open
# for the whole session.
# ruff: noqa: BLE001, S110, SIM115, UP031, SIM102, PIE810

from __future__ import annotations

import os
import sys


def _standard(name):
    """The standard module `name`, even when the workspace has a file of that name: `python -m
    pytest` puts the workspace's folder first on sys.path, so a project's `json.py` was imported
    by pytest in json's place, and this file's reports came out as that module's garbage (every run
    a collection error). The module the tests see stays as pytest left it."""
    here = os.getcwd()

    def shadowed(module):
        where = getattr(module, "__file__", None)
        return bool(where) and os.path.abspath(where).startswith(here + os.sep)

    cached = sys.modules.get(name)
    if cached is not None and not shadowed(cached):
        return cached
    own = {k: v for k, v in sys.modules.items() if k == name or k.startswith(name + ".")}
    saved = sys.path[:]
    for key in own:
        del sys.modules[key]
    sys.path[:] = [p for p in saved if os.path.abspath(p or os.curdir) != here]
    try:
        __import__(name)
        return sys.modules[name]
    finally:
        sys.path[:] = saved
        if own:  # what the tests' process had, back in its place
            for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
                del sys.modules[key]
            sys.modules.update(own)


ast = _standard("ast")
copy = _standard("copy")
json = _standard("json")
linecache = _standard("linecache")
re = _standard("re")
reprlib = _standard("reprlib")
signal = _standard("signal")
threading = _standard("threading")
time = _standard("time")

REPORT_ENV = "HEEDLS_REPORT"
WORKSPACE_ENV = "HEEDLS_WORKSPACE"
TRACE_ENV = "HEEDLS_TRACE"

MAX_REPR = 240
MAX_LOCALS = 25
MAX_FRAMES = 30
MAX_MESSAGE = 4000
MAX_CAPTURED = 2000
TRACE_SECONDS = 0.5
TRACE_EVENTS = 200_000
TRACE_SEQUENCE = 5000
MAX_TRACES = 5

# Builtins that are safe to call again when re-evaluating a failing call's arguments.
_PURE_BUILTINS = {
    "list", "tuple", "range", "sorted", "str", "int", "float", "set", "dict", "frozenset", "reversed",
    "len", "abs", "min", "max", "sum", "round", "bytes", "bool", "chr", "ord", "zip", "enumerate",
}

_out = None
_workspace = ""
_compare = None  # the last failing comparison seen by pytest_assertrepr_compare
_traces_done = 0
_ast_cache = {}
_kind_cache = {}


class _Budget(BaseException):
    """Raised from the tracer to stop a re-execution that ran out of time or events."""


def _repr(obj, limit=MAX_REPR):
    r = reprlib.Repr()
    r.maxstring = limit
    r.maxother = limit
    r.maxlist = r.maxtuple = r.maxset = r.maxfrozenset = r.maxdeque = r.maxarray = 20
    r.maxdict = 12
    r.maxlevel = 4
    try:
        text = r.repr(obj)
    except Exception as exc:  # a broken __repr__ must not break the report
        text = "<unrepresentable %s: %s>" % (type(obj).__name__, type(exc).__name__)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def _emit(record):
    if _out is None:
        return
    try:
        _out.write(json.dumps(record, default=str) + "\n")
        _out.flush()
    except Exception:
        pass


def _kind(filename):
    """'test', 'code' (workspace code under test) or None (outside the workspace)."""
    kind = _kind_cache.get(filename, 0)
    if kind != 0:
        return kind
    path = os.path.realpath(filename) if filename and not filename.startswith("<") else ""
    kind = None
    if path and _workspace and (path + os.sep).startswith(_workspace + os.sep):
        parts = path[len(_workspace):].split(os.sep)
        if not any(p in ("site-packages", "dist-packages", ".venv", "venv", ".tox", ".nox") for p in parts):
            base = os.path.basename(path)
            is_test = (base.startswith("test_") or base.endswith("_test.py") or base == "conftest.py"
                       or "tests" in parts[:-1] or "test" in parts[:-1])
            kind = "test" if is_test else "code"
    _kind_cache[filename] = kind
    return kind


# Names whose values are masked, as error trackers (Sentry's default scrubber) do.
_SECRET_NAME = re.compile(r"password|passwd|passphrase|secret|api_?key|private_?key|credential|cookie|session_?id|"
                          r"signature|(^|_)(pwd|auth)($|_)|(^|_)[a-z]*token$", re.IGNORECASE)


def _locals(frame, shapes=None):
    """Safe reprs of a frame's locals; `shapes` (if given) receives the length of sized values
    and the first keys of mappings, which an IndexError/KeyError explanation needs."""
    out = {}
    try:
        items = list(frame.f_locals.items())
    except Exception:
        return out
    for name, value in items:
        if name.startswith("@") or name.startswith("__"):
            continue  # pytest's assertion-rewrite temporaries, module dunders
        if type(value).__name__ in ("module", "function", "type", "builtin_function_or_method"):
            continue
        if _SECRET_NAME.search(name):
            out[name] = "'***'"  # shown in hovers and sent to an LLM for explanations: never a secret
            continue
        out[name] = _repr(value)
        if shapes is not None and isinstance(value, (list, tuple, str, bytes, dict, set, frozenset, range)):
            shape = {"len": len(value), "type": type(value).__name__}
            if isinstance(value, dict):
                shape["keys"] = [_repr(k, 60) for k in list(value)[:50]]
            shapes[name] = shape
        if len(out) >= MAX_LOCALS:
            break
    return out


def _similar_names(exc, frame):
    """Close matches for a missing attribute or name (difflib), as Python 3.12 prints them."""
    import difflib

    name = getattr(exc, "name", None)
    if not isinstance(name, str):
        return []
    if isinstance(exc, AttributeError) and getattr(exc, "obj", None) is not None:
        try:
            pool = [n for n in dir(exc.obj) if not n.startswith("__")]
        except Exception:
            pool = []
    elif isinstance(exc, NameError) and frame is not None:
        import builtins

        pool = list(frame.f_locals) + list(frame.f_globals) + dir(builtins)
    else:
        return []
    return difflib.get_close_matches(name, pool, n=3, cutoff=0.6)


def _source_tree(path):
    if path not in _ast_cache:
        try:
            _ast_cache[path] = ast.parse("".join(linecache.getlines(path)))
        except Exception:
            _ast_cache[path] = None
    return _ast_cache[path]


def _statement_at(tree, line):
    best = None
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt) and node.lineno <= line <= (getattr(node, "end_lineno", None) or node.lineno):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.If, ast.For,
                                     ast.While, ast.With, ast.Try)) or node.lineno == line:
                if best is None or node.lineno >= best.lineno:
                    best = node
    return best


def _safe_expr(node):
    for sub in ast.walk(node):
        if isinstance(sub, (ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr)):
            return False
        if isinstance(sub, ast.Call):
            if not (isinstance(sub.func, ast.Name) and sub.func.id in _PURE_BUILTINS):
                return False
    return True


def _eval(node, frame):
    code = compile(ast.Expression(body=node), "<heedls>", "eval")
    return eval(code, frame.f_globals, dict(frame.f_locals))


def _function_of(node, frame):
    if not isinstance(node, (ast.Name, ast.Attribute)):
        return None
    try:
        func = _eval(node, frame)
    except Exception:
        return None
    func = getattr(func, "__wrapped__", func)
    code = getattr(func, "__code__", None)
    if code is None or _kind(code.co_filename) != "code":
        return None
    return func


def _find_call(frame, line):
    """The call to code under test in the failing statement (or in the assignment that produced
    a name the statement uses), with its arguments re-evaluated in the failing frame."""
    path = frame.f_code.co_filename
    tree = _source_tree(path)
    if tree is None:
        return None
    stmt = _statement_at(tree, line)
    if stmt is None:
        return None
    candidates = [stmt]
    names = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    scope = tree
    for node in ast.walk(tree):  # the innermost function around the failing line
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                node.lineno <= line <= (getattr(node, "end_lineno", None) or node.lineno) and \
                (scope is tree or node.lineno > scope.lineno):
            scope = node
    for node in ast.walk(scope):  # assignments earlier in the same scope that produced those names
        if isinstance(node, ast.Assign) and node.lineno < line and any(
            isinstance(t, ast.Name) and t.id in names for t in node.targets
        ):
            candidates.append(node)
    for cand in candidates:
        for node in ast.walk(cand):
            if not isinstance(node, ast.Call):
                continue
            func = _function_of(node.func, frame)
            if func is None:
                continue
            args, kwargs, shown = [], {}, []
            try:
                for arg in node.args:
                    target = arg.value if isinstance(arg, ast.Starred) else arg
                    if not _safe_expr(target):
                        raise ValueError
                    value = _eval(target, frame)
                    if isinstance(arg, ast.Starred):
                        args.extend(list(value))
                    else:
                        args.append(value)
                for kw in node.keywords:
                    if kw.arg is None or not _safe_expr(kw.value):
                        raise ValueError
                    kwargs[kw.arg] = _eval(kw.value, frame)
            except Exception:
                args = None
            if args is not None:
                shown = [_repr(a, 120) for a in args] + ["%s=%s" % (k, _repr(v, 120)) for k, v in kwargs.items()]
            try:
                segment = ast.get_source_segment("".join(linecache.getlines(path)), node) or ""
            except Exception:
                segment = ""
            code = func.__code__
            return {
                "expr": segment[:300],
                "function": getattr(func, "__qualname__", code.co_name),
                "path": os.path.realpath(code.co_filename),
                "def_line": code.co_firstlineno,
                "args": shown if args is not None else None,
                "input": "%s(%s)" % (code.co_name, ", ".join(shown)) if args is not None else None,
                "_callable": (func, args, kwargs) if args is not None else None,
            }
    return None


_GENERATOR_FLAGS = 0x20 | 0x80 | 0x200  # CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR
MAX_CALLEES = 12
CALLEE_SEQUENCE = 400


def _trace(func, args, kwargs):
    """Re-run the failing call under sys.settrace (code under test only): the lines executed, and
    for the called function's frame and the last call of every other function, the executed line
    sequence with the variables each line wrote and the line that returned (or raised)."""
    hits = {}
    frames = {}  # id(frame) -> [previous line, locals snapshot, sequence]
    callees = {}  # code object -> record of its last finished call
    yields = {}  # a generator under test: line -> how often the top frame suspended there
    st = {"events": 0, "deadline": time.perf_counter() + TRACE_SECONDS, "top": None, "top_record": None,
          "raised": None, "raised_line": None, "stopped": None}
    top_code = func.__code__

    def _step(frame, fs):
        try:
            now = dict(frame.f_locals)
        except Exception:
            now = {}
        old = fs[1] or {}
        changed = [k for k, v in now.items() if k not in old or old[k] is not v]
        if fs[0] is not None:
            fs[2].append([fs[0], changed])
            if len(fs[2]) > TRACE_SEQUENCE * 2:
                del fs[2][: len(fs[2]) - TRACE_SEQUENCE]
        fs[1] = now

    def local(frame, event, arg):
        st["events"] += 1
        if st["events"] >= TRACE_EVENTS or (st["events"] & 1023 == 0 and time.perf_counter() > st["deadline"]):
            st["stopped"] = "events" if st["events"] >= TRACE_EVENTS else "time"
            raise _Budget()
        key = id(frame)
        fs = frames.get(key)
        if fs is None:
            fs = frames[key] = [None, None, []]
        if event == "line":
            per = hits.setdefault(frame.f_code.co_filename, {})
            line = "%d" % frame.f_lineno
            per[line] = per.get(line, 0) + 1
            _step(frame, fs)
            fs[0] = frame.f_lineno
        elif event == "return":
            _step(frame, fs)
            fs[0] = None
            code = frame.f_code
            record = {"path": os.path.realpath(code.co_filename), "function": code.co_name,
                      "def_line": code.co_firstlineno, "return_line": frame.f_lineno,
                      "return_value": _repr(arg), "sequence": list(fs[2])}
            if not code.co_flags & _GENERATOR_FLAGS:
                frames.pop(key, None)  # a generator's frame lives on after a yield
            if frame is st["top"]:
                st["top_record"] = record
                if code.co_flags & _GENERATOR_FLAGS:
                    yields[frame.f_lineno] = yields.get(frame.f_lineno, 0) + 1
            else:
                record["sequence"] = record["sequence"][-CALLEE_SEQUENCE:]
                callees.pop(code, None)
                callees[code] = record
                while len(callees) > MAX_CALLEES:
                    callees.pop(next(iter(callees)))
        elif event == "exception" and frame is st["top"]:
            st["raised"] = arg[0].__name__ if arg and arg[0] is not None else None
            st["raised_line"] = frame.f_lineno
        return local

    def global_(frame, event, arg):
        if _kind(frame.f_code.co_filename) != "code":
            return None
        if st["top"] is None and frame.f_code is top_code:
            st["top"] = frame
        return local(frame, event, arg)

    saved_timer = None
    if hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread():
        saved_timer = signal.setitimer(signal.ITIMER_REAL, 0)  # a test's own alarm must not hit us
    old = sys.gettrace()
    started = time.perf_counter()
    sys.settrace(global_)
    try:
        result = func(*args, **kwargs)
        if hasattr(result, "__next__") and hasattr(result, "send"):  # generator: drive it
            for _i, _v in zip(range(10000), result):
                pass
    except _Budget:
        pass
    except BaseException as exc:  # the failing call may well raise; that is data
        if isinstance(exc, KeyboardInterrupt):
            raise
        st["raised"] = st["raised"] or type(exc).__name__
    finally:
        sys.settrace(old)
        if saved_timer is not None and saved_timer[0] > 0:
            signal.setitimer(signal.ITIMER_REAL, max(saved_timer[0], 0.01), saved_timer[1])
    top = st["top_record"] or {}
    top_fs = frames.get(id(st["top"])) if st["top"] is not None else None
    sequence = top.get("sequence") or (top_fs[2] if top_fs else [])
    return {
        "path": os.path.realpath(top_code.co_filename),
        "hits": {os.path.realpath(f): h for f, h in hits.items()},
        "sequence": sequence[-TRACE_SEQUENCE:],
        "return_line": top.get("return_line"),
        "return_value": top.get("return_value"),
        "raised": st["raised"],
        "raised_line": st["raised_line"],
        "stopped": st["stopped"],
        "events": st["events"],
        "callees": list(callees.values())[::-1],
        "yields": {"%d" % k: v for k, v in yields.items()},
        "seconds": round(time.perf_counter() - started, 4),
    }


def _failure(item, call, report):
    global _compare, _traces_done
    excinfo = call.excinfo
    exc = excinfo.value
    frames = []
    raw = []
    tb = excinfo.tb
    total = 0
    while tb is not None:
        frame = tb.tb_frame
        kind = _kind(frame.f_code.co_filename)
        if kind is not None:
            total += 1
            raw.append((frame, tb.tb_lineno, kind))
        tb = tb.tb_next
    keep = raw if len(raw) <= MAX_FRAMES else raw[:10] + raw[-(MAX_FRAMES - 10):]
    test_idx = code_idx = None
    for i, (frame, line, kind) in enumerate(keep):
        frames.append({
            "path": os.path.realpath(frame.f_code.co_filename),
            "line": line,
            "function": frame.f_code.co_name,
            "source": linecache.getline(frame.f_code.co_filename, line).strip()[:300],
            "kind": kind,
        })
    # The test frame is the last one before the code under test is entered (a signal handler or a
    # callback in a test file may sit deeper); the code frame is the deepest code frame after it.
    kinds = [kind for (_f, _l, kind) in keep]
    first_code = next((i for i, k in enumerate(kinds) if k == "code" and "test" in kinds[:i]), None)
    tests = [i for i, k in enumerate(kinds) if k == "test" and (first_code is None or i < first_code)]
    test_idx = tests[-1] if tests else None
    for i, kind in enumerate(kinds):
        if kind == "code" and (test_idx is None or i > test_idx):
            code_idx = i
    shapes = {}
    record = {
        "event": "failure",
        "nodeid": report.nodeid,
        "when": report.when,
        "path": os.path.realpath(str(getattr(item, "fspath", "") or "")),
        "line": (report.location[1] + 1) if report.location and report.location[1] is not None else None,
        "exc_type": type(exc).__name__,
        "message": str(exc)[:MAX_MESSAGE] if not isinstance(exc, RecursionError) else str(exc)[:300],
        "compare": _compare,
        "frames": frames,
        "frames_total": total,
        "test_frame": test_idx,
        "code_frame": code_idx,
        "test_locals": _locals(keep[test_idx][0]) if test_idx is not None else {},
        "code_locals": _locals(keep[code_idx][0], shapes) if code_idx is not None else {},
        "code_shapes": shapes,
        "missing_name": getattr(exc, "name", None) if isinstance(exc, (AttributeError, NameError)) else None,
        "similar_names": _similar_names(exc, keep[-1][0] if keep else None),
        "call": None,
        "trace": None,
        "stdout_tail": (getattr(report, "capstdout", "") or "")[-MAX_CAPTURED:],
        "stderr_tail": (getattr(report, "capstderr", "") or "")[-MAX_CAPTURED:],
    }
    if report.when == "call" and test_idx is not None:
        try:
            found = _find_call(keep[test_idx][0], keep[test_idx][1])
        except Exception:
            found = None
        if found is not None:
            target = found.pop("_callable")
            record["call"] = found
            if (target is not None and os.environ.get(TRACE_ENV, "1") != "0" and _traces_done < MAX_TRACES
                    and not isinstance(exc, (RecursionError, TimeoutError))):
                # (a recursion or an alarm-interrupted loop would only burn the whole budget again)
                _traces_done += 1
                func, args, kwargs = target
                try:
                    args, kwargs = copy.deepcopy(args), copy.deepcopy(kwargs)
                except Exception:
                    pass
                try:
                    record["trace"] = _trace(func, args, kwargs)
                except Exception:
                    record["trace"] = None
    _compare = None
    return record


# -- hooks ------------------------------------------------------------------------------------------

def pytest_configure(config):
    global _out, _workspace
    path = os.environ.get(REPORT_ENV)
    if not path or _out is not None:
        return
    rootdir = str(getattr(config, "rootpath", None) or config.rootdir)  # rootpath: pytest >= 6.1
    _workspace = os.path.realpath(os.environ.get(WORKSPACE_ENV) or rootdir)
    _out = open(path, "a", encoding="utf-8")
    import pytest

    _emit({"event": "session", "rootdir": rootdir, "python": sys.version.split()[0],
           "pytest": pytest.__version__, "workspace": _workspace})


def pytest_unconfigure(config):
    global _out
    if _out is not None:
        try:
            _out.close()
        finally:
            _out = None


def pytest_assertrepr_compare(config, op, left, right):
    # Called only for failing comparisons; keep the values, leave pytest's own output alone.
    global _compare
    if _out is None:
        return
    info = {"op": op, "left": _repr(left), "right": _repr(right),
            "left_type": type(left).__name__, "right_type": type(right).__name__}
    for side, value in (("left", left), ("right", right)):
        try:
            info[side + "_len"] = len(value) if not isinstance(value, (str, bytes)) or len(value) < 10**6 else None
        except Exception:
            pass
    _compare = info
    return


def pytest_runtest_logstart(nodeid, location):
    global _compare
    _compare = None
    _emit({"event": "test_start", "nodeid": nodeid})


def pytest_runtest_logreport(report):
    if report.when == "call" or report.outcome != "passed":
        _emit({"event": "report", "nodeid": report.nodeid, "when": report.when, "outcome": report.outcome,
               "duration": round(report.duration, 4), "xfail": hasattr(report, "wasxfail")})


def pytest_exception_interact(node, call, report):
    if _out is None or not hasattr(node, "runtest") or getattr(report, "skipped", False):
        return
    try:
        _emit(_failure(node, call, report))
    except Exception as exc:  # never let the reporter turn a failure into an internal error
        _emit({"event": "plugin_error", "nodeid": getattr(report, "nodeid", ""), "error": repr(exc)[:500]})


def pytest_collectreport(report):
    if report.failed:
        _emit({"event": "collect_error", "nodeid": report.nodeid,
               "longrepr": str(report.longrepr)[-MAX_MESSAGE:]})


def pytest_sessionfinish(session, exitstatus):
    _emit({"event": "finish", "exitstatus": int(exitstatus), "collected": getattr(session, "testscollected", None)})
