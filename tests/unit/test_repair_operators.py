"""Candidate generation: operators, formatting preserved outside the edit, syntax rules, LLM answers."""

from __future__ import annotations

import ast

import pytest
from heedls.analyzers.patches import unified_diff
from heedls.analyzers.repair import operators, syntax_fix
from heedls.analyzers.repair.edits import (
    SourceMap,
    apply_spans,
    change_size,
    gap_operator,
    normalised,
)
from heedls.analyzers.repair.llm import parse_answer

SRC = '''import math  # keep me


def search(items,   target):   # odd spacing stays
    lo, hi = 0, len(items)
    while lo <= hi:   # the bug
        mid = (lo + hi) // 2
        if items[mid] < target:
            lo = mid + 1
        else:
            hi = mid
    return lo
'''


def _all(text: str) -> list[tuple[str, str]]:
    lines = len(text.splitlines())
    cands = operators.generate(text, {i: 1.0 for i in range(1, lines + 1)})
    return [(c.operator, c.apply(text)) for c in cands]


def test_comparison_operator_replacement_is_generated_and_only_changes_that_token() -> None:
    results = _all(SRC)
    fixed = SRC.replace("while lo <= hi:", "while lo < hi:")
    assert ("comparison", fixed) in results
    # every other byte of the file is untouched (comments, odd spacing)
    for _, new in results:
        assert "import math  # keep me" in new
        assert "def search(items,   target):   # odd spacing stays" in new or "search(target,   items)" in new


def test_each_operator_family_is_present() -> None:
    text = '''def f(xs, n):
    total = 0
    for i in range(1, n):
        total += xs[i] - xs[0]
    if total > 0 and n:
        xs.append(total)
    return g(n, total)
'''
    ops = {op for op, _ in _all(text)}
    for expected in ("comparison", "binary-operator", "augmented-assignment", "boolean-operator", "negate-condition",
                     "off-by-one", "swap-arguments", "wrong-variable", "index", "wrong-function", "delete-statement",
                     "insert-statement", "loop-bound", "unwrap-call", "drop-condition", "swap-operands"):
        assert expected in ops, expected
    news = {new for _, new in _all(text)}
    assert text.replace("range(1, n)", "range(1, n + 1)") in news
    assert text.replace("xs[0]", "xs[-1]") in news
    assert text.replace("xs.append(total)", "xs.extend(total)") in news
    assert text.replace("total += xs", "total = xs") in news
    assert text.replace("g(n, total)", "g(total, n)") in news


def test_all_candidates_parse_and_differ_from_the_original() -> None:
    original = normalised(SRC)
    for _, new in _all(SRC):
        norm = normalised(new)
        assert norm is not None and norm != original


def test_only_suspicious_lines_are_mutated() -> None:
    cands = operators.generate(SRC, {6: 1.0})
    assert cands
    assert {c.line for c in cands} == {6}
    assert all(SRC.splitlines()[:5] == c.apply(SRC).splitlines()[:5] for c in cands)


def test_candidates_are_ordered_by_score_times_prior() -> None:
    cands = operators.generate(SRC, {6: 1.0, 8: 0.2})
    scores = [c.score for c in cands]
    assert scores == sorted(scores, reverse=True)
    assert cands[0].line == 6


def test_non_ascii_text_positions_are_handled() -> None:
    text = 'def f(x):\n    s = "héllo wörld"; return x < 1\n'
    fixed = [new for op, new in _all(text) if op == "comparison"]
    assert 'def f(x):\n    s = "héllo wörld"; return x <= 1\n' in fixed


def test_gap_operator_skips_parentheses_and_whitespace() -> None:
    text = "(a)  not in  (b)"
    start, end = gap_operator(text, 3, 12) or (0, 0)
    assert text[start:end] == "not in"


def test_spans_diff_and_size() -> None:
    text = "a = 1\nb = 2\n"
    sm = SourceMap(text)
    tree = ast.parse(text)
    s, e = sm.node_span(tree.body[1].value)  # type: ignore[attr-defined]
    from heedls.analyzers.repair.edits import Span

    new = apply_spans(text, [Span(s, e, "3")])
    assert new == "a = 1\nb = 3\n"
    assert change_size(text, new) == 1
    assert unified_diff(text, new, "m.py").startswith("--- a/m.py\n+++ b/m.py\n")


