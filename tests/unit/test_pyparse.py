"""`heedls.analyzers.pyparse.parse`: threads never see each other's AST construction."""

from __future__ import annotations

import ast
import gc
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from heedls.analyzers.pyparse import parse

SOURCE = "def f(a, b):\n    return [x * (a + b) for x in range(a) if x % 2]\n" * 200


def _parse_while_another_thread_parses(parser: Callable[[str], ast.AST]) -> list[BaseException]:
    """Thread A parses; a finaliser that the collector runs in the middle of A's parse lets thread B
    parse and waits (briefly) for it: how a repair worker thread met another one in CI."""
    errors: list[BaseException] = []
    go, done, armed = threading.Event(), threading.Event(), [True]

    class Finalised:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the collector frees it, at a moment it chooses

        def __del__(self) -> None:
            if armed[0] and threading.current_thread().name == "A":
                armed[0] = False
                go.set()
                done.wait(0.5)  # with the lock B cannot parse now; A goes on after the wait

    def a() -> None:
        Finalised()
        try:
            parser(SOURCE)
        except BaseException as exc:  # noqa: BLE001 (what the test is about)
            errors.append(exc)

    def b() -> None:
        go.wait(5)
        try:
            parser(SOURCE)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        done.set()

    threshold = gc.get_threshold()
    gc.set_threshold(1)  # collect on (nearly) every allocation: inside A's parse for sure
    try:
        threads = [threading.Thread(target=a, name="A"), threading.Thread(target=b, name="B")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    finally:
        gc.set_threshold(*threshold)
    assert not armed[0], "the collector never ran the finaliser inside the parse"
    return errors


def test_a_parse_interrupted_by_a_finaliser_is_not_broken_by_another_threads_parse() -> None:
    assert _parse_while_another_thread_parses(parse) == []


def test_the_bare_ast_parse_is_what_breaks_there() -> None:
    """The reason for the module (CPython 3.11: python/cpython#106905): the same with ast.parse."""
    errors = _parse_while_another_thread_parses(ast.parse)
    if not errors:
        pytest.skip("this interpreter keeps the AST constructor's depth per thread")
    assert isinstance(errors[0], SystemError) and "recursion depth mismatch" in str(errors[0])


def test_literal_eval_and_expressions_are_serialised_too() -> None:
    """`ast.literal_eval` parses as well: the explanations read literals in the server's threads."""
    from heedls.analyzers.pyparse import literal_eval, parse_expression

    expression = "[" + ", ".join(f"({i}, 'x{i}')" for i in range(300)) + "]"
    assert _parse_while_another_thread_parses(lambda _source: parse_expression(expression)) == []
    assert literal_eval("  {'a': (1, 2.5, None)}") == {"a": (1, 2.5, None)}


def test_no_module_of_the_server_process_parses_without_the_lock() -> None:
    """One unserialised `ast.parse` is enough to break a locked one in another thread (the repair's
    tidy-up did it in a CI run). The runner and the pytest plugin run in the tests' own processes."""
    import heedls

    package = Path(heedls.__file__).resolve().parent.parent
    own_processes = {"pyparse.py", "heedls_repair_runner.py", "heedls_repair_profile.py", "heedls_pytest_plugin.py"}
    offenders = []
    for folder in ("analyzers", "server", "heedls"):
        for path in sorted((package / folder).rglob("*.py")):
            if path.name in own_processes:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and isinstance(node.func.value, ast.Name) and node.func.value.id == "ast"
                        and node.func.attr in ("parse", "literal_eval")):
                    offenders.append(f"{path.relative_to(package)}:{node.lineno} ast.{node.func.attr}")
    assert offenders == []
