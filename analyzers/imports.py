"""The import a name bound nowhere asks for, and where a new import goes.

Shared by the repair operator (`repair/operators.py`, a candidate the tests then prove) and the
quick fix on ruff's F821 "Undefined name" (`lint.py`): `math.sqrt(x)` without `import math`,
`Counter(xs)` without `from collections import Counter`. Only the standard library is known: a
third-party name may come from any of several packages.
"""

from __future__ import annotations

import ast
import sys

from heedls.analyzers.lines import split_lines

# Names of the standard library that code uses without their module's prefix, each from one module
# (where two modules have a name, as `sqrt` in math and cmath, the common one).
FROM_IMPORTS = {
    **dict.fromkeys(("Counter", "defaultdict", "deque", "OrderedDict", "namedtuple"), "collections"),
    **dict.fromkeys(("reduce", "lru_cache", "partial", "wraps", "cache", "cmp_to_key"), "functools"),
    **dict.fromkeys(("chain", "permutations", "combinations", "product", "accumulate", "groupby",
                     "zip_longest", "islice"), "itertools"),
    **dict.fromkeys(("heappush", "heappop", "heapify"), "heapq"),
    **dict.fromkeys(("bisect_left", "bisect_right", "insort"), "bisect"),
    **dict.fromkeys(("sqrt", "floor", "ceil", "gcd", "inf", "pi", "isclose", "log2", "factorial"), "math"),
    **dict.fromkeys(("dataclass", "field"), "dataclasses"),
    "Path": "pathlib", "Fraction": "fractions", "Decimal": "decimal", "deepcopy": "copy", "Enum": "enum",
}


def statement_for(name: str, as_module: bool) -> str | None:
    """`import name` when `name` is a standard module used as one (`name.attr`), `from m import
    name` for a known name of module `m`, else None."""
    if as_module and name in sys.stdlib_module_names and not name.startswith("_"):
        return f"import {name}"
    module = FROM_IMPORTS.get(name)
    return f"from {module} import {name}" if module else None


def insertion(text: str, tree: ast.Module, statement: str) -> tuple[int, str]:
    """(offset, text to insert there) that adds `statement` to the module `text` (parsed as `tree`),
    in the module's own line endings: right after its docstring and `__future__` imports; else
    before its first statement (beside its imports, or a blank line before other code, two before a
    def or class)."""
    lines = split_lines(text)
    newline = next((ln[len(ln.rstrip("\r\n")):] for ln in lines if ln.endswith(("\n", "\r"))), "\n")
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    body = tree.body
    i = 0
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        i = 1
    while i < len(body) and isinstance(body[i], ast.ImportFrom) and getattr(body[i], "module", None) == "__future__":
        i += 1
    if i > 0:
        after_line = starts[min(body[i - 1].end_lineno or body[i - 1].lineno, len(starts) - 1)]
        if text[after_line - 1] in "\r\n":
            return after_line, statement + newline
        return len(text), newline + statement  # it ends the file without a line break
    if not body:
        return len(text), (newline if text and not text.endswith(("\n", "\r")) else "") + statement + newline
    first = body[0]
    lineno = min([first.lineno, *(d.lineno for d in getattr(first, "decorator_list", []))])
    if isinstance(first, (ast.Import, ast.ImportFrom)):
        blank = 0
    elif isinstance(first, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        blank = 2
    else:
        blank = 1
    # a byte-order mark stays the file's first character
    return max(starts[lineno - 1], 1 if text.startswith("\ufeff") else 0), statement + newline * (1 + blank)