def test_syntax_rules_fix_common_errors_and_every_result_parses() -> None:
    broken = "def f(x)\n    if x = 1:\n        return (x + 1\n    return x\n"
    cands = syntax_fix.candidates(broken, max_rounds=3)
    assert cands
    for c in cands:
        assert c.new_text is not None
        ast.parse(c.new_text)
    assert "def f(x):\n    if x == 1:\n        return (x + 1)\n    return x\n" in {c.new_text for c in cands}


def test_syntax_rules_missing_quote_and_indentation() -> None:
    assert any(c.new_text == "s = 'abc'\n" for c in syntax_fix.candidates("s = 'abc\n"))
    bad_indent = "def f():\n    x = 1\n      return x\n"
    assert any(c.new_text == "def f():\n    x = 1\n    return x\n" for c in syntax_fix.candidates(bad_indent))


def test_llm_answer_whole_module_and_partial_function() -> None:
    original = "import os\n\n\ndef a():\n    return 1\n\n\ndef b():\n    return 2\n"
    whole = "Here:\n```python\nimport os\n\n\ndef a():\n    return 10\n\n\ndef b():\n    return 2\n```\nChanged a."
    new, expl = parse_answer(whole, original)
    assert new == "import os\n\n\ndef a():\n    return 10\n\n\ndef b():\n    return 2\n"
    assert expl == "Changed a."
    partial = "```python\ndef b():\n    return 20\n```\nFixed b's value."
    new, _ = parse_answer(partial, original)
    assert new == "import os\n\n\ndef a():\n    return 1\n\n\ndef b():\n    return 20\n"
    assert parse_answer("no code here", original)[0] is None
    assert parse_answer("```python\ndef (:\n```", original)[0] is None


def test_a_function_that_never_returns_what_it_computes_gets_a_return_at_its_end() -> None:
    src = "def mean(xs):\n    s = 0\n    for x in xs:\n        s += x\n    avg = s / len(xs)"  # no final newline
    fixes = [text for op, text in _all(src) if op == "missing-return"]
    assert fixes[:2] == [src + "\n    return avg\n", src + "\n    return s\n"]
    assert all(ast.parse(text) for text in fixes)


def test_no_return_is_added_to_generators_or_functions_that_already_return_a_value() -> None:
    for src in ("def gen(xs):\n    for x in xs:\n        yield x\n    n = 1\n",
                "def f(x):\n    if x:\n        return 1\n    y = 2\n"):
        assert not [op for op, _ in _all(src) if op == "missing-return"]


def test_an_early_exit_on_an_attribute_also_exits_when_its_object_is_none() -> None:
    text = ("import math\n\n\ndef walk(node):\n    while True:\n        if node.next is None or math.pi < 0:\n"
            "            return False\n        node = node.next.next\n")
    checks = [c for c in operators.generate(text, {6: 1.0}) if c.operator == "none-check"]
    assert [c.apply(text).splitlines()[5].strip() for c in checks] == [
        "if node is None or node.next is None or math.pi < 0:"]  # not `math`, a module
    # a test that binds looser than `or` keeps its parentheses
    loose = "def f(a, b):\n    if a.x and b:\n        return 1\n    return 0\n"
    (check,) = [c for c in operators.generate(loose, {2: 1.0}) if c.operator == "none-check"]
    assert "if a is None or (a.x and b):" in check.apply(loose)


def test_a_name_defined_nowhere_becomes_the_most_similar_name_it_can_see() -> None:
    """A misspelling is a NameError waiting to happen, at module level as well as in a function;
    the candidates are the names in reach (module level, then the enclosing functions'), the most
    similar first, a builtin when nothing in the module is close."""
    module_level = "DEFAULTS = {'size': 3}\nSIZE = DEFALTS['size']\n"
    fixes = [text for op, text in _all(module_level) if op == "undefined-name"]
    assert fixes == ["DEFAULTS = {'size': 3}\nSIZE = DEFAULTS['size']\n"]
    in_function = ("SCALE = 2\n\n\ndef scaled(values, factor):\n    def one(v):\n        return v * SCLAE\n"
                   "    return [one(v) for v in values]\n")
    (first, *_) = [c for c in operators.generate(in_function, {6: 1.0}) if c.operator == "undefined-name"]
    assert "return v * SCALE\n" in first.apply(in_function)
    assert [text for op, text in _all("def f(xs):\n    return lenn(xs)\n") if op == "undefined-name"] == [
        "def f(xs):\n    return len(xs)\n"]
    case = [text for op, text in _all("Size = 3\n\n\ndef f():\n    return size * 2\n") if op == "undefined-name"]
    assert case[:1] == ["Size = 3\n\n\ndef f():\n    return Size * 2\n"]


