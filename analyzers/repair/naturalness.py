"""How natural a plausible fix reads: what it costs besides its size.

Several fixes can make the tests pass. The ones that overfit the tests often leave code a linter
would flag: a variable that is computed and then never read (`coeff` after `coeff * x` → `x * x`),
an expression that is constant by construction (`y - y`, `x == x`), an operation undone at once
(`(n + 1) - 1`: what an off-by-one applied on top of another leaves), one name passed twice
(`hashkey(args, *args)`: a wrong-variable edit that made the tests pass), `and` and `or` mixed without
parentheses, an `if True:`, a function that returns a value on some paths and falls off its end on
another (ruff's RET503: the caller gets an implicit `None`, as after `while True:` → `while node:`).
(A duplicated entry of a literal is not one: `(1, 3, 3, 5)` for
`(1, 2, 3, 5)` is how a stray entry is taken out when deleting it is no operator.) `introduced_smells` counts
the findings a fix adds; the engine ranks fixes that add none first, then by size.
"""

from __future__ import annotations

import ast
from collections import Counter

from heedls.analyzers import pyparse

_SELF_OPS = (ast.Sub, ast.Div, ast.FloorDiv, ast.Mod, ast.BitXor)
_INVERSE = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div}  # (x op k) inverse k is x


def _undone(node: ast.BinOp) -> bool:
    """`(x + k) - k`, `(x - k) + k`, `(x * k) / k`: the outer operation undoes the inner one."""
    inner = node.left
    return (isinstance(inner, ast.BinOp) and _INVERSE.get(type(inner.op)) is type(node.op)
            and ast.dump(inner.right) == ast.dump(node.right))


def _unread_names(fn: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> set[str]:
    bound: set[str] = set()
    read: set[str] = set()
    args = fn.args
    for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
        if a is not None:
            bound.add(a.arg)
    for node in ast.walk(fn):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            read.update(node.names)
    return {n for n in bound - read if not n.startswith("_")}


def _breaks(body: list[ast.stmt]) -> bool:
    """Does a `break` in these statements leave the loop they sit in (not one nested in them)?"""
    for stmt in body:
        if isinstance(stmt, ast.Break):
            return True
        if isinstance(stmt, (ast.For, ast.AsyncFor, ast.While)):
            if _breaks(stmt.orelse):
                return True
            continue
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            inner = getattr(stmt, field, None)
            if isinstance(inner, list):
                blocks = [getattr(x, "body", []) for x in inner] if field in ("handlers", "cases") else [inner]
                if any(_breaks(b) for b in blocks):
                    return True
    return False


def _ends(body: list[ast.stmt]) -> bool:
    """Can control not run past the end of these statements (a return, a raise, a loop that
    never ends, an if/else or try whose every branch ends)? Conservative: when unsure, it can."""
    for stmt in body:
        if isinstance(stmt, (ast.Return, ast.Raise)):
            return True
        if isinstance(stmt, ast.If) and stmt.orelse and _ends(stmt.body) and _ends(stmt.orelse):
            return True
        if (isinstance(stmt, ast.While) and isinstance(stmt.test, ast.Constant) and stmt.test.value
                and not _breaks(stmt.body)):
            return True
        if isinstance(stmt, (ast.With, ast.AsyncWith)) and _ends(stmt.body):
            return True
        if isinstance(stmt, ast.Try):
            if _ends(stmt.finalbody):
                return True
            if (_ends(stmt.body) or _ends(stmt.orelse)) and all(_ends(h.body) for h in stmt.handlers):
                return True
    return False


def _falls_off_with_value(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """RET503: the function returns a value somewhere, yet its end can be reached (an implicit
    `return None`). Generators are left alone."""
    returns_value = False
    todo: list[ast.AST] = list(fn.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        if isinstance(node, (ast.Yield, ast.YieldFrom)):
            return False
        if isinstance(node, ast.Return) and node.value is not None and not (
                isinstance(node.value, ast.Constant) and node.value.value is None):
            returns_value = True
        todo.extend(ast.iter_child_nodes(node))
    return returns_value and not _ends(fn.body)


def _parenthesised(text: str, lines: list[int], node: ast.expr) -> bool:
    start = lines[node.lineno - 1] + node.col_offset
    end = lines[(node.end_lineno or node.lineno) - 1] + (node.end_col_offset or 0)
    return text[:start].rstrip().endswith("(") and text[end:].lstrip().startswith(")")


def _repeated_argument(node: ast.Call) -> bool:
    """`f(x, x)`, `f(args, *args)`: one plain name in two positional arguments."""
    names = [(a.value if isinstance(a, ast.Starred) else a) for a in node.args]
    seen = [n.id for n in names if isinstance(n, ast.Name)]
    return len(seen) != len(set(seen))


def smells(text: str) -> Counter[str]:
    """Lint-like findings of a module's text (empty when it does not parse)."""
    try:
        tree = pyparse.parse(text)
    except (SyntaxError, ValueError):
        return Counter()
    found: Counter[str] = Counter()
    offsets = [0]
    for line in text.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    ascii_only = text.isascii()  # col_offset is in UTF-8 bytes: the parenthesis check needs ASCII lines
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for name in _unread_names(node):
                found[f"unread:{getattr(node, 'name', 'lambda')}:{name}"] += 1
            if not isinstance(node, ast.Lambda) and _falls_off_with_value(node):
                found[f"implicit-return:{node.name}"] += 1
        elif isinstance(node, ast.BinOp) and isinstance(node.op, _SELF_OPS) and ast.dump(node.left) == ast.dump(node.right):
            found["self-operation"] += 1
        elif isinstance(node, ast.BinOp) and _undone(node):
            found["undone-operation"] += 1
        elif isinstance(node, ast.Call) and _repeated_argument(node):
            found["repeated-argument"] += 1
        elif isinstance(node, ast.Compare) and len(node.ops) == 1:
            if ast.dump(node.left) == ast.dump(node.comparators[0]):
                found["self-comparison"] += 1
        elif isinstance(node, ast.BoolOp) and ascii_only:
            for value in node.values:
                if (isinstance(value, ast.BoolOp) and type(value.op) is not type(node.op)
                        and not _parenthesised(text, offsets, value)):
                    found["mixed-and-or"] += 1
        elif (isinstance(node, (ast.If, ast.While, ast.IfExp)) and isinstance(node.test, ast.Constant)
              and not (isinstance(node, ast.While) and node.test.value is True)):  # `while True:` is an idiom
            found["constant-condition"] += 1
    return found


def introduced_smells(old: str | Counter[str], new: str) -> int:
    """How many findings `new` has that `old` did not have (`old`: a text, or its `smells` worked
    out once for all the fixes of one module)."""
    before = smells(old) if isinstance(old, str) else old
    return sum((smells(new) - before).values())
