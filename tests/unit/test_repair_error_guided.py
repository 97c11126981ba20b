"""Candidates asked for by the error a failing test raised in the module: the rule the message
names, at the raising line only."""

from __future__ import annotations

import ast

from heedls.analyzers.repair.error_guided import Raised, candidates, raised_in


def _fixes(text: str, type_: str, message: str, line: int) -> list[str]:
    out = [c.apply(text) for c in candidates(text, [Raised(type_, message, line)])]
    for new in out:
        ast.parse(new)
    return out


def test_the_deepest_frame_in_the_module_is_where_it_was_raised() -> None:
    failure = {"type": "TypeError", "message": "m", "frames": [
        {"path": "test_m.py", "line": 3}, {"path": "m.py", "line": 7}, {"path": "m.py", "line": 9},
        {"path": "lib/other.py", "line": 1}]}
    assert raised_in([failure, failure, None, {"type": "X", "frames": []}], "m.py") == [Raised("TypeError", "m", 9)]


def test_bytes_needed_encodes_the_argument_or_the_variable_a_quoted_name_spells() -> None:
    text = "import hashlib\n\n\ndef digest(text):\n    return hashlib.md5('text').hexdigest()\n"
    fixes = _fixes(text, "TypeError", "Strings must be encoded before hashing", 5)
    assert text.replace("md5('text')", "md5(text.encode())") in fixes
    assert text.replace("md5('text')", "md5('text'.encode())") in fixes


def test_a_string_needed_wraps_the_other_operand_or_the_joined_items() -> None:
    text = "def label(n, parts):\n    return 'n=' + n + ','.join(parts)\n"
    fixes = _fixes(text, "TypeError", 'can only concatenate str (not "int") to str', 2)
    assert text.replace("+ n +", "+ str(n) +") in fixes
    assert "'n=' + n" in text and not any("str('n=')" in f for f in fixes)  # a literal is a str already
    joined = _fixes(text, "TypeError", "sequence item 0: expected str instance, int found", 2)
    assert text.replace(".join(parts)", ".join(map(str, parts))") in joined


def test_a_number_iterated_becomes_its_range_or_its_digits() -> None:
    text = "def total(n):\n    s = 0\n    for i in n:\n        s += i\n    return s\n"
    fixes = _fixes(text, "TypeError", "'int' object is not iterable", 3)
    assert fixes[0] == text.replace("for i in n:", "for i in range(n):")
    assert text.replace("for i in n:", "for i in str(n):") in fixes


def test_an_integer_needed_floors_a_division_or_wraps_the_index() -> None:
    text = "def middle(xs):\n    return xs[len(xs) / 2]\n"
    fixes = _fixes(text, "TypeError", "list indices must be integers or slices, not float", 2)
    assert fixes[0] == text.replace("/ 2", "// 2")
    assert text.replace("xs[len(xs) / 2]", "xs[int(len(xs) / 2)]") in fixes


def test_a_missing_attribute_becomes_the_closest_one_the_type_has() -> None:
    text = "def ends(words):\n    return [w for w in words if w.endwith('s')]\n"
    fixes = _fixes(text, "AttributeError", "'str' object has no attribute 'endwith'", 2)
    assert fixes[0] == text.replace("endwith", "endswith")


def test_call_and_index_confusions_swap_brackets() -> None:
    text = "def price(table, key):\n    return table(key)\n"
    assert _fixes(text, "TypeError", "'dict' object is not callable", 2) == [text.replace("table(key)", "table[key]")]
    text2 = "def twice(f, x):\n    return f[x] * 2\n"
    assert _fixes(text2, "TypeError", "'function' object is not subscriptable", 2) == [text2.replace("f[x]", "f(x)")]


def test_a_missing_key_reads_with_a_default_and_an_unbound_local_is_started() -> None:
    text = "def count(words):\n    seen = {}\n    for w in words:\n        seen[w] = seen[w] + 1\n    return seen\n"
    fixes = _fixes(text, "KeyError", "'a'", 4)
    assert fixes[0] == text.replace("= seen[w] + 1", "= seen.get(w, 0) + 1")
    text2 = 'def total(xs):\n    """Sum."""\n    for x in xs:\n        s += x\n    return s\n'
    fixes2 = _fixes(text2, "UnboundLocalError", "cannot access local variable 's' where it is not associated with a value", 4)
    assert fixes2[0] == text2.replace('"""Sum."""\n', '"""Sum."""\n    s = 0\n')
    message = "cannot access local variable 's' where it is not associated with a value"
    assert candidates(text2, [Raised("UnboundLocalError", message, 4)])[0].line == 3


def test_errors_no_rule_knows_and_broken_code_give_nothing() -> None:
    text = "def f(x):\n    return x / 0\n"
    assert _fixes(text, "ZeroDivisionError", "division by zero", 2) == []
    assert candidates("def f(:\n", [Raised("TypeError", "'int' object is not iterable", 1)]) == []
    assert candidates(text, []) == []


def test_a_number_and_a_string_mixed_become_one_kind() -> None:
    text = "def older(age, limit):\n    return age > limit\n"
    fixes = _fixes(text, "TypeError", "'>' not supported between instances of 'str' and 'int'", 2)
    assert fixes[0] in (text.replace("age >", "int(age) >"), text.replace("> limit", "> int(limit)"))
    assert text.replace("age >", "int(age) >") in fixes and text.replace("> limit", "> str(limit)") in fixes
    added = "def total(a, b):\n    return a + b\n"
    assert added.replace("a + b", "a + int(b)") in _fixes(
        added, "TypeError", "unsupported operand type(s) for +: 'int' and 'str'", 2)
    # two numbers of different kinds are no slip of this sort
    assert _fixes(added, "TypeError", "unsupported operand type(s) for +: 'int' and 'NoneType'", 2) == []


def test_the_largest_of_nothing_gets_a_default() -> None:
    text = "def top(xs):\n    return max(x for x in xs if x > 0)\n"
    fixes = _fixes(text, "ValueError", "max() arg is an empty sequence", 2)
    # a lone generator argument gets its own parentheses (without them the call does not parse)
    assert fixes == [text.replace("max(x for x in xs if x > 0)", "max((x for x in xs if x > 0), default=0)"),
                     text.replace("max(x for x in xs if x > 0)", "max((x for x in xs if x > 0), default=None)")]
    listed = "def top(xs):\n    return min(xs, key=abs)\n"
    assert _fixes(listed, "ValueError", "min() iterable argument is empty", 2)[0] == listed.replace(
        "min(xs, key=abs)", "min(xs, key=abs, default=0)")


def test_a_list_sorted_in_place_and_assigned_is_sorted_into_a_value() -> None:
    text = "def median(xs):\n    ordered = xs.sort()\n    return ordered[len(xs) // 2]\n"
    fixes = _fixes(text, "TypeError", "'NoneType' object is not subscriptable", 3)
    assert fixes[0] == text.replace("xs.sort()", "sorted(xs)")
    # ranked as the raising line, but it says where the edit is (the explanation names the line)
    assert candidates(text, [Raised("TypeError", "'NoneType' object is not subscriptable", 3)])[0].line == 2
    backwards = "def last_first(xs):\n    rev = xs.reverse()\n    return rev[0]\n"
    assert _fixes(backwards, "TypeError", "'NoneType' object is not subscriptable", 3)[0] == backwards.replace(
        "xs.reverse()", "xs[::-1]")
