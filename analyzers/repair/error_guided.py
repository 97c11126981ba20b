"""Candidates the interpreter's own error asks for, at the line of the module that raised it.

A TypeError, AttributeError, KeyError or UnboundLocalError says what kind of change would remove it:
`Strings must be encoded before hashing` → `x.encode()`, `can only concatenate str (not "int") to
str` → `str(n)`, `'int' object is not iterable` → `range(n)`, `'list' object has no attribute
'push'` → an attribute `list` has, `'dict' object is not callable` → `d[k]`. The mutation operators
reach such fixes only by chance (or not at all); these are few and go first. The tests still decide.
"""

from __future__ import annotations

import ast
import builtins
import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from heedls.analyzers import pyparse
from heedls.analyzers.repair.edits import Candidate, Span, gap_operator
from heedls.analyzers.repair.operators import Generator, first_statement, paren

OPERATOR = "error-guided"


@dataclass(frozen=True)
class Raised:
    """An exception as a failing test saw it, at the deepest frame in the module under repair."""

    type: str
    message: str
    line: int


def raised_in(failures: Iterable[dict[str, Any] | None], rel_module: str) -> list[Raised]:
    """The distinct (type, message, line) of the failures whose traceback passes through the module."""
    found: dict[Raised, None] = {}
    for failure in failures:
        if not failure:
            continue
        frames = [f for f in failure.get("frames") or [] if f.get("path") == rel_module and isinstance(f.get("line"), int)]
        if frames:
            found[Raised(str(failure.get("type") or ""), str(failure.get("message") or ""), frames[-1]["line"])] = None
    return list(found)


