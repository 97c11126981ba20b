"""How much each plausible fix changes what the original did on the calls whose tests it passed.

Started as a script with the workspace's interpreter, in a copy of the workspace whose module under
repair holds the original text (stdlib and pytest only, like heedls_repair_runner.py). The request
is one JSON object on stdin:
    {"module": "pkg/m.py", "tests": ["tests/test_m.py"], "original": text, "fixes": [text, ...],
     "max_calls": 100, "call_limit_s": 0.5, "deselect": [nodeid, ...]}
1. The tests run once on the original. Every call the tests make into a plain function of the
   module (not one the module makes into itself) is recorded with a deep copy of its arguments and
   the test it belongs to.
2. The calls "the original passed": all calls of a passing test, and those of a failing test
   before its last call (the one whose result the failing check saw, or which raised).
3. The original and each fix are executed afresh, side by side, and each function is called again
   with each such call's arguments. A call is changed by a fix when its result (or the exception it
   raises) differs, or when the fix runs a line the original did not run in that call or leaves out
   one it ran (lines of the fix are matched to the original's by a diff of the two texts). How often
   a line runs does not count: a right fix of a loop bound runs the loop once more on passing calls
   too, and counting that preferred `l[i - 1]` (same loops, wrong data) to `range(0, …)`.
The answer is one JSON line on stdout: {"calls": n, "changed": [k per fix]}, or {"error": why}.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import json
import os
import re
import signal
import sys
import types

OUT = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)  # whatever the tests print goes to stderr, never into the answer
sys.stdout = sys.stderr
sys.path[0] = os.getcwd()  # as `python -m pytest` has it
sys.setrecursionlimit(max(sys.getrecursionlimit(), 3000))
CO_GENERATOR, CO_COROUTINE, CO_ASYNC_GENERATOR = 0x20, 0x80, 0x200
ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


class _Expired(Exception):
    pass


def _expired(signum, frame):  # type: ignore[no-untyped-def]
    raise _Expired()


def _record_calls(module_path: str, tests: list[str], max_calls: int,
                  deselect: list[str]) -> tuple[list[dict], dict[str, str]]:
    import pytest

    calls: list[dict] = []
    outcomes: dict[str, str] = {}
    current: list[str | None] = [None]

    def profile(frame, event, arg):  # type: ignore[no-untyped-def]
        if event != "call" or len(calls) >= 4 * max_calls:
            return
        code = frame.f_code
        if code.co_filename != module_path or code.co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR):
            return
        caller = frame.f_back
        if caller is not None and caller.f_code.co_filename == module_path:
            return  # the module calling itself
        name = getattr(code, "co_qualname", code.co_name)
        if current[0] is None or "<" in name or "." in name:
            return  # module-level code, lambdas, comprehensions, methods
        names = code.co_varnames
        npos = code.co_argcount
        nkw = code.co_kwonlyargcount
        loc = frame.f_locals
        try:
            pos = [loc[n] for n in names[:npos]]
            kw = {n: loc[n] for n in names[npos:npos + nkw]}
            at = npos + nkw
            if code.co_flags & 0x04:  # *args
                pos += list(loc[names[at]])
                at += 1
            if code.co_flags & 0x08:  # **kwargs
                kw.update(loc[names[at]])
            call = {"test": current[0], "fn": name, "args": copy.deepcopy((pos, kw))}
        except Exception:  # noqa: BLE001 - arguments that cannot be copied are not replayed
            return
        calls.append(call)

    class Plugin:
        @pytest.hookimpl(tryfirst=True)
        def pytest_configure(self, config):  # type: ignore[no-untyped-def]
            # the calls are recorded in this process: an addopts' `-n` (xdist) must not move the
            # tests to workers (heedls_repair_runner.InProcess does the same)
            if config.pluginmanager.hasplugin("xdist"):
                config.option.numprocesses = 0
                config.option.dist = "no"
                config.option.tx = []

        def pytest_runtest_setup(self, item):  # type: ignore[no-untyped-def]
            current[0] = item.nodeid

        def pytest_runtest_teardown(self, item):  # type: ignore[no-untyped-def]
            current[0] = None

        def pytest_runtest_logreport(self, report):  # type: ignore[no-untyped-def]
            if report.failed:
                outcomes[report.nodeid] = "failed"
            elif report.when == "call" and report.passed:
                outcomes.setdefault(report.nodeid, "passed")

    sys.setprofile(profile)
    try:
        skip = [arg for nodeid in deselect for arg in ("--deselect", nodeid)]
        pytest.main(["-q", "-p", "no:cacheprovider", *skip, *tests], plugins=[Plugin()])
    finally:
        sys.setprofile(None)
    return calls, outcomes


def _passed_calls(calls: list[dict], outcomes: dict[str, str], max_calls: int) -> list[dict]:
    by_test: dict[str, list[dict]] = {}
    for call in calls:
        by_test.setdefault(call["test"], []).append(call)
    kept: list[dict] = []
    seen: set[str] = set()
    for test, made in by_test.items():
        outcome = outcomes.get(test)
        for call in made if outcome == "passed" else made[:-1] if outcome == "failed" else []:
            try:
                key = repr((call["fn"], call["args"]))
            except Exception:  # noqa: BLE001
                continue
            if key not in seen and len(kept) < max_calls:
                seen.add(key)
                kept.append(call)
    return kept


def _load(text: str, label: str, dotted: str, path: str) -> dict:
    module = types.ModuleType(dotted)
    module.__file__ = path
    module.__package__ = dotted.rpartition(".")[0]
    exec(compile(text, label, "exec"), module.__dict__)  # noqa: S102 - the workspace's own code, in its copy
    return module.__dict__


def _call(namespace: dict, label: str, call: dict, align: dict[int, int], limit_s: float) -> tuple[object, frozenset[int]]:
    lines: set[int] = set()

    def local(frame, event, arg):  # type: ignore[no-untyped-def]
        if event == "line":
            lines.add(align.get(frame.f_lineno, -frame.f_lineno))
        return local

    def tracer(frame, event, arg):  # type: ignore[no-untyped-def]
        return local if frame.f_code.co_filename == label else None

    func = namespace.get(call["fn"])
    if not callable(func):
        return ("missing",), frozenset()
    pos, kw = copy.deepcopy(call["args"])
    signal.setitimer(signal.ITIMER_REAL, limit_s)
    sys.settrace(tracer)
    try:
        value = func(*pos, **kw)
        if inspect.isgenerator(value):
            value = list(value)
        result: object = ("ok", ADDRESS.sub("", repr(value))[:2000])
    except _Expired:
        result = ("timeout",)
    except RecursionError:
        result = ("recursion",)
    except Exception as exc:  # noqa: BLE001 - an exception is a result like any other
        result = ("raised", type(exc).__name__)
    finally:
        sys.settrace(None)
        signal.setitimer(signal.ITIMER_REAL, 0)
    return result, frozenset(lines)


def _alignment(fix: str, original: str) -> dict[int, int]:
    """Line of the fix → line of the original (equal lines, and lines replaced one for one)."""
    a, b = fix.splitlines(), original.splitlines()
    # the common head and tail align one for one; only the lines between them are matched (the
    # matcher is quadratic: 0.8 s per fix of a 3,000-line module)
    head = 0
    while head < min(len(a), len(b)) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < min(len(a), len(b)) - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    align: dict[int, int] = {k: k for k in range(1, head + 1)}
    align.update({len(a) - k: len(b) - k for k in range(tail)})
    matcher = difflib.SequenceMatcher(a=a[head:len(a) - tail], b=b[head:len(b) - tail], autojunk=False)
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag == "equal" or (tag == "replace" and a1 - a0 == b1 - b0):
            for k in range(a1 - a0):
                align[head + a0 + k + 1] = head + b0 + k + 1
    return align


def main() -> None:
    req = json.loads(sys.stdin.read())
    module_path = os.path.abspath(req["module"])
    dotted = req["module"][:-3].replace("/", ".").replace(os.sep, ".").removesuffix(".__init__")
    max_calls = int(req.get("max_calls") or 100)
    limit_s = float(req.get("call_limit_s") or 0.5)
    calls, outcomes = _record_calls(module_path, list(req["tests"]), max_calls, list(req.get("deselect") or []))
    kept = _passed_calls(calls, outcomes, max_calls)
    if not kept:
        OUT.write(json.dumps({"calls": 0, "changed": [0] * len(req["fixes"])}) + "\n")
        return
    signal.signal(signal.SIGALRM, _expired)
    original = req["original"]
    base = _load(original, "<heedls-original>", dotted, module_path)
    identity = {n: n for n in range(1, original.count("\n") + 2)}
    before = [_call(base, "<heedls-original>", c, identity, limit_s) for c in kept]
    changed = []
    for i, text in enumerate(req["fixes"]):
        label = f"<heedls-fix-{i}>"
        namespace = _load(text, label, dotted, module_path)
        align = _alignment(text, original)
        changed.append(sum(_call(namespace, label, c, align, limit_s) != b for c, b in zip(kept, before)))
    OUT.write(json.dumps({"calls": len(kept), "changed": changed}) + "\n")


if __name__ == "__main__":
    try:
        main()
    except BaseException as exc:  # noqa: BLE001 - any trouble: no answer, the ranking goes on without it
        OUT.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:300]}) + "\n")
    OUT.flush()
    os._exit(0)  # threads or atexit handlers the tests left behind must not hold the answer up