def test_names_that_are_bound_somewhere_or_may_come_from_a_star_import_are_left_alone() -> None:
    bound = ("import os.path as osp\nfrom math import *\n\n\ndef f(a, *rest, **kw):\n    global G\n    try:\n"
             "        G = a\n    except ValueError as err:\n        return err\n    return [x for x in rest], osp, kw, pi\n")
    assert not [op for op, _ in _all(bound) if op == "undefined-name"]  # `pi` may come from math's `*`
    plain = bound.replace("from math import *\n", "").replace(", pi\n", ", kww\n")
    assert [text.splitlines()[-1] for op, text in _all(plain) if op == "undefined-name"] == [
        "    return [x for x in rest], osp, kw, kw"]  # only `kww` is defined nowhere


def test_a_missing_import_joins_the_modules_own_from_import_and_reads_which_member_is_meant() -> None:
    text = "from typing import Any\n\n\ndef stamp(x: Any) -> Optional[str]:\n    return datetime.now().isoformat()\n"
    body = "\n\n\ndef stamp(x: Any) -> Optional[str]:\n    return datetime.now().isoformat()\n"
    assert sorted(t for op, t in _all(text) if op == "missing-import") == [
        "from datetime import datetime\nfrom typing import Any" + body,  # `now` is the class's, not the module's
        "from typing import Any, Optional" + body]


def test_a_short_string_becomes_another_of_its_function_or_changes_at_every_use() -> None:
    """Separators and markers: `"__"` where the function's other `"_"` was meant; the same wrong
    `" "` returned at every exit changes at every use at once (one candidate, one fix)."""
    spaces = 'def fix(n):\n    if n > 2:\n        return "-"\n    return "__" if n else "_" * n\n'
    fixes = [text for op, text in _all(spaces) if op == "constant"]
    assert 'def fix(n):\n    if n > 2:\n        return "-"\n    return "_" if n else "_" * n\n' in fixes
    assert 'def fix(n):\n    if n > 2:\n        return "-"\n    return "-" if n else "_" * n\n' in fixes
    vowel = 'def closest(word):\n    if len(word) < 3:\n        return " "\n    return " "\n'
    every = [text for op, text in _all(vowel) if op == "constant" and text.count('""') == 2]
    assert every == ['def closest(word):\n    if len(word) < 3:\n        return ""\n    return ""\n']  # its quotes kept
    # f-string parts and docstrings are not literals to swap
    assert not [t for op, t in _all('def f(x):\n    """ab"""\n    return f"{x}-" + "+"\n') if op == "constant" and "f\"{x}+\"" in t]


def test_two_neighbours_of_a_built_list_or_tuple_are_swapped_but_not_an_unpacking() -> None:
    src = "def pluck(arr):\n    return [arr.index(min(arr)), min(arr)]\n"
    assert [text for op, text in _all(src) if op == "swap-elements"] == [
        "def pluck(arr):\n    return [min(arr), arr.index(min(arr))]\n"]
    unpack = "def f(p):\n    a, b = p\n    return p[a, b]\n"
    assert not [op for op, _ in _all(unpack) if op == "swap-elements"]


def test_a_while_loop_over_a_counter_its_body_never_moves_gets_the_step() -> None:
    """`while div: res += s` loops forever: the counter's step goes at the end of the body, in the
    direction the condition needs; a counter the body assigns or hands to a call is left alone."""
    roman = "def f(div, s):\n    res = ''\n    while div:\n        res += s\n    return res\n"
    assert [text for op, text in _all(roman) if op == "loop-counter"] == [
        "def f(div, s):\n    res = ''\n    while div:\n        res += s\n        div -= 1\n    return res\n"]
    up = "def f(i, n):\n    t = 0\n    while i < n:\n        t += i\n    return t\n"
    assert [text.splitlines()[4] for op, text in _all(up) if op == "loop-counter"] == ["        i += 1", "        n -= 1"]
    for moved in ("def f(i):\n    while i:\n        i //= 2\n",
                  "def f(q):\n    while q:\n        q.pop()\n",
                  "import heapq\n\n\ndef f(h):\n    while h:\n        heapq.heappop(h)\n"):
        assert not [op for op, _ in _all(moved) if op == "loop-counter"], moved


