"""The import a name bound nowhere asks for, and where a new import goes.

Shared by the repair operator (`repair/operators.py`, a candidate the tests then prove) and the
quick fix on ruff's F821 "Undefined name" (`lint.py`): `math.sqrt(x)` without `import math`,
`Counter(xs)` without `from collections import Counter`. Only the standard library is known: a
third-party name may come from any of several packages.
"""

from __future__ import annotations

import ast
import importlib
import sys

from heedls.analyzers.lines import split_lines

# Names of the standard library that code uses without their module's prefix, each from one module
# (where two modules have a name, as `sqrt` in math and cmath or `Iterable` in typing and
# collections.abc, the common one). Names that are everyday words (`count`, `repeat`, `merge`,
# `replace`, `digits`) are left out: undefined, they are more often a typo than a missing import.
FROM_IMPORTS = {
    **dict.fromkeys(("Any", "Optional", "Union", "List", "Dict", "Set", "FrozenSet", "Tuple", "Type",
                     "Callable", "Iterable", "Iterator", "Generator", "Sequence", "Mapping", "MutableMapping",
                     "Awaitable", "Coroutine", "AsyncIterator", "TypeVar", "Generic", "Protocol", "Literal",
                     "Final", "ClassVar", "NamedTuple", "TypedDict", "NoReturn", "Annotated", "Self", "cast",
                     "overload", "TYPE_CHECKING", "IO", "TextIO", "BinaryIO"), "typing"),
    **dict.fromkeys(("Counter", "defaultdict", "deque", "OrderedDict", "namedtuple", "ChainMap"), "collections"),
    **dict.fromkeys(("reduce", "lru_cache", "partial", "wraps", "cache", "cmp_to_key", "cached_property",
                     "total_ordering", "singledispatch"), "functools"),
    **dict.fromkeys(("chain", "permutations", "combinations", "combinations_with_replacement", "product",
                     "accumulate", "groupby", "zip_longest", "islice", "starmap", "takewhile", "dropwhile",
                     "filterfalse", "pairwise"), "itertools"),
    **dict.fromkeys(("heappush", "heappop", "heapify", "heappushpop", "heapreplace", "nlargest", "nsmallest"),
                    "heapq"),
    **dict.fromkeys(("bisect", "bisect_left", "bisect_right", "insort", "insort_left", "insort_right"), "bisect"),
    **dict.fromkeys(("sqrt", "isqrt", "floor", "ceil", "gcd", "lcm", "inf", "nan", "pi", "tau", "isclose",
                     "isnan", "isinf", "log", "log2", "log10", "exp", "sin", "cos", "tan", "atan2", "hypot",
                     "radians", "degrees", "factorial", "comb", "perm", "prod", "fsum", "trunc", "copysign"), "math"),
    **dict.fromkeys(("dataclass", "field", "fields", "asdict", "astuple"), "dataclasses"),
    **dict.fromkeys(("contextmanager", "asynccontextmanager", "suppress", "redirect_stdout", "redirect_stderr",
                     "ExitStack", "closing", "nullcontext"), "contextlib"),
    **dict.fromkeys(("ABC", "ABCMeta", "abstractmethod"), "abc"),
    **dict.fromkeys(("Enum", "IntEnum", "Flag", "IntFlag", "auto"), "enum"),
    **dict.fromkeys(("mean", "median", "stdev", "pstdev", "variance"), "statistics"),
    **dict.fromkeys(("randint", "randrange", "choice", "choices", "shuffle", "sample", "uniform"), "random"),
    **dict.fromkeys(("sleep", "perf_counter", "monotonic"), "time"),
    **dict.fromkeys(("date", "timedelta", "timezone"), "datetime"),
    **dict.fromkeys(("StringIO", "BytesIO"), "io"),
    **dict.fromkeys(("Thread", "Lock", "RLock"), "threading"),
    **dict.fromkeys(("ThreadPoolExecutor", "ProcessPoolExecutor", "as_completed"), "concurrent.futures"),
    **dict.fromkeys(("itemgetter", "attrgetter", "methodcaller"), "operator"),
    **dict.fromkeys(("ascii_lowercase", "ascii_uppercase", "ascii_letters"), "string"),
    **dict.fromkeys(("urlparse", "urljoin", "urlencode"), "urllib.parse"),
    **dict.fromkeys(("TemporaryDirectory", "NamedTemporaryFile", "mkdtemp"), "tempfile"),
    **dict.fromkeys(("Popen", "PIPE", "CalledProcessError", "check_output"), "subprocess"),
    **dict.fromkeys(("uuid4", "UUID"), "uuid"),
    **dict.fromkeys(("SimpleNamespace", "MappingProxyType"), "types"),
    "Path": "pathlib", "PurePath": "pathlib", "Fraction": "fractions", "Decimal": "decimal", "deepcopy": "copy",
    "dedent": "textwrap", "ArgumentParser": "argparse", "getLogger": "logging", "rmtree": "shutil",
    # a module's own name called bare: `pprint(x)`, `glob("*.py")`, `copy(x)`, `random()`, `time()`;
    # read as a module (`time.time()`) it is `import time`
    "pprint": "pprint", "glob": "glob", "copy": "copy", "random": "random", "time": "time", "datetime": "datetime",
}


