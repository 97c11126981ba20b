"""`ast.parse`, one thread at a time.

CPython 3.11 keeps the AST constructor's recursion depth in interpreter-wide state. When the
collector runs a finaliser in the middle of a parse, another thread can parse in between, and
the first one then fails with "SystemError: AST constructor recursion depth mismatch"
(python/cpython#106905). The repair engine parses candidates in several threads at once, and
one such error ended a worker thread in a CI run; the server's explanations and test runs parse
in their own threads too. Parsing holds the interpreter lock almost throughout anyway, so one
lock costs nothing measurable.
"""

from __future__ import annotations

import ast
import threading
from typing import Any

# reentrant: a finaliser that runs inside a parse may parse too
_LOCK = threading.RLock()


def parse(source: str | bytes, filename: str = "<unknown>") -> ast.Module:
    """`ast.parse(source, filename)` in "exec" mode, serialised across threads."""
    with _LOCK:
        return ast.parse(source, filename)


def parse_expression(source: str) -> ast.expr:
    """The body of `ast.parse(source, mode="eval")`, serialised across threads."""
    with _LOCK:
        return ast.parse(source, mode="eval").body


def literal_eval(source: str) -> Any:
    """`ast.literal_eval(source)`, whose parse is serialised across threads."""
    return ast.literal_eval(parse_expression(source.lstrip(" \t")))