def test_two_statements_in_a_row_are_deleted_together() -> None:
    src = ("def f(xs):\n    small = [x for x in xs if x < 0]\n    big = [x for x in xs if x > 0]\n"
           "    big = small\n    small = big\n    return small, big\n")
    pairs = [text for op, text in _all(src) if op == "delete-statement" and text.count("\n") == src.count("\n") - 2]
    assert ("def f(xs):\n    small = [x for x in xs if x < 0]\n    big = [x for x in xs if x > 0]\n"
            "    return small, big\n") in pairs
    assert all(ast.parse(text) for text in pairs)


def test_a_string_spelling_one_of_the_functions_variables_becomes_the_variable() -> None:
    text = '''def greet(name, greeting):
    return greeting + ", " + 'name' + getattr(name, 'greeting', "")
'''
    results = [new for op, new in _all(text) if op == "quoted-name"]
    assert results == ['''def greet(name, greeting):
    return greeting + ", " + name + getattr(name, 'greeting', "")
''']  # getattr's attribute name is a string on purpose


def test_a_string_constant_close_to_a_string_of_the_tests_takes_the_tests_spelling() -> None:
    text = '''COLOURS = ("crimson", "turqoise", "ochre")


def warm(colour):
    return colour in ("crimson", "ochre")
'''
    cands = operators.generate(text, {1: 1.0, 4: 1.0, 5: 1.0}, {"turquoise", "crimson", "x", "ochre"})
    spelt = [(c.operator, c.apply(text)) for c in cands if c.operator == "misspelt-string"]
    assert spelt == [("misspelt-string", text.replace('"turqoise"', '"turquoise"'))]
    # no test strings, no candidates of this kind
    assert not [c for c in operators.generate(text, {1: 1.0}) if c.operator == "misspelt-string"]


def test_the_middle_operand_of_a_chain_is_dropped_with_its_operator() -> None:
    text = '''def sign(xs, base):
    return base ** 2 * len(xs)
'''
    results = [new for op, new in _all(text) if op == "drop-operand"]
    assert text.replace("base ** 2 * len(xs)", "base ** len(xs)") in results
    # the meaning of what is left is `a op c`, with parentheses where precedence needs them
    text2 = "def f(a, b, c):\n    return (a + b) * c\n"
    assert "def f(a, b, c):\n    return a + c\n" in [new for op, new in _all(text2) if op == "drop-operand"]
    for _, new in _all(text2):
        ast.parse(new)


def test_nested_loops_whose_inner_variable_is_never_read_get_the_missing_pairing_guard() -> None:
    text = '''def shared(xs, ys):
    out = []
    for x in xs:
        for y in ys:
            out.append(x)
            out.sort()
    return out
'''
    results = [new for op, new in _all(text) if op == "missing-guard"]
    assert results[0] == '''def shared(xs, ys):
    out = []
    for x in xs:
        for y in ys:
            if x == y:
                out.append(x)
                out.sort()
    return out
'''
    assert results[1] == results[0].replace("x == y", "x != y")
    # an inner loop that reads its own variable is left alone, and so is a body on the loop's line
    used = text.replace("out.append(x)", "out.append(x + y)")
    assert not [op for op, _ in _all(used) if op == "missing-guard"]
    one_line = "def shared(xs, ys):\n    out = []\n    for x in xs:\n        for y in ys: out.append(x)\n    return out\n"
    assert not [op for op, _ in _all(one_line) if op == "missing-guard"]