def statement_for(name: str, as_module: bool, attribute: str | None = None) -> str | None:
    """`import name` when `name` is a standard module used as one (`name.attr`), `from m import
    name` for a known name of module `m`, else None. Where the module has a member of its own
    name (`datetime`, `time`, `copy`), `attribute` (the `attr` read) tells which is meant:
    `datetime.now()` is the class's, so `from datetime import datetime`."""
    if as_module and name in sys.stdlib_module_names and not name.startswith("_"):
        if attribute and FROM_IMPORTS.get(name) == name and _member_not_module(name, attribute):
            return f"from {name} import {name}"
        return f"import {name}"
    module = FROM_IMPORTS.get(name)
    return f"from {module} import {name}" if module else None


def _member_not_module(name: str, attribute: str) -> bool:
    """Is `attribute` an attribute of module `name`'s member `name` but not of the module? Only
    for the few modules of FROM_IMPORTS named like their member (harmless to import)."""
    try:
        module = importlib.import_module(name)
    except ImportError:
        return False
    return not hasattr(module, attribute) and hasattr(getattr(module, name, None), attribute)


def insertion(text: str, tree: ast.Module, statement: str) -> tuple[int, str]:
    """(offset, text to insert there) that adds `statement` to the module `text` (parsed as `tree`),
    in the module's own line endings: right after its docstring and `__future__` imports; else
    before its first statement (beside its imports, or a blank line before other code, two before a
    def or class). A name the module already imports others from at the top level joins that
    statement (`from typing import Any` -> `from typing import Any, Optional`), as isort would."""
    lines = split_lines(text)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    merged = _into_existing(lines, starts, tree, statement)
    if merged is not None:
        return merged
    newline = next((ln[len(ln.rstrip("\r\n")):] for ln in lines if ln.endswith(("\n", "\r"))), "\n")
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


def _into_existing(lines: list[str], starts: list[int], tree: ast.Module, statement: str) -> tuple[int, str] | None:
    """(offset, ", name") after the last name of the module's first top-level `from m import …`
    of the same module, or None (another kind of statement, no such import, a star import)."""
    words = statement.split()
    if len(words) != 4 or words[0] != "from" or words[2] != "import":
        return None
    module, name = words[1], words[3]
    for node in tree.body:
        if not (isinstance(node, ast.ImportFrom) and node.module == module and node.level == 0):
            continue
        last = node.names[-1]
        if last.name == "*" or any(a.name == name and a.asname is None for a in node.names):
            return None
        row, col = last.end_lineno, last.end_col_offset
        if row is None or col is None or row > len(lines):
            return None
        line = lines[row - 1]
        bom = row == 1 and line.startswith("\ufeff")  # the tree was parsed without it
        body = line[1:] if bom else line
        chars = len(body.encode("utf-8")[:col].decode("utf-8", "replace")) + bom  # ast columns are UTF-8 bytes
        return starts[row - 1] + chars, f", {name}"
    return None