class _Rules:
    def __init__(self, text: str, raised: list[Raised]) -> None:
        self.gen = Generator(text, pyparse.parse(text), {r.line: 1.0 for r in raised})

    def at(self, line: int) -> list[ast.AST]:
        """The expressions (and simple statements) the raising line is part of, outermost first;
        a compound statement only by its header (`for x in n:`), not by its body."""
        out = []
        for node in ast.walk(self.gen.tree):
            start, end = getattr(node, "lineno", None), getattr(node, "end_lineno", None)
            if start is None or end is None or not start <= line <= end:
                continue
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.If, ast.For,
                                 ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Try, ast.Module)):
                continue
            out.append(node)
        return out

    def variables(self, node: ast.AST) -> list[str]:
        fn = self.gen.function_of(node)
        return self.gen.scope_names(fn)[0] if fn is not None else []

    def replace(self, node: ast.AST, new: str, description: str, prior: float) -> None:
        self.gen.replace(node, new, OPERATOR, description, prior)

    def elsewhere(self, spans: list[Span], description: str, line: int, prior: float) -> None:
        """An edit away from the raising line (the cause it names), ranked as if on it: the
        candidate says where the edit is."""
        self.gen.out.append(Candidate(tuple(spans), OPERATOR, description, line, prior, prior))

    # -- the rules, each for one family of messages ------------------------------------------------
    def bytes_needed(self, nodes: list[ast.AST], err: Raised) -> None:
        for call in (n for n in nodes if isinstance(n, ast.Call)):
            for arg in call.args:
                if isinstance(arg, ast.Starred):
                    continue
                texts = [paren(self.gen.seg(arg), arg)]
                # a quoted variable name where the variable was meant (`md5('text')`)
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value in self.variables(arg):
                    texts.append(arg.value)
                for text in texts:
                    self.replace(arg, f"{text}.encode()", f"encode `{text}` (the call needs bytes)", 0.6)

    def str_needed(self, nodes: list[ast.AST], err: Raised) -> None:
        for node in nodes:
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
                for side in (node.left, node.right):
                    if not (isinstance(side, ast.JoinedStr) or isinstance(side, ast.Constant) and isinstance(side.value, str)):
                        self.replace(side, f"str({self.gen.seg(side)})", f"`str()` of `{self.gen.seg(side)}`", 0.55)
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "join"
                    and len(node.args) == 1):
                arg = node.args[0]
                self.replace(arg, f"map(str, {self.gen.seg(arg)})", "join the items as strings", 0.55)

    def iterable_needed(self, nodes: list[ast.AST], err: Raised) -> None:
        iters: list[ast.AST] = []
        for node in ast.walk(self.gen.tree):
            if isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)) and node.iter.lineno == err.line:
                iters.append(node.iter)
        for node in nodes:
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in (
                    "list", "tuple", "set", "sorted", "sum", "max", "min", "enumerate", "zip", "reversed", "len"):
                iters.extend(a for a in node.args if not isinstance(a, ast.Starred))
        for it in dict.fromkeys(iters):
            text = self.gen.seg(it)
            self.replace(it, f"range({text})", f"iterate over `range({text})`", 0.55)
            if re.search(r"'(int|float)' object", err.message) and "len(" not in text:
                self.replace(it, f"str({text})", f"iterate over the digits of `{text}`", 0.3)

    def integer_needed(self, nodes: list[ast.AST], err: Raised) -> None:
        for node in nodes:
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
                loc = gap_operator(self.gen.text, self.gen.sm.node_span(node.left)[1], self.gen.sm.node_span(node.right)[0])
                if loc is not None:
                    self.gen.add([Span(loc[0], loc[1], "//")], OPERATOR, "`/` → `//` (an integer is needed)", node.lineno, 0.6)
            index: list[ast.AST] = []
            if isinstance(node, ast.Subscript) and not isinstance(node.slice, (ast.Slice, ast.Tuple)):
                index.append(node.slice)
            if isinstance(node, ast.Slice):
                index.extend(b for b in (node.lower, node.upper, node.step) if b is not None)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
                index.extend(node.args)
            for ix in index:
                if not (isinstance(ix, ast.Constant) or isinstance(ix, ast.Call) and isinstance(ix.func, ast.Name) and ix.func.id == "int"):
                    self.replace(ix, f"int({self.gen.seg(ix)})", f"`int()` of `{self.gen.seg(ix)}`", 0.45)

    def no_attribute(self, nodes: list[ast.AST], err: Raised) -> None:
        found = re.search(r"'(\w+)' object has no attribute '(\w+)'", err.message)
        if found is None:
            return
        type_name, attr = found.groups()
        kind = getattr(builtins, type_name, None)
        names = [n for n in dir(kind) if not n.startswith("_")] if isinstance(kind, type) else self.gen.attr_names
        for node in nodes:
            if not (isinstance(node, ast.Attribute) and node.attr == attr):
                continue
            end = self.gen.sm.node_span(node)[1]
            start = end - len(attr)
            if self.gen.text[start:end] != attr:
                continue
            for rank, other in enumerate(difflib.get_close_matches(attr, names, n=3, cutoff=0.6)):
                self.gen.add([Span(start, end, other)], OPERATOR, f"`.{attr}` → `.{other}` (`{type_name}` has it)",
                             node.lineno, 0.6 - 0.1 * rank)

    def not_callable(self, nodes: list[ast.AST], err: Raised) -> None:
        for node in nodes:
            if isinstance(node, ast.Call) and len(node.args) == 1 and not node.keywords and not isinstance(node.args[0], ast.Starred):
                func = self.gen.seg(node.func)
                self.replace(node, f"{paren(func, node.func)}[{self.gen.seg(node.args[0])}]", f"index `{func}` instead of calling it", 0.55)

    def not_subscriptable(self, nodes: list[ast.AST], err: Raised) -> None:
        for node in nodes:
            if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and not isinstance(node.slice, ast.Slice):
                value = self.gen.seg(node.value)
                self.replace(node, f"{paren(value, node.value)}({self.gen.seg(node.slice)})", f"call `{value}` instead of indexing it", 0.5)

    def no_len(self, nodes: list[ast.AST], err: Raised) -> None:
        for node in nodes:
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "len" and len(node.args) == 1:
                arg = self.gen.seg(node.args[0])
                self.replace(node.args[0], f"str({arg})", f"the number of digits of `{arg}`", 0.45)

    def missing_key(self, nodes: list[ast.AST], err: Raised) -> None:
        for node in nodes:
            if (isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load)
                    and not isinstance(node.slice, (ast.Slice, ast.Tuple))):
                value, key = self.gen.seg(node.value), self.gen.seg(node.slice)
                for default, prior in (("0", 0.4), ("None", 0.3)):
                    self.replace(node, f"{paren(value, node.value)}.get({key}, {default})", f"`{value}.get({key}, {default})`", prior)

    def mixed_types(self, nodes: list[ast.AST], err: Raised) -> None:
        """`'<' not supported between 'str' and 'int'`, `unsupported operand type(s) for +: 'int'
        and 'str'`: a number read as text (or the other way): each operand made the other kind."""
        found = re.search(r"'(\w+)' and '(\w+)'", err.message)
        kinds = set(found.groups()) if found else set()
        if not kinds & {"str"} or not kinds & {"int", "float"}:
            return
        number = "float" if "float" in kinds else "int"
        for node in nodes:
            operands = [node.left, node.right] if isinstance(node, ast.BinOp) else (
                [node.left, *node.comparators] if isinstance(node, ast.Compare) else [])
            for side in operands:
                if isinstance(side, ast.Constant):
                    continue
                text = self.gen.seg(side)
                self.replace(side, f"{number}({text})", f"`{number}()` of `{text}`", 0.45)
                self.replace(side, f"str({text})", f"`str()` of `{text}`", 0.3)

    def empty_sequence(self, nodes: list[ast.AST], err: Raised) -> None:
        """`max() arg is an empty sequence`: a default for the empty case."""
        for node in nodes:
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("max", "min")
                    and len(node.args) == 1 and not isinstance(node.args[0], ast.Starred)):
                # a lone generator's span takes in the call's parentheses: `max((x for x in xs), default=0)`
                arg = self.gen.seg(node.args[0])
                rest = "".join(f", {self.gen.seg(k)}" for k in node.keywords if k.arg != "default")
                for default, prior in (("0", 0.45), ("None", 0.3)):
                    self.replace(node, f"{node.func.id}({arg}{rest}, default={default})",
                                 f"`{node.func.id}(…, default={default})` for no items", prior)

    def none_from_in_place(self, nodes: list[ast.AST], err: Raised) -> None:
        """`'NoneType' object is not subscriptable` and the like, from `ys = xs.sort()`: methods that
        change a list in place return None. The assignment gets the value instead (`sorted(xs)`,
        `xs[::-1]`), anywhere in the function that raised."""
        fn = self.gen.function_of(nodes[0]) if nodes else None
        if fn is None:
            return
        for stmt in ast.walk(fn):
            call = stmt.value if isinstance(stmt, ast.Assign) else None
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)) or call.args or call.keywords:
                continue
            receiver = call.func.value
            target = self.gen.seg(receiver)
            new = {"sort": f"sorted({target})", "reverse": f"{paren(target, receiver)}[::-1]"}.get(call.func.attr)
            if new is not None:  # scored as the raising line: the assignment is its cause
                start, end = self.gen.sm.node_span(call)
                self.elsewhere([Span(start, end, new)], f"`{new}` (`.{call.func.attr}()` returns None)", call.lineno, 0.55)

    def unbound(self, nodes: list[ast.AST], err: Raised) -> None:
        found = re.search(r"local variable '(\w+)'", err.message)
        node = nodes[0] if nodes else None
        fn = self.gen.function_of(node) if node is not None else None
        if found is None or fn is None or not fn.body:
            return
        first = first_statement(fn)
        here = self.gen.sm.line_span(first.lineno)[0]
        indent = self.gen.sm.indent_of(first.lineno)
        for value, prior in (("0", 0.45), ("[]", 0.35), ("None", 0.3), ('""', 0.25)):
            self.elsewhere([Span(here, here, f"{indent}{found.group(1)} = {value}\n")],
                           f"start `{found.group(1)}` at `{value}`", first.lineno, prior)