def test_a_result_missing_a_part_the_function_computed_gets_a_local_added() -> None:
    text = '''def all_prefixes(word):
    if not word:
        return [""]
    shorter = all_prefixes(word[:-1])
    return [word] + [p for p in shorter if p]
'''
    results = [new for op, new in _all(text) if op == "return-term"]
    assert text.replace('return [word] + [p for p in shorter if p]', 'return shorter + ([word] + [p for p in shorter if p])') in results
    assert text.replace('return [""]', 'return [""] + shorter') in results
    # not a parameter, not a comprehension variable
    assert not [new for new in results if "word + " in new or " + word\n" in new or "p + " in new]
    # parentheses only where they change the meaning
    comp = text.replace("[word] + [p for p in shorter if p]", "[p + word for p in shorter]")
    assert comp.replace("return [p + word", "return shorter + [p + word") in [n for op, n in _all(comp) if op == "return-term"]


def test_a_call_that_is_an_operand_of_arithmetic_becomes_a_variable_of_the_function() -> None:
    text = '''def relax(costs, start, edge):
    cost = costs.get(start)
    best = min(costs.get(start) or 0, lookup(costs, start) + edge)
    return best
'''
    results = [new for op, new in _all(text) if op == "expression-substitution"]
    assert text.replace("lookup(costs, start) + edge", "cost + edge") in results
    # only an operand of arithmetic (not `costs.get(start) or 0`), never a parameter
    assert text.replace("costs.get(start) or 0", "cost or 0") not in results
    assert text.replace("lookup(costs, start) + edge", "edge + edge") not in results


def test_a_return_indented_into_its_loop_is_moved_after_it() -> None:
    text = '''def total(xs):
    s = 0
    for x in xs:
        s += x
        return s
'''
    assert [new for op, new in _all(text) if op == "misplaced-return"] == [text.replace("        return s", "    return s")]
    # a loop with an else:, or a return that is its only statement, is left alone
    assert not [op for op, _ in _all(text.replace("        s += x\n", "")) if op == "misplaced-return"]


def test_a_loop_meant_to_stop_at_the_first_match_gets_a_break() -> None:
    text = '''def first_even(xs):
    found = None
    for x in xs:
        if x % 2 == 0:
            found = x
    return found
'''
    assert [new for op, new in _all(text) if op == "missing-break"] == [
        text.replace("            found = x\n", "            found = x\n            break\n")]
    # a loop that already breaks, or an if that does more than assign, is left alone
    breaks = text.replace("            found = x\n", "            found = x\n            break\n")
    assert not [op for op, _ in _all(breaks) if op == "missing-break"]


def test_a_collection_returned_unsorted_gets_sorted() -> None:
    text = '''def uniques(xs):
    return list(set(xs))
'''
    sorted_ = [new for op, new in _all(text) if op == "return-sorted"]
    assert sorted_ == [text.replace("list(set(xs))", "sorted(list(set(xs)))"),
                       text.replace("list(set(xs))", "sorted(list(set(xs)), reverse=True)")]
    assert not [op for op, _ in _all("def n(xs):\n    return len(xs)\n") if op == "return-sorted"]


def test_one_end_of_a_computed_sequence_may_have_been_meant_as_its_aggregate() -> None:
    text = '''def digit_total(n):
    return [int(d) for d in str(n)][-1]
'''
    folds = [new for op, new in _all(text) if op == "aggregate"]
    assert folds == [text.replace("[int(d) for d in str(n)][-1]", f"{fold}([int(d) for d in str(n)])")
                     for fold in ("sum", "max", "min", "len")]
    # a name indexed at its end, or a store into a list's end, is left to the other operators
    assert not [op for op, _ in _all("def last(xs):\n    return xs[-1]\n") if op == "aggregate"]
    assert not [op for op, _ in _all("def f(n):\n    ys = list(n)\n    list(n)[0] = 1\n") if op == "aggregate"]


def test_the_index_swap_reads_minus_one_both_ways() -> None:
    # `-1` is a minus applied to 1 in the AST: until 2026-12-01 only `[0]` → `[-1]` was generated
    swaps = [new for op, new in _all("def last(xs):\n    return xs[-1]\n") if op == "index"]
    assert swaps == ["def last(xs):\n    return xs[0]\n"]
    swaps = [new for op, new in _all("def first(xs):\n    return xs[0]\n") if op == "index"]
    assert swaps == ["def first(xs):\n    return xs[-1]\n"]


