"""Model-free repair candidates: mutation and template operators applied at suspicious lines.

Each operator proposes small text edits located by AST positions (see edits.py), so the rest of the
file keeps its formatting. `prior` is how often an operator of that kind is the right fix in
single-hunk bugs (a hand-set ordering, not fitted to any benchmark); the engine multiplies it by the
line's localisation score.
"""

from __future__ import annotations

import ast
import builtins
import difflib
from collections.abc import Callable, Collection, Iterator
from typing import TypeGuard

from heedls.analyzers import imports, pyparse
from heedls.analyzers.repair.edits import Candidate, SourceMap, Span, gap_operator

CMP = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
       ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in"}
CMP_ALTS: dict[str, list[tuple[str, float]]] = {
    "<": [("<=", 0.9), (">", 0.6), (">=", 0.5), ("!=", 0.4), ("==", 0.35)],
    "<=": [("<", 0.9), (">=", 0.6), (">", 0.5), ("==", 0.4)],
    ">": [(">=", 0.9), ("<", 0.6), ("<=", 0.5), ("!=", 0.4), ("==", 0.35)],
    ">=": [(">", 0.9), ("<=", 0.6), ("<", 0.5), ("==", 0.4)],
    "==": [("!=", 0.8), ("<=", 0.5), (">=", 0.5), ("<", 0.4), (">", 0.4)],
    "!=": [("==", 0.8), ("<", 0.4), (">", 0.4)],
    "is": [("is not", 0.8), ("==", 0.3)],
    "is not": [("is", 0.8), ("!=", 0.3)],
    "in": [("not in", 0.8)],
    "not in": [("in", 0.8)],
}
BIN = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%",
       ast.Pow: "**", ast.LShift: "<<", ast.RShift: ">>", ast.BitOr: "|", ast.BitXor: "^", ast.BitAnd: "&"}
BIN_ALTS: dict[str, list[tuple[str, float]]] = {
    "+": [("-", 0.8), ("*", 0.4)],
    "-": [("+", 0.8), ("*", 0.3), ("%", 0.3), ("//", 0.25)],
    "*": [("+", 0.5), ("//", 0.45), ("/", 0.45), ("**", 0.4), ("-", 0.3)],
    "/": [("//", 0.7), ("*", 0.5)],
    "//": [("/", 0.7), ("%", 0.5), ("*", 0.4)],
    "%": [("//", 0.6), ("/", 0.3)],
    "**": [("*", 0.6)],
    "<<": [(">>", 0.7)],
    ">>": [("<<", 0.7)],
    "&": [("|", 0.6), ("^", 0.5)],
    "|": [("&", 0.6), ("^", 0.5)],
    "^": [("&", 0.6), ("|", 0.6)],
}
NON_COMMUTATIVE = {"-", "/", "//", "%", "**", "+", "<<", ">>"}
# method/function pairs that are easy to confuse (function misuse)
SWAPS: dict[str, list[str]] = {
    "append": ["extend"], "extend": ["append"], "min": ["max"], "max": ["min"], "any": ["all"], "all": ["any"],
    "lower": ["upper"], "upper": ["lower"], "islower": ["isupper"], "isupper": ["islower"],
    "startswith": ["endswith"], "endswith": ["startswith"], "isdigit": ["isalpha"], "isalpha": ["isdigit"],
    "keys": ["values", "items"], "values": ["keys", "items"], "items": ["keys", "values"],
    "find": ["rfind"], "rfind": ["find"], "index": ["rindex"], "lstrip": ["rstrip", "strip"],
    "rstrip": ["lstrip", "strip"], "strip": ["lstrip", "rstrip"], "floor": ["ceil"], "ceil": ["floor"],
    "sorted": ["reversed"], "reversed": ["sorted"], "ord": ["chr"], "chr": ["ord"], "int": ["round"],
    "round": ["int"], "remove": ["discard"], "add": ["update"], "update": ["add"], "isspace": ["isalnum"],
    "swapcase": ["upper", "lower"], "capitalize": ["upper"], "title": ["capitalize"],
}
BUILTINS = set(dir(builtins))
PUBLIC_BUILTINS = sorted(n for n in BUILTINS if not n.startswith("_"))
SIMPLE = (ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign)  # one-line statements a pair may be deleted of
# string constants the misspelling operator compares with the tests' (shorter ones are separators,
# brackets and markers: the short-string alternatives' business; longer ones are prose)
MIN_SPELLED, MAX_SPELLED = 4, 40
# what `bound_names` records for `from x import *`: any name may then be defined
STAR_IMPORT = "*"


def _bindings(node: ast.AST) -> list[str]:
    """The names `node` itself binds (an assignment's target, a def, an import, a parameter...)."""
    if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
        return [node.id]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.arg):
        return [node.arg]
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return [STAR_IMPORT if a.name == "*" else (a.asname or a.name.split(".")[0]) for a in node.names]
    if isinstance(node, (ast.Global, ast.Nonlocal)):
        return list(node.names)
    if isinstance(node, ast.ExceptHandler) and node.name:
        return [node.name]
    if isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
        return [node.name]
    if isinstance(node, ast.MatchMapping) and node.rest:
        return [node.rest]
    return []


def _members(cls: ast.ClassDef) -> set[str]:
    """The attributes a class's code gives its instances or itself: names bound in its body (its
    methods too) and `x.name = …` in its methods, for `x` their first parameter."""
    found: set[str] = set()
    for stmt in cls.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.add(stmt.name)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            for target in stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]:
                found.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.args.args:
            first = stmt.args.args[0].arg
            found.update(n.attr for n in ast.walk(stmt) if isinstance(n, ast.Attribute)
                         and isinstance(n.ctx, ast.Store) and isinstance(n.value, ast.Name) and n.value.id == first)
    return found


def _end_index(index: ast.AST) -> int | None:
    """0 or -1 when the index is that literal (`-1` parses as a minus applied to 1), else None."""
    if isinstance(index, ast.UnaryOp) and isinstance(index.op, ast.USub):
        inner = index.operand
        return -1 if isinstance(inner, ast.Constant) and type(inner.value) is int and inner.value == 1 else None
    return 0 if isinstance(index, ast.Constant) and type(index.value) is int and index.value == 0 else None


def _quoted(text: str, quote: str) -> str:
    """`text` as a literal in the quotes the code used there (`"__"` becomes `"_"`, not `'_'`)."""
    literal = repr(text)
    if quote == '"' and literal.startswith("'") and '"' not in text:
        return '"' + literal[1:-1].replace("\\'", "'") + '"'
    return literal


