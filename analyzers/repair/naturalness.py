"""How natural a plausible fix reads: what it costs besides its size.

Several fixes can make the tests pass. The ones that overfit the tests often leave code a linter
would flag: a variable that is computed and then never read (`coeff` after `coeff * x` → `x * x`),
an expression that is constant by construction (`y - y`, `x == x`), `and` and `or` mixed without
parentheses, an `if True:`. (A duplicated entry of a literal is not one: `(1, 3, 3, 5)` for
`(1, 2, 3, 5)` is how a stray entry is taken out when deleting it is no operator.) `introduced_smells` counts
the findings a fix adds; the engine ranks fixes that add none first, then by size.
"""

from __future__ import annotations

import ast
from collections import Counter

_SELF_OPS = (ast.Sub, ast.Div, ast.FloorDiv, ast.Mod, ast.BitXor)


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


def _parenthesised(text: str, lines: list[int], node: ast.expr) -> bool:
    start = lines[node.lineno - 1] + node.col_offset
    end = lines[(node.end_lineno or node.lineno) - 1] + (node.end_col_offset or 0)
    return text[:start].rstrip().endswith("(") and text[end:].lstrip().startswith(")")


def smells(text: str) -> Counter[str]:
    """Lint-like findings of a module's text (empty when it does not parse)."""
    try:
        tree = ast.parse(text)
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
        elif isinstance(node, ast.BinOp) and isinstance(node.op, _SELF_OPS):
            if ast.dump(node.left) == ast.dump(node.right):
                found["self-operation"] += 1
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
