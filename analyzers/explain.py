"""Short plain-language explanations of diagnostics: what happened, where, the runtime values
involved, the likely cause, and the validated fix when one exists.

Rule-based (per exception type and per error kind), built only from facts the analyzers recorded
(the plugin's runtime values, the traced call, the source), so it is fast, deterministic and
offline. `explain_with_llm` optionally rephrases the same facts through a chat provider and marks
the result "(AI-generated)". Output is Markdown (hover renders it; the CLI prints it as is).
"""

from __future__ import annotations

import ast
import difflib
import json
import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from heedls.analyzers import pyparse
from heedls.analyzers.model import Diagnostic

if TYPE_CHECKING:
    from heedls.analyzers.testrun import TestFailure

log = logging.getLogger("heedls.explain")

AI_MARK = "(AI-generated)"


class ChatProvider(Protocol):
    async def chat(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float, n: int,
                   deadline_s: float) -> list[str]: ...


# -- helpers ---------------------------------------------------------------------------------------

def _code(text: str, limit: int = 120) -> str:
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"`{text.replace('`', chr(39))}`"


def _literal(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return pyparse.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return _NOPE


class _Nope:
    pass


_NOPE = _Nope()


def _read_line(path: str, line: int) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for i, raw in enumerate(fh, 1):
                if i == line:
                    return raw.strip()
    except OSError:
        pass
    return ""


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read().splitlines()
    except OSError:
        return []


def _short_path(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _unique(items: Any) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def _diff_values(left: str, right: str) -> str | None:
    """How `left` (actual) differs from `right` (expected), when both are literals."""
    a, b = _literal(left), _literal(right)
    if isinstance(a, _Nope) or isinstance(b, _Nope):
        return None
    if isinstance(a, bool) or isinstance(b, bool):
        return None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        delta = a - b
        if delta in (1, -1):
            return (f"the result is off by one ({'1 too many' if delta > 0 else '1 too few'}): check loop "
                    "bounds (`range(...)`, `<` vs `<=`) and `+ 1`/`- 1` adjustments")
        if b != 0 and a == -b:
            return "the result has the wrong sign"
        return f"the result differs from the expected value by {delta:g}"
    if isinstance(a, str) and isinstance(b, str):
        if a.lower() == b.lower():
            return "the strings differ only in upper/lower case"
        if a.strip() == b.strip():
            return "the strings differ only in surrounding whitespace"
        if a == b[::-1] and a != b:
            return "the result is the expected string reversed"
        pos = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        return f"the strings first differ at position {pos} ({_code(a[pos:pos + 10] or 'end')} vs {_code(b[pos:pos + 10] or 'end')})"
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            extra = _unique(x for x in a if x not in b)[:3]
            missing = _unique(x for x in b if x not in a)[:3]
            parts = [f"the result has {len(a)} items, the expected value {len(b)}"]
            if missing:
                parts.append(f"missing {', '.join(repr(x) for x in missing)}")
            if extra:
                parts.append(f"unexpected {', '.join(repr(x) for x in extra)}")
            if len(a) == len(b) + 1 or len(a) + 1 == len(b):
                parts.append("(off by one item: check the loop bounds)")
            return "; ".join(parts)
        try:
            if sorted(a) == sorted(b):
                return "the result has the right items in the wrong order"
        except TypeError:
            pass
        idx = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
        if idx is not None:
            return f"item {idx} is {a[idx]!r} but should be {b[idx]!r}"
    if isinstance(a, (set, frozenset)) and isinstance(b, (set, frozenset)):
        return (f"missing {sorted(map(repr, b - a))[:3]}, unexpected {sorted(map(repr, a - b))[:3]}")
    if isinstance(a, dict) and isinstance(b, dict):
        missing = [k for k in b if k not in a][:3]
        extra = [k for k in a if k not in b][:3]
        changed = [k for k in a if k in b and a[k] != b[k]][:3]
        bits = []
        if missing:
            bits.append(f"missing keys {missing}")
        if extra:
            bits.append(f"unexpected keys {extra}")
        if changed:
            bits.append(", ".join(f"{k!r} is {a[k]!r} (expected {b[k]!r})" for k in changed))
        return "; ".join(bits) or None
    if a is None and b is not None:
        return "the function returned None: a `return` is probably missing on this path"
    if type(a) is not type(b):
        return f"the result is a {type(a).__name__}, the test expected a {type(b).__name__}"
    return None


def _subscripts(source: str) -> list[tuple[str, str]]:
    """(container, index) source pairs of the subscripts in a line of code."""
    try:
        tree = pyparse.parse(source.strip().rstrip(":") if source.strip().endswith(":") and not
                         source.strip().startswith(("for ", "while ", "if ", "elif ", "with ")) else
                         _as_expression(source))
    except SyntaxError:
        return []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and not isinstance(node.slice, ast.Slice):
            out.append((ast.unparse(node.value), ast.unparse(node.slice)))
    return out


def _as_expression(source: str) -> str:
    """Make a compound statement header parseable on its own (`if x[i]:` -> `x[i]`)."""
    text = source.strip()
    m = re.match(r"^(?:if|elif|while)\s+(.*):\s*$", text)
    if m:
        return m.group(1)
    m = re.match(r"^for\s+(.*)\s+in\s+(.*):\s*$", text)
    if m:
        return f"{m.group(1)}, {m.group(2)}"
    if text.startswith(("else", "try", "finally")):
        return "None"
    if text.startswith(("return", "raise", "del ", "assert ", "yield")):
        return text
    if text.endswith(":"):
        return text[:-1]
    return text


def _find_none_assignment(path: str, line: int, names: Sequence[str]) -> tuple[str, int, str] | None:
    """The closest assignment above `line` to one of `names` (the variable holding None)."""
    lines = _read_lines(path)
    for name in names:
        pattern = re.compile(rf"^\s*{re.escape(name)}\s*(?::[^=]+)?=(?!=)\s*(.+)$")
        for ln in range(min(line - 1, len(lines)), 0, -1):
            m = pattern.match(lines[ln - 1])
            if m:
                return name, ln, m.group(1).strip()
    return None


_IN_PLACE = ("sort", "reverse", "append", "extend", "insert", "update", "add", "clear", "shuffle")


# -- test failures -------------------------------------------------------------------------------------

def explain_failure(failure: TestFailure) -> str:
    """A short Markdown explanation of one test failure."""
    parts: list[str] = []
    test_name = failure.test_id.split("::")[-1] or failure.test_id
    call, a = failure.call, failure.assertion
    # the call with its argument values, else (arguments that could not be re-evaluated) its source
    shown_call = (call.input or call.expr or None) if call is not None else None
    returned = failure.trace.return_value if failure.trace else None
    wrong = a.left if a is not None else returned
    # What happened, with the failing input and the wrong value.
    if failure.exc_type == "AssertionError" and shown_call:
        if a is not None and a.op == "==":
            parts.append(f"**Test `{test_name}` failed**: {_code(shown_call)} returned {_code(a.left)}, "
                         f"but the test expected {_code(a.right)}.")
        elif a is not None:
            parts.append(f"**Test `{test_name}` failed**: for {_code(shown_call)} the check "
                         f"{_code(f'{a.left} {a.op} {a.right}')} is false.")
        elif returned is not None:
            parts.append(f"**Test `{test_name}` failed**: {_code(shown_call)} returned {_code(returned)}, "
                         "which the test's assertion rejects.")
        else:
            parts.append(f"**Test `{test_name}` failed** on the input {_code(shown_call)}.")
    elif failure.exc_type == "AssertionError" and a is not None:
        parts.append(f"**Test `{test_name}` failed**: {_code(f'{a.left} {a.op} {a.right}')} is false "
                     f"(actual {_code(a.left)}, expected {_code(a.right)}).")
    else:
        msg = failure.message.strip().splitlines()[0] if failure.message.strip() else ""
        head = f"**{failure.exc_type}** in test `{test_name}`" + (f": {msg}" if msg else "")
        if shown_call:
            head += f" — while running {_code(shown_call)}"
        parts.append(head + ".")
    # Where.
    where = failure.code_frame
    top = failure.suspects[0] if failure.suspects else None
    if failure.code_frame is not None:
        f = failure.code_frame
        parts.append(f"Where: `{_short_path(f.path)}:{f.line}` in `{f.function}`: {_code(f.source)}.")
    elif top is not None:
        parts.append(f"Most likely cause: `{_short_path(top.path)}:{top.line}` "
                     f"{_code(_read_line(top.path, top.line))} — this line {top.reason}.")
        trace = failure.trace
        if trace is not None and trace.return_line and trace.return_line != top.line and trace.path:
            parts.append(f"The value was returned at `{_short_path(trace.path)}:{trace.return_line}` "
                         f"{_code(_read_line(trace.path, trace.return_line))}.")
    if where is None and failure.test_frame is not None and failure.exc_type == "AssertionError":
        t = failure.test_frame
        parts.append(f"The failing assertion is `{_short_path(t.path)}:{t.line}`.")
    # Why, per exception type.
    why = _why(failure, wrong)
    if why:
        parts.append(why)
    # Values.
    values = failure.code_locals or {}
    if values:
        shown = ", ".join(f"`{k} = {v}`" for k, v in list(values.items())[:6])
        parts.append(f"Values there: {shown}.")
    elif failure.test_locals and failure.exc_type != "AssertionError":
        shown = ", ".join(f"`{k} = {v}`" for k, v in list(failure.test_locals.items())[:4])
        parts.append(f"Test values: {shown}.")
    if failure.stdout_tail.strip():
        parts.append(f"Its last output: {_code(failure.stdout_tail.strip().splitlines()[-1], 80)}.")
    return "\n\n".join(parts)


def _why(failure: TestFailure, wrong: str | None) -> str | None:
    exc, msg = failure.exc_type, failure.message
    frame = failure.code_frame
    locals_ = failure.code_locals
    shapes = failure.code_shapes
    if exc == "AssertionError":
        a = failure.assertion
        bits: list[str] = []
        if a is not None:
            diff = _diff_values(a.left, a.right)
            if diff:
                bits.append(diff[0].upper() + diff[1:] + ".")
        if failure.suspects:
            s = failure.suspects[0]
            if frame is None and "returned" in s.reason and len(failure.suspects) > 1:
                nxt = failure.suspects[1]
                bits.append(f"The wrong value comes from `{_short_path(nxt.path)}:{nxt.line}` "
                            f"{_code(_read_line(nxt.path, nxt.line))} ({nxt.reason}) or the returned expression.")
        return " ".join(bits) or None
    if exc == "IndexError" and frame is not None:
        for container, index in _subscripts(frame.source):
            size = shapes.get(container, {}).get("len")
            value = locals_.get(index)
            if value is None:
                try:
                    value = repr(pyparse.literal_eval(index))
                except (ValueError, SyntaxError):
                    value = None
            if size is not None and value is not None:
                text = f"`{container}[{index}]` used index {value}, but `{container}` has {size} item(s)"
                text += f" (valid indices 0..{size - 1})" if size else " (it is empty)"
                iv = _literal(value)
                if isinstance(iv, int) and iv == size:
                    text += ": the index equals the length, a classic off-by-one — check the `range(...)` or loop bound"
                return text + "."
        return f"An index is outside the sequence ({msg}). Check the loop bounds and empty inputs."
    if exc == "KeyError":
        key = msg.strip()
        pools = [s.get("keys") or [] for s in shapes.values() if s.get("type") == "dict"]
        keys = [k for pool in pools for k in pool]
        near = difflib.get_close_matches(key, keys, n=3, cutoff=0.5)
        text = f"The key {_code(key)} is not in the dictionary"
        if near:
            text += f"; the closest existing keys are {', '.join(_code(k) for k in near)}"
        elif keys:
            text += f"; it has {', '.join(_code(k) for k in keys[:5])}{'…' if len(keys) > 5 else ''}"
        return text + ". Use `.get(key, default)` or check `key in d` if the key may be absent."
    if exc in ("TypeError", "AttributeError") and "NoneType" in msg and frame is not None:
        nones = [k for k, v in locals_.items() if v == "None"]
        used = [k for k in nones if re.search(rf"\b{re.escape(k)}\b", frame.source)]
        found = _find_none_assignment(frame.path, frame.line, used or nones)
        if found:
            name, ln, value = found
            text = f"`{name}` is None here; it was set at line {ln}: {_code(f'{name} = {value}')}"
            m = re.search(r"\.(\w+)\([^()]*\)\s*$", value)
            if m and m.group(1) in _IN_PLACE:
                text += f" — `.{m.group(1)}()` changes the object in place and returns None"
            elif re.search(r"\w+\(.*\)\s*$", value):
                text += " — that function returned None (a missing `return` on some path?)"
            return text + "."
        return "A value is None where an object was expected: a function probably returned None on some path."
    if exc == "ZeroDivisionError" and frame is not None:
        try:
            tree = pyparse.parse(_as_expression(frame.source))
            divisors = [ast.unparse(n.right) for n in ast.walk(tree)
                        if isinstance(n, ast.BinOp) and isinstance(n.op, (ast.Div, ast.FloorDiv, ast.Mod))]
        except SyntaxError:
            divisors = []
        for d in divisors:
            value = locals_.get(d)
            if value is not None or d.startswith("len("):
                return (f"The divisor {_code(d)} is {value if value is not None else 'zero'}"
                        " — e.g. an empty input; guard against it before dividing.")
        return "Something was divided by zero — often an empty input (`len(...) == 0`); guard before dividing."
    if exc == "RecursionError":
        fn = frame.function if frame else "the function"
        text = (f"`{fn}` called itself more than {failure.frames_total} times without stopping: the base case "
                "is never reached for this input, or the recursive call does not make the problem smaller")
        base = next((s for s in failure.suspects if "base case" in s.reason), None)
        if base:
            text += f" (check the base case at line {base.line}: {_code(_read_line(base.path, base.line))})"
        return text + "."
    if exc in ("AttributeError", "NameError"):
        missing = failure.missing_name
        if failure.similar_names:
            return (f"{_code(missing or '?')} does not exist; did you mean "
                    f"{' or '.join(_code(n) for n in failure.similar_names)}?")
        return "The name or attribute does not exist at that point; check spelling and the object's type."
    if exc == "TimeoutError" or "took longer" in msg:
        loop = next((s for s in failure.suspects if "loop" in s.reason), None)
        text = "The code did not finish in time: most likely an infinite loop"
        if loop:
            text += (f" — `{_short_path(loop.path)}:{loop.line}` {_code(_read_line(loop.path, loop.line))} "
                     f"{loop.reason}, so the loop condition may never become false")
        return text + "."
    if exc == "TypeError":
        return f"An operation got a value of the wrong type ({msg.strip().splitlines()[0] if msg.strip() else ''})."
    return None


# -- any diagnostic ---------------------------------------------------------------------------------------

_SYNTAX_HINTS = [
    (r"expected ':'", "a block statement (`if`, `for`, `def`, `class`, …) must end with a colon"),
    (r"was never closed|unexpected EOF|EOF while", "a bracket, parenthesis or brace is opened but never closed"),
    (r"unmatched|does not match", "a closing bracket has no matching opening bracket (or the wrong kind)"),
    (r"unterminated (triple-quoted )?string", "a string literal is missing its closing quote"),
    (r"indent", ("the indentation does not match the surrounding block (mixing tabs and spaces, or a "
                 "missing/extra indent after a block statement)")),
    (r"invalid syntax\. Perhaps you forgot a comma", "two expressions are next to each other: a comma is missing"),
    (r"cannot assign to|assignment", ("the left side of `=` is not something that can be assigned "
                                      "(did you mean `==`?)")),
    (r"invalid character", ("the line contains a character Python does not accept (a smart quote or "
                            "a non-ASCII symbol pasted from elsewhere?)")),
]

_RUFF_HINTS = {
    "F401": "the import is never used; remove it (or re-export it in `__all__`)",
    "F811": "a name is defined again before its first definition was used",
    "F821": "the name is not defined anywhere visible: a typo, or a missing import",
    "F841": "the variable is assigned but never read; remove it or use it",
    "E711": "compare with None using `is None` / `is not None`",
    "E712": "compare with True/False by truthiness (`if x:`) or `is`",
    "E721": "compare types with `isinstance()` or `is`",
    "E722": "a bare `except:` also catches KeyboardInterrupt and SystemExit; name the exception",
    "E731": "assigning a lambda to a name hides it in tracebacks; use `def`",
    "E741": "`l`, `O` and `I` are easily confused with digits",
    "B006": "a mutable default argument is shared between calls; default to None and create it inside",
    "B008": "a call in a default argument runs once, at definition time",
    "UP": "newer Python syntax is available for this",
    "SIM": "this code can be written more simply",
    "PLR": "a refactoring suggestion from pylint's rules",
    "E": "a pycodestyle style error",
    "W": "a pycodestyle style warning",
    "I": "imports are not sorted",
    "N": "a naming-convention issue",
    "S": "a possible security issue (bandit rule)",
}


def _validated_fix(diagnostic: Diagnostic) -> str | None:
    fixes = [f for f in diagnostic.fixes if f.applicability == "validated"]
    if not fixes:
        return None
    fix = fixes[0]
    text = f"**Validated fix** (the tests pass with it): {fix.title}"
    if fix.patch:
        lines = [ln for ln in fix.patch.splitlines() if ln.startswith(("+", "-")) and not ln.startswith(("+++", "---"))]
        if lines:
            text += "\n\n```diff\n" + "\n".join(lines[:12]) + "\n```"
    return text


def explain(diagnostic: Diagnostic) -> str:
    """A short Markdown explanation of any diagnostic (test failure, syntax error, lint finding,
    timeout, collection error), with the validated fix when there is one."""
    data = diagnostic.data or {}
    kind = data.get("kind")
    parts: list[str] = []
    if diagnostic.source == "pytest" and kind == "test_failure" and diagnostic.explanation:
        parts.append(diagnostic.explanation)
    elif kind == "timeout":
        what = f"The test `{data.get('test_id')}`" if data.get("test_id") else "The test run"
        parts.append(f"**Timeout**: {what} was still running after {data.get('timeout_s', 0):g} s and was "
                     "killed (with any processes it started).")
        parts.append("Likely cause: an infinite loop or a wait that never ends (a `while` whose condition "
                     "never becomes false, a recursion without a base case, blocking I/O, a sleep). "
                     f"Tests finished before it: {data.get('passed', 0)} passed, {data.get('failed', 0)} failed.")
    elif kind == "collect_error":
        msg = str(data.get("error_message") or diagnostic.message)
        parts.append(f"**The tests could not be collected**: {msg.splitlines()[0] if msg else ''}")
        if "ModuleNotFoundError" in msg or "ImportError" in msg:
            m = re.search(r"No module named '([^']+)'", msg)
            parts.append("Importing a test module or `conftest.py` failed"
                         + (f": the module `{m.group(1)}` is not installed in the workspace's interpreter or "
                            "is misspelled" if m else "") + ". No test in that folder ran.")
        else:
            parts.append("The error happened while pytest imported this file, so none of its tests ran.")
    elif diagnostic.source == "syntax" and kind == "UnicodeDecodeError":
        line = diagnostic.range.start.line + 1
        encoding = data.get("encoding") or "utf-8"
        parts.append(f"**The file is not valid {encoding}** (line {line}): {diagnostic.message}.")
        parts.append("Python refuses to import it. Save it as UTF-8, or declare its real encoding in a "
                     "`# -*- coding: … -*-` comment on the first or second line.")
    elif diagnostic.source == "syntax" or (diagnostic.code or "").startswith("syntax"):
        line = diagnostic.range.start.line + 1
        label = diagnostic.code if diagnostic.code and diagnostic.code != "SyntaxError" else "Syntax error"
        parts.append(f"**{label}** at line {line}, column {diagnostic.range.start.character + 1}: "
                     f"{diagnostic.message}.")
        hint = next((h for pat, h in _SYNTAX_HINTS if re.search(pat, diagnostic.message, re.IGNORECASE)), None)
        parts.append(f"Likely cause: {hint}." if hint else
                     "Python cannot parse the file from here on; the real mistake is often at the end of the "
                     "previous line (a missing bracket, colon, comma or quote).")
        if data.get("first") is False:
            parts.append("This may be a consequence of an earlier syntax error: fix the first one first.")
        elif data.get("first"):
            parts.append("Nothing in this file runs (and no test importing it) until this is fixed.")
    elif diagnostic.source == "ruff":
        code = diagnostic.code or ""
        hint = _RUFF_HINTS.get(code) or next((h for p, h in sorted(_RUFF_HINTS.items(), key=lambda kv: -len(kv[0]))
                                              if code.startswith(p) and not p[-1].isdigit()), None)
        parts.append(f"**ruff {code}**: {diagnostic.message}.")
        if hint:
            parts.append(f"Why it matters: {hint}.")
        if diagnostic.url:
            parts.append(f"Rule documentation: {diagnostic.url}")
        auto = [f for f in diagnostic.fixes if f.applicability in ("safe", "unsafe")]
        if auto and not any(f.applicability == "validated" for f in diagnostic.fixes):
            who = "ruff" if auto[0].source == "ruff" else "heedls"  # F821's import comes from heedls (imports.py)
            parts.append(f"{who} can fix this automatically ({auto[0].applicability} fix: {auto[0].title}).")
    elif diagnostic.explanation:
        parts.append(diagnostic.explanation)
    else:
        parts.append(f"**{diagnostic.code or diagnostic.source}**: {diagnostic.message}")
    fix = _validated_fix(diagnostic)
    if fix:
        parts.append(fix)
    return "\n\n".join(p for p in parts if p)


# -- optional LLM explanation --------------------------------------------------------------------------------

def _facts_for_llm(diagnostic: Diagnostic) -> dict[str, Any]:
    data = {k: v for k, v in (diagnostic.data or {}).items() if not k.startswith("_")}
    lines = _read_lines(diagnostic.path)
    line = diagnostic.range.start.line
    excerpt = "\n".join(f"{i + 1}: {lines[i]}" for i in range(max(0, line - 3), min(len(lines), line + 3)))
    return {
        "file": _short_path(diagnostic.path),
        "line": line + 1,
        "source": diagnostic.source,
        "code": diagnostic.code,
        "message": diagnostic.message,
        "facts": data,
        "code_excerpt": excerpt,
        "rule_based_explanation": explain(diagnostic),
    }


async def explain_with_llm(diagnostic: Diagnostic, chat: ChatProvider, *, deadline_s: float = 15.0) -> str:
    """An explanation written by a chat model from the same facts, marked "(AI-generated)". Falls
    back to the rule-based explanation (unmarked) when the provider fails or says nothing."""
    facts = _facts_for_llm(diagnostic)
    messages = [
        {"role": "system", "content": (
            "You explain Python errors to the developer who wrote the code. Use only the facts given: the "
            "error, the runtime values, the code excerpt. In at most 5 short sentences say what happened, "
            "where, with which values, the most likely cause, and how to fix it. Do not invent values.")},
        {"role": "user", "content": json.dumps(facts, indent=1, default=str)[:8000]},
    ]
    try:
        answers = await chat.chat(messages, max_tokens=300, temperature=0.0, n=1, deadline_s=deadline_s)
    except Exception as exc:  # noqa: BLE001 -- provider down or too slow: the rules still explain it
        log.warning("LLM explanation failed: %s", type(exc).__name__)
        answers = []
    text = next((a.strip() for a in answers if a and a.strip()), "")
    if not text:
        return str(facts["rule_based_explanation"])
    return f"{AI_MARK} {text}"