def _module_level(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether a binding at `node` lands in the module's namespace (no def, lambda, class or
    comprehension in between; a def's or class's own name does)."""
    cur = parents.get(node)
    while cur is not None:
        if isinstance(cur, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef,
                            ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            return False
        cur = parents.get(cur)
    return True


def parameters(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    """Its named parameters, positional and keyword-only (not `*args`, `**kwargs`)."""
    return [a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs]


def first_statement(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.stmt:
    """Where code at a function's top goes: its first statement after the docstring (the
    docstring itself when it is the whole body)."""
    first = fn.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and len(fn.body) > 1:
        first = fn.body[1]
    return first


def _unparenthesised(wrapped: str, plain: str) -> str:
    """`plain` when it means what `wrapped` means (`rest + [x for x in xs]`), else `wrapped`."""
    try:
        return plain if ast.dump(pyparse.parse(plain)) == ast.dump(pyparse.parse(wrapped)) else wrapped
    except SyntaxError:
        return wrapped


def paren(text: str, node: ast.AST) -> str:
    """`text` in parentheses unless `node` is an atom (a name, a call, a literal…)."""
    simple = (ast.Name, ast.Constant, ast.Attribute, ast.Subscript, ast.Call, ast.List, ast.Tuple, ast.Dict)
    return text if isinstance(node, simple) else f"({text})"


class Generator:
    def __init__(self, text: str, tree: ast.Module, line_scores: dict[int, float],
                 test_strings: Collection[str] = ()) -> None:
        self.text = text
        # string literals of the tests (expected values, inputs): a misspelt string constant of the
        # code is checked against them (`"Jupyter"` where the tests say `"Jupiter"`)
        self.test_strings = sorted({t for t in test_strings if MIN_SPELLED <= len(t) <= MAX_SPELLED and t.isprintable()})
        self.tree = tree
        self.sm = SourceMap(text)
        self.scores = line_scores
        self.out: list[Candidate] = []
        self.parents: dict[ast.AST, ast.AST] = {}
        for parent in ast.walk(tree):
            for child in ast.iter_child_nodes(parent):
                self.parents[child] = parent
        self.attr_names = sorted({n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)})
        # a statement spanning several lines is traced on its first line: score continuation lines by it
        self.owner: dict[int, int] = {}
        for stmt in ast.walk(tree):
            if isinstance(stmt, ast.stmt):
                body = getattr(stmt, "body", None)
                last = body[0].lineno - 1 if isinstance(body, list) and body and isinstance(body[0], ast.stmt) else stmt.end_lineno
                for ln in range(stmt.lineno, (last or stmt.lineno) + 1):
                    self.owner[ln] = stmt.lineno
        self.module_funcs = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        self._bound: tuple[set[str], list[str]] | None = None  # see `bound_names`
        self._strings: dict[ast.AST, dict[str, list[ast.Constant]]] = {}  # see `_short_strings`
        self._methods: dict[ast.AST, tuple[str, set[str], set[str]] | None] = {}  # see `op_missing_self`
        self._imported: set[str] = set()  # see `op_missing_import`

    # -- helpers -------------------------------------------------------------------------------
    def score(self, line: int) -> float:
        if not self.scores:
            return 0.5
        return self.scores.get(line) or self.scores.get(self.owner.get(line, line), 0.0)

    def add(self, spans: list[Span], operator: str, description: str, line: int, prior: float) -> None:
        s = self.score(line)
        if s <= 0:
            return
        self.out.append(Candidate(tuple(spans), operator, description, line, prior, s * prior))

    def replace(self, node: ast.AST, new: str, operator: str, description: str, prior: float) -> None:
        start, end = self.sm.node_span(node)
        if self.text[start:end] == new:
            return
        self.add([Span(start, end, new)], operator, description, node.lineno, prior)  # type: ignore[attr-defined]

    def _bare(self, where: ast.AST, text: str, node: ast.AST) -> str:
        """`text` without parentheses when they change nothing at `where` (`return a * b`), else `(text)`."""
        wrapped = paren(text, node)
        if wrapped == text or len(self.text) > 20000:  # two parses per candidate: small modules only
            return wrapped
        start, end = self.sm.node_span(where)
        try:
            plain = ast.dump(pyparse.parse(self.text[:start] + text + self.text[end:]))
            parenthesised = ast.dump(pyparse.parse(self.text[:start] + wrapped + self.text[end:]))
        except SyntaxError:
            return wrapped
        return text if plain == parenthesised else wrapped

    def seg(self, node: ast.AST) -> str:
        return str(self.sm.segment(node))

    def function_of(self, node: ast.AST) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        cur: ast.AST | None = node
        while cur is not None:
            cur = self.parents.get(cur)
            if isinstance(cur, (ast.FunctionDef, ast.AsyncFunctionDef)):
                return cur
        return None

    # -- run -----------------------------------------------------------------------------------
    def generate(self) -> list[Candidate]:
        scopes: dict[ast.AST, tuple[list[str], set[str]]] = {}
        for fn in ast.walk(self.tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                scopes[fn] = self.scope_names(fn)
        for node in ast.walk(self.tree):
            # comprehensions carry no position of their own: they sit on their iterable's line
            line = getattr(node.iter if isinstance(node, ast.comprehension) else node, "lineno", None)
            if line is None or self.score(line) <= 0:
                continue
            for op in self.OPERATORS:
                try:
                    op(self, node, scopes)
                except (ValueError, IndexError, AttributeError, KeyError):
                    continue
        return self.out

    def scope_names(self, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[list[str], set[str]]:
        params = parameters(fn)
        if fn.args.vararg:
            params.append(fn.args.vararg.arg)
        stores: list[str] = []
        loads: set[str] = set()
        for n in ast.walk(fn):
            if isinstance(n, ast.Name):
                if isinstance(n.ctx, ast.Store) and n.id not in stores:
                    stores.append(n.id)
                elif isinstance(n.ctx, ast.Load):
                    loads.add(n.id)
        return [*params, *[s for s in stores if s not in params]], loads

    def _bound_nowhere(self, node: ast.AST) -> TypeGuard[ast.Name]:
        """Whether `node` reads a name that nothing binds, not even a builtin or a star import."""
        if not (isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)) or node.id in BUILTINS:
            return False
        anywhere = self.bound_names()[0]
        return node.id not in anywhere and STAR_IMPORT not in anywhere

    def bound_names(self) -> tuple[set[str], list[str]]:
        """(every name the module binds anywhere, the names bound at module level in order).
        A name read that is in neither this nor the builtins is a NameError waiting to happen.
        Computed once, on the first name that needs it."""
        if self._bound is None:
            anywhere: set[str] = set()
            top: list[str] = []
            for node in ast.walk(self.tree):
                names = _bindings(node)
                anywhere.update(names)
                if names and _module_level(node, self.parents):
                    top.extend(n for n in names if n not in top)
            self._bound = anywhere, top
        return self._bound

    # -- operators -----------------------------------------------------------------------------
    def op_undefined_name(self, node: ast.AST, scopes: object) -> None:
        """A name bound nowhere, not even as a builtin (`SIZE = DEFALTS["size"]`, `v * SCLAE`): the
        most similar names it can see, module-level or its functions', a builtin last. The other
        name operators work within a function's own names; a misspelling at module level, or of a
        module-level name inside a function, was out of their reach."""
        if not self._bound_nowhere(node):
            return
        top = self.bound_names()[1]
        visible: list[str] = list(top)
        fn = self.function_of(node)
        while fn is not None:  # its own function's names, then those of the functions around it
            kwarg = [fn.args.kwarg.arg] if fn.args.kwarg else []
            visible.extend(n for n in [*scopes[fn][0], *kwarg] if n not in visible)  # type: ignore[index]
            fn = self.function_of(fn)
        same_case = [n for n in visible if n.lower() == node.id.lower()]
        close = difflib.get_close_matches(node.id, visible, n=3, cutoff=0.6)
        near_builtins = difflib.get_close_matches(node.id, PUBLIC_BUILTINS, n=1, cutoff=0.75)
        for rank, other in enumerate(dict.fromkeys([*same_case, *close, *near_builtins])):
            self.replace(node, other, "undefined-name", f"`{node.id}` (defined nowhere) → `{other}`", 0.7 - 0.1 * rank)

    def op_missing_import(self, node: ast.AST, scopes: object) -> None:
        """A name bound nowhere that the standard library has: `math.sqrt(x)` without `import math`
        gets the import, `Counter(xs)` gets `from collections import Counter` (analyzers/imports.py),
        at the top of the module (after its docstring and `__future__` imports); once per name."""
        if not self._bound_nowhere(node) or node.id in self._imported:
            return
        parent = self.parents.get(node)
        as_module = isinstance(parent, ast.Attribute) and parent.value is node
        statement = imports.statement_for(node.id, as_module,
                                          attribute=parent.attr if as_module and isinstance(parent, ast.Attribute) else None)
        if statement is None:
            return
        self._imported.add(node.id)
        at, inserted = imports.insertion(self.text, self.tree, statement)
        self.add([Span(at, at, inserted)], "missing-import", f"add `{statement}`", node.lineno, 0.8)

    def op_missing_self(self, node: ast.AST, scopes: object) -> None:
        """A name a method reads that nothing in its reach binds but its class has (an attribute
        set as `self.total = …`, a class-level name, another method): `total` → `self.total`,
        `helper(x)` → `self.helper(x)`. A NameError waiting to happen, or one a test raised."""
        if not (isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)) or node.id in BUILTINS:
            return
        fn = self.function_of(node)
        if fn is None or not self._in_body(node, fn):
            return
        if fn not in self._methods:  # once per function: every name read in it asks
            self._methods[fn] = self._method_reach(fn, scopes)
        found = self._methods[fn]
        if found is None or node.id in found[1] or node.id not in found[2]:
            return
        first = found[0]
        self.replace(node, f"{first}.{node.id}", "missing-self", f"`{node.id}` → `{first}.{node.id}`", 0.8)

    def _in_body(self, node: ast.AST, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
        """Whether `node` runs in `fn`'s own scope: its decorators, defaults and annotations are
        evaluated where `fn` is defined (`@path.setter` in a class body reads the class's `path`)."""
        cur = node
        while self.parents.get(cur) is not fn:
            cur = self.parents[cur]
        return cur in fn.body

    def _method_reach(self, fn: ast.FunctionDef | ast.AsyncFunctionDef,
                      scopes: object) -> tuple[str, set[str], set[str]] | None:
        """For code in `fn`: (the first parameter of the method it is or is nested in, the names in
        its reach, its class's members); None outside a method, or in a static one."""
        method: ast.FunctionDef | ast.AsyncFunctionDef | None = fn
        reach = set(self.bound_names()[1])
        while method is not None:
            # everything it binds: parameters (lambdas' too), assignments, local imports, `except … as`
            reach.update(name for n in ast.walk(method) for name in _bindings(n))
            owner = self.parents.get(method)
            if isinstance(owner, ast.ClassDef):
                static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in method.decorator_list)
                if static or not method.args.args:
                    return None
                return method.args.args[0].arg, reach, _members(owner)
            method = self.function_of(method)
        return None

    def op_compare(self, node: ast.AST, scopes: object) -> None:
        if not isinstance(node, ast.Compare):
            return
        operands = [node.left, *node.comparators]
        for i, op in enumerate(node.ops):
            sym = CMP.get(type(op))
            if sym is None:
                continue
            a_end = self.sm.node_span(operands[i])[1]
            b_start = self.sm.node_span(operands[i + 1])[0]
            loc = gap_operator(self.text, a_end, b_start)
            if loc is None:
                continue
            for alt, prior in CMP_ALTS.get(sym, []):
                self.add([Span(loc[0], loc[1], alt)], "comparison", f"`{sym}` → `{alt}`", node.lineno, prior)
            # comparison against an int constant: change operator and bound together (`== 0` → `<= 1`)
            right = operands[i + 1]
            if isinstance(right, ast.Constant) and type(right.value) is int and sym in ("<", "<=", ">", ">=", "=="):
                r0, r1 = self.sm.node_span(right)
                for alt in ("<", "<=", ">", ">=", "=="):
                    for delta in (1, -1):
                        if alt == sym:
                            continue
                        value = right.value + delta
                        self.add([Span(loc[0], loc[1], alt), Span(r0, r1, str(value))], "comparison-bound",
                                 f"`{sym} {right.value}` → `{alt} {value}`", node.lineno, 0.3)

    def op_binop(self, node: ast.AST, scopes: object) -> None:
        if not isinstance(node, ast.BinOp):
            return
        sym = BIN.get(type(node.op))
        if sym is None:
            return
        a_end = self.sm.node_span(node.left)[1]
        b_start = self.sm.node_span(node.right)[0]
        loc = gap_operator(self.text, a_end, b_start)
        if loc is None:
            return
        rc = node.right.value if isinstance(node.right, ast.Constant) and type(node.right.value) is int else None
        for alt, prior in BIN_ALTS.get(sym, []):
            # `x * 1`, `x + 0`: the drop-operand candidate, written worse
            if (rc == 1 and alt in ("*", "/", "//", "**")) or (rc == 0 and alt in ("+", "-")):
                continue
            self.add([Span(loc[0], loc[1], alt)], "binary-operator", f"`{sym}` → `{alt}`", node.lineno, prior)
        left, right = self.seg(node.left), self.seg(node.right)
        if sym in NON_COMMUTATIVE:
            l0, l1 = self.sm.node_span(node.left)
            r0, r1 = self.sm.node_span(node.right)
            self.add([Span(l0, l1, right), Span(r0, r1, left)], "swap-operands",
                     f"swap the operands of `{sym}`", node.lineno, 0.5)
        # excess logic: keep one operand
        self.replace(node, self._bare(node, left, node.left), "drop-operand", f"drop `{sym} {right}`", 0.45)
        self.replace(node, self._bare(node, right, node.right), "drop-operand", f"drop `{left} {sym}`", 0.4)
        if sym == "-":
            self.replace(node, f"abs({self.seg(node)})", "wrap-abs", "take the absolute difference", 0.45)

    def op_augassign(self, node: ast.AST, scopes: object) -> None:
        if not isinstance(node, ast.AugAssign):
            return
        sym = BIN.get(type(node.op))
        if sym is None:
            return
        loc = gap_operator(self.text, self.sm.node_span(node.target)[1], self.sm.node_span(node.value)[0])
        if loc is None:
            return
        alts = dict(BIN_ALTS.get(sym, []))
        for extra in ("+", "-", "*", "//", "/", "%"):
            if extra != sym and extra not in alts:
                alts[extra] = 0.25
        for alt, prior in alts.items():
            self.add([Span(loc[0], loc[1], alt + "=")], "augmented-assignment", f"`{sym}=` → `{alt}=`", node.lineno, prior)
        # the wrong variable is updated
        fn = self.function_of(node)
        if isinstance(node.target, ast.Name) and fn is not None:
            for other in scopes[fn][0]:  # type: ignore[index]
                if other != node.target.id:
                    self.replace(node.target, other, "wrong-variable", f"update `{other}` instead of `{node.target.id}`", 0.4)
        self.add([Span(loc[0], loc[1], "=")], "augmented-assignment", f"`{sym}=` → `=`", node.lineno, 0.5)

    def op_assign_to_aug(self, node: ast.AST, scopes: object) -> None:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            return
        loc = gap_operator(self.text, self.sm.node_span(node.targets[0])[1], self.sm.node_span(node.value)[0])
        if loc is None or self.text[loc[0]:loc[1]] != "=":
            return
        for alt, prior in (("+=", 0.4), ("-=", 0.25), ("*=", 0.2)):
            self.add([Span(loc[0], loc[1], alt)], "augmented-assignment", f"`=` → `{alt}`", node.lineno, prior)
        # accumulate an extreme instead of overwriting it
        name = node.targets[0].id
        fn = self.function_of(node)
        if fn is not None:
            for other in scopes[fn][0]:  # type: ignore[index]
                if other != name:
                    self.replace(node.targets[0], other, "wrong-variable", f"assign `{other}` instead of `{name}`", 0.3)
        value = self.seg(node.value)
        for agg, prior in (("max", 0.3), ("min", 0.25)):
            self.replace(node.value, f"{agg}({name}, {value})", "accumulate", f"keep the {agg} of `{name}`", prior)
        self.replace(node.value, f"max(0, {value})", "accumulate", "clamp at zero", 0.25)

    def op_boolop(self, node: ast.AST, scopes: object) -> None:
        if not isinstance(node, ast.BoolOp):
            return
        sym, alt = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
        for i in range(len(node.values) - 1):
            loc = gap_operator(self.text, self.sm.node_span(node.values[i])[1], self.sm.node_span(node.values[i + 1])[0])
            if loc is not None:
                self.add([Span(loc[0], loc[1], alt)], "boolean-operator", f"`{sym}` → `{alt}`", node.lineno, 0.75)
        for i, value in enumerate(node.values):  # excess logic: drop one condition
            rest = [self.seg(v) for j, v in enumerate(node.values) if j != i]
            new = f" {sym} ".join(rest) if len(rest) > 1 else rest[0]
            self.replace(node, new, "drop-condition",
                         f"drop `{self.seg(value)}`", 0.5)

    def op_condition(self, node: ast.AST, scopes: object) -> None:
        test = None
        if isinstance(node, (ast.If, ast.While, ast.IfExp)):
            test = node.test
        elif isinstance(node, ast.comprehension) and node.ifs:
            test = node.ifs[0]
        if test is None:
            return
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            self.replace(test, self.seg(test.operand), "negate-condition", "remove `not`", 0.7)
        else:
            self.replace(test, f"not {paren(self.seg(test), test)}", "negate-condition", "negate the condition", 0.55)
        if not isinstance(node, ast.While) and not (isinstance(test, ast.Constant)):
            self.replace(test, "True", "remove-condition", "make the condition always true", 0.3)
            self.replace(test, "False", "remove-condition", "make the condition always false", 0.25)
        fn = self.function_of(node)
        if isinstance(node, ast.While) and isinstance(test, ast.Constant) and fn is not None:
            for name in scopes[fn][0]:  # type: ignore[index]
                self.replace(test, name, "loop-condition", f"loop while `{name}` is non-empty", 0.4)
        # missing base case: `if a:` → `if a or not p:` for collection-like parameters
        if isinstance(node, ast.If) and fn is not None and node.body and isinstance(node.body[0], (ast.Return, ast.Raise)):
            for arg in fn.args.args:
                self.replace(test, f"{paren(self.seg(test), test)} or not {arg.arg}", "base-case",
                             f"also stop when `{arg.arg}` is empty", 0.3)
        # missing None check (PAR's null-pointer checker): an early exit on `a.b …` also exits when `a`
        # is None, tested first, for the function's own variables (not modules, not `self`)
        if isinstance(node, ast.If) and fn is not None and node.body and isinstance(node.body[0], (ast.Return, ast.Raise)):
            names = scopes[fn][0]  # type: ignore[index]
            guarded: list[str] = []
            for sub in ast.walk(test):
                if (isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id in names
                        and sub.value.id not in ("self", "cls") and sub.value.id not in guarded):
                    guarded.append(sub.value.id)
            loose = isinstance(test, (ast.IfExp, ast.Lambda, ast.NamedExpr)) or (
                isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And))  # binds looser than `or`
            rest = f"({self.seg(test)})" if loose else self.seg(test)
            for name in guarded:
                self.replace(test, f"{name} is None or {rest}", "none-check",
                             f"also stop when `{name}` is None", 0.3)

    def op_unary(self, node: ast.AST, scopes: object) -> None:
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Invert)):
            self.replace(node, self.seg(node.operand), "unary", "drop the unary operator", 0.4)

    def op_constant(self, node: ast.AST, scopes: object) -> None:
        if not isinstance(node, ast.Constant):
            return
        parent = self.parents.get(node)
        if isinstance(parent, ast.Expr):  # docstrings
            return
        value = node.value
        if isinstance(value, bool):
            self.replace(node, str(not value), "constant", f"`{value}` → `{not value}`", 0.6)
        elif isinstance(value, int):
            for delta, prior in ((1, 0.6), (-1, 0.6)):
                new = value + delta
                # `x - 0` / `x * 1` are the drop-operand candidates written worse
                if isinstance(parent, ast.BinOp) and parent.right is node and (
                    (new == 0 and isinstance(parent.op, (ast.Add, ast.Sub)))
                    or (new == 1 and isinstance(parent.op, (ast.Mult, ast.Div, ast.FloorDiv, ast.Pow)))
                ):
                    continue
                self.replace(node, str(new), "off-by-one", f"`{value}` → `{new}`", prior)
            if value not in (0, 1, -1):
                self.replace(node, "0", "constant", f"`{value}` → `0`", 0.3)
                self.replace(node, "1", "constant", f"`{value}` → `1`", 0.3)
        elif isinstance(value, str) and len(value) <= 3 and not isinstance(parent, ast.JoinedStr):
            alts = {"": [" "], " ": [""]}.get(value, [])
            if value.isalpha() and value.lower() != value.upper():
                alts.append(value.swapcase())
            quote = self.seg(node)[-1:]
            for text in alts:
                self.replace(node, _quoted(text, quote), "constant", f"`{value!r}` → `{text!r}`", 0.35)
            same = self._short_strings(node).get(value, [])
            if len(same) > 1 and same[0] is node:  # the same slip made at every use: all changed at once
                for text in alts:
                    spans = [Span(*self.sm.node_span(n), _quoted(text, self.seg(n)[-1:])) for n in same]
                    self.add(spans, "constant", f"every `{value!r}` → `{text!r}`", node.lineno, 0.3)
            for other in self._short_strings(node):  # another short string of the same function
                if other != value and other not in alts:
                    self.replace(node, _quoted(other, quote), "constant", f"`{value!r}` → `{other!r}`", 0.25)
        elif isinstance(value, float) and value not in (0.0,):
            for text in (str(-value), "0.0", "1.0"):
                self.replace(node, text, "constant", f"`{value}` → `{text}`", 0.25)

    def _short_strings(self, node: ast.AST) -> dict[str, list[ast.Constant]]:
        """The short string literals (<= 3 characters: separators, brackets, markers) of the function
        `node` is in (the module's top level outside one), each with its uses in source order;
        docstrings and f-string parts left out. Cached per function."""
        scope: ast.AST = self.function_of(node) or self.tree
        found = self._strings.get(scope)
        if found is None:
            found = {}
            for n in ast.walk(scope):
                if (isinstance(n, ast.Constant) and isinstance(n.value, str) and len(n.value) <= 3
                        and not isinstance(self.parents.get(n), (ast.Expr, ast.JoinedStr))
                        and (scope is not self.tree or self.function_of(n) is None)):
                    found.setdefault(n.value, []).append(n)
            for uses in found.values():
                uses.sort(key=lambda n: (n.lineno, n.col_offset))
            self._strings[scope] = found
        return found

    def op_loop_counter(self, node: ast.AST, scopes: object) -> None:
        """`while div:` / `while n > 0:` / `while i < n:` over a name the body never assigns: it
        loops forever (or not at all) unless the counter moves; the step goes at the body's end."""
        if not isinstance(node, ast.While) or not node.body:
            return
        test = node.test
        steps: list[tuple[str, str]] = []
        if isinstance(test, ast.Name):
            steps = [(test.id, "-= 1")]
        elif isinstance(test, ast.Compare) and len(test.ops) == 1:
            left, right, op = test.left, test.comparators[0], test.ops[0]
            down, up = (ast.Gt, ast.GtE, ast.NotEq), (ast.Lt, ast.LtE, ast.NotEq)
            if isinstance(left, ast.Name):
                steps += [(left.id, "-= 1")] * isinstance(op, down) + [(left.id, "+= 1")] * isinstance(op, up)
            if isinstance(right, ast.Name):
                steps += [(right.id, "-= 1")] * isinstance(op, up) + [(right.id, "+= 1")] * isinstance(op, down)
        # moved by the body already: assigned, or maybe changed by a call (`queue.pop()`, `heappop(heap)`)
        assigned = {n.id for stmt in node.body for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        for call in (n for stmt in node.body for n in ast.walk(stmt) if isinstance(n, ast.Call)):
            receiver = [call.func.value] if isinstance(call.func, ast.Attribute) else []
            assigned |= {a.id for a in [*receiver, *call.args] if isinstance(a, ast.Name)}
        last = node.body[-1]
        end = self.sm.line_span(last.end_lineno or last.lineno)[1]
        indent = self.sm.indent_of(node.body[0].lineno)
        for name, step in dict.fromkeys(steps):
            if name not in assigned:
                self.add([Span(end, end, f"{indent}{name} {step}\n")], "loop-counter",
                         f"`{name} {step}` at the end of the loop", node.lineno, 0.4)

    def op_swap_elements(self, node: ast.AST, scopes: object) -> None:
        """Two neighbours of a list or tuple that is built (`return [value, index]` where
        `[index, value]` was meant); not an unpacking target, not a subscript's index pair."""
        if not (isinstance(node, (ast.List, ast.Tuple)) and isinstance(node.ctx, ast.Load) and 2 <= len(node.elts) <= 4):
            return
        if isinstance(self.parents.get(node), ast.Subscript) or any(isinstance(e, ast.Starred) for e in node.elts):
            return
        for a, b in zip(node.elts, node.elts[1:]):
            if self.seg(a) == self.seg(b):
                continue
            a0, a1 = self.sm.node_span(a)
            b0, b1 = self.sm.node_span(b)
            self.add([Span(a0, a1, self.seg(b)), Span(b0, b1, self.seg(a))], "swap-elements",
                     f"swap `{self.seg(a)}` and `{self.seg(b)}`", node.lineno, 0.4)

    def op_quoted_name(self, node: ast.AST, scopes: object) -> None:
        """A string spelling one of its function's own variables (`hashlib.md5('text')` where
        `text` is the parameter): the variable. Not where naming it in a string is the point
        (getattr and its kin)."""
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier()):
            return
        parent = self.parents.get(node)
        if isinstance(parent, (ast.Expr, ast.JoinedStr)):
            return
        if isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name) and parent.func.id in (
                "getattr", "setattr", "hasattr", "delattr", "namedtuple", "TypeVar"):
            return
        fn = self.function_of(node)
        if fn is None or node.value not in scopes[fn][0]:  # type: ignore[index]
            return
        self.replace(node, node.value, "quoted-name", f"`{self.seg(node)}` → the variable `{node.value}`", 0.4)

    def op_misspelt_string(self, node: ast.AST, scopes: object) -> None:
        """A string constant one or two letters away from a string the tests use (a name, a key,
        an expected word): the tests' spelling. Value misuse the other operators cannot reach."""
        if not (self.test_strings and isinstance(node, ast.Constant) and isinstance(node.value, str)):
            return
        value = node.value
        if not MIN_SPELLED <= len(value) <= MAX_SPELLED or isinstance(self.parents.get(node), (ast.Expr, ast.JoinedStr)):
            return
        if value in self.test_strings:
            return
        quote = self.seg(node)[-1:]
        for rank, other in enumerate(difflib.get_close_matches(value, self.test_strings, n=2, cutoff=0.8)):
            self.replace(node, _quoted(other, quote), "misspelt-string", f"`{value!r}` → `{other!r}` (as the tests spell it)",
                         0.45 - 0.1 * rank)

    def op_drop_middle(self, node: ast.AST, scopes: object) -> None:
        """`a ** 2 * n` where `a ** n` was meant: the middle operand of a chain and the operator
        after it dropped (excess logic inside an expression; dropping an operand of either
        operation alone gives `a ** 2` or `2 * n`)."""
        if not (isinstance(node, ast.BinOp) and isinstance(node.left, ast.BinOp)):
            return
        inner = node.left
        sym = BIN.get(type(inner.op))
        if sym is None:
            return
        a, c = inner.left, node.right
        new = f"{paren(self.seg(a), a)} {sym} {paren(self.seg(c), c)}"
        try:  # what the text means must be `a sym c`, whatever the precedence of `sym` and `c`
            parsed = pyparse.parse(new).body
        except SyntaxError:
            return
        expr = parsed[0].value if len(parsed) == 1 and isinstance(parsed[0], ast.Expr) else None
        if not (isinstance(expr, ast.BinOp) and type(expr.op) is type(inner.op)):
            return
        self.replace(node, self._bare(node, new, node), "drop-operand",
                     f"drop `{self.seg(inner.right)} {BIN.get(type(node.op), '?')}`", 0.3)

    def op_pairing_guard(self, node: ast.AST, scopes: object) -> None:
        """Nested loops whose inner variable the inner body never reads (`for a in xs: for b in ys:
        out.add(a)`): the comparison that should pair them is missing; the body goes under
        `if a == b:` (or `!=`)."""
        if not (isinstance(node, ast.For) and isinstance(node.target, ast.Name) and node.body):
            return
        if node.body[0].lineno == node.lineno:  # `for b in ys: out.add(a)` on one line
            return
        outer = self.parents.get(node)
        if not (isinstance(outer, ast.For) and isinstance(outer.target, ast.Name)) or outer.target.id == node.target.id:
            return
        inner_name, outer_name = node.target.id, outer.target.id
        reads = {n.id for stmt in node.body for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        if inner_name in reads or outer_name not in reads:
            return
        if any(isinstance(n, (ast.Constant, ast.JoinedStr)) and n.lineno != n.end_lineno
               for stmt in node.body for n in ast.walk(stmt)):
            return  # indenting the lines of a multi-line string would change it
        first, last = node.body[0].lineno, node.body[-1].end_lineno or node.body[-1].lineno
        indent = self.sm.indent_of(first)
        spans = []
        for ln in range(first, last + 1):
            start, end = self.sm.line_span(ln)
            if self.text[start:end].strip():
                spans.append(Span(start, start, "    "))
        for cmp, prior in (("==", 0.35), ("!=", 0.25)):
            head = Span(spans[0].start, spans[0].start, f"{indent}if {outer_name} {cmp} {inner_name}:\n    ")
            # the head carries the first line's extra indentation too (one span per position)
            self.add([head, *spans[1:]], "missing-guard", f"do it only when `{outer_name} {cmp} {inner_name}`", first, prior)

    def _index_context(self, node: ast.AST) -> float:
        """How likely an off-by-one on this expression is: high in indexes, slices and range bounds."""
        parent = self.parents.get(node)
        if isinstance(parent, ast.Subscript) and parent.slice is node:
            return 0.65
        if isinstance(parent, ast.Slice):
            return 0.65
        if isinstance(parent, ast.Tuple) and isinstance(self.parents.get(parent), ast.Subscript):
            return 0.6
        if isinstance(parent, ast.Call) and node in parent.args:
            func = parent.func
            if isinstance(func, ast.Name) and func.id == "range":
                return 0.7
            fn = self.function_of(node)
            if isinstance(func, ast.Name) and fn is not None and func.id == fn.name:
                return 0.45  # recursive call
            return 0.25
        if isinstance(parent, ast.Return):
            return 0.3
        if isinstance(parent, ast.Compare):
            return 0.3
        if isinstance(parent, ast.BinOp) and isinstance(parent.op, ast.Mult):
            return 0.35
        return 0.0

    def op_off_by_one(self, node: ast.AST, scopes: object) -> None:
        if not isinstance(node, (ast.Name, ast.BinOp, ast.Call, ast.Attribute, ast.Subscript)):
            return
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            return
        prior = self._index_context(node)
        if prior <= 0:
            return
        text = paren(self.seg(node), node)
        self.replace(node, f"{text} + 1", "off-by-one", f"`{self.seg(node)}` → `{text} + 1`", prior)
        self.replace(node, f"{text} - 1", "off-by-one", f"`{self.seg(node)}` → `{text} - 1`", prior)

    def op_range(self, node: ast.AST, scopes: object) -> None:
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range"):
            return
        if len(node.args) == 2:
            self.replace(node, f"range({self.seg(node.args[1])})", "loop-bound", "start the range at 0", 0.4)
        elif len(node.args) == 1:
            self.replace(node, f"range(1, {self.seg(node.args[0])})", "loop-bound", "start the range at 1", 0.35)

    def op_subscript(self, node: ast.AST, scopes: object) -> None:
        if not isinstance(node, ast.Subscript):
            return
        sl = node.slice
        end = _end_index(sl)
        if end is not None:
            new = "-1" if end == 0 else "0"
            self.replace(sl, new, "index", f"`[{end}]` → `[{new}]`", 0.65)
            if isinstance(node.value, (ast.ListComp, ast.List, ast.Call)) and isinstance(node.ctx, ast.Load):
                # a sequence computed whole and then one end of it taken: the whole may be what was
                # meant, summed up (`[int(d) for d in str(n)][-1]` → `sum([int(d) for d in str(n)])`)
                for fold in ("sum", "max", "min", "len"):
                    self.replace(node, f"{fold}({self.seg(node.value)})", "aggregate",
                                 f"`…[{end}]` → `{fold}(…)`", 0.35)
        if isinstance(sl, ast.Slice):
            if sl.lower is not None and sl.upper is None and sl.step is None:
                self.replace(sl, f":{self.seg(sl.lower)}", "slice", "slice the other end", 0.45)
            if sl.upper is not None and sl.lower is None and sl.step is None:
                self.replace(sl, f"{self.seg(sl.upper)}:", "slice", "slice the other end", 0.45)
            if sl.step is not None and sl.lower is None and sl.upper is None:
                self.replace(node, self.seg(node.value), "slice", "drop the slice", 0.4)
        if isinstance(sl, ast.Tuple) and len(sl.elts) == 2:
            a, b = sl.elts
            a0, a1 = self.sm.node_span(a)
            b0, b1 = self.sm.node_span(b)
            self.add([Span(a0, a1, self.seg(b)), Span(b0, b1, self.seg(a))], "swap-index", "swap the index pair", node.lineno, 0.55)

    def op_call(self, node: ast.AST, scopes: object) -> None:
        if not isinstance(node, ast.Call):
            return
        args = node.args
        for i in range(len(args) - 1):
            if any(isinstance(a, ast.Starred) for a in args[i : i + 2]):
                continue
            a0, a1 = self.sm.node_span(args[i])
            b0, b1 = self.sm.node_span(args[i + 1])
            self.add([Span(a0, a1, self.seg(args[i + 1])), Span(b0, b1, self.seg(args[i]))], "swap-arguments",
                     f"swap arguments {i + 1} and {i + 2}", node.lineno, 0.6)
        for arg in args:  # the call was not needed: use its argument
            if not isinstance(arg, ast.Starred):
                self.replace(node, paren(self.seg(arg), arg), "unwrap-call", f"use `{self.seg(arg)}` directly", 0.4)
        # one argument too many (`hashkey(self, *args)` where the method's key leaves `self` out):
        # drop it with its comma, where the call keeps another argument
        following = [*args[1:], *node.keywords]
        for i, arg in enumerate(args):
            if isinstance(arg, ast.Starred) or len(args) + len(node.keywords) < 2:
                continue
            start, end = self.sm.node_span(arg)
            if i + 1 < len(args) or node.keywords:
                end = self.sm.node_span(following[i])[0]
            else:
                start = self.sm.node_span(args[i - 1])[1]
            self.add([Span(start, end, "")], "drop-argument", f"drop the argument `{self.seg(arg)}`", node.lineno, 0.3)
        name = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id if isinstance(node.func, ast.Name) else None
        if name in SWAPS:
            func = node.func
            if isinstance(func, ast.Attribute):
                end = self.sm.node_span(func)[1]
                start = end - len(func.attr)
            else:
                start, end = self.sm.node_span(func)
            for alt in SWAPS[name or ""]:
                self.add([Span(start, end, alt)], "wrong-function", f"`{name}` → `{alt}`", node.lineno, 0.55)
        if name == "pop" and isinstance(node.func, ast.Attribute):
            if not args:
                self.replace(node, f"{self.seg(node.func)}(0)", "wrong-function", "pop from the front", 0.5)
            elif isinstance(args[0], ast.Constant) and args[0].value == 0:
                self.replace(node, f"{self.seg(node.func)}()", "wrong-function", "pop from the back", 0.5)
        if name == "sorted" and not any(k.arg == "reverse" for k in node.keywords) and args:
            inner = ", ".join(self.seg(a) for a in args)
            self.replace(node, f"sorted({inner}, reverse=True)", "wrong-function", "sort in reverse", 0.45)

    def op_call_templates(self, node: ast.AST, scopes: object) -> None:
        if not isinstance(node, ast.Call):
            return
        fn = self.function_of(node)
        name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr if isinstance(node.func, ast.Attribute) else ""
        locals_ = scopes[fn][0] if fn is not None else []  # type: ignore[index]
        recursive = fn is not None and name == fn.name
        for arg in node.args:
            if not isinstance(arg, ast.Name):
                continue
            for v in locals_[:8]:
                if v != arg.id:
                    self.replace(arg, f"{arg.id}[{v}:]", "slice-argument", f"pass `{arg.id}[{v}:]`", 0.18)
                    if recursive:
                        self.replace(arg, f"{arg.id} - {v}", "argument-expression", f"pass `{arg.id} - {v}`", 0.2)
                        self.replace(arg, f"{arg.id} + {v}", "argument-expression", f"pass `{arg.id} + {v}`", 0.15)
            if name in ("sorted", "len", "list", "sum", "max", "min"):
                self.replace(arg, f"set({arg.id})", "wrap-argument", f"use the distinct values of `{arg.id}`", 0.25)
            self.replace(arg, f"{arg.id}.lower()", "wrap-argument", f"lower-case `{arg.id}`", 0.12)
        # the function must be applied twice (decode = encode∘encode)
        if isinstance(node.func, ast.Name) and len(node.args) == 1 and not recursive:
            self.replace(node, f"{name}({self.seg(node)})", "apply-twice", f"apply `{name}` twice", 0.15)

    def _value_name_in_function(
        self, node: ast.AST
    ) -> tuple[ast.Name, ast.FunctionDef | ast.AsyncFunctionDef] | None:
        """(the name, its enclosing function) for a name read as a value (not a call's callee)."""
        if not (isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)):
            return None
        parent = self.parents.get(node)
        if isinstance(parent, ast.Call) and parent.func is node:
            return None
        fn = self.function_of(node)
        return None if fn is None else (node, fn)

    def op_expression_substitution(self, node: ast.AST, scopes: object) -> None:
        """A name used where another expression of the same function was meant (`/ mean` → `/ len(xs)`)."""
        hit = self._value_name_in_function(node)
        if hit is None:
            return
        node, fn = hit
        seen: set[str] = set()
        for other in ast.walk(fn):
            if isinstance(other, (ast.Call, ast.Subscript)) and other.lineno == other.end_lineno:
                text = self.seg(other)
                if text in seen or node.id not in text and len(seen) > 12 or len(text) > 40:
                    continue
                seen.add(text)
                if node.id + "(" not in text:
                    self.replace(node, text, "expression-substitution", f"`{node.id}` → `{text}`", 0.18)

    def op_function_templates(self, node: ast.AST, scopes: object) -> None:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return
        # the answer is negated everywhere: swap every `return True` / `return False` at once
        spans = []
        for ret in ast.walk(node):
            if isinstance(ret, ast.Return) and isinstance(ret.value, ast.Constant) and isinstance(ret.value.value, bool):
                if self.function_of(ret) is node:
                    s, e = self.sm.node_span(ret.value)
                    spans.append(Span(s, e, str(not ret.value.value)))
        if len(spans) >= 2:
            self.add(spans, "negate-result", "swap every returned True/False", node.lineno, 0.3)

    def op_compare_wrap(self, node: ast.AST, scopes: object) -> None:
        if not (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], (ast.Eq, ast.NotEq))):
            return
        a, b = node.left, node.comparators[0]
        if isinstance(a, ast.Name) and isinstance(b, ast.Name):
            a0, a1 = self.sm.node_span(a)
            b0, b1 = self.sm.node_span(b)
            for fn, prior in (("set", 0.25), ("sorted", 0.2), ("len", 0.15)):
                self.add([Span(a0, a1, f"{fn}({a.id})"), Span(b0, b1, f"{fn}({b.id})")], "wrap-comparison",
                         f"compare `{fn}()` of both sides", node.lineno, prior)

    def op_return_slice(self, node: ast.AST, scopes: object) -> None:
        if isinstance(node, ast.Return) and isinstance(node.value, (ast.ListComp, ast.Call, ast.Name, ast.Subscript)):
            text = self.seg(node.value)
            for sl, prior in (("[1:]", 0.2), ("[:-1]", 0.15), ("[::-1]", 0.15)):
                self.replace(node.value, f"{text}{sl}", "return-slice", f"return `{text}{sl}`", prior)

    def op_comprehension_iter(self, node: ast.AST, scopes: object) -> None:
        if not (isinstance(node, ast.comprehension) and isinstance(node.iter, ast.Name)):
            return
        fn = self.function_of(node.iter)
        if fn is None:
            return
        it = node.iter.id
        for arg in fn.args.args:
            if arg.arg != it:
                self.replace(node.iter, f"{it}[:{arg.arg}]", "loop-bound", f"iterate over `{it}[:{arg.arg}]`", 0.22)
                self.replace(node.iter, f"{it}[{arg.arg}:]", "loop-bound", f"iterate over `{it}[{arg.arg}:]`", 0.18)

    def op_call_to_name(self, node: ast.AST, scopes: object) -> None:
        """A value recomputed by a call where a variable of the function already holds the right one
        (`get(heap, node) + w` where `distance + w` was meant): the call becomes the variable. Only
        a call that is an operand of arithmetic, and only the variables assigned in the function."""
        if not (isinstance(node, ast.Call) and isinstance(self.parents.get(node), ast.BinOp)):
            return
        fn = self.function_of(node)
        if fn is None:
            return
        params = set(parameters(fn))
        reads = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        for name in scopes[fn][0][:12]:  # type: ignore[index]
            if name not in params and name not in reads and name not in self.module_funcs:
                self.replace(node, name, "expression-substitution", f"`{self.seg(node)}` → `{name}`", 0.15)

    def op_call_substitution(self, node: ast.AST, scopes: object) -> None:
        """`ord(ch)` where `ord("a")` was meant: another call of the same function in this function."""
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            return
        fn = self.function_of(node)
        if fn is None:
            return
        mine = self.seg(node)
        for other in ast.walk(fn):
            if isinstance(other, ast.Call) and isinstance(other.func, ast.Name) and other.func.id == node.func.id:
                text = self.seg(other)
                if text != mine and "\n" not in text:
                    self.replace(node, text, "expression-substitution", f"`{mine}` → `{text}`", 0.25)

    def op_wrong_variable(self, node: ast.AST, scopes: object) -> None:
        hit = self._value_name_in_function(node)
        if hit is None:
            return
        node, fn = hit
        names, _loads = scopes[fn]  # type: ignore[index]
        for other in names:
            if other != node.id and other not in self.module_funcs:
                self.replace(node, other, "wrong-variable", f"`{node.id}` → `{other}`", 0.5)

    def op_wrong_attribute(self, node: ast.AST, scopes: object) -> None:
        parent = self.parents.get(node)
        if not isinstance(node, ast.Attribute) or (isinstance(parent, ast.Call) and parent.func is node):
            return
        end = self.sm.node_span(node)[1]
        start = end - len(node.attr)
        if self.text[start:end] != node.attr:
            return
        for other in self.attr_names:
            if other != node.attr:
                self.add([Span(start, end, other)], "wrong-attribute", f"`.{node.attr}` → `.{other}`", node.lineno, 0.45)

    def op_return(self, node: ast.AST, scopes: object) -> None:
        fn = self.function_of(node)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and fn is not None:
            self.replace(node, f"return {self.seg(node.value)}", "missing-return", "return the call's result", 0.4)
        if isinstance(node, ast.Return) and isinstance(node.value, ast.List) and not node.value.elts and fn is not None:
            self.replace(node.value, "[[]]", "return-value", "return a list holding the empty list", 0.4)
            for name in scopes[fn][0][:6]:  # type: ignore[index]
                self.replace(node.value, f"[{name}]", "return-value", f"return `[{name}]`", 0.35)
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, bool) and fn is not None:
            for name in scopes[fn][0][:8]:  # type: ignore[index]
                self.replace(node.value, f"{name} == 0", "return-value", f"return whether `{name}` is 0", 0.2)
        if isinstance(node, ast.Return) and node.value is not None and fn is not None:
            for name in scopes[fn][0][:8]:  # type: ignore[index]
                if self.seg(node.value) != name:
                    self.replace(node.value, name, "return-value", f"return `{name}`", 0.3)

    def op_return_term(self, node: ast.AST, scopes: object) -> None:
        """A result missing a part the function computed (`return [[first] + s for s in rest]` where
        `rest + [...]` was meant): one of its local variables added before or after it. Locals
        only (assigned in the body, not parameters nor comprehension variables)."""
        if not (isinstance(node, ast.Return) and node.value is not None) or isinstance(node.value, ast.Constant):
            return
        fn = self.function_of(node)
        if fn is None or isinstance(node.value, (ast.Compare, ast.BoolOp)):
            return
        skip = set(parameters(fn)) | self.module_funcs
        skip |= {n.id for c in ast.walk(fn) if isinstance(c, ast.comprehension) for n in ast.walk(c.target) if isinstance(n, ast.Name)}
        text = self.seg(node.value)
        for name in scopes[fn][0][:12]:  # type: ignore[index]
            if name in skip or name == text:
                continue
            self.replace(node.value, _unparenthesised(f"{name} + ({text})", f"{name} + {text}"), "return-term",
                         f"return `{name} + …`", 0.2)
            self.replace(node.value, _unparenthesised(f"({text}) + {name}", f"{text} + {name}"), "return-term",
                         f"return `… + {name}`", 0.15)

    def op_return_in_loop(self, node: ast.AST, scopes: object) -> None:
        """`return total` indented into the loop that computes it (the loop ends after its first
        round): the return dedented to follow the loop. Only a return that ends the loop's body
        after other statements, in a loop without an `else:`."""
        if not (isinstance(node, (ast.For, ast.While, ast.AsyncFor)) and len(node.body) > 1 and not node.orelse):
            return
        last = node.body[-1]
        if not isinstance(last, ast.Return) or last.lineno == node.lineno:
            return
        outer, inner = self.sm.indent_of(node.lineno), self.sm.indent_of(last.lineno)
        if len(inner) <= len(outer) or not inner.startswith(outer):
            return
        spans = []
        for ln in range(last.lineno, (last.end_lineno or last.lineno) + 1):
            start, _end = self.sm.line_span(ln)
            if self.sm.indent_of(ln).startswith(inner):
                spans.append(Span(start, start + len(inner), outer))
        self.add(spans, "misplaced-return", "return after the loop, not in its first round", last.lineno, 0.4)

    def op_missing_break(self, node: ast.AST, scopes: object) -> None:
        """A loop meant to stop at the first match (`for x in xs: if ok(x): found = x`) runs on
        and keeps the last: `break` at the end of the `if`. Only in a loop without a `break`, for
        an `if` whose body only assigns or appends."""
        if not (isinstance(node, ast.If) and node.body and not node.orelse):
            return
        loop = self.parents.get(node)
        if not (isinstance(loop, (ast.For, ast.While)) and node in loop.body):
            return
        if any(isinstance(n, ast.Break) for n in ast.walk(loop)):
            return
        if not all(isinstance(stmt, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr)) for stmt in node.body):
            return
        last = node.body[-1]
        if last.lineno == node.lineno:  # `if ok(x): found = x` on one line
            return
        end = self.sm.line_span(last.end_lineno or last.lineno)[1]
        self.add([Span(end, end, f"{self.sm.indent_of(last.lineno)}break\n")], "missing-break",
                 "stop the loop at the first match", node.lineno, 0.3)

    def op_return_sorted(self, node: ast.AST, scopes: object) -> None:
        """A collection returned in the order it was built where a sorted one was meant."""
        if not (isinstance(node, ast.Return) and isinstance(node.value, (ast.Name, ast.Call, ast.ListComp, ast.List))):
            return
        value = node.value
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id in (
                "sorted", "len", "sum", "max", "min", "abs", "int", "float", "str", "bool", "round", "any", "all"):
            return
        if isinstance(value, ast.List) and len(value.elts) < 2:
            return
        text = self.seg(value)
        self.replace(value, f"sorted({text})", "return-sorted", f"return `{text}` sorted", 0.25)
        self.replace(value, f"sorted({text}, reverse=True)", "return-sorted", f"return `{text}` sorted, largest first", 0.15)

    def op_missing_return(self, node: ast.AST, scopes: object) -> None:
        """A function that computes a value and never returns one (`total = ...` as its last word):
        `return name` at its end, for the names its body assigns last."""
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or not node.body:
            return
        last = node.body[-1]
        if isinstance(last, (ast.Return, ast.Raise, ast.Pass)) or (
                isinstance(last, ast.Expr) and isinstance(last.value, ast.Constant)):
            return
        for sub in ast.walk(node):
            if isinstance(sub, (ast.Yield, ast.YieldFrom)) or (isinstance(sub, ast.Return) and sub.value is not None):
                return  # a generator, or a function that already returns something somewhere
        names: list[str] = []
        for stmt in reversed(node.body):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else (
                [stmt.target] if isinstance(stmt, (ast.AugAssign, ast.AnnAssign)) else [])
            for target in targets:
                if isinstance(target, ast.Name) and target.id != "_" and target.id not in names:
                    names.append(target.id)
        end = self.sm.line_span(last.end_lineno or last.lineno)[1]
        lead = "" if self.text[end - 1: end] == "\n" else "\n"
        indent = self.sm.indent_of(node.body[0].lineno)
        for rank, name in enumerate(names[:4]):
            self.add([Span(end, end, f"{lead}{indent}return {name}\n")], "missing-return",
                     f"return `{name}` at the end", last.lineno, 0.35 if rank == 0 else 0.3)

    def op_statement(self, node: ast.AST, scopes: object) -> None:
        if not isinstance(node, (ast.Expr, ast.Assign, ast.AugAssign, ast.Return, ast.If, ast.Break, ast.Continue, ast.For, ast.While)):
            return
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            return
        parent = self.parents.get(node)
        if parent is None:
            return
        block = next((b for b in ("body", "orelse", "finalbody") if node in getattr(parent, b, [])), None)
        if block is None:
            return
        siblings = getattr(parent, block)
        start, end = self.sm.line_span(node.lineno)[0], self.sm.line_span(node.end_lineno or node.lineno)[1]
        indent = self.sm.indent_of(node.lineno)
        prior = 0.4 if isinstance(node, (ast.Expr, ast.Assign, ast.AugAssign, ast.Break, ast.Continue)) else 0.25
        if len(siblings) == 1:
            self.add([Span(start, end, f"{indent}pass\n")], "delete-statement", "delete the statement", node.lineno, prior)
        else:
            self.add([Span(start, end, "")], "delete-statement", "delete the statement", node.lineno, prior)
        # two simple statements in a row that should not be there (a pair of lines pasted or left over)
        at = siblings.index(node)
        nxt = siblings[at + 1] if at + 1 < len(siblings) else None
        if (isinstance(node, SIMPLE) and isinstance(nxt, SIMPLE) and len(siblings) > 2
                and not (isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant))):
            both_end = self.sm.line_span(nxt.end_lineno or nxt.lineno)[1]
            self.add([Span(start, both_end, "")], "delete-statement", "delete the two statements", node.lineno, 0.15)
        # insertion: copy a nearby simple statement of the same function before/after this one
        fn = self.function_of(node)
        if fn is None or not isinstance(node, (ast.Expr, ast.Assign, ast.AugAssign, ast.Return, ast.If, ast.For, ast.While)):
            return
        for other in ast.walk(fn):
            if not isinstance(other, (ast.Expr, ast.Assign, ast.AugAssign)) or other is node:
                continue
            if abs(other.lineno - node.lineno) > 8 or other.lineno != other.end_lineno:
                continue
            stmt = self.sm.segment(other)
            here = self.sm.line_span(node.lineno)[0]
            self.add([Span(here, here, f"{indent}{stmt}\n")], "insert-statement", f"insert `{stmt}` before", node.lineno, 0.22)
            if isinstance(node, (ast.Expr, ast.Assign, ast.AugAssign)):
                self.add([Span(end, end, f"{indent}{stmt}\n")], "insert-statement", f"insert `{stmt}` after", node.lineno, 0.2)
            # the copied call with one name replaced (`out.append(x)` → `rest.append(x)` / `out.append(y)`)
            if isinstance(other, ast.Expr) and isinstance(other.value, ast.Call) and abs(other.lineno - node.lineno) <= 5:
                o0 = self.sm.node_span(other)[0]
                for sub in ast.walk(other):
                    if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load):
                        s0, s1 = self.sm.node_span(sub)
                        for alt in scopes[fn][0][:10]:  # type: ignore[index]
                            if alt != sub.id:
                                variant = stmt[: s0 - o0] + alt + stmt[s1 - o0 :]
                                self.add([Span(here, here, f"{indent}{variant}\n")], "insert-statement",
                                         f"insert `{variant}` before", node.lineno, 0.12)
                                self.add([Span(end, end, f"{indent}{variant}\n")], "insert-statement",
                                         f"insert `{variant}` after", node.lineno, 0.1)

    def op_insert_assignment(self, node: ast.AST, scopes: object) -> None:
        """A missing `a = b` between locals inside a loop body (e.g. advancing a `prev` pointer)."""
        if not isinstance(node, (ast.Assign, ast.AugAssign, ast.Expr)):
            return
        parent = self.parents.get(node)
        if not isinstance(parent, (ast.For, ast.While)) or node not in parent.body:
            return
        fn = self.function_of(node)
        if fn is None:
            return
        names, _ = scopes[fn]  # type: ignore[index]
        stored = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        indent = self.sm.indent_of(node.lineno)
        here = self.sm.line_span(node.lineno)[0]
        after = self.sm.line_span(node.end_lineno or node.lineno)[1]
        for a in names[:8]:
            if a not in stored:
                continue
            for b in names[:8]:
                if a != b:
                    code = f"{indent}{a} = {b}\n"
                    self.add([Span(here, here, code)], "insert-assignment", f"insert `{a} = {b}` before", node.lineno, 0.1)
                    self.add([Span(after, after, code)], "insert-assignment", f"insert `{a} = {b}` after", node.lineno, 0.1)

    def op_loop_iter(self, node: ast.AST, scopes: object) -> None:
        if not (isinstance(node, ast.For) and isinstance(node.iter, ast.Name)):
            return
        fn = self.function_of(node)
        if fn is None:
            return
        for arg in fn.args.args:
            if arg.arg != node.iter.id:
                it = node.iter.id
                self.replace(node.iter, f"{it}[{arg.arg}:]", "loop-bound", f"iterate over `{it}[{arg.arg}:]`", 0.25)
                self.replace(node.iter, f"{it}[:{arg.arg}]", "loop-bound", f"iterate over `{it}[:{arg.arg}]`", 0.2)

    def op_recursive_arg(self, node: ast.AST, scopes: object) -> None:
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            return
        fn = self.function_of(node)
        if fn is None or node.func.id != fn.name:
            return
        for arg in node.args:
            if isinstance(arg, ast.Name):
                self.replace(arg, f"{arg.id}[1:]", "recursive-argument", f"recurse on `{arg.id}[1:]`", 0.3)

    def op_base_case(self, node: ast.AST, scopes: object) -> None:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or not node.body:
            return
        calls_itself = any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == node.name for n in ast.walk(node))
        if not calls_itself:
            return
        first = first_statement(node)
        here = self.sm.line_span(first.lineno)[0]
        indent = self.sm.indent_of(first.lineno)
        for arg in node.args.args:
            code = f"{indent}if not {arg.arg}:\n{indent}    return {arg.arg}\n"
            self.add([Span(here, here, code)], "base-case", f"return `{arg.arg}` when it is empty", first.lineno, 0.3)

    OPERATORS: list[Callable[[Generator, ast.AST, object], None]] = [  # noqa: RUF012
        op_compare, op_binop, op_augassign, op_assign_to_aug, op_boolop, op_condition, op_unary, op_constant,
        op_off_by_one, op_range, op_subscript, op_call, op_wrong_variable, op_wrong_attribute, op_return,
        op_statement, op_loop_iter, op_recursive_arg, op_base_case, op_call_templates, op_expression_substitution,
        op_function_templates, op_compare_wrap, op_return_slice, op_comprehension_iter, op_call_substitution,
        op_insert_assignment, op_missing_return, op_undefined_name, op_swap_elements, op_loop_counter,
        op_quoted_name, op_misspelt_string, op_drop_middle, op_pairing_guard, op_return_term,
        op_call_to_name, op_return_in_loop, op_missing_break, op_return_sorted, op_missing_self,
        op_missing_import,
    ]


def generate(text: str, line_scores: dict[int, float], test_strings: Collection[str] = ()) -> list[Candidate]:
    """All mutation/template candidates at lines with a positive score, best first."""
    tree = pyparse.parse(text)
    cands = Generator(text, tree, line_scores, test_strings).generate()
    cands.sort(key=lambda c: -c.score)
    return cands


def iter_lines(cands: list[Candidate]) -> Iterator[int]:
    return (c.line for c in cands)