def test_a_name_a_method_reads_that_only_its_class_has_gets_self() -> None:
    text = '''LIMIT = 10


class Cart:
    TAX = 0.2

    def __init__(self, items):
        self.items = items

    def _price(self, item):
        return item * (1 + TAX)

    def total(self):
        return sum(_price(i) for i in items)

    def capped(self, limit=LIMIT):
        def clip(v):
            return min(v, limit)
        return clip(total())
'''
    found = sorted(new.splitlines()[next(i for i, (a, b) in enumerate(zip(new.splitlines(), text.splitlines())) if a != b)]
                   for op, new in _all(text) if op == "missing-self")
    assert found == [
        "        return clip(self.total())",  # another method, read from a nested function's caller
        "        return item * (1 + self.TAX)",  # a class-level name
        "        return sum(_price(i) for i in self.items)",  # an attribute set in __init__
        "        return sum(self._price(i) for i in items)",
    ]


def test_names_in_a_methods_reach_are_left_alone() -> None:
    text = '''items = []


class Cart:
    def __init__(self, items):
        self.items = items

    def first(self, count):
        return items[:count]  # the module's

    @staticmethod
    def empty(n):
        return first(n)  # a static method has no self to reach its class by

    def lengths(self):
        return [len(count) for count in self.items]

    @property
    def size(self):
        return len(self.items)

    @size.setter  # evaluated in the class body, where `size` is bound
    def size(self, n):
        import zlib  # a local import binds its name
        try:
            self.items = self.items[:n]
        except TypeError as first:
            raise ValueError(zlib) from first
'''
    assert [new for op, new in _all(text) if op == "missing-self"] == []


def test_a_standard_module_or_name_used_without_its_import_gets_it_at_the_top() -> None:
    text = '''"""Geometry."""
from __future__ import annotations

# helpers below
def hyp(a, b):
    return math.sqrt(a * a + b * b) + math.sqrt(0)


def tally(xs):
    return Counter(xs)
'''
    added = sorted(new for op, new in _all(text) if op == "missing-import")
    top = "from __future__ import annotations\n"
    # once per name, right after the docstring and the __future__ imports
    assert added == [text.replace(top, top + "from collections import Counter\n"), text.replace(top, top + "import math\n")]


@pytest.mark.parametrize(("text", "expected"), [
    ("import os\n\n\ndef f():\n    return math.pi\n", "import math\nimport os\n\n\ndef f():\n    return math.pi\n"),
    ("#!/usr/bin/env python\n# a script\ndef f():\n    return math.pi\n",
     "#!/usr/bin/env python\n# a script\nimport math\n\n\ndef f():\n    return math.pi\n"),
    ('"""Doc."""\nx = math.pi', '"""Doc."""\nimport math\nx = math.pi'),
    ("x = math.pi", "import math\n\nx = math.pi"),
])
def test_the_import_goes_with_the_others_or_before_the_first_statement(text: str, expected: str) -> None:
    assert [new for op, new in _all(text) if op == "missing-import"] == [expected]


def test_no_import_is_added_for_a_bound_name_or_a_module_the_standard_library_lacks() -> None:
    for text in ("def f(math):\n    return math.sqrt(2)\n",  # a parameter named like the module
                 "def f(xs):\n    return numpy.array(xs)\n",  # not the standard library's
                 "def f():\n    return math\n",  # a module read bare is not a module used
                 "from os import *\n\n\ndef f():\n    return path.join('a')\n"):  # a star import may bind it
        assert not [op for op, _ in _all(text) if op == "missing-import"], text


def test_an_argument_too_many_is_dropped_with_its_comma() -> None:
    """`hashkey(self, *args)` in a method key that must leave `self` out; a call keeps one argument."""
    src = "def key(self, *args, **kw):\n    return hashkey(self, *args, **kw)\n\n\ndef g(a, b):\n    return h(a, b, k=1) + f(a)\n"
    dropped = {c.apply(src) for c in operators.generate(src, {i: 1.0 for i in range(1, 7)}, set())
               if c.operator == "drop-argument"}
    assert dropped == {src.replace("hashkey(self, *args", "hashkey(*args"), src.replace("h(a, b, k=1)", "h(b, k=1)"),
                       src.replace("h(a, b, k=1)", "h(a, k=1)")}
