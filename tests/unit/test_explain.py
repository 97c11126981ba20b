"""Specifications of the rule-based explanations (analyzers/explain.py), one rule per test."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from heedls.analyzers.explain import AI_MARK, explain, explain_failure, explain_with_llm
from heedls.analyzers.model import Diagnostic, Fix, Range, TextEdit
from heedls.analyzers.testrun import Assertion, FailingCall, Frame, Suspect, TestFailure


def _module(tmp_path: Path, text: str, name: str = "mod.py") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _failure(**kw: Any) -> TestFailure:
    base: dict[str, Any] = {"test_id": "test_mod.py::test_it", "path": "/w/test_mod.py", "line": 3,
                            "exc_type": "AssertionError", "message": ""}
    base.update(kw)
    return TestFailure(**base)


def test_assertion_names_the_failing_input_the_wrong_value_and_the_diff(tmp_path: Path) -> None:
    mod = _module(tmp_path, "def f(n):\n    out = [1]\n    out.append(n - 1)\n    return out\n")
    failure = _failure(
        assertion=Assertion("==", "[1, 2]", "[1, 3]", "list", "list", 2, 2),
        call=FailingCall("f(3)", "f", str(mod), 1, ["3"], "f(3)"),
        suspects=[Suspect(str(mod), 4, 0.9, "returned [1, 2]"), Suspect(str(mod), 3, 0.76, "computes `out`")],
    )
    text = explain_failure(failure)
    assert "`f(3)`" in text and "`[1, 2]`" in text and "`[1, 3]`" in text
    assert "item 1 is 2 but should be 3" in text.lower()
    assert "mod.py:4" in text  # where: the most likely cause
    assert "mod.py:3" in text and "out.append(n - 1)" in text  # where the wrong value came from


def test_off_by_one_in_a_result_points_at_range_bounds() -> None:
    text = explain_failure(_failure(assertion=Assertion("==", "4", "5", "int", "int"),
                                    call=FailingCall("count(5)", "count", "/w/m.py", 1, ["5"], "count(5)")))
    assert "off by one" in text and "range(" in text
    lists = explain_failure(_failure(assertion=Assertion("==", "['a']", "['a', 'ab']", "list", "list", 1, 2)))
    assert "off by one item" in lists and "missing 'ab'" in lists


def test_index_error_gives_the_index_and_the_length(tmp_path: Path) -> None:
    mod = _module(tmp_path, "def last(arr, i):\n    return arr[i]\n")
    failure = _failure(
        exc_type="IndexError", message="list index out of range",
        code_frame=Frame(str(mod), 2, "last", "return arr[i]", "code"),
        code_locals={"arr": "[1, 2, 3]", "i": "3"},
        code_shapes={"arr": {"len": 3, "type": "list"}},
    )
    text = explain_failure(failure)
    assert "index 3" in text and "3 item(s)" in text and "0..2" in text
    assert "off-by-one" in text  # the index equals the length
    assert "`arr = [1, 2, 3]`" in text  # the runtime values


def test_key_error_lists_the_nearest_existing_keys() -> None:
    failure = _failure(
        exc_type="KeyError", message="'colour'",
        code_frame=Frame("/w/m.py", 2, "get", "return d['colour']", "code"),
        code_locals={"d": "{'color': 1, 'size': 2}"},
        code_shapes={"d": {"len": 2, "type": "dict", "keys": ["'size'", "'color'"]}},
    )
    text = explain_failure(failure)
    assert "closest existing keys are `'color'`" in text
    assert ".get(" in text


def test_none_type_error_names_the_assignment_that_produced_none(tmp_path: Path) -> None:
    mod = _module(tmp_path, "def smallest(items):\n    data = items.sort()\n    return data[0]\n")
    failure = _failure(
        exc_type="TypeError", message="'NoneType' object is not subscriptable",
        code_frame=Frame(str(mod), 3, "smallest", "return data[0]", "code"),
        code_locals={"items": "[1, 2]", "data": "None"},
    )
    text = explain_failure(failure)
    assert "`data` is None here; it was set at line 2" in text
    assert "`.sort()` changes the object in place and returns None" in text


def test_none_from_a_function_without_return(tmp_path: Path) -> None:
    mod = _module(tmp_path, "def total(xs):\n    s = compute(xs)\n    return s + 1\n")
    failure = _failure(
        exc_type="TypeError", message="unsupported operand type(s) for +: 'NoneType' and 'int'",
        code_frame=Frame(str(mod), 3, "total", "return s + 1", "code"), code_locals={"s": "None", "xs": "[]"},
    )
    assert "missing `return`" in explain_failure(failure)


def test_zero_division_names_the_divisor() -> None:
    failure = _failure(exc_type="ZeroDivisionError", message="division by zero",
                       code_frame=Frame("/w/m.py", 2, "mean", "return total / count", "code"),
                       code_locals={"total": "0", "count": "0"})
    text = explain_failure(failure)
    assert "`count` is 0" in text and "empty input" in text
    by_len = explain_failure(_failure(exc_type="ZeroDivisionError", message="division by zero",
                                      code_frame=Frame("/w/m.py", 2, "mean", "return sum(xs) / len(xs)", "code")))
    assert "`len(xs)`" in by_len


def test_recursion_error_points_at_the_base_case(tmp_path: Path) -> None:
    mod = _module(tmp_path, "def gcd(a, b):\n    if b == 0:\n        return a\n    return gcd(a % b, b)\n")
    failure = _failure(exc_type="RecursionError", message="maximum recursion depth exceeded",
                       frames_total=990, code_frame=Frame(str(mod), 4, "gcd", "return gcd(a % b, b)", "code"),
                       suspects=[Suspect(str(mod), 4, 0.9, "is the recursive call"),
                                 Suspect(str(mod), 2, 0.8, "is the base case that should stop the recursion")])
    text = explain_failure(failure)
    assert "`gcd` called itself more than 990 times" in text
    assert "base case at line 2" in text and "if b == 0:" in text


def test_attribute_error_suggests_similar_names() -> None:
    failure = _failure(exc_type="AttributeError", message="'Node' object has no attribute 'sucessors'",
                       code_frame=Frame("/w/m.py", 5, "walk", "for n in node.sucessors:", "code"),
                       missing_name="sucessors", similar_names=["successors"])
    assert "did you mean `successors`?" in explain_failure(failure)


def test_timeout_names_the_loop_that_never_ends(tmp_path: Path) -> None:
    mod = _module(tmp_path, "def bitcount(n):\n    count = 0\n    while n:\n        n ^= n - 1\n        count += 1\n")
    failure = _failure(exc_type="TimeoutError", message="test case took longer than 3 s (infinite loop?)",
                       code_frame=Frame(str(mod), 3, "bitcount", "while n:", "code"),
                       call=FailingCall("bitcount(*input_data)", "bitcount", str(mod), 1, ["127"], "bitcount(127)"),
                       suspects=[Suspect(str(mod), 4, 0.95, "updates the loop's condition variables `n`")])
    text = explain_failure(failure)
    assert "infinite loop" in text and "n ^= n - 1" in text and "`bitcount(127)`" in text


def test_timeout_diagnostic_says_the_run_was_killed() -> None:
    diag = Diagnostic("/w/test_x.py", Range.of(3, 0, 3, 10), "error", "pytest", "timeout",
                      "test test_x.py::test_hang was killed after 2 s (time limit)",
                      data={"kind": "timeout", "timeout_s": 2.0, "test_id": "test_x.py::test_hang",
                            "passed": 1, "failed": 0})
    text = explain(diag)
    assert "killed" in text and "2 s" in text and "infinite loop" in text


def test_collection_error_explains_the_missing_module() -> None:
    diag = Diagnostic("/w/conftest.py", Range.of(0, 0, 0, 20), "error", "pytest", "ModuleNotFoundError",
                      "tests could not be collected: ModuleNotFoundError: No module named 'nosuchthing'",
                      data={"kind": "collect_error",
                            "error_message": "ModuleNotFoundError: No module named 'nosuchthing'"})
    text = explain(diag)
    assert "could not be collected" in text and "`nosuchthing` is not installed" in text


@pytest.mark.parametrize(("message", "expected"), [
    ("expected ':'", "colon"),
    ("'(' was never closed", "never closed"),
    ("unterminated string literal (detected at line 1)", "closing quote"),
    ("unexpected indent", "indentation"),
    ("something odd", "previous line"),
])
def test_syntax_errors_get_a_likely_cause(message: str, expected: str) -> None:
    diag = Diagnostic("/w/m.py", Range.of(1, 4, 1, 5), "error", "syntax", "SyntaxError", message)
    text = explain(diag)
    assert "line 2, column 5" in text and expected in text


def test_syntax_follow_up_errors_and_encoding_errors() -> None:
    later = Diagnostic("/w/m.py", Range.of(5, 0, 5, 1), "error", "syntax", "SyntaxError", "invalid syntax",
                       data={"first": False})
    assert "consequence of an earlier syntax error" in explain(later)
    first = Diagnostic("/w/m.py", Range.of(1, 0, 1, 1), "error", "syntax", "IndentationError", "unexpected indent",
                       data={"first": True})
    text = explain(first)
    assert text.startswith("**IndentationError** at line 2") and "Nothing in this file runs" in text
    enc = Diagnostic("/w/m.py", Range.of(0, 9, 0, 10), "error", "syntax", "SyntaxError",
                     "'utf-8' codec can't decode byte 0xe9", data={"kind": "UnicodeDecodeError", "encoding": "utf-8"})
    assert "not valid utf-8" in explain(enc) and "coding" in explain(enc)


def test_ruff_rules_are_explained_with_their_link() -> None:
    diag = Diagnostic("/w/m.py", Range.of(0, 0, 0, 9), "warning", "ruff", "F401", "`os` imported but unused",
                      url="https://docs.astral.sh/ruff/rules/unused-import")
    text = explain(diag)
    assert "never used" in text and "https://docs.astral.sh/ruff/rules/unused-import" in text
    generic = explain(Diagnostic("/w/m.py", Range.of(0, 0, 0, 9), "warning", "ruff", "SIM108", "Use ternary"))
    assert "more simply" in generic


def test_only_validated_fixes_are_presented_as_fixes() -> None:
    edit = TextEdit("/w/m.py", Range.of(4, 0, 4, 10), "n &= n - 1")
    base = Diagnostic("/w/m.py", Range.of(4, 0, 4, 10), "error", "pytest", "AssertionError", "wrong",
                      explanation="**Test failed**", data={"kind": "test_failure"})
    base.fixes = [Fix("Replace ^= with &=", (edit,), "hint", "repair")]
    assert "Validated fix" not in explain(base)
    base.fixes = [Fix("Replace ^= with &=", (edit,), "validated", "repair",
                      patch="--- a/m.py\n+++ b/m.py\n@@ -5 +5 @@\n-        n ^= n - 1\n+        n &= n - 1\n")]
    text = explain(base)
    assert text.startswith("**Test failed**")
    assert "**Validated fix** (the tests pass with it): Replace ^= with &=" in text
    assert "-        n ^= n - 1" in text and "+        n &= n - 1" in text


class _FakeChat:
    def __init__(self, answer: str | Exception) -> None:
        self.answer = answer
        self.calls: list[dict[str, Any]] = []

    async def chat(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float, n: int,
                   deadline_s: float) -> list[str]:
        self.calls.append({"messages": messages, "max_tokens": max_tokens, "temperature": temperature, "n": n,
                           "deadline_s": deadline_s})
        if isinstance(self.answer, Exception):
            raise self.answer
        return [self.answer]


def test_llm_explanation_is_grounded_and_marked(tmp_path: Path) -> None:
    mod = _module(tmp_path, "def f(x):\n    return x + 2\n")
    diag = Diagnostic(str(mod), Range.of(1, 4, 1, 16), "error", "pytest", "AssertionError",
                      "f(1) returned 3, expected 2", explanation="rule text",
                      data={"kind": "test_failure", "input": "f(1)", "left": "3", "right": "2"})
    chat = _FakeChat("f adds 2 instead of 1.")
    text = asyncio.run(explain_with_llm(diag, chat))
    assert text == f"{AI_MARK} f adds 2 instead of 1."
    prompt = chat.calls[0]["messages"][-1]["content"]
    assert '"input": "f(1)"' in prompt and "return x + 2" in prompt and "rule text" in prompt
    assert chat.calls[0]["temperature"] == 0.0


def test_llm_failure_falls_back_to_the_unmarked_rules(tmp_path: Path) -> None:
    diag = Diagnostic("/w/m.py", Range.of(0, 0, 0, 1), "error", "syntax", "SyntaxError", "expected ':'")
    text = asyncio.run(explain_with_llm(diag, _FakeChat(TimeoutError())))
    assert AI_MARK not in text and "colon" in text
    empty = asyncio.run(explain_with_llm(diag, _FakeChat("   ")))
    assert AI_MARK not in empty


def test_an_automatic_fix_is_credited_to_whoever_offers_it() -> None:
    """ruff has no fix for F821; the `Add import` one is heedls's (imports.py), and the explanation
    said "ruff can fix this automatically"."""
    edit = TextEdit("/w/geo.py", Range.of(0, 0, 0, 0), "import math\n")
    ours = Diagnostic(path="/w/geo.py", range=Range.of(1, 11, 1, 15), severity="error", source="ruff", code="F821",
                      message="Undefined name `math`",
                      fixes=[Fix(title="Add `import math`", edits=(edit,), applicability="unsafe", source="heedls")])
    theirs = Diagnostic(path="/w/geo.py", range=Range.of(0, 0, 0, 9), severity="warning", source="ruff", code="F401",
                        message="`os` imported but unused",
                        fixes=[Fix(title="Remove unused import", edits=(edit,), applicability="safe", source="ruff")])
    assert "heedls can fix this automatically (unsafe fix: Add `import math`)." in explain(ours)
    assert "ruff can fix this automatically (safe fix: Remove unused import)." in explain(theirs)