# (exception type, a pattern of its message, the rule): the first rule whose pattern matches
RULES: list[tuple[str, str, Callable[[_Rules, list[ast.AST], Raised], None]]] = [
    ("TypeError", r"must be encoded|bytes-like object is required, not 'str'|string argument without an encoding",
     _Rules.bytes_needed),
    ("TypeError", r"can only concatenate str|must be str, not|expected str instance|sequence item \d+: expected str",
     _Rules.str_needed),
    ("TypeError", r"^'NoneType' object is not (subscriptable|iterable)|^object of type 'NoneType' has no len",
     _Rules.none_from_in_place),
    ("TypeError", r"object is not iterable", _Rules.iterable_needed),
    ("TypeError", r"indices must be integers or slices, not float|'float' object cannot be interpreted as an integer"
                  r"|slice indices must be integers", _Rules.integer_needed),
    ("TypeError", r"object is not callable", _Rules.not_callable),
    ("TypeError", r"object is not subscriptable", _Rules.not_subscriptable),
    ("TypeError", r"has no len\(\)", _Rules.no_len),
    ("TypeError", r"not supported between instances of|unsupported operand type", _Rules.mixed_types),
    ("ValueError", r"arg is an empty sequence|iterable argument is empty", _Rules.empty_sequence),
    ("AttributeError", r"^'NoneType' object has no attribute", _Rules.none_from_in_place),
    ("AttributeError", r"object has no attribute", _Rules.no_attribute),
    ("KeyError", r"", _Rules.missing_key),
    ("UnboundLocalError", r"local variable", _Rules.unbound),
]


def candidates(text: str, raised: list[Raised]) -> list[Candidate]:
    """The candidates the errors ask for (none for errors no rule knows), best first."""
    if not raised:
        return []
    try:
        rules = _Rules(text, raised)
    except (SyntaxError, ValueError):
        return []
    for err in raised:
        nodes = rules.at(err.line)
        for kind, pattern, rule in RULES:
            if err.type == kind and re.search(pattern, err.message):
                try:
                    rule(rules, nodes, err)
                except (ValueError, IndexError, AttributeError, KeyError):
                    pass
                break
    cands = rules.gen.out
    cands.sort(key=lambda c: -c.score)
    return cands
